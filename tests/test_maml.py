"""MAML: the exact meta-gradient, no retracing, learning, evaluation, non-finite guard."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from metarl_jax import algos, envs, estimators
from metarl_jax.algos import maml
from metarl_jax.rollout import Trajectory
from tests import equivalence as eq
from tests.bandit import LinearGaussianBandit, mean_bias

SIGMA = 1.0
ALPHA = 0.1
BATCH = 200_000  # large inner and outer batches: estimator noise ~1e-2


def bandit_algo(name: str = "maml", num_inner_steps: int = 1, **config_changes):
    """MAML or Meta-SGD on the bandit with a large batch and α = ALPHA; returns (algo, meta-params)."""
    family = LinearGaussianBandit()
    config = algos.config_class(name)(
        hidden_sizes=(), init_log_std=float(np.log(SIGMA)), meta_batch_size=1, episodes_per_task=BATCH,
        num_inner_steps=num_inner_steps, fast_lr=ALPHA, normalize_advantages=False, **config_changes)
    algo = algos.make(name, family, config)
    return algo, algo.init(jax.random.key(0)).params


def bandit_meta_grads(algo, meta_params, goal: float):
    """The estimator's gradient of the outer objective w.r.t. every meta-parameter (one task, goal g)."""

    @jax.jit
    def estimate(meta_params, key):
        inner, post, _ = jax.vmap(algo.sample_adaptation, in_axes=(None, 0, 0))(
            meta_params, jnp.array([goal]), key[None])

        def meta_objective(p):
            o = algo.meta_objective(p, inner, post)
            return estimators.importance_surrogate(o.log_ratio, o.advantages, o.mask)

        return jax.grad(meta_objective)(meta_params)

    return estimate(meta_params, jax.random.key(1))


def bandit_meta_gradient(theta: float, goal: float, num_inner_steps: int, **config_changes) -> float:
    """MAML's estimate of dJ(θ_K)/dθ on the bandit, through the package's own code path."""
    algo, params = bandit_algo("maml", num_inner_steps, **config_changes)
    params["params"]["MLP_0"]["Dense_0"]["bias"] = jnp.array([theta])
    return float(mean_bias(bandit_meta_grads(algo, params, goal))[0])


def exact_gradient(theta, goal, num_inner_steps):
    # θ_K − g = (1 − 2α)^K (θ − g)  =>  d/dθ [−(θ_K − g)²] = −2 (1 − 2α)^{2K} (θ − g)
    return -2.0 * (1 - 2 * ALPHA) ** (2 * num_inner_steps) * (theta - goal)


def first_order_gradient(theta, goal, num_inner_steps):
    return -2.0 * (1 - 2 * ALPHA) ** num_inner_steps * (theta - goal)


@pytest.mark.parametrize("estimator", ["dice", "lvc"])
def test_exact_meta_gradient_on_linear_gaussian_bandit(estimator):
    theta, goal = 0.5, -0.5
    estimate = bandit_meta_gradient(theta, goal, 1, inner_estimator=estimator)
    # exact: −2 · 0.8² · 1 = −1.28; first-order would be −1.6.
    np.testing.assert_allclose(estimate, exact_gradient(theta, goal, 1), atol=0.06)


def test_first_order_meta_gradient_drops_the_inner_curvature():
    theta, goal = 0.5, -0.5
    fomaml = bandit_meta_gradient(theta, goal, 1, first_order=True)
    np.testing.assert_allclose(fomaml, first_order_gradient(theta, goal, 1), atol=0.06)
    assert abs(fomaml - exact_gradient(theta, goal, 1)) > 0.25


def test_naive_vpg_inner_objective_has_a_biased_hessian():
    """Holding the inner samples fixed (the original implementation) biases the Hessian.

    The policy also adapts s = log σ. Exactly, ∂²J/∂s∂θ = 0, so θ does not move s'.
    The naive estimate of ∂ĝ_s/∂θ is E[−2(a − θ)/σ² · A] = 4(θ − g) instead, and
    its E[∇²log π A] for θ itself vanishes, so the meta-gradient is
    −2(1 − 2α)(θ − g) − 2σ'² · 4α(θ − g), with σ'² = exp(2(log σ − 2ασ²)).
    """
    theta, goal = 0.5, -0.5
    naive = bandit_meta_gradient(theta, goal, 1, inner_estimator="vpg")
    sigma_adapted_sq = np.exp(2 * (np.log(SIGMA) - 2 * ALPHA * SIGMA**2))
    biased = first_order_gradient(theta, goal, 1) - 2 * sigma_adapted_sq * 4 * ALPHA * (theta - goal) / SIGMA**2
    np.testing.assert_allclose(naive, biased, atol=0.06)
    assert abs(naive - exact_gradient(theta, goal, 1)) > 0.5


def test_two_inner_steps_on_fresh_samples_are_exact():
    theta, goal = 0.5, -0.5
    estimate = bandit_meta_gradient(theta, goal, 2, inner_estimator="dice")
    # exact: −2 · 0.8⁴ = −0.819; reusing the first batch or dropping terms would not give this.
    np.testing.assert_allclose(estimate, exact_gradient(theta, goal, 2), atol=0.06)


# ----------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def semicircle_maml():
    family = envs.make("point_semicircle")
    config = algos.preset("maml", "smoke").replace(hidden_sizes=(16, 16), meta_batch_size=10, episodes_per_task=10)
    return family, algos.make("maml", family, config)


def test_maml_learns_to_adapt_on_point_navigation(semicircle_maml):
    family, algo = semicircle_maml
    ts = algo.init(jax.random.key(0))
    ts, first = algo.train(ts, 10)
    for _ in range(4):
        ts, _ = algo.train(ts, 10)
    ts, last = algo.train(ts, 10)
    assert algo.trace_count == 1  # six calls, one trace: nothing retraces inside the loop
    assert int(ts.step) == 60
    assert all(k.split("/")[0] in ("train", "adapt", "eval", "time") for k in last)
    post_first = float(np.mean(first["train/post_return"]))
    post_last = float(np.mean(last["train/post_return"]))
    pre_last = float(np.mean(last["train/pre_return"]))
    # Dense returns are −Σ_t ‖p_t − g‖ over 20 steps (about −20 for a policy that stays put).
    assert post_last > post_first + 2.0, (post_first, post_last)
    assert post_last > pre_last + 1.0, (pre_last, post_last)
    assert float(last["train/step_accepted"].mean()) > 0.5

    curve = algo.evaluate(ts, family.task_set("val", 10), jax.random.key(7))
    assert curve.returns.shape == (10, algo.config.eval_adaptation_steps + 1)
    assert np.all(np.isfinite(curve.returns))
    assert curve.mean[1] > curve.mean[0], curve.mean  # one adaptation step helps on held-out tasks


def test_ppo_outer_update_runs_and_is_finite():
    family = envs.make("point_semicircle", episode_length=10)
    config = algos.preset("maml", "smoke").replace(hidden_sizes=(8,), optimizer="ppo", meta_batch_size=4,
                                                   episodes_per_task=4, ppo_epochs=2)
    algo = algos.make("maml", family, config)
    ts0 = algo.init(jax.random.key(0))
    ts, metrics = algo.train_step(ts0)
    assert np.isfinite(float(metrics["train/loss"]))
    changed = jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.any(a != b)), ts.params, ts0.params))
    assert any(changed)
    assert int(ts.opt_state[0].count) == 2  # Adam took ppo_epochs steps


class _NaNRewardCorner(envs.PointCorner):
    def step(self, state, action):
        next_state = super().step(state, action)
        return next_state.replace(reward=next_state.reward * jnp.nan)


def test_nonfinite_updates_are_skipped_and_counted():
    """A non-finite update is never applied, and counts once per meta-iteration for every optimiser
    (ProMP's 5 PPO epochs included)."""
    family = _NaNRewardCorner(episode_length=5)
    tiny = dict(hidden_sizes=(8,), meta_batch_size=2, episodes_per_task=2)
    runs = {"maml-trpo": ("maml", dict(optimizer="trpo")), "maml-ppo": ("maml", dict(optimizer="ppo", ppo_epochs=2)),
            "promp": ("promp", {})}
    for label, (name, changes) in runs.items():
        algo = algos.make(name, family, algos.preset(name, "smoke").replace(**tiny, **changes))
        ts0 = algo.init(jax.random.key(0))
        ts, metrics = algo.train_step(ts0)
        ts, metrics = algo.train_step(ts)
        assert algo.trace_count == 1  # train_step is one program, compiled once
        same = jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), ts.params, ts0.params))
        assert all(same), label
        assert int(ts.nonfinite_updates) == 2, (label, int(ts.nonfinite_updates))
        assert float(metrics["train/nonfinite_updates"]) == 2


def test_user_defined_family_trains_without_package_edits():
    family = LinearGaussianBandit()
    config = maml.Config(hidden_sizes=(8,), meta_batch_size=4, episodes_per_task=16)
    algo = algos.make("maml", family, config)
    ts = algo.init(jax.random.key(0))
    ts, metrics = algo.train(ts, 2)
    assert metrics["train/pre_return"].shape == (2,)
    assert np.all(np.isfinite(metrics["train/post_return"]))


def test_bad_family_and_config_fail_before_compiling():
    class NotAFamily:
        observation_size = 2

    with pytest.raises(ValueError, match="missing the protocol methods"):
        algos.make("maml", NotAFamily())
    with pytest.raises(ValueError, match="unknown algo 'mamll'.*maml"):
        algos.make("mamll", envs.make("point_corner"))
    with pytest.raises(ValueError, match="meta_batch_size"):
        maml.Config(meta_batch_size=0)
    with pytest.raises(ValueError, match="config must be"):
        algos.make("maml", envs.make("point_corner"), algos.preset("ppo", "paper"))


def test_gauss_newton_fisher_product_equals_the_kl_hessian_through_adaptation():
    """TRPO's Jᵀ W J product equals ∇²KL(θ) through the inner step (no third derivative needed)."""
    from jax.flatten_util import ravel_pytree

    from metarl_jax.optim.trpo import gauss_newton_vector_product, hessian_vector_product

    family = envs.make("point_corner", episode_length=10)
    config = algos.preset("maml", "smoke").replace(hidden_sizes=(8,), meta_batch_size=3, episodes_per_task=4)
    algo = algos.make("maml", family, config)
    params = algo.init(jax.random.key(0)).params
    tasks = family.sample_tasks(jax.random.key(1), 3)
    inner, post, _ = jax.vmap(algo.sample_adaptation, in_axes=(None, 0, 0))(
        params, tasks, jax.random.split(jax.random.key(2), 3))
    flat, unravel = ravel_pytree(params)

    def kl(f):
        return algo.meta_objective(unravel(f), inner, post).kl

    def outputs_and_weights(f):
        objective = algo.meta_objective(unravel(f), inner, post)
        return objective.fisher_outputs, objective.fisher_weights

    v = jax.random.normal(jax.random.key(3), flat.shape)
    exact = jax.jit(lambda v: hessian_vector_product(kl, flat)(v))(v)
    gauss_newton = jax.jit(lambda v: gauss_newton_vector_product(outputs_and_weights, flat)(v))(v)
    np.testing.assert_allclose(gauss_newton, exact, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(exact))))


def test_vmapped_seeds_equal_their_single_seed_runs():
    """N seeds as one program equal their single-seed runs: one TRPO meta-iteration in float64, to the
    tolerances of tests/equivalence.py (κ measured per seed)."""
    with jax.enable_x64(True):
        family = envs.make("point_corner", episode_length=10)
        config = algos.preset("maml", "smoke").replace(**eq.TINY_OVERRIDES)
        algo = algos.make("maml", family, config)
        keys = jax.random.split(jax.random.key(0), 3)
        stacked, metrics = algo.train_seeds(algo.init_seeds(keys), 1)
        assert metrics["train/post_return"].shape == (3, 1)
        fisher = jax.jit(lambda ts: eq.outer_problem(algo, ts)[2])
        for seed, key in enumerate(keys):
            ts = algo.init(key)
            single, single_metrics = algo.train(ts, 1)
            kappa = eq.condition_number(fisher(ts), config.cg_damping)
            row = jax.tree.map(lambda x, k=seed: x[k], stacked.params)
            eq.assert_close(single.params, row, eq.step_rtol(kappa), f"seed {seed} parameters")
            eq.assert_train_step_metrics_close({k: v[0] for k, v in single_metrics.items()},
                                               {k: v[seed, 0] for k, v in metrics.items()}, kappa, f"seed {seed}")
        curves = algo.evaluate_seeds(stacked, family.task_set("val", 2), jax.random.split(jax.random.key(1), 3))
        assert curves.returns.shape == (3, 2, config.eval_adaptation_steps + 1)


def test_metasgd_meta_gradient_of_the_learned_step_size():
    """Meta-SGD on the bandit: dJ(θ + α∇J)/dα = ∇J(θ')·∇J(θ) = 4(1 − 2α)(θ − g)²; θ's gradient is MAML's."""
    from metarl_jax.algos import metasgd

    theta, goal = 0.5, -0.5
    algo, meta_params = bandit_algo("metasgd")
    assert isinstance(algo.config, metasgd.Config)
    assert jax.tree.structure(meta_params["inner_lr"]) == jax.tree.structure(meta_params["policy"])
    meta_params["policy"]["params"]["MLP_0"]["Dense_0"]["bias"] = jnp.array([theta])
    grads = bandit_meta_grads(algo, meta_params, goal)
    theta_grad, alpha_grad = mean_bias(grads["policy"])[0], mean_bias(grads["inner_lr"])[0]
    np.testing.assert_allclose(theta_grad, exact_gradient(theta, goal, 1), atol=0.06)
    np.testing.assert_allclose(alpha_grad, 4 * (1 - 2 * ALPHA) * (theta - goal) ** 2, atol=0.1)

    curve = algo.evaluate(algo.init(jax.random.key(2)), algo.family.task_set("val", 2), jax.random.key(3))
    assert curve.returns.shape == (2, algo.config.eval_adaptation_steps + 1)


def test_tesp_protocol_clips_the_inner_gradient_and_meta_sgd_rates():
    """inner_grad_clip: θ' = θ + α ∘ g · min(1, c / ‖g‖); step_size_clip: α ↦ clip(α, ±c), with zero
    gradient where the clip is active (llan-ml/tesp's baselines: c = 60 and 0.1)."""
    family = LinearGaussianBandit()
    config = algos.config_class("metasgd")(
        hidden_sizes=(), meta_batch_size=1, episodes_per_task=64, fast_lr=0.2, inner_grad_clip=0.05,
        step_size_clip=0.1)
    algo = algos.make("metasgd", family, config)
    meta_params = algo.init(jax.random.key(0)).params
    sizes = algo.step_sizes(meta_params)
    assert all(np.all(np.asarray(a) == 0.1) for a in jax.tree.leaves(sizes))  # 0.2 clipped to 0.1
    grad_alpha = jax.grad(lambda m: sum(jnp.sum(a) for a in jax.tree.leaves(algo.step_sizes(m))))(meta_params)
    assert all(np.all(np.asarray(g) == 0) for g in jax.tree.leaves(grad_alpha["inner_lr"]))
    (trajectories, adv), _, _ = algo.sample_adaptation(meta_params, jnp.array(0.5), jax.random.key(1))
    trajectories, adv = jax.tree.map(lambda x: x[0], (trajectories, adv))
    params = algo.policy_params(meta_params)
    g = jax.grad(algo.inner_objective)(params, trajectories, adv)
    norm = float(optax.global_norm(g))
    assert norm > 0.05  # the clip is active
    expected = jax.tree.map(lambda p, gi: p + 0.1 * gi * 0.05 / norm, params, g)
    eq.assert_close(algo.inner_step(meta_params, params, trajectories, adv), expected, 1e-6, "clipped inner step")
    assert algos.preset("metasgd", "reacher2").step_size_clip == 0.1
    assert algos.preset("maml", "tesp_wheeled").inner_grad_clip == 60.0
    assert algos.preset("metasgd", "point_corner").step_size_clip is None


def test_cg_subsample_fisher_uses_every_other_task():
    """cg_subsample = 0.5: CG's Fisher products see tasks 0, 2, ...; the loss and line search see all."""
    family = envs.make("point_corner", episode_length=10)
    config = algos.preset("maml", "smoke").replace(hidden_sizes=(8,), meta_batch_size=4, episodes_per_task=8,
                                                   cg_subsample=0.5)
    algo = algos.make("maml", family, config)
    assert algos.make("maml", family, config.replace(cg_subsample=1.0)).fisher_objective(None, None) is None
    ts = algo.init(jax.random.key(0))

    @jax.jit
    def both(params):
        inner, post, _ = algo.collect(params, jax.random.key(1), jax.random.key(2))
        every_other = jax.tree.map(lambda x: x[::2], (inner, post))
        # CG's Fisher products use the realized objective (what the line search evaluates).
        return algo.fisher_objective(inner, post)(params), algo.meta_objective(params, *every_other, realized=True)

    subsampled, reference = both(ts.params)
    assert jax.tree.leaves(subsampled.fisher_outputs)[0].shape[0] == 2
    for a, b in zip(jax.tree.leaves(subsampled), jax.tree.leaves(reference)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # The whole train step traces with it (abstractly: the TRPO path is compiled by the optimiser tests).
    next_ts, metrics = jax.eval_shape(algo.train_step, ts)
    assert jax.tree.structure(next_ts) == jax.tree.structure(ts) and metrics["train/loss"].shape == ()


def test_inner_adapts_log_std_false_holds_sigma_fixed_in_the_inner_step_and_at_meta_test():
    """α = 0 for log σ (training's inner step and meta-test fine-tuning, MAML and Meta-SGD); the mean still adapts."""
    family = LinearGaussianBandit()
    episodes = 16
    actions = jax.random.normal(jax.random.key(1), (1, episodes, 1, 1))  # one inner batch of one-step episodes
    adv = -((actions[..., 0] - 1.0) ** 2)
    inner = (Trajectory(obs=jnp.zeros((1, episodes, 1, 1)), actions=actions, rewards=None, sparse_rewards=None,
                        mask=jnp.ones((1, episodes, 1)), log_probs=None, dist=None,
                        latents=jnp.zeros((1, episodes, 0)), positions=None), adv - jnp.mean(adv))
    for name in ("maml", "metasgd"):
        moved = {}
        for adapts in (True, False):
            config = algos.config_class(name)(hidden_sizes=(), meta_batch_size=1, episodes_per_task=episodes,
                                              fast_lr=ALPHA, inner_adapts_log_std=adapts)
            algo = algos.make(name, family, config)
            meta_params = algo.init(jax.random.key(0)).params
            change = jax.tree.map(jnp.subtract, jax.jit(algo.adapt)(meta_params, inner),
                                  algo.policy_params(meta_params))
            moved[adapts] = float(jnp.abs(change["params"]["log_std"])[0]), float(jnp.abs(mean_bias(change))[0])
            eval_sizes = algo.eval_step_sizes(meta_params)
            assert (float(jnp.ravel(eval_sizes["params"]["log_std"])[0]) == 0.0) != adapts
            np.testing.assert_allclose(jnp.ravel(mean_bias(eval_sizes)), ALPHA, rtol=1e-6)
        assert moved[False][0] == 0.0 and moved[True][0] > 1e-3, (name, moved)
        np.testing.assert_allclose(moved[False][1], moved[True][1], rtol=1e-6)  # same samples, same mean step
        assert moved[False][1] > 1e-3


def test_pre_update_score_traces_as_one_train_step_with_a_one_task_cg_subsample():
    """The score term's leave-one-out baseline is 0 for a lone task (CG's subsample here), as documented."""
    family = envs.make("point_corner", episode_length=10)
    config = algos.preset("maml", "smoke").replace(hidden_sizes=(8,), meta_batch_size=2, episodes_per_task=4,
                                                   inner_estimator="vpg", outer_estimator="pre_update_score",
                                                   cg_subsample=0.5, num_inner_steps=2)
    algo = algos.make("maml", family, config)
    ts = algo.init(jax.random.key(0))
    next_ts, metrics = jax.eval_shape(algo.train_step, ts)
    assert jax.tree.structure(next_ts) == jax.tree.structure(ts) and metrics["train/loss"].shape == ()
