"""The recurrent core (GRU, trials of K episodes, re-scoring), minibatch PPO, and RL²."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metarl_jax import algos, envs, estimators, optim
from metarl_jax.algos import rl2
from metarl_jax.envs import State, TaskFamily
from metarl_jax.networks import make_gru, make_recurrent_policy
from metarl_jax.rollout import recurrent_input_size, rollout_trials, score_trial


class EarlyStopWalk(TaskFamily):
    """A 1-D walk whose episodes end after a task-dependent number of steps (2..6 of a horizon of 6), so
    that trials have masked-out steps between their episodes."""

    name = "early_stop_walk"
    observation_size = 1
    action_size = 1
    episode_length = 6

    def sample_tasks(self, key, num_tasks):
        return jax.random.randint(key, (num_tasks,), 2, 7).astype(jnp.float32)

    def reset(self, key, task):
        zero = jnp.zeros(())
        return State(obs=jax.random.uniform(key, (1,)), reward=zero, done=zero,
                     info={"sparse_reward": zero, "truncation": zero}, metrics={}, step=jnp.zeros((), jnp.int32),
                     task=task, env_state=zero)

    def step(self, state, action):
        obs = state.obs + jnp.clip(action, -1.0, 1.0)
        step = state.step + 1
        done = (step >= state.task).astype(jnp.float32)
        reward = -jnp.abs(obs[0] - 1.0)
        return state.replace(obs=obs, reward=reward, done=done, step=step,
                             info={"sparse_reward": (reward > -0.2).astype(jnp.float32), "truncation": done})


@pytest.fixture(scope="module")
def walk_trials():
    """Two trials of 3 episodes on each of 3 tasks of the early-stopping walk, and the policy."""
    family = EarlyStopWalk()
    policy = make_recurrent_policy(recurrent_input_size(family), family.action_size, hidden_size=5)
    params = policy.init(jax.random.key(0))
    tasks = jnp.asarray([2.0, 4.0, 6.0])
    trials = jax.jit(lambda p, k: rollout_trials(family, policy, p, tasks, k, 3, trials_per_task=2))(
        params, jax.random.key(1))
    return family, policy, params, tasks, trials


def test_gru_scan_equals_a_python_loop_of_the_cell():
    gru = make_gru(input_size=3, hidden_size=4)
    params = gru.init(jax.random.key(0))
    inputs = jax.random.normal(jax.random.key(1), (7, 3))
    mask = jnp.asarray([1, 1, 1, 0, 0, 1, 1], jnp.float32)  # a masked step leaves the state unchanged
    h0 = jax.random.normal(jax.random.key(2), (4,))
    final, states = jax.jit(gru.unroll)(params, h0, inputs, mask)
    cell = jax.jit(nn.GRUCell(features=4).apply)
    h, expected = h0, []
    for x, m in zip(inputs, mask):
        if m:
            h, _ = cell(params, h, x)
        expected.append(h)
    np.testing.assert_allclose(np.asarray(states), np.stack(expected), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.asarray(final), np.asarray(h), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(np.asarray(states[3]), np.asarray(states[2]))


def test_trial_carries_the_hidden_state_across_episodes_and_resets_it_at_trial_start(walk_trials):
    family, policy, params, tasks, trials = walk_trials
    inputs, mask = np.asarray(trials.inputs), np.asarray(trials.episodes.mask)
    num_episodes, horizon = mask.shape[-2:]
    # The inputs: zeros at the trial start; at the start of episode k + 1 the last valid action and reward
    # of episode k and d = 1.
    for task in range(3):
        for trial in range(2):
            np.testing.assert_array_equal(inputs[task, trial, 0, 0, 1:], 0.0)
            for k in range(num_episodes - 1):
                last = int(mask[task, trial, k].sum()) - 1
                np.testing.assert_allclose(inputs[task, trial, k + 1, 0, 1], trials.episodes.actions[task, trial, k,
                                                                                                     last, 0])
                np.testing.assert_allclose(inputs[task, trial, k + 1, 0, 2], trials.episodes.rewards[task, trial, k,
                                                                                                     last])
                assert inputs[task, trial, k + 1, 0, 3] == 1.0
    assert mask[0, 0, 0].tolist() == [1, 1, 0, 0, 0, 0]  # task 0 stops after 2 of 6 steps

    def replay(inputs, mask, reset_each_episode):
        """The behaviour means by stepping the GRU in Python, from h_0 at the trial start."""
        means = np.zeros(mask.shape)
        step = jax.jit(policy.step)
        h = policy.initial_state()
        for k in range(num_episodes):
            if reset_each_episode:
                h = policy.initial_state()
            for t in range(horizon):
                h, dist = step(params, h, jnp.asarray(inputs[k, t]), mask[k, t])
                means[k, t] = float(dist.mean[0])
        return means

    behaviour = np.asarray(trials.episodes.dist.mean[..., 0])
    for task in range(3):
        for trial in range(2):  # each trial starts again from h_0
            np.testing.assert_allclose(replay(inputs[task, trial], mask[task, trial], False), behaviour[task, trial],
                                       rtol=1e-5, atol=1e-6)
    # Control: resetting at the episode boundary gives other means from the second episode on.
    reset = replay(inputs[2, 0], mask[2, 0], True)
    assert np.max(np.abs(reset[1:] - behaviour[2, 0, 1:])) > 1e-4


def test_rescoring_a_trial_reproduces_its_behaviour_log_probs(walk_trials):
    _, policy, params, _, trials = walk_trials
    log_probs, dist = jax.jit(lambda p, t: score_trial(policy, p, t))(params, trials)
    mask = np.asarray(trials.episodes.mask) > 0
    # The same GRU steps on the same inputs with the same masks: equal on every valid step.
    np.testing.assert_array_equal(np.asarray(log_probs)[mask], np.asarray(trials.episodes.log_probs)[mask])
    np.testing.assert_array_equal(np.asarray(dist.mean)[mask], np.asarray(trials.episodes.dist.mean)[mask])
    other = jax.tree.map(lambda x: x * 1.1, params)
    assert np.max(np.abs(np.asarray(score_trial(policy, other, trials)[0]) - np.asarray(log_probs))[mask]) > 1e-3


def test_trial_advantages_run_gae_over_the_valid_steps_of_the_whole_trial():
    """GAE over a trial with early-stopped episodes equals GAE over its valid steps concatenated (float64:
    the linear baseline's 12 features on 24 steps are well determined)."""
    family = EarlyStopWalk()
    with jax.enable_x64(True):
        policy = make_recurrent_policy(recurrent_input_size(family), family.action_size, hidden_size=5)
        config = rl2.Config(entropy_coeff=0.0, gae_lambda=0.9)

        @jax.jit
        def trial_and_advantages(params, key):
            trial = jax.tree.map(lambda x: x[0, 0], rollout_trials(family, policy, params, jnp.asarray([3.0]), key, 8))
            return trial, rl2.trial_advantages(trial, config)

        trial, adv = trial_and_advantages(policy.init(jax.random.key(0)), jax.random.key(1))  # 8 episodes of 3 steps
        adv = np.asarray(adv)
        mask = np.asarray(trial.episodes.mask) > 0
        valid = lambda x: jnp.asarray(np.asarray(x)[mask])[None]  # noqa: E731
        expected = jax.jit(estimators.advantages, static_argnums=(3, 4, 5))(
            valid(trial.inputs), valid(trial.episodes.rewards), jnp.ones((1, int(mask.sum()))), 0.99, 0.9, False)[0]
    assert mask.sum() == 24 and not mask[0, 3]
    np.testing.assert_allclose(adv[mask], np.asarray(expected), rtol=1e-9, atol=1e-9)
    assert np.all(adv[~mask] == 0.0) and np.max(np.abs(adv)) > 0.1


def test_ppo_minibatches_take_one_adam_step_per_shuffled_minibatch():
    """PPO on a quadratic with 4 minibatches × 3 epochs equals 12 hand-made Adam steps on the same slices."""
    import optax

    data = jax.random.normal(jax.random.key(0), (8, 2))

    def objective(params, batch):
        # A policy objective whose loss is mean_b ‖θ − x_b‖² (ρ = exp(−‖θ − x‖²), A = 1, no clipping).
        log_ratio = -jnp.sum((params["theta"] - batch) ** 2, axis=-1)
        return optim.PolicyObjective(log_ratio, jnp.ones_like(log_ratio), jnp.ones_like(log_ratio),
                                     jnp.zeros(()), jnp.zeros(()))

    params = {"theta": jnp.zeros((2,))}
    optimizer = optim.ppo(0.1, clip=10.0, num_epochs=3, num_minibatches=4)
    key = jax.random.key(1)
    new, _, info = jax.jit(lambda p: optimizer.update(objective, p, optimizer.init(p),
                                                      minibatches=optim.Minibatches(data, key)))(params)
    tx = optax.adam(0.1)

    @jax.jit
    def adam_step(p, state, batch):
        grads = jax.grad(lambda q: optim.policy_loss(objective(q, batch), 10.0))(p)
        updates, state = tx.update(grads, state, p)
        return optax.apply_updates(p, updates), state

    p, state = params, tx.init(params)
    for epoch_key in jax.random.split(key, 3):
        order = np.asarray(jax.random.permutation(epoch_key, 8))
        for rows in order.reshape(4, 2):
            p, state = adam_step(p, state, data[rows])
    np.testing.assert_allclose(np.asarray(new["theta"]), np.asarray(p["theta"]), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(info["loss"], optim.policy_loss(objective(params, data), 10.0), rtol=1e-6)
    # One minibatch is the full-batch optimiser.
    full = optim.ppo(0.1, clip=10.0, num_epochs=3)
    a = full.update(lambda q: objective(q, data), params, full.init(params))[0]
    b = full.update(objective, params, full.init(params), minibatches=optim.Minibatches(data, key))[0]
    np.testing.assert_array_equal(np.asarray(a["theta"]), np.asarray(b["theta"]))
    with pytest.raises(ValueError, match="must divide into num_minibatches = 3"):
        optim.ppo(0.1, 0.2, 1, num_minibatches=3).update(objective, params, optimizer.init(params),
                                                          minibatches=optim.Minibatches(data, key))
    with pytest.raises(ValueError, match="needs minibatches=Minibatches"):
        optimizer.update(lambda q: objective(q, data), params, optimizer.init(params))


# ----------------------------------------------------------------------------- RL²


@pytest.fixture(scope="module")
def semicircle():
    return envs.make("point_semicircle")


@pytest.fixture(scope="module")
def trained_rl2(semicircle):
    """RL² (GRU 16) meta-trained for 200 iterations of 16 trials, as two calls of the scanned program."""
    config = algos.preset("rl2", "smoke").replace(meta_batch_size=16, minibatch_size=8, learning_rate=3e-3,
                                                  eval_num_tasks=40)
    algo = algos.make("rl2", semicircle, config)
    ts, first = algo.train(algo.init(jax.random.key(0)), 100)
    ts, second = algo.train(ts, 100)
    return algo, ts, jax.tree.map(lambda a, b: np.concatenate([a, b]), first, second)


def test_rl2_compiles_once_and_logs_every_episode(trained_rl2, semicircle):
    algo, ts, metrics = trained_rl2
    assert algo.trace_count == 1  # two calls, one trace
    assert {f"train/return_episode{k}" for k in range(1, 5)} <= set(metrics)
    np.testing.assert_array_equal(metrics["time/env_steps"][:3], np.arange(1, 4) * 16 * 4 * semicircle.episode_length)
    assert all(np.all(np.isfinite(v)) for v in metrics.values())
    assert np.all(metrics["train/nonfinite_updates"] == 0)


def test_rl2_learns_to_use_earlier_episodes_of_a_trial(trained_rl2, semicircle):
    """After meta-training, later episodes of a trial on held-out goals return more than the first."""
    algo, ts, _ = trained_rl2
    curve = algo.evaluate(ts, semicircle.task_set("val", 40), jax.random.key(1))
    assert curve.returns.shape == (40, 4)  # episode k = 1..4 of one trial per task
    gain = np.asarray(curve.returns[:, 1:].mean(axis=1) - curve.returns[:, 0])
    print("RL² episode returns on 40 held-out goals:", np.round(curve.mean, 2))
    assert gain.mean() > 3 * gain.std(ddof=1) / np.sqrt(gain.size), (curve.mean, gain.mean(), gain.std())


def test_rl2_presets_and_bad_config():
    for name in algos.presets("rl2"):
        algos.preset("rl2", name)
    paper = algos.preset("rl2", "paper")
    assert (paper.gru_size, paper.episodes_per_trial, paper.ppo_clip, paper.gae_lambda, paper.ppo_epochs,
            paper.discount) == (64, 4, 0.2, 0.95, 10, 0.99)
    assert algos.preset("rl2", "wheeled").eval_reward == "sparse"
    with pytest.raises(ValueError, match="'minibatch_size' = 3 must divide 'meta_batch_size' = 10"):
        rl2.Config(minibatch_size=3)
    with pytest.raises(ValueError, match="'entropy_method' must be one of"):
        rl2.Config(entropy_method="soft")


def test_rl2_meta_test_observes_the_meta_test_reward(trained_rl2, semicircle):
    """MAESN's protocol (Sec. 5.2): trained on dense rewards, meta-tested on sparse ones, the policy sees
    the sparse reward at meta-test; ``eval_observe="train_reward"`` shows it the dense one instead."""
    from metarl_jax.rollout import rollout_trials

    algo, ts, _ = trained_rl2
    tasks, key = semicircle.task_set("val", 8), jax.random.key(2)
    for observe, observed in (("eval_reward", "sparse"), ("train_reward", "dense")):
        sparse_test = algos.make("rl2", semicircle, algo.config.replace(eval_reward="sparse", eval_observe=observe))
        curve = sparse_test.evaluate(ts, tasks, key)
        trials = rollout_trials(semicircle, algo.policy, ts.params, tasks, key, 4, observed, 1)
        np.testing.assert_allclose(curve.returns, np.mean(trials.episode_returns("sparse"), axis=1), rtol=1e-5)
        observed_rewards = np.asarray(trials.inputs)[..., -2]  # r_{t−1}: sparse in [0, 1], dense = −distance
        assert np.all(observed_rewards >= 0) == (observed == "sparse")
