"""Point navigation families (and the brax adapter) against hand-computed dynamics and rewards."""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metarl_jax import envs
from metarl_jax.envs.point import CORNERS

CORNER_LIST = [(-2.0, -2.0), (2.0, -2.0), (-2.0, 2.0), (2.0, 2.0)]
FAMILIES = ["point_corner", "point_semicircle"]


def _state_at(family, position, goal):
    """A fresh episode of ``goal`` with the point moved to ``position``."""
    state = family.reset(jax.random.key(0), jnp.asarray(goal, jnp.float32))
    position = jnp.asarray(position, jnp.float32)
    return state.replace(obs=position, env_state=position)


def _dist(a, b) -> float:
    return math.hypot(a[0] - b[0], a[1] - b[1])


# ----------------------------------------------------------------------------- shapes, jit, vmap


@pytest.mark.parametrize("name", FAMILIES)
def test_reset_and_step_under_jit_and_vmap(name):
    family = envs.make(name)
    assert family.observation_size == 2 and family.action_size == 2
    n = 5
    tasks = family.task_set("train")[:n]
    keys = jax.random.split(jax.random.key(1), n)
    reset = jax.jit(jax.vmap(family.reset))
    step = jax.jit(jax.vmap(family.step))
    state = reset(keys, tasks)
    assert state.obs.shape == (n, 2)
    assert state.reward.shape == (n,) and state.done.shape == (n,)
    assert state.step.shape == (n,) and state.step.dtype == jnp.int32
    assert state.info["sparse_reward"].shape == (n,)
    np.testing.assert_array_equal(np.asarray(state.done), 0.0)
    np.testing.assert_array_equal(np.asarray(state.task), np.asarray(tasks))
    actions = jnp.asarray(np.random.default_rng(0).uniform(-0.05, 0.05, size=(n, 2)), jnp.float32)
    next_state = step(state, actions)
    assert next_state.obs.shape == (n, 2)
    assert next_state.reward.shape == (n,)
    np.testing.assert_array_equal(np.asarray(next_state.step), 1)
    # p' = p + a (actions within the bounds); obs is the position only (no goal in it)
    np.testing.assert_allclose(np.asarray(next_state.obs), np.asarray(state.obs + actions), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(np.asarray(next_state.obs), np.asarray(next_state.env_state))
    np.testing.assert_array_equal(np.asarray(next_state.obs), np.asarray(next_state.info["position"]))
    # Dense reward −‖p' − g‖ for each vmapped task
    expected = -np.linalg.norm(np.asarray(state.obs + actions) - np.asarray(tasks), axis=-1)
    np.testing.assert_allclose(np.asarray(next_state.reward), expected, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(next_state.metrics["goal_distance"]), -expected, rtol=1e-5)


def test_initial_positions():
    corner = envs.make("point_corner", max_action=0.3)
    keys = jax.random.split(jax.random.key(2), 64)
    starts = np.asarray(jax.vmap(corner.reset, in_axes=(0, None))(keys, CORNERS[0]).obs)
    assert np.all(np.abs(starts) <= 0.3) and np.std(starts) > 0.05  # uniform in the ±max_action box
    semicircle = envs.make("point_semicircle")
    np.testing.assert_array_equal(np.asarray(semicircle.reset(jax.random.key(3), jnp.asarray([0.0, 1.0])).obs), 0.0)


# ----------------------------------------------------------------------------- rewards


def _corner_sparse_by_hand(position, next_position, goal, start_radius=0.5) -> float:
    """ProMP's rule: 0 inside the L1 start region; progress towards the goal iff it is the nearest corner."""
    if abs(next_position[0]) + abs(next_position[1]) < start_radius:
        return 0.0
    nearest = min(CORNER_LIST, key=lambda c: _dist(next_position, c))
    if nearest != tuple(goal):
        return 0.0
    return _dist(position, goal) - _dist(next_position, goal)


CORNER_CASES = [
    # (position, action, goal): expected p' = p + clip(a, ±0.2)
    ((0.1, 0.1), (0.1, 0.1), (2.0, 2.0)),  # p' = (0.2, 0.2): inside the start region -> 0
    ((1.0, 1.0), (0.2, 0.1), (2.0, 2.0)),  # goal quadrant, moving closer -> positive progress
    ((-1.0, 1.0), (0.1, -0.2), (2.0, 2.0)),  # nearest corner is (-2, 2), not the goal -> 0
    ((1.0, -1.0), (-0.5, 0.5), (2.0, -2.0)),  # clipped; moving away inside the goal quadrant -> negative
    ((0.2, 0.2), (0.2, 0.1), (2.0, 2.0)),  # leaves the start region towards the goal
    ((-1.5, -1.2), (0.0, -0.2), (-2.0, -2.0)),
    ((1.5, 1.5), (0.1, 0.1), (-2.0, -2.0)),  # far from the goal's quadrant -> 0
]


@pytest.mark.parametrize("position,action,goal", CORNER_CASES)
def test_point_corner_rewards_by_hand(position, action, goal):
    family = envs.make("point_corner")
    state = _state_at(family, position, goal)
    next_state = jax.jit(family.step)(state, jnp.asarray(action, jnp.float32))
    clipped = [min(max(a, -0.2), 0.2) for a in action]
    next_position = (position[0] + clipped[0], position[1] + clipped[1])
    np.testing.assert_allclose(np.asarray(next_state.obs), next_position, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(float(next_state.reward), -_dist(next_position, goal), rtol=1e-5)
    np.testing.assert_allclose(float(next_state.info["sparse_reward"]),
                               _corner_sparse_by_hand(position, next_position, goal), rtol=1e-5, atol=1e-6)


def test_point_corner_sparse_cases_cover_every_branch():
    values = [_corner_sparse_by_hand(p, (p[0] + min(max(a[0], -0.2), 0.2), p[1] + min(max(a[1], -0.2), 0.2)), g)
              for p, a, g in CORNER_CASES]
    assert any(v > 0 for v in values) and any(v < 0 for v in values) and sum(v == 0 for v in values) >= 3


SEMICIRCLE_CASES = [
    ((0.0, 0.75), (0.05, 0.1), (0.0, 1.0)),  # d ≈ 0.158 < 0.2 -> 1 − d
    ((0.0, 0.0), (0.1, 0.1), (0.0, 1.0)),  # far -> 0
    ((0.75, 0.0), (0.1, 0.0), (1.0, 0.0)),  # d = 0.15 -> 0.85
    ((0.6, 0.0), (0.1, 0.0), (1.0, 0.0)),  # d = 0.3 -> 0
    ((math.cos(1.0), math.sin(1.0)), (0.0, 0.0), (math.cos(1.0), math.sin(1.0))),  # on the goal -> 1
]


@pytest.mark.parametrize("position,action,goal", SEMICIRCLE_CASES)
def test_point_semicircle_rewards_by_hand(position, action, goal):
    family = envs.make("point_semicircle")
    state = _state_at(family, position, goal)
    next_state = jax.jit(family.step)(state, jnp.asarray(action, jnp.float32))
    next_position = (position[0] + action[0], position[1] + action[1])  # within ±0.1
    d = _dist(next_position, goal)
    np.testing.assert_allclose(float(next_state.reward), -d, rtol=1e-5, atol=1e-6)
    assert abs(d - 0.2) > 1e-3  # no case on the goal-radius boundary
    expected_sparse = 1.0 - d if d < 0.2 else 0.0
    np.testing.assert_allclose(float(next_state.info["sparse_reward"]), expected_sparse, rtol=1e-5, atol=1e-6)


def test_point_semicircle_sparse_uses_goal_radius():
    family = envs.make("point_semicircle", goal_radius=0.5)
    state = _state_at(family, (0.0, 0.6), (0.0, 1.0))
    next_state = family.step(state, jnp.asarray([0.0, 0.0]))  # d = 0.4 < 0.5
    np.testing.assert_allclose(float(next_state.info["sparse_reward"]), 0.6, rtol=1e-5)
    narrow = envs.make("point_semicircle", goal_radius=0.3)
    assert float(narrow.step(_state_at(narrow, (0.0, 0.6), (0.0, 1.0)), jnp.zeros(2)).info["sparse_reward"]) == 0.0


@pytest.mark.parametrize("name,max_action", [("point_corner", 0.2), ("point_semicircle", 0.1), ("point_corner", 0.35)])
def test_actions_are_clipped(name, max_action):
    family = envs.make(name, max_action=max_action)
    state = _state_at(family, (0.3, -0.4), CORNER_LIST[3] if name == "point_corner" else (0.0, 1.0))
    step = jax.jit(family.step)
    for action, delta in [((5.0, -5.0), (max_action, -max_action)),
                          ((-100.0, 0.5 * max_action), (-max_action, 0.5 * max_action))]:
        next_state = step(state, jnp.asarray(action))
        np.testing.assert_allclose(np.asarray(next_state.obs), [0.3 + delta[0], -0.4 + delta[1]], rtol=1e-6)


@pytest.mark.parametrize("name", FAMILIES)
def test_done_exactly_at_episode_length(name):
    length = 4
    family = envs.make(name, episode_length=length)
    task = family.task_set("train")[0]

    @jax.jit
    def run(key):
        state = family.reset(key, task)

        def body(s, _):
            s = family.step(s, jnp.asarray([0.01, 0.02]))
            return s, (s.done, s.info["truncation"], s.step)

        return jax.lax.scan(body, state, None, length=length + 1)[1]

    done, truncation, steps = (np.asarray(x) for x in run(jax.random.key(0)))
    np.testing.assert_array_equal(steps, [1, 2, 3, 4, 5])
    np.testing.assert_array_equal(done[:length], [0.0, 0.0, 0.0, 1.0])
    np.testing.assert_array_equal(truncation[:length], [0.0, 0.0, 0.0, 1.0])


# ----------------------------------------------------------------------------- tasks


@pytest.mark.parametrize("name", FAMILIES)
def test_task_sets_are_reproducible(name):
    family = envs.make(name)
    train = np.asarray(family.task_set("train"))
    assert train.shape == (100, 2) == (envs.TASKS_PER_SPLIT, 2)
    np.testing.assert_array_equal(train, np.asarray(envs.make(name).task_set("train")))
    np.testing.assert_array_equal(np.asarray(family.task_set("val")), np.asarray(family.task_set("val")))
    assert np.asarray(family.task_set("train", num_tasks=7)).shape == (7, 2)


def test_semicircle_train_and_val_are_disjoint():
    family = envs.make("point_semicircle")
    train, val = np.asarray(family.task_set("train")), np.asarray(family.task_set("val"))
    pairwise = np.linalg.norm(train[:, None, :] - val[None, :, :], axis=-1)
    assert pairwise.min() > 1e-6


@pytest.mark.parametrize("radius", [1.0, 3.0])
def test_semicircle_goals_on_upper_half_circle(radius):
    family = envs.make("point_semicircle", radius=radius)
    goals = np.asarray(family.sample_tasks(jax.random.key(4), 500))
    np.testing.assert_allclose(np.linalg.norm(goals, axis=-1), radius, rtol=1e-5)
    assert np.all(goals[:, 1] >= -1e-6)
    # Spread over the whole half circle: angles in [0, π] reach both ends.
    angles = np.arctan2(goals[:, 1], goals[:, 0])
    assert angles.min() < 0.1 and angles.max() > math.pi - 0.1


def test_corner_tasks_are_corners():
    family = envs.make("point_corner")
    for split in ("train", "val"):
        tasks = np.asarray(family.task_set(split))
        assert {tuple(t) for t in tasks.tolist()} == set(CORNER_LIST)  # all four, nothing else, over 100 draws


# ----------------------------------------------------------------------------- errors


def test_unknown_env_lists_valid_names():
    with pytest.raises(ValueError) as err:
        envs.make("point_nowhere")
    for name in FAMILIES:
        assert repr(name) in str(err.value)


@pytest.mark.parametrize("name,valid", [
    ("point_corner", ["episode_length", "max_action", "sparse_start_radius"]),
    ("point_semicircle", ["episode_length", "max_action", "radius", "goal_radius"]),
])
def test_unknown_kwarg_lists_valid_ones(name, valid):
    with pytest.raises(ValueError) as err:
        envs.make(name, goal_radiuss=0.3)
    message = str(err.value)
    assert "goal_radiuss" in message
    for kw in valid:
        assert repr(kw) in message


@pytest.mark.parametrize("name,kwargs,field", [
    ("point_corner", {"episode_length": 0}, "episode_length"),
    ("point_corner", {"episode_length": 2.5}, "episode_length"),
    ("point_corner", {"max_action": -1}, "max_action"),
    ("point_corner", {"sparse_start_radius": 0.0}, "sparse_start_radius"),
    ("point_semicircle", {"episode_length": 0}, "episode_length"),
    ("point_semicircle", {"max_action": -1.0}, "max_action"),
    ("point_semicircle", {"radius": 0}, "radius"),
    ("point_semicircle", {"goal_radius": -0.2}, "goal_radius"),
])
def test_invalid_kwarg_values_raise_naming_field(name, kwargs, field):
    with pytest.raises(ValueError, match=field):
        envs.make(name, **kwargs)


@pytest.mark.parametrize("name", FAMILIES)
def test_unknown_split_names_defined_splits(name):
    with pytest.raises(ValueError) as err:
        envs.make(name).task_set("ood")
    message = str(err.value)
    assert "'ood'" in message and "'train'" in message and "'val'" in message


# ----------------------------------------------------------------------------- brax adapter


# Slow: from_brax reads brax's Env.observation_size, which runs an un-jitted MJX reset (~10-20 s on a
# 2-core CPU), plus the compilation of reset + step.
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
def test_from_brax_inverted_pendulum():
    from brax import envs as brax_envs

    env = brax_envs.get_environment("inverted_pendulum", backend="mjx")
    length = 5
    family = envs.from_brax(env, episode_length=length)
    envs.validate_family(family)
    # (env.observation_size is not read again here: in brax it runs a full eager reset.)
    assert family.observation_size == 4  # cart position, pole angle and their velocities
    assert family.action_size == env.action_size == 1
    assert family.episode_length == length
    tasks = family.task_set("train")
    assert tasks.shape == (100, 0)

    @jax.jit
    def run(key):
        state = family.reset(key, tasks[0])

        def body(s, _):
            s = family.step(s, jnp.zeros((family.action_size,)))
            return s, (s.obs, s.reward, s.done, s.info["truncation"], s.info["sparse_reward"])

        return state, jax.lax.scan(body, state, None, length=length)[1]

    state, (obs, reward, done, truncation, sparse) = run(jax.random.key(0))
    assert state.obs.shape == (family.observation_size,)
    assert float(state.done) == 0.0 and int(state.step) == 0
    assert obs.shape == (length, family.observation_size) and reward.shape == (length,)
    assert np.all(np.isfinite(np.asarray(obs)))
    # The pole stays up for 5 steps with zero action: done only at the time limit, as a truncation.
    np.testing.assert_array_equal(np.asarray(done), [0.0, 0.0, 0.0, 0.0, 1.0])
    np.testing.assert_array_equal(np.asarray(truncation), [0.0, 0.0, 0.0, 0.0, 1.0])
    np.testing.assert_array_equal(np.asarray(sparse), np.asarray(reward))


def test_from_brax_rejects_non_env():
    with pytest.raises(ValueError, match="brax"):
        envs.from_brax(object())

    class HalfEnv:
        observation_size = 3

        def reset(self, key):
            return None

    with pytest.raises(ValueError, match="step"):
        envs.from_brax(HalfEnv())


def test_from_brax_rejects_bad_episode_length():
    class FakeState(NamedTuple):
        obs: jax.Array

    class FakeEnv:
        observation_size, action_size = 3, 1

        def reset(self, key):
            return FakeState(obs=jnp.zeros(3))

        def step(self, state, action):
            return None

    with pytest.raises(ValueError, match="episode_length"):
        envs.from_brax(FakeEnv(), episode_length=0)
    family = envs.from_brax(FakeEnv(), episode_length=7, name="fake")
    assert family.name == "fake" and family.episode_length == 7
