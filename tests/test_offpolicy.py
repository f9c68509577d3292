"""Off-policy machinery against plain-Python truths: replay vs a deque, the collector vs a Python loop,
running moments vs numpy, the tanh-Gaussian density vs a numerical change of variables."""

from __future__ import annotations

import collections
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from metarl_jax import normalization
from metarl_jax.collector import Collector
from metarl_jax.envs.wrappers import TimeLimit, with_episode_length
from metarl_jax.networks import TanhGaussian, make_q_function
from metarl_jax.replay import make_replay_buffer
from tests import toy_control


def chronological(state, capacity: int) -> list[float]:
    """The buffer's items oldest first (flashbax keeps them in a ring with its write head at current_index)."""
    items = np.asarray(state.experience["x"])[0]
    if bool(state.is_full):
        return list(np.roll(items, -int(state.current_index)))
    return list(items[: int(state.current_index)])


def test_replay_wraps_around_and_samples_like_a_deque():
    capacity = 5
    buffer = make_replay_buffer(capacity)
    add, sample = jax.jit(buffer.add), jax.jit(buffer.sample, static_argnums=2)
    state = buffer.init({"x": jnp.zeros(()), "y": jnp.zeros((2,))})
    reference = collections.deque(maxlen=capacity)
    counter = 0
    for chunk in (3, 4, 2, 5, 1):
        values = np.arange(counter, counter + chunk, dtype=np.float32)
        counter += chunk
        reference.extend(values.tolist())
        state = add(state, {"x": jnp.asarray(values), "y": jnp.stack([jnp.asarray(values)] * 2, axis=-1)})
        assert chronological(state, capacity) == list(reference)
        assert int(buffer.size(state)) == len(reference)
        # Sampling: uniform with replacement over exactly the items held, each item whole (x and y agree).
        draws = np.concatenate([np.asarray(sample(state, jax.random.key(k), 5)["x"]) for k in range(500)])
        ys = np.concatenate([np.asarray(sample(state, jax.random.key(k), 5)["y"]) for k in range(5)])
        assert set(draws.tolist()) == set(reference)
        assert np.all(ys[:, 0] == ys[:, 1])
        counts = np.array([np.sum(draws == v) for v in reference])
        expected = len(draws) / len(reference)
        assert np.all(np.abs(counts - expected) < 5 * math.sqrt(expected)), counts  # 5σ of a binomial count


def test_replay_per_task_buffers_are_independent():
    buffer = make_replay_buffer(4, num_tasks=3)
    state = buffer.init({"x": jnp.zeros(())})
    for step in range(3):
        items = jnp.arange(3)[:, None] * 100.0 + step * 2 + jnp.arange(2)[None, :]  # task t: 100 t + ...
        state = buffer.add(state, {"x": items})
    np.testing.assert_array_equal(np.asarray(buffer.size(state)), [4, 4, 4])
    batch = np.concatenate([np.asarray(buffer.sample(state, jax.random.key(k), 4)["x"]) for k in range(64)], 1)
    assert batch.shape == (3, 256)
    for task in range(3):
        assert set(batch[task].tolist()) == {100.0 * task + v for v in (2, 3, 4, 5)}  # the 4 newest of 0..5


def test_replay_rejects_bad_sizes():
    with pytest.raises(ValueError, match="capacity must be a positive int"):
        make_replay_buffer(0)
    buffer = make_replay_buffer(3)
    state = buffer.init({"x": jnp.zeros(())})
    with pytest.raises(ValueError, match="exceed the capacity 3"):
        buffer.add(state, {"x": jnp.zeros((4,))})
    with pytest.raises(ValueError, match="batch_size 4 exceeds the capacity 3"):
        buffer.sample(state, jax.random.key(0), 4)


def test_collector_matches_a_python_loop_with_termination_truncation_and_auto_reset():
    """Episodes that fall off (termination) and that time out (truncation), with resets in between."""
    family = toy_control.ToyControl(episode_length=8, random_start=False)
    collector = Collector(family, num_envs=1)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1.5, 1.5, size=40).astype(np.float32)
    actions[8:20] = 1.0  # push it off the edge: a termination
    table = jnp.asarray(actions)[:, None, None]

    def act_indexed(t, obs, key):  # the actor state carries the global step index (set before each call)
        del obs, key
        return table[t[0, 0]], t, {}

    state = collector.init(jax.random.key(0), family.sample_tasks(None, 1), actor_state=jnp.zeros((1, 1), jnp.int32))
    collect = jax.jit(lambda state, key: collector.collect(state, act_indexed, key, 1))
    outs = []
    for t in range(len(actions)):
        state = state._replace(actor_state=jnp.full((1, 1), t, jnp.int32))
        state, transitions, episodes = collect(state, jax.random.key(t))
        outs.append((transitions, episodes))
    expected = toy_control.python_rollout(actions, episode_length=8)
    assert any(e["termination"] for e in expected) and any(e["truncation"] for e in expected)
    for (transitions, episodes), want in zip(outs, expected):
        np.testing.assert_allclose(np.asarray(transitions.obs)[0, 0], want["obs"], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(np.asarray(transitions.next_obs)[0, 0], want["next_obs"], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(float(transitions.reward[0, 0]), want["reward"], rtol=1e-6, atol=1e-7)
        assert float(transitions.termination[0, 0]) == want["termination"]
        assert float(transitions.truncation[0, 0]) == want["truncation"]
        assert bool(episodes.ended[0, 0]) == want["ended"]
        if want["ended"]:
            np.testing.assert_allclose(float(episodes.returns[0, 0]), want["episode_return"], rtol=1e-5)


def test_collector_resets_actor_state_and_keeps_the_true_successor():
    """Parallel environments with 4-step episodes: the actor state (a step counter here, OU noise in DDPG)
    restarts at zero with each episode, and a truncated step's s′ is the state it reached, not the reset."""
    family = toy_control.ToyControl(episode_length=4)
    collector = Collector(family, num_envs=3)

    def act(count, obs, key):
        return jax.random.uniform(key, (3, 1), minval=-1, maxval=1), count + 1.0, {"count": count}

    state0 = collector.init(jax.random.key(1), family.sample_tasks(None, 3), actor_state=jnp.zeros((3,)))
    scanned_state, scanned, episodes = jax.jit(lambda s, k: collector.collect(s, act, k, 9))(state0, jax.random.key(2))
    # Every environment runs 4-step episodes (|x| stays small under |u| ≤ 1 for 4 steps): 2 full episodes.
    np.testing.assert_array_equal(np.asarray(episodes.ended).sum(axis=0), [2, 2, 2])
    np.testing.assert_array_equal(np.asarray(scanned.truncation)[[3, 7]], np.ones((2, 3)))
    np.testing.assert_array_equal(np.asarray(scanned.extras["count"])[:, 0], [0, 1, 2, 3, 0, 1, 2, 3, 0])
    # s′ of a truncated step is the true successor, not the reset observation that follows it.
    assert not np.allclose(np.asarray(scanned.next_obs)[3], np.asarray(scanned.obs)[4])
    np.testing.assert_allclose(np.asarray(scanned.next_obs)[:3], np.asarray(scanned.obs)[1:4])
    np.testing.assert_allclose(np.asarray(scanned_state.episode_length), [1, 1, 1])


def test_time_limit_truncates_earlier_and_keeps_terminations():
    family = toy_control.ToyControl(episode_length=10, random_start=False)
    short = with_episode_length(family, 3)
    assert isinstance(short, TimeLimit) and short.episode_length == 3 and short.observation_size == 2
    assert with_episode_length(family, None) is family and with_episode_length(family, 10) is family
    state = short.reset(jax.random.key(0), jnp.zeros((0,)))
    for t in range(3):
        state = short.step(state, jnp.zeros((1,)))
        assert float(state.done) == float(state.info["truncation"]) == (1.0 if t == 2 else 0.0)
    state = short.reset(jax.random.key(0), jnp.zeros((0,)))
    state = state.replace(env_state=jnp.array([1.9, 1.0]))
    state = short.step(state, jnp.ones((1,)))  # falls off at step 1: termination, not truncation
    assert float(state.done) == 1.0 and float(state.info["truncation"]) == 0.0
    with pytest.raises(ValueError, match="truncates its episodes at 10 steps"):
        with_episode_length(family, 11)


def test_running_statistics_match_numpy_in_any_chunking():
    rng = np.random.default_rng(1)
    data = rng.normal(loc=[3.0, -1.0, 0.0], scale=[0.5, 2.0, 1e-3], size=(257, 3))
    stats_ = normalization.init(3)
    for chunk in np.split(data, [1, 50, 51, 200]):
        stats_ = normalization.update(stats_, jnp.asarray(chunk))
    np.testing.assert_allclose(float(stats_.count), 257)
    np.testing.assert_allclose(np.asarray(stats_.mean), data.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(stats_.variance), data.var(0), rtol=1e-4, atol=1e-9)
    x = jnp.asarray(data[:4])
    expected = np.clip((data[:4] - data.mean(0)) / np.maximum(data.std(0), 0.1), -5, 5)
    np.testing.assert_allclose(np.asarray(normalization.normalize(stats_, x)), expected, rtol=1e-4, atol=1e-4)
    # Weights drop entries; an untouched normaliser has variance 1 (identity up to clipping).
    weighted = normalization.update(normalization.init(3), jnp.asarray(data), jnp.asarray(np.arange(257) < 10))
    np.testing.assert_allclose(np.asarray(weighted.mean), data[:10].mean(0), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(normalization.init(3).variance), 1.0)


def test_tanh_gaussian_log_prob_equals_numerical_change_of_variables():
    """p_A(a) = lim P(a ≤ A < a + h) / h with P from the Gaussian CDF of u = arctanh(a), per dimension."""
    mean = np.array([[0.3, -1.2], [2.0, 0.1]])
    log_std = np.array([[-0.5, 0.4], [0.2, -1.0]])
    dist = TanhGaussian(jnp.asarray(mean), jnp.asarray(log_std))
    with jax.enable_x64(True):
        dist = TanhGaussian(jnp.asarray(mean, jnp.float64), jnp.asarray(log_std, jnp.float64))
        actions = np.array([[0.2, -0.7], [0.95, 0.05]])
        h = 1e-7
        lo, hi = np.arctanh(actions), np.arctanh(actions + h)
        sd = np.exp(log_std)
        numerical = np.log((stats.norm.cdf(hi, mean, sd) - stats.norm.cdf(lo, mean, sd)) / h).sum(-1)
        np.testing.assert_allclose(np.asarray(dist.log_prob(jnp.asarray(actions))), numerical, rtol=1e-5)
        # The reparametrised sample's log-prob is that of the action it returns.
        sample, log_prob = dist.sample_with_log_prob(jax.random.key(0))
        np.testing.assert_allclose(np.asarray(log_prob), np.asarray(dist.log_prob(sample, eps=1e-12)), rtol=1e-9)
        np.testing.assert_allclose(np.asarray(dist.mode()), np.tanh(mean))


def test_q_function_heads_and_action_layer():
    q = make_q_function(3, 2, (8, 8), layer_norm=True, num_critics=2, action_layer=1)
    params = q.init(jax.random.key(0))
    assert params["params"]["Dense_1"]["kernel"].shape == (8 + 2, 8)  # the action joins after layer 1
    assert "LayerNorm_0" in params["params"]
    out = q.apply(params, jnp.ones((5, 3)), jnp.ones((5, 2)))
    assert out.shape == (5, 2) and not np.allclose(out[:, 0], out[:, 1])  # two independent heads
    with pytest.raises(ValueError, match="action_layer must be in"):
        make_q_function(3, 2, (8, 8), action_layer=2)
