"""ProMP: step-0 identities of the LVC inner objective, the clipped outer loss and the inner KL
penalty; the likelihood ratio off θ_o; η's adaptation; no retracing; learning on point navigation.

The finite-batch bias of every inner estimator is in tests/test_gradient_meta.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from metarl_jax import algos, envs, estimators, optim
from metarl_jax.algos import promp
from metarl_jax.rollout import score

TINY = dict(hidden_sizes=(8,), meta_batch_size=2, episodes_per_task=4)
HORIZON = 10


@pytest.fixture(scope="module")
def corner():
    return envs.make("point_corner", episode_length=HORIZON)


@pytest.fixture(scope="module")
def tiny_promp(corner):
    return algos.make("promp", corner, algos.preset("promp", "smoke").replace(**TINY))


@pytest.fixture(scope="module")
def collected(tiny_promp, corner):
    """One meta-batch of pre/post-update data sampled at θ = θ_o."""
    algo = tiny_promp
    params = algo.init(jax.random.key(3)).params
    tasks = corner.sample_tasks(jax.random.key(4), TINY["meta_batch_size"])
    keys = jax.random.split(jax.random.key(5), TINY["meta_batch_size"])
    inner, post, _ = jax.jit(jax.vmap(algo.sample_adaptation, in_axes=(None, 0, 0)))(params, tasks, keys)
    return params, inner, post


def test_post_update_likelihood_ratio_is_one_and_clipping_is_inactive_at_step_zero(tiny_promp, collected):
    algo = tiny_promp
    params, inner, post = collected

    @jax.jit
    def at(p):
        objective = algo.meta_objective(p, inner, post)
        clipped = jax.grad(lambda q: optim.policy_loss(algo.meta_objective(q, inner, post), algo.config.ppo_clip))(p)
        unclipped = jax.grad(lambda q: optim.policy_loss(algo.meta_objective(q, inner, post)))(p)
        return objective, clipped, unclipped

    objective, clipped, unclipped = at(params)
    np.testing.assert_allclose(objective.log_ratio * objective.mask, 0.0, atol=2e-5)
    flat_clipped, flat_unclipped = ravel_pytree(clipped)[0], ravel_pytree(unclipped)[0]
    assert float(jnp.linalg.norm(flat_unclipped)) > 1e-3
    np.testing.assert_allclose(flat_clipped, flat_unclipped, rtol=1e-5, atol=1e-6)


def test_inner_kl_penalty_is_zero_with_zero_gradient_at_step_zero(tiny_promp, collected):
    algo = tiny_promp
    params, inner, _ = collected
    kls, grads = jax.jit(jax.value_and_grad(lambda p: jnp.sum(algo.inner_kls(p, inner))))(params)
    assert abs(float(kls)) < 1e-6
    assert float(jnp.max(jnp.abs(ravel_pytree(grads)[0]))) < 1e-5
    # Away from θ_o it is positive: the penalty is live.
    moved = jax.tree.map(lambda x: x + 0.05, params)
    assert float(jnp.sum(jax.jit(algo.inner_kls)(moved, inner))) > 1e-4


@pytest.mark.parametrize("kind", ["lvc", "dice", "vpg"])
def test_likelihood_ratio_inner_objectives_equal_maml_surrogates_at_step_zero(tiny_promp, collected, kind):
    """At θ = θ_o: same gradient (the policy gradient ∇ mean log π·A) and same Hessian as MAML's surrogate;
    LVC's value is mean A."""
    algo = tiny_promp
    params, inner, _ = collected
    (trajectories, adv) = jax.tree.map(lambda x: x[0, 0], inner)  # task 0, inner step 0
    theta, unravel = ravel_pytree(algo.policy_params(params))

    def ratio_objective(f):
        log_probs, _ = score(algo.policy, unravel(f), trajectories)
        return promp.likelihood_ratio_surrogate(kind, log_probs, trajectories.log_probs, adv, trajectories.mask)

    def maml_objective(f):
        log_probs, _ = score(algo.policy, unravel(f), trajectories)
        return estimators.SURROGATES[kind](log_probs, adv, trajectories.mask)

    def policy_gradient_objective(f):
        log_probs, _ = score(algo.policy, unravel(f), trajectories)
        return estimators.masked_mean(log_probs * adv, trajectories.mask)

    v = jax.random.normal(jax.random.key(0), theta.shape)

    @jax.jit
    def derivatives(f):
        return [(fn(f), jax.grad(fn)(f), jax.jvp(jax.grad(fn), (f,), (v,))[1])
                for fn in (ratio_objective, maml_objective, policy_gradient_objective)]

    (value, grad, hvp), (_, maml_grad, maml_hvp), (_, pg, _) = derivatives(theta)
    scale = float(jnp.max(jnp.abs(pg)))
    np.testing.assert_allclose(grad, pg, atol=1e-5 * scale + 1e-7)
    np.testing.assert_allclose(grad, maml_grad, atol=1e-5 * scale + 1e-7)
    np.testing.assert_allclose(hvp, maml_hvp, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(maml_hvp))))
    if kind == "lvc":
        np.testing.assert_allclose(value, estimators.masked_mean(adv, trajectories.mask), atol=1e-6)


def test_lvc_is_a_likelihood_ratio_to_the_sampling_policy_off_step_zero(tiny_promp, collected):
    """After a PPO step θ ≠ θ_o: J^LR = mean ρA with ρ = π_θ/π_θ_o, and its gradient mean ρ ∇log π A."""
    algo = tiny_promp
    params, inner, _ = collected
    trajectories, adv = jax.tree.map(lambda x: x[0, 0], inner)
    moved = jax.tree.map(lambda x: x + 0.02 * jnp.sin(jnp.arange(x.size).reshape(x.shape)),
                         algo.policy_params(params))
    log_probs, _ = score(algo.policy, moved, trajectories)
    ratio = jnp.exp(log_probs - trajectories.log_probs)
    assert float(jnp.max(jnp.abs(ratio - 1.0))) > 1e-2

    @jax.jit
    def derivatives(p):
        value, grad = jax.value_and_grad(algo.inner_objective)(p, trajectories, adv)
        weighted_pg = jax.grad(lambda q: estimators.masked_mean(
            jax.lax.stop_gradient(ratio) * score(algo.policy, q, trajectories)[0] * adv, trajectories.mask))(p)
        return value, grad, weighted_pg

    value, grad, weighted_pg = derivatives(moved)
    np.testing.assert_allclose(value, estimators.masked_mean(ratio * adv, trajectories.mask), rtol=1e-5)
    np.testing.assert_allclose(ravel_pytree(grad)[0], ravel_pytree(weighted_pg)[0], rtol=1e-4, atol=1e-6)


def test_defaults_are_the_paper_settings_and_bad_values_name_the_field():
    config = promp.Config()
    assert (config.hidden_sizes, config.activation, config.fast_lr) == ((64, 64), "tanh", 0.1)
    assert (config.meta_batch_size, config.episodes_per_task, config.num_inner_steps) == (40, 20, 1)
    assert (config.optimizer, config.learning_rate, config.ppo_epochs, config.ppo_clip) == ("ppo", 1e-3, 5, 0.3)
    assert (config.inner_estimator, config.inner_kl_coeff, config.adaptive_inner_kl) == ("lvc", 5e-4, False)
    assert set(algos.presets("promp")) >= {"paper", "point_corner", "point_semicircle", "wheeled", "ant_goal",
                                           "block_push", "smoke"}
    with pytest.raises(ValueError, match="inner_kl_coeff"):
        promp.Config(inner_kl_coeff=-1.0)
    with pytest.raises(ValueError, match="inner_estimator"):
        promp.Config(inner_estimator="reinforce")


def test_promp_trains_as_one_program_and_adapts_its_kl_coefficient(corner):
    config = algos.preset("promp", "smoke").replace(**TINY, adaptive_inner_kl=True, target_inner_kl=1e3)
    algo = algos.make("promp", corner, config)
    ts = algo.init(jax.random.key(0))
    ts, first = algo.train(ts, 3)
    ts, last = algo.train(ts, 3)
    assert algo.trace_count == 1  # two calls, one trace
    assert int(ts.step) == 6
    assert all(np.all(np.isfinite(np.asarray(v))) for v in last.values())
    assert all(k.split("/")[0] in ("train", "adapt", "eval", "time") for k in last)
    # KL far below target/1.5 every iteration: η halves each time.
    np.testing.assert_allclose(ts.extras["inner_kl_coeff"], config.inner_kl_coeff / 2**6, rtol=1e-6)
    assert float(last["train/inner_kl"][-1]) > 0.0
    assert int(ts.opt_state[0].count) == 6 * config.ppo_epochs  # Adam: ppo_epochs steps per iteration
