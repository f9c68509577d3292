"""PPO with a learned value function: GAE and value loss against closed forms, minibatch partition,
observation normalisation, config errors, and learning runs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metarl_jax import algos, envs, estimators, normalization, optim
from metarl_jax.algos.base import split_rng
from metarl_jax.rollout import rollout_tasks


def python_gae(rewards, values, mask, discount, lam, bootstrap):
    """δ_t = r_t + γ V_{t+1} − V_t (V_{t+1} = 0 after termination, V(s_T) at a truncated horizon), A = Σ (γλ)^k δ."""
    episodes, horizon = rewards.shape
    adv = np.zeros_like(rewards)
    for e in range(episodes):
        length = int(mask[e].sum())
        for t in range(length):
            total = 0.0
            for k in range(t, length):
                if k + 1 < length:
                    next_value = values[e, k + 1]
                elif length == horizon:
                    next_value = bootstrap[e]
                else:
                    next_value = 0.0
                delta = rewards[e, k] + discount * next_value - values[e, k]
                total += (discount * lam) ** (k - t) * delta
            adv[e, t] = total
    return adv


def test_gae_with_bootstrap_matches_a_python_loop():
    rng = np.random.default_rng(0)
    rewards, values = rng.normal(size=(3, 6)), rng.normal(size=(3, 6))
    mask = np.ones((3, 6))
    mask[1, 4:] = 0.0  # terminated after 4 steps: no bootstrap
    bootstrap = rng.normal(size=3)
    with jax.enable_x64(True):
        got = estimators.gae(jnp.asarray(rewards), jnp.asarray(values), jnp.asarray(mask), 0.97, 0.9,
                             jnp.asarray(bootstrap))
        unbootstrapped = estimators.gae(jnp.asarray(rewards), jnp.asarray(values), jnp.asarray(mask), 0.97, 0.9)
    np.testing.assert_allclose(np.asarray(got), python_gae(rewards, values, mask, 0.97, 0.9, bootstrap), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(unbootstrapped), python_gae(rewards, values, mask, 0.97, 0.9, np.zeros(3)),
                               rtol=1e-12)


def test_value_loss_closed_form_with_and_without_clipping():
    v = np.array([1.0, 2.0, 0.0, 5.0])
    old = np.array([0.0, 2.5, 0.1, 0.0])
    target = np.array([0.5, 3.0, -1.0, 7.0])
    mask = np.array([1.0, 1.0, 1.0, 0.0])
    with jax.enable_x64(True):
        plain = float(estimators.value_loss(jnp.asarray(v), jnp.asarray(target), jnp.asarray(mask)))
        clipped = float(estimators.value_loss(jnp.asarray(v), jnp.asarray(target), jnp.asarray(mask),
                                              jnp.asarray(old), clip=0.2))
    assert plain == pytest.approx(0.5 * (0.25 + 1.0 + 1.0) / 3, rel=1e-12)
    # V_clip = old + clip(v − old, ±0.2) = (0.2, 2.3, 0.0): squared errors max((v − t)², (V_clip − t)²).
    expected = 0.5 * (max(0.25, 0.09) + max(1.0, 0.49) + max(1.0, 1.0)) / 3
    assert clipped == pytest.approx(expected, rel=1e-12)


def test_minibatch_partition_covers_every_sample_once_per_epoch():
    batch = {"index": jnp.arange(24), "pair": jnp.arange(48).reshape(24, 2)}
    for seed in range(3):
        split = optim.minibatch_partition(jax.random.key(seed), batch, 4)
        assert split["index"].shape == (4, 6) and split["pair"].shape == (4, 6, 2)
        np.testing.assert_array_equal(np.sort(np.asarray(split["index"]).ravel()), np.arange(24))
        np.testing.assert_array_equal(np.asarray(split["pair"])[..., 0], 2 * np.asarray(split["index"]))
    with pytest.raises(ValueError, match="must divide into num_minibatches = 5"):
        optim.minibatch_partition(jax.random.key(0), batch, 5)


def test_config_errors_name_the_field():
    family = envs.make("point_corner", episode_length=5)
    config = algos.preset("ppo", "smoke").replace(tasks_per_iteration=1, episodes_per_task=3, ppo_minibatches=2)
    with pytest.raises(ValueError, match="'ppo_minibatches' = 2 must divide the steps per update.*= 15"):
        algos.make("ppo", family, config)
    with pytest.raises(ValueError, match="'value_clip' = 0.2 needs a learned value function"):
        algos.preset("ppo", "smoke").replace(value_function="none", value_clip=0.2)


def test_brax_preset_is_brax_ppo_on_its_control_suite():
    cfg = algos.preset("ppo", "brax")
    assert (cfg.discount, cfg.gae_lambda, cfg.learning_rate, cfg.ppo_clip, cfg.ppo_epochs, cfg.ppo_minibatches) == (
        0.97, 0.95, 3e-4, 0.3, 4, 32)
    assert (cfg.entropy_coef, cfg.reward_scale, cfg.value_loss_coef, cfg.normalize_observations) == (
        1e-2, 10.0, 0.5, True)
    assert cfg.hidden_sizes == (32,) * 4 and cfg.value_hidden_sizes == (256,) * 5 and cfg.activation == "swish"
    assert np.exp(cfg.init_log_std) == pytest.approx(float(jax.nn.softplus(0.0)) + 0.001)


@pytest.fixture(scope="module")
def one_update():
    """A tiny PPO (separate value MLP, normalised observations, 2 minibatches, clipped value loss): two updates,
    and the first update's batch rebuilt from the same keys (one jitted function)."""
    family = envs.make("point_corner", episode_length=5)
    config = algos.preset("ppo", "smoke").replace(hidden_sizes=(8,), value_hidden_sizes=(8,), tasks_per_iteration=1,
                                                 episodes_per_task=4, ppo_minibatches=2, ppo_epochs=2, value_clip=0.2,
                                                 entropy_coef=0.01, reward_scale=2.0, bootstrap_on_timeout=True)
    algo = algos.make("ppo", family, config)
    ts0 = algo.init(jax.random.key(0))
    ts1, metrics = algo.train_step(ts0)
    ts2, _ = algo.train_step(ts1)

    def first_batch(ts):
        _, (task_key, sample_key, _) = split_rng(ts, 3)
        trajectories = rollout_tasks(family, algo.acting_policy(ts), ts.params, family.sample_tasks(task_key, 1),
                                     sample_key, 4)
        obs, final_obs = algo.observe(ts, trajectories.obs), algo.observe(ts, trajectories.final_obs)
        adv, targets, old_values = algo.advantages_and_targets(ts.params, trajectories, obs, final_obs)
        batch = jax.tree.map(lambda x: x.reshape(-1, *x.shape[3:]),
                             {"obs": obs, "actions": trajectories.actions, "log_probs": trajectories.log_probs,
                              "dist": trajectories.dist, "mask": trajectories.mask, "adv": adv, "targets": targets,
                              "old_values": old_values})
        return {"trajectories": trajectories, "objective": algo.objective(ts.params, batch), "targets": targets,
                "values": algo.value(ts.params, obs), "final_values": algo.value(ts.params, final_obs),
                "entropy": algo.policy.apply(ts.params, batch["obs"]).entropy()}

    return family, algo, ts0, ts1, ts2, metrics, jax.jit(first_batch)(ts0)


def test_running_observation_statistics_are_the_moments_of_every_observation_seen(one_update):
    family, algo, ts0, ts1, ts2, metrics, first = one_update
    assert algo.trace_count == 1  # two calls, one trace
    trajectories = first["trajectories"]  # the rollout of the first update, rebuilt from the same keys
    np.testing.assert_allclose(float(metrics["train/return"]), float(jnp.mean(trajectories.episode_returns())),
                               rtol=1e-5)
    seen = np.asarray(trajectories.obs)[np.asarray(trajectories.mask) > 0]
    stats = ts1.extras["obs_stats"]
    assert float(stats.count) == seen.shape[0] == 20
    np.testing.assert_allclose(np.asarray(stats.mean), seen.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(stats.variance), seen.var(axis=0), rtol=1e-4, atol=1e-6)
    # The same module as the off-policy learners': the acting policy is π(normalize(stats, s)).
    obs = trajectories.obs[0, 0]
    acting = algo.acting_policy(ts1).apply(ts1.params, obs)
    direct = algo.policy.apply(ts1.params, normalization.normalize(stats, obs))
    np.testing.assert_array_equal(np.asarray(acting.mean), np.asarray(direct.mean))
    assert float(ts2.extras["obs_stats"].count) == 40
    # The rollout recorded s_T and that the time limit ended every point episode: every one bootstraps.
    assert trajectories.final_obs.shape == (1, 4, family.observation_size)
    np.testing.assert_array_equal(np.asarray(trajectories.truncated), 1.0)
    for key in ("train/explained_variance", "train/penalty", "train/kl", "train/loss"):
        assert np.isfinite(float(metrics[key])), key


def test_the_objective_is_the_clipped_surrogate_plus_value_loss_minus_entropy(one_update):
    """At the sampling parameters ρ = 1, so L = −mean A + c_V ½ mean (V − V̂)² − c_H H, term by term."""
    family, algo, ts0, _, _, _, first = one_update
    cfg, objective, trajectories = algo.config, first["objective"], first["trajectories"]
    np.testing.assert_allclose(np.asarray(objective.log_ratio), 0.0, atol=1e-5)
    values, targets = np.asarray(first["values"])[0], np.asarray(first["targets"])[0]  # [E, T]
    expected = (cfg.value_loss_coef * 0.5 * np.mean((values - targets) ** 2)
                - cfg.entropy_coef * float(np.mean(first["entropy"])))
    np.testing.assert_allclose(float(objective.penalty), expected, rtol=1e-4)
    # V̂ = A + V with A from GAE on the scaled rewards, bootstrapped from V(s_T).
    raw_adv = python_gae(cfg.reward_scale * np.asarray(trajectories.rewards[0]), values, np.ones((4, 5)),
                         cfg.discount, cfg.gae_lambda, np.asarray(first["final_values"])[0])
    np.testing.assert_allclose(targets, raw_adv + values, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("value_function", ["separate", "shared"])
def test_brax_preset_learns_inverted_pendulum(value_function):
    """The peer comparison's budget (64 envs x 100 steps x 8 updates): the return of the pendulum must rise."""
    family = envs.make("inverted_pendulum", episode_length=100)
    config = algos.preset("ppo", "brax").replace(tasks_per_iteration=1, episodes_per_task=64, ppo_minibatches=16,
                                                hidden_sizes=(64, 64), value_hidden_sizes=(64, 64),
                                                value_function=value_function)
    algo = algos.make("ppo", family, config)
    ts, metrics = algo.train(algo.init(jax.random.key(0)), 8)
    returns = np.asarray(metrics["train/return"])
    assert algo.trace_count == 1
    assert returns[-1] > 2.0 * returns[0], returns
