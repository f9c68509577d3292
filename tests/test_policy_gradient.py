"""Single-task VPG, TRPO and PPO through the shared rollout/estimator/optimiser pieces."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metarl_jax import algos, envs, estimators
from metarl_jax.algos import common
from metarl_jax.rollout import Trajectory


@pytest.mark.parametrize("name", ["vpg", "trpo", "ppo"])
def test_policy_gradient_learns_point_navigation(name):
    # One fixed goal: a single-task problem where the return must rise quickly.
    family = envs.make("point_semicircle", episode_length=20)
    family.sample_tasks = lambda key, n: np.tile(np.array([[0.0, 1.0]], np.float32), (n, 1))
    config = algos.preset(name, "smoke").replace(hidden_sizes=(16,), tasks_per_iteration=2, episodes_per_task=16,
                                                eval_num_tasks=2, eval_episodes_per_task=4)
    if name == "vpg":
        config = config.replace(learning_rate=3e-2)
    if name == "ppo":
        config = config.replace(learning_rate=3e-3)
    algo = algos.make(name, family, config)
    ts = algo.init(jax.random.key(0))
    ts, first = algo.train(ts, 30)
    ts, last = algo.train(ts, 30)
    assert algo.trace_count == 1  # the scanned program was traced once for both calls
    start = float(np.mean(first["train/return"][:5]))
    end = float(np.mean(last["train/return"][-5:]))
    # Returns are −Σ_t ‖p_t − g‖ over 20 steps: about −20 standing still, about −5.5 going straight to g.
    assert end > start + 3.0, (start, end)
    assert float(last["train/nonfinite_updates"][-1]) == 0


def test_trpo_respects_its_kl_limit_every_step():
    family = envs.make("point_corner", episode_length=10)
    config = algos.preset("trpo", "smoke").replace(hidden_sizes=(8,), tasks_per_iteration=2, episodes_per_task=8,
                                                  max_kl=0.005)
    algo = algos.make("trpo", family, config)
    _, metrics = algo.train(algo.init(jax.random.key(1)), 5)
    assert np.all(metrics["train/kl"] <= 0.005 + 1e-7)
    accepted = metrics["train/step_accepted"] > 0
    assert np.all(metrics["train/surrogate_improvement"][accepted] > 0)


@pytest.mark.slow
def test_from_brax_family_trains_with_ppo():
    from brax import envs as brax_envs

    family = envs.from_brax(brax_envs.get_environment("inverted_pendulum", backend="mjx"), episode_length=8)
    config = algos.preset("ppo", "smoke").replace(hidden_sizes=(8,), tasks_per_iteration=1, episodes_per_task=4,
                                                 ppo_epochs=2)
    algo = algos.make("ppo", family, config)
    ts, metrics = algo.train_step(algo.init(jax.random.key(0)))
    assert np.isfinite(float(metrics["train/return"]))
    assert int(ts.step) == 1


@pytest.mark.parametrize("name,changes", [("trpo", {}), ("maesn", {}), ("metasgd", {}),
                                          ("promp", {"optimizer": "trpo"}), ("emaml", {})])
def test_cg_subsample_traces_through_every_trpo_learner(name, changes):
    """cg_subsample < 1 wires a subsampled Fisher objective into each learner's TRPO step (traced only)."""
    family = envs.make("point_corner", episode_length=5)
    config = algos.preset(name, "smoke").replace(hidden_sizes=(8,), cg_subsample=0.5, **changes)
    algo = algos.make(name, family, config)
    ts = algo.init(jax.random.key(0))
    next_ts, metrics = jax.eval_shape(algo.train_step, ts)
    assert jax.tree.structure(next_ts) == jax.tree.structure(ts) and "train/step_accepted" in metrics


def test_task_advantages_use_the_baseline_field():
    """common.task_advantages (every on-policy learner's advantages) subtracts ``baseline``'s values per task."""
    rng = np.random.default_rng(0)
    shape = (2, 3, 4)  # tasks, episodes, steps
    rewards = jnp.asarray(rng.normal(size=shape), jnp.float32)
    mask = jnp.ones(shape).at[1, 0, 2:].set(0.0)
    trajectories = Trajectory(obs=jnp.asarray(rng.normal(size=(*shape, 2)), jnp.float32), actions=None,
                              rewards=rewards, sparse_rewards=rewards, mask=mask, log_probs=None, dist=None,
                              latents=None, positions=None)
    advantages = jax.jit(common.task_advantages, static_argnums=(1, 2))
    returns = jax.vmap(lambda r, m: estimators.discounted_returns(r, m, 1.0))(rewards, mask)
    for name, baseline in (("trpo", "none"), ("maesn", "leave_one_out")):
        config = algos.config_class(name)(baseline=baseline, discount=1.0, gae_lambda=1.0, normalize_advantages=False)
        values = jax.vmap(lambda o, r, m, b=baseline: estimators.baseline_values(b, o, r, m))(
            trajectories.obs, returns, mask)
        if baseline == "leave_one_out":
            assert float(jnp.abs(values).max()) > 0.1
        np.testing.assert_allclose(np.asarray(advantages(trajectories, config, "dense")),
                                   np.asarray((returns - values) * mask), rtol=1e-6, atol=1e-6)
