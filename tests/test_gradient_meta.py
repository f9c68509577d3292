"""Finite-batch meta-gradient estimators against closed forms on the linear-Gaussian bandit: the
estimator table of docs/design_notes.md ("What the estimators estimate"), row by row.

One goal g, a ~ N(θ, 1), r = −(a − g)², d = θ − g, u_i = a_i − θ ~ N(0, 1), n episodes per batch
(inner and post-update), step size α, σ held fixed in the inner step (``inner_adapts_log_std``).
Each draw has two tasks with the same goal (the leave-one-out score baseline needs another task).
With the advantages A_i of ``baseline``, the inner gradient ĝ = (1/n) Σ u_i A_i and the inner
Hessians Ĥ_DiCE = (1/n) Σ (u_i² − 1) A_i (= Ĥ_LVC for one-step episodes) and, samples held fixed,
Ĥ_VPG = −(1/n) Σ A_i have, with k = 1 − 1/n (U-statistics of Gaussian moments):

    baseline        A_i                 E ĝ    E Ĥ_DiCE  Cov(ĝ, Ĥ_DiCE)        Var ĝ
    linear (= r̄)    r_i − r̄             −2dk   −2k       4d(n−1)(9n−8)/n³      2(n−1)(5n−4+4nd²)/n³
    leave_one_out   n/(n−1) (r_i − r̄)   −2d    −2        4d(9n−8)/(n(n−1))     2(5n−4+4nd²)/(n(n−1))
    none            r_i                 −2d    −2        (8d³ + 44d)/n         (d⁴ + 14d² + 15)/n

Ĥ_VPG = 0 for linear and leave_one_out (Σ_i A_i = 0); for none E Ĥ_VPG = d² + 1 and
Cov(ĝ, Ĥ_VPG) = −(2d³ + 10d)/n. (The bandit's linear baseline is the batch mean: its only
non-zero feature is the constant.) The post-update surrogate's gradient has mean
k_post ∇J_post(θ'), θ' = θ + αĝ, J_post(θ') = −(θ' − g)² − 1, k_post = k for linear, else 1.
With μ = E ĝ and μ' = dμ/dd:

    ∇J_inf = d/dθ J_post(θ + αμ)     = −2(d + αμ)(1 + αμ')            infinite-batch objective
    ∇J_fin = d/dθ E_D J_post(θ + αĝ) = ∇J_inf − α² d(Var ĝ)/dd        MAML's finite-batch objective
    E[post_update with Ĥ]            = −2 k_post [(d + αμ)(1 + α E Ĥ) + α² Cov(ĝ, Ĥ)]
        "dice": Ĥ_DiCE, E Ĥ_DiCE = μ', so the mean is k_post (∇J_inf − 2α² Cov(ĝ, Ĥ_DiCE));
        "vpg": Ĥ_VPG;  first_order: Ĥ = 0
    S = E[J_post(θ') Σ_i u_i]        = ∇J_fin + 2[(d + αμ)(1 + α E Ĥ_VPG) + α² Cov(ĝ, Ĥ_VPG)]
    E[pre_update_score]              = E[post_update, "vpg"] + S
                                     = ∇J_fin  (none, leave_one_out),  ∇J_fin + 2(d + αμ)/n  (linear)

Each checked against a numpy Monte Carlo (4·10⁶ draws per case, n = 2, 4, 8). Every estimate
below is the package's own: ``sample_adaptation`` and ``jax.grad`` of
``optim.policy_loss(meta_objective(...))``, the loss the optimisers minimise.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metarl_jax import algos, optim
from tests.bandit import LinearGaussianBandit, mean_bias

ALPHA = 0.3
THETA, GOAL = 0.5, -0.5
TASKS = 2  # per draw, same goal
DRAWS = 50_000
NS = (2, 8)
BASELINES = ("linear", "leave_one_out", "none")
# (n, baseline) of the draws: every table row at n = 8, the unbiased baselines also at n = 2.
CASES = [(8, "linear"), (8, "leave_one_out"), (8, "none"), (2, "leave_one_out"), (2, "none")]
SCORE = dict(inner_estimator="vpg", outer_estimator="pre_update_score")
ESTIMATORS = {  # name: (algo, config changes, PPO clip of the outer loss)
    "dice": ("maml", dict(inner_estimator="dice"), None),
    "vpg": ("maml", dict(inner_estimator="vpg"), None),
    "first_order": ("maml", dict(inner_estimator="dice", first_order=True), None),
    "score_leave_one_out": ("maml", dict(SCORE, score_baseline="leave_one_out"), None),
    "score_none": ("maml", dict(SCORE, score_baseline="none"), None),
}
EMAML = {f"emaml_{b}": ("emaml", dict(inner_estimator="vpg", exploration_baseline=b), None)
         for b in ("none", "leave_one_out", "normalized")}
# Computed on the draws of some cases only: equalities on every draw, and E-MAML's normalisation.
EXTRA = {
    (8, "leave_one_out"): {
        "lvc": ("maml", dict(inner_estimator="lvc"), None),
        "promp_dice": ("promp", dict(inner_estimator="dice"), 0.3),
        "promp_vpg": ("promp", dict(inner_estimator="vpg"), 0.3),
        **EMAML,
    },
    (2, "none"): EMAML,  # the setting: N = 2, no baseline
}


def closed_forms(n: int, baseline: str, alpha: float = ALPHA, d: float = THETA - GOAL) -> dict[str, float]:
    """The means of the module docstring: the two targets and every estimator, for one (n, baseline)."""
    k = 1 - 1 / n
    if baseline == "linear":
        mu, dmu, h_dice, cov_dice, dvar = -2 * d * k, -2 * k, -2 * k, 4 * d * (n - 1) * (9 * n - 8) / n**3, \
            16 * (n - 1) * d / n**2
        h_vpg, cov_vpg, k_post = 0.0, 0.0, k
    elif baseline == "leave_one_out":
        mu, dmu, h_dice, cov_dice, dvar = -2 * d, -2.0, -2.0, 4 * d * (9 * n - 8) / (n * (n - 1)), 16 * d / (n - 1)
        h_vpg, cov_vpg, k_post = 0.0, 0.0, 1.0
    else:
        mu, dmu, h_dice, cov_dice, dvar = -2 * d, -2.0, -2.0, (8 * d**3 + 44 * d) / n, (4 * d**3 + 28 * d) / n
        h_vpg, cov_vpg, k_post = d**2 + 1, -(2 * d**3 + 10 * d) / n, 1.0

    def post_update(h, cov):
        return -2 * k_post * ((d + alpha * mu) * (1 + alpha * h) + alpha**2 * cov)

    infinite = -2 * (d + alpha * mu) * (1 + alpha * dmu)
    finite = infinite - alpha**2 * dvar
    score = finite + 2 * ((d + alpha * mu) * (1 + alpha * h_vpg) + alpha**2 * cov_vpg)
    vpg = post_update(h_vpg, cov_vpg)
    return {"infinite_batch": infinite, "finite_batch": finite, "dice": post_update(h_dice, cov_dice), "vpg": vpg,
            "first_order": post_update(0.0, 0.0), "score_leave_one_out": vpg + score, "score_none": vpg + score}


def bandit_estimates(n: int, baseline: str, estimators: dict, num_inner_steps: int = 1) -> dict[str, np.ndarray]:
    """DRAWS estimates of dJ/dθ per estimator, all on the same draws (their inner steps agree in value)."""
    family = LinearGaussianBandit()

    def make(name, changes):
        weight = {"exploration_weight": float(n)} if name == "emaml" else {}  # λ = n·T, T = 1
        config = algos.config_class(name)(hidden_sizes=(), meta_batch_size=TASKS, episodes_per_task=n,
                                          fast_lr=ALPHA, normalize_advantages=False, baseline=baseline,
                                          inner_adapts_log_std=False, num_inner_steps=num_inner_steps,
                                          **weight, **changes)
        return algos.make(name, family, config)

    learners = {key: (make(name, changes), clip) for key, (name, changes, clip) in estimators.items()}
    sampler = make("maml", {})
    params = sampler.init(jax.random.key(0)).params
    params["params"]["MLP_0"]["Dense_0"]["bias"] = jnp.array([THETA])
    goals = jnp.full((TASKS,), GOAL)

    def one_draw(key):
        inner, post, _ = jax.vmap(sampler.sample_adaptation, in_axes=(None, 0, 0))(
            params, goals, jax.random.split(key, TASKS))

        def ascent(algo, clip):
            return -mean_bias(jax.grad(lambda p: optim.policy_loss(algo.meta_objective(p, inner, post), clip))(
                params))[0]

        return {key: ascent(algo, clip) for key, (algo, clip) in learners.items()}

    draws = jax.jit(jax.vmap(one_draw))(jax.random.split(jax.random.key(n), DRAWS))
    return {key: np.asarray(value, np.float64) for key, value in draws.items()}


@pytest.fixture(scope="module")
def estimates():
    return {(n, b): bandit_estimates(n, b, {**ESTIMATORS, **EXTRA.get((n, b), {})}) for n, b in CASES}


def _mean_and_se(x):
    return float(np.mean(x)), float(np.std(x) / np.sqrt(len(x)))


@pytest.mark.parametrize("estimator", list(ESTIMATORS))
@pytest.mark.parametrize("n,baseline", CASES)
def test_every_table_row_matches_its_closed_form(estimates, n, baseline, estimator):
    mean, se = _mean_and_se(estimates[n, baseline][estimator])
    expected = closed_forms(n, baseline)[estimator]
    assert abs(mean - expected) < 4 * se, (mean, se, expected)


@pytest.mark.parametrize("baseline", ["leave_one_out", "none"])
@pytest.mark.parametrize("n", NS)
def test_pre_update_score_is_unbiased_for_the_finite_batch_objective(estimates, n, baseline):
    """Its mean is ∇J_fin and far from every biased alternative; post_update misses it, DiCE by α² Cov(ĝ, Ĥ)."""
    forms = closed_forms(n, baseline)
    for score_baseline in ("leave_one_out", "none"):
        mean, se = _mean_and_se(estimates[n, baseline][f"score_{score_baseline}"])
        assert abs(mean - forms["finite_batch"]) < 4 * se, (score_baseline, mean, se, forms["finite_batch"])
        for biased in ("infinite_batch", "dice", "vpg", "first_order"):
            assert abs(mean - forms[biased]) > 6 * se, (score_baseline, biased, mean, se, forms[biased])
    # DiCE: neither target; its gap to ∇J_inf is −2α² Cov(ĝ, Ĥ_DiCE).
    mean, se = _mean_and_se(estimates[n, baseline]["dice"])
    for target in ("infinite_batch", "finite_batch"):
        assert abs(mean - forms[target]) > 6 * se, (target, mean, se, forms[target])


def test_the_linear_baseline_biases_even_the_score_estimator(estimates):
    """With the batch's own baseline the post-update surrogate is shrunk by k: the mean is ∇J_fin + 2(d + αμ)/n."""
    forms = closed_forms(8, "linear")
    for score_baseline in ("leave_one_out", "none"):
        mean, se = _mean_and_se(estimates[8, "linear"][f"score_{score_baseline}"])
        assert abs(mean - forms["finite_batch"]) > 6 * se, (mean, se, forms["finite_batch"])


def test_leave_one_out_score_baseline_reduces_the_variance_at_n_8(estimates):
    """Same mean (b_i is independent of D_i); at n = 8 the variance falls, as the common level of J_post
    dominates its spread across tasks. (At n = 2 with one other task it does not: θ' varies too much.)"""
    for baseline in BASELINES:
        draws = estimates[8, baseline]
        assert np.var(draws["score_leave_one_out"]) < 0.8 * np.var(draws["score_none"]), baseline


def test_pre_update_score_credits_every_inner_batch():
    """Two inner steps, leave-one-out baselines: E[d_{k+1}² | d_k] = c d_k² + const with
    c = (1 − 2α)² + 8α²/(n − 1) (Var ĝ above), so ∇J_fin = −2c²d. pre_update_score (the score of D_1 and of
    D_2 under θ_1(θ)) matches it; crediting only the first batch (E-MAML's term, λ = n) does not."""
    n = 8
    draws = bandit_estimates(n, "leave_one_out", {
        "score": ESTIMATORS["score_leave_one_out"],
        "first_batch_only": ("emaml", dict(inner_estimator="vpg", exploration_baseline="leave_one_out"), None),
    }, num_inner_steps=2)
    truth = -2 * ((1 - 2 * ALPHA) ** 2 + 8 * ALPHA**2 / (n - 1)) ** 2 * (THETA - GOAL)
    mean, se = _mean_and_se(draws["score"])
    assert abs(mean - truth) < 4 * se, (mean, se, truth)
    mean, se = _mean_and_se(draws["first_batch_only"])
    assert abs(mean - truth) > 6 * se, (mean, se, truth)


def test_lvc_equals_dice_and_promp_equals_maml_on_every_draw(estimates):
    """One-step episodes: LVC's Hessian is DiCE's. ProMP's likelihood-ratio inner objectives and clipped
    outer loss equal MAML's at θ = θ_o (its first epoch)."""
    draws = estimates[8, "leave_one_out"]
    np.testing.assert_allclose(draws["lvc"], draws["dice"], rtol=1e-4, atol=1e-4)
    for kind in ("vpg", "dice"):
        np.testing.assert_allclose(draws[f"promp_{kind}"], draws[kind], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("n,baseline", [(8, "leave_one_out"), (2, "none")])
def test_emaml_with_weight_n_is_the_score_estimator_and_normalisation_biases_it(estimates, n, baseline):
    """λ = n·T with the raw or leave-one-out return: MAML's pre_update_score on every draw. The ProMP code's
    "normalized" return (task i's own rewards in μ and σ) is biased for ∇J_fin."""
    draws = estimates[n, baseline]
    for exploration_baseline in ("none", "leave_one_out"):
        np.testing.assert_allclose(draws[f"emaml_{exploration_baseline}"], draws[f"score_{exploration_baseline}"],
                                   rtol=1e-4, atol=1e-4)
    mean, se = _mean_and_se(draws["emaml_normalized"])
    truth = closed_forms(n, baseline)["finite_batch"]
    assert abs(mean - truth) > 6 * se, (mean, se, truth)
