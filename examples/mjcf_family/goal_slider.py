"""A task family of your own, from your own MJCF: a point mass that must find a hidden goal.

    python -m experiments.train --algo=maml --preset=smoke --logdir=runs/slider \
        --env=examples/mjcf_family/goal_slider.py:GoalSlider --env_kwarg=episode_length=50

Tasks are goal positions on a circle of radius ``task_radius``; the goal is not observed, so the
policy must explore to find it. Dense reward −‖p − g‖ − 0.01‖a‖²; the sparse (meta-test) reward
pays −‖g‖ until the puck is within ``sparse_radius`` of the goal, then the dense reward.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp

from metarl_jax.envs import MjxFamily

XML = Path(__file__).resolve().parent / "slider.xml"


class GoalSlider(MjxFamily):
    name = "goal_slider"  # written into configs and checkpoints
    default_frame_skip = 2  # control step = 2 physics steps of 0.02 s
    observation_size = 4  # qpos (x, y) and qvel; the goal is hidden

    def __init__(self, episode_length: int = 50, task_radius: float = 1.0, sparse_radius: float = 0.2):
        self.task_radius = float(task_radius)
        self.sparse_radius = float(sparse_radius)
        super().__init__(episode_length, xml_path=str(XML))

    def sample_tasks(self, key: jax.Array, num_tasks: int) -> jax.Array:
        """Goals g = R (cos φ, sin φ), φ ~ U(0, 2π): a task is an array [2] (any pytree will do)."""
        angle = jax.random.uniform(key, (num_tasks,), maxval=2 * jnp.pi)
        return self.task_radius * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=-1)

    def _observation(self, data, task) -> jax.Array:
        del task
        return jnp.concatenate([data.qpos, data.qvel])

    def _rewards(self, data_before, data, action, task):
        """(dense, sparse, terminated, info, metrics) of one control step."""
        del data_before
        position = data.qpos[:2]
        distance = jnp.linalg.norm(position - task)
        ctrl_cost = 0.01 * jnp.sum(jnp.clip(action, self.ctrl_low, self.ctrl_high) ** 2)
        dense = -distance - ctrl_cost
        sparse = jnp.where(distance <= self.sparse_radius, dense, -jnp.linalg.norm(task) - ctrl_cost)
        info = {"position": position, "sparse_reward": sparse, "truncation": jnp.zeros(())}
        metrics = {"goal_distance": distance, "reward_ctrl": -ctrl_cost}
        return dense, sparse, jnp.zeros(()), info, metrics

    def goal_marker(self, task) -> jax.Array:
        """Where videos draw the goal (world xyz)."""
        return jnp.append(task, 0.0)
