"""Pure-JAX 2-D point navigation families.

* ``point_corner`` (ProMP's ``MetaPointEnvCorner``): a point mass starts near the
  origin; the task is one of the four corners (±2, ±2). Actions are position
  increments clipped to ±max_action.
* ``point_semicircle`` (PEARL's sparse point robot, MAME's semicircle): goals on
  the upper half circle; the agent starts at the origin.

Both hide the goal from the observation: the observation is the position only.
"""

from __future__ import annotations

import abc

import jax
import jax.numpy as jnp
import numpy as np

from metarl_jax.envs.base import State, TaskFamily, time_limit

# numpy, not jnp: importing the package must not start a JAX backend (multi-host initialisation).
CORNERS = np.array([[-2.0, -2.0], [2.0, -2.0], [-2.0, 2.0], [2.0, 2.0]], np.float32)


def _check_positive(name: str, value, family: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"{family}: {name} must be a positive number, got {value!r}")


class _PointFamily(TaskFamily):
    """Shared point-mass dynamics: p' = p + clip(a, -max_action, max_action)."""

    observation_size = 2
    action_size = 2

    def __init__(self, episode_length: int, max_action: float):
        if isinstance(episode_length, bool) or not isinstance(episode_length, int) or episode_length <= 0:
            raise ValueError(f"{self.name}: episode_length must be a positive int, got {episode_length!r}")
        _check_positive("max_action", max_action, self.name)
        self.episode_length = episode_length
        self.max_action = float(max_action)

    # The actions the dynamics accept (they clip to ±max_action): off-policy learners rescale their
    # tanh actions in [−1, 1] to these bounds (oyster's NormalizedBoxEnv on its point robot).
    @property
    def action_low(self) -> np.ndarray:
        return np.full((self.action_size,), -self.max_action, np.float32)

    @property
    def action_high(self) -> np.ndarray:
        return np.full((self.action_size,), self.max_action, np.float32)

    @abc.abstractmethod
    def _initial_position(self, key: jax.Array) -> jax.Array:
        """Start position of an episode."""

    @abc.abstractmethod
    def _rewards(self, position, next_position, goal):
        """Returns (dense, sparse) rewards of the transition position -> next_position."""

    def reset(self, key: jax.Array, task: jax.Array) -> State:
        position = self._initial_position(key)
        zero = jnp.zeros(())
        return State(
            obs=position,
            reward=zero,
            done=zero,
            info={"sparse_reward": zero, "truncation": zero, "position": position},
            metrics=self._metrics(position, task),
            step=jnp.zeros((), jnp.int32),
            task=task,
            env_state=position,
        )

    def step(self, state: State, action: jax.Array) -> State:
        position = state.env_state
        next_position = position + jnp.clip(action, -self.max_action, self.max_action)
        dense, sparse = self._rewards(position, next_position, state.task)
        step = state.step + 1
        done, truncation = time_limit(step, self.episode_length)
        return state.replace(
            obs=next_position,
            reward=dense,
            done=done,
            info={"sparse_reward": sparse, "truncation": truncation, "position": next_position},
            metrics=self._metrics(next_position, state.task),
            step=step,
            env_state=next_position,
        )

    @staticmethod
    def _metrics(position, goal):
        return {"x": position[0], "y": position[1], "goal_distance": jnp.linalg.norm(position - goal)}


class PointCorner(_PointFamily):
    """ProMP 2-D point with corner goals.

    Dense reward: −‖p' − g‖. Sparse reward (ProMP's): zero while the point is
    inside the L1 start region of radius ``sparse_start_radius``; outside it, the
    progress towards the goal ‖p − g‖ − ‖p' − g‖ but only while the goal is the
    nearest corner, so that only the goal's quadrant is informative.
    """

    name = "point_corner"

    def __init__(self, episode_length: int = 100, max_action: float = 0.2, sparse_start_radius: float = 0.5):
        super().__init__(episode_length, max_action)
        _check_positive("sparse_start_radius", sparse_start_radius, self.name)
        self.sparse_start_radius = float(sparse_start_radius)

    def sample_tasks(self, key: jax.Array, num_tasks: int) -> jax.Array:
        return jnp.asarray(CORNERS)[jax.random.randint(key, (num_tasks,), 0, CORNERS.shape[0])]

    def _initial_position(self, key):
        return jax.random.uniform(key, (2,), minval=-self.max_action, maxval=self.max_action)

    def _rewards(self, position, next_position, goal):
        goal_distance = jnp.linalg.norm(next_position - goal)
        dense = -goal_distance
        corner_distances = jnp.linalg.norm(next_position[None, :] - CORNERS, axis=-1)
        in_goal_quadrant = goal_distance <= jnp.min(corner_distances)
        outside_start = jnp.sum(jnp.abs(next_position)) >= self.sparse_start_radius
        progress = jnp.linalg.norm(position - goal) - goal_distance
        sparse = jnp.where(in_goal_quadrant & outside_start, progress, 0.0)
        return dense, sparse


class PointSemicircle(_PointFamily):
    """Goals on the upper half circle of ``radius`` (PEARL: 1, MAME: 3).

    Dense reward: −‖p' − g‖. Sparse reward: 1 − ‖p' − g‖ inside ``goal_radius``, else 0
    (PEARL's sparsified reward, shifted to be positive inside the goal region).
    """

    name = "point_semicircle"

    def __init__(
        self,
        episode_length: int = 20,
        max_action: float = 0.1,
        radius: float = 1.0,
        goal_radius: float = 0.2,
    ):
        super().__init__(episode_length, max_action)
        _check_positive("radius", radius, self.name)
        _check_positive("goal_radius", goal_radius, self.name)
        self.radius = float(radius)
        self.goal_radius = float(goal_radius)

    def sample_tasks(self, key: jax.Array, num_tasks: int) -> jax.Array:
        angle = jax.random.uniform(key, (num_tasks,), minval=0.0, maxval=jnp.pi)
        return self.radius * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=-1)

    def _initial_position(self, key):
        del key
        return jnp.zeros((2,))

    def _rewards(self, position, next_position, goal):
        del position
        goal_distance = jnp.linalg.norm(next_position - goal)
        dense = -goal_distance
        sparse = jnp.where(goal_distance <= self.goal_radius, 1.0 - goal_distance, 0.0)
        return dense, sparse
