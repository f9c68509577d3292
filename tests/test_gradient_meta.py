"""Finite-batch meta-gradient estimators against closed forms on the linear-Gaussian bandit.

One task with goal g, a ~ N(θ, 1) (σ held fixed: its step size is 0), r = −(a − g)², n episodes
per batch, d = θ − g, u_i = a_i − θ ~ N(0, 1). Each batch's advantages subtract the batch-mean
return (the fitted linear baseline is a constant here), so with k = 1 − 1/n:

    ĝ = (1/n) Σ u_i (r_i − r̄)            E ĝ = −2dk,   Var ĝ = 2(n − 1)(5n − 4 + 4n d²)/n³
    Ĥ_DiCE = (1/n) Σ (u_i² − 1)(r_i − r̄)  E Ĥ = −2k,    Cov(ĝ, Ĥ) = 4d(n − 1)(9n − 8)/n³
    ∂ĝ/∂θ with the samples held fixed = −(1/n) Σ (r_i − r̄) = 0

(U-statistics of order 2; verified by Monte Carlo). θ' = θ + αĝ, J_post(θ') = −(θ' − g)² − 1,
and the post-update batch's own baseline makes the outer surrogate estimate k ∇J_post(θ').
With c = 1 − 2αk:

    truth     J(θ) = E_D[J_post(θ + αĝ(D))] = −d²(c² + 8α²(n − 1)/n²) − const
              dJ/dθ = −2d (c² + 8α²(n − 1)/n²)
                    = E[∇J_post(θ')] + E[J_post(θ') Σ_i ∇log π(a_i)] = −2dc + S
    "vpg"     E = −2k d c                                 (the pre-update score term S is missing)
    "dice"    E = −2k d (c² + 4α²(n − 1)(9n − 8)/n³)      ("lvc" is identical for one-step episodes)

DiCE's Hessian term is unbiased for ∇²J_inner, but the meta-gradient differentiates only
through θ'(θ): it estimates ∇J_post(θ + αE ĝ) plus an α² Cov(ĝ, Ĥ) term, not dJ/dθ of the
finite-batch objective. E-MAML's exploration term (raw return, λ = n) supplies exactly S.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metarl_jax import algos, estimators
from tests.bandit import LinearGaussianBandit, mean_bias

N = 4  # episodes per batch (inner and post)
ALPHA = 0.25
THETA, GOAL = 0.5, -0.5
DRAWS = 40_000
K = 1 - 1 / N
D = THETA - GOAL
C = 1 - 2 * ALPHA * K

TRUTH = -2 * D * (C**2 + 8 * ALPHA**2 * (N - 1) / N**2)
SCORE_TERM = TRUTH + 2 * D * C
EXPECTED = {
    "vpg": -2 * K * D * C,
    "dice": -2 * K * D * (C**2 + 4 * ALPHA**2 * (N - 1) * (9 * N - 8) / N**3),
}
EXPECTED["lvc"] = EXPECTED["dice"]


class _FixedStd:
    """Mixin: α = 0 for log σ, so the post-update objective stays a polynomial in θ."""

    def step_sizes(self, meta_params):
        sizes = super().step_sizes(meta_params)
        return jax.tree_util.tree_map_with_path(
            lambda path, a: jnp.zeros_like(a) if "log_std" in jax.tree_util.keystr(path) else a, sizes)


def bandit_estimates(name: str, clip: float | None = None, **config_changes) -> np.ndarray:
    """DRAWS independent estimates of dJ/dθ through ``name``'s sample_adaptation and meta_objective.

    The gradient is that of the optimiser's loss −mean(ρA) (clipped with ``clip``) + penalty, negated.
    """
    family = LinearGaussianBandit()
    config = algos.config_class(name)(hidden_sizes=(), meta_batch_size=1, episodes_per_task=N, fast_lr=ALPHA,
                                      normalize_advantages=False, **config_changes)
    registered = type(algos.make(name, family, config))
    algo = type(f"FixedStd{registered.__name__}", (_FixedStd, registered), {})(family, config)
    params = algo.init(jax.random.key(0)).params
    params["params"]["MLP_0"]["Dense_0"]["bias"] = jnp.array([THETA])

    def loss(p, inner, post):
        o = algo.meta_objective(p, inner, post)
        return -estimators.importance_surrogate(o.log_ratio, o.advantages, o.mask, clip) + o.penalty

    def one_draw(key):
        inner, post, _ = jax.vmap(algo.sample_adaptation, in_axes=(None, 0, 0))(params, jnp.array([GOAL]), key[None])
        return -mean_bias(jax.grad(loss)(params, inner, post))[0]

    return np.asarray(jax.jit(jax.vmap(one_draw))(jax.random.split(jax.random.key(1), DRAWS)))


@pytest.fixture(scope="module")
def estimates():
    return {
        "maml_vpg": bandit_estimates("maml", inner_estimator="vpg"),
        "maml_dice": bandit_estimates("maml", inner_estimator="dice"),
        **{f"promp_{kind}": bandit_estimates("promp", clip=0.3, inner_estimator=kind) for kind in ("dice", "vpg")},
        "emaml": bandit_estimates("emaml", inner_estimator="vpg", exploration_baseline="none",
                                  exploration_weight=float(N)),
    }


def _mean_and_se(x):
    return float(np.mean(x)), float(np.std(x) / np.sqrt(len(x)))


@pytest.mark.parametrize("name,kind", [("maml", "vpg"), ("maml", "dice"), ("promp", "vpg"), ("promp", "dice")])
def test_finite_batch_estimator_means_match_their_closed_forms(estimates, name, kind):
    mean, se = _mean_and_se(estimates[f"{name}_{kind}"])
    assert abs(mean - EXPECTED[kind]) < 4 * se, (mean, se, EXPECTED[kind])
    # Neither is the gradient of the finite-batch objective, even after undoing the post-batch factor k.
    assert abs(mean / K - TRUTH) > 6 * se / K, (mean / K, TRUTH, se)


def test_promp_at_step_zero_is_maml_on_every_draw(estimates):
    """ProMP's likelihood-ratio inner objectives and clipped outer loss equal MAML's at θ = θ_o."""
    for kind in ("vpg", "dice"):
        np.testing.assert_allclose(estimates[f"promp_{kind}"], estimates[f"maml_{kind}"], rtol=1e-4, atol=1e-4)


def test_emaml_exploration_term_is_the_missing_score_term(estimates):
    """E-MAML − MAML (same draws) estimates (λ/n) E[J_post(θ') Σ ∇log π(a_i)] = S; with it, dJ/dθ."""
    difference = estimates["emaml"] - estimates["maml_vpg"]
    mean, se = _mean_and_se(difference)
    assert abs(mean - SCORE_TERM) < 4 * se, (mean, se, SCORE_TERM)
    assert abs(mean) > 6 * se
    completed = estimates["maml_vpg"] / K + difference
    mean, se = _mean_and_se(completed)
    assert abs(mean - TRUTH) < 4 * se, (mean, se, TRUTH)
