"""Velocity and direction tasks of MAML (Finn et al. 2017, §5.3), ProMP and PEARL.

* ``cheetah_vel``: target forward velocity v* ~ U(0, 2) (PEARL uses U(0, 3): set
  ``max_velocity``); reward −|v − v*| − 0.05‖a‖² (MAML's ``half_cheetah_env_rand``).
* ``cheetah_dir``: direction d ∈ {−1, +1}; reward d·v − 0.05‖a‖².
* ``ant_vel``: v* ~ U(0, 3); reward −|v − v*| − 0.005‖a‖² − contact + 0.05 (MAML's
  ``ant_env_rand``; the contact cost is 0, see ``ant.py``).
* ``ant_dir``: d ∈ {−1, +1}; reward d·v − 0.005‖a‖² − contact + 0.05.

v is the forward (x) velocity of the torso centre of mass over the control step,
(x' − x)/dt. The task is a scalar (shape () per task; ``sample_tasks`` gives shape
(n,)). There is no termination (fixed horizon 200). These are dense-reward tasks:
``info["sparse_reward"]`` equals the dense reward. Direction tasks have only two
distinct tasks, so their "train" and "val" splits necessarily overlap.

Observations follow gym: cheetah qpos without root x (8) and qvel (9) = 17; ant
qpos without root xy (13) and qvel (14) = 27. ``info["position"]`` is the torso
centre-of-mass xy.

Accuracy of the speed settings: see ``ant.py`` (ant) and the C-engine test; the
cheetah (Newton 2 iterations, 6 line-search iterations, dt 0.01, frame skip 5) is
checked over 10 control steps of random actions: every qpos entry within 0.15
of MuJoCo's C engine with 100 solver iterations (float64 MJX with 4 iterations
matches the C engine to < 1e-5 over 20 steps; 2 iterations to 5e-4); the same
check with the actuator gear halved fails.
"""

from __future__ import annotations

import abc

import jax
import jax.numpy as jnp

from metarl_jax.envs.ant import ANT_CTRL_COST, SURVIVE_REWARD, AntBase
from metarl_jax.envs.mjx_base import (
    MjxFamily,
    check_positive_float,
    mjx,  # imported there with its warp notice silenced
)

CHEETAH_CTRL_COST = 0.05  # MAML half-cheetah: 0.5 · 1e-1 · ‖a‖²


def sample_directions(key: jax.Array, num_tasks: int) -> jax.Array:
    return jnp.where(jax.random.bernoulli(key, 0.5, (num_tasks,)), 1.0, -1.0)


class VelocityTasks:
    """Task = target forward velocity v_goal ~ U(0, max_velocity); forward term −|v − v_goal|."""

    max_velocity: float

    def sample_tasks(self, key: jax.Array, num_tasks: int) -> jax.Array:
        return jax.random.uniform(key, (num_tasks,), minval=0.0, maxval=self.max_velocity)

    def _task_reward(self, velocity, task):
        return -jnp.abs(velocity - task)


class DirectionTasks:
    """Task = direction d ∈ {−1, +1}; forward term d · v."""

    def sample_tasks(self, key: jax.Array, num_tasks: int) -> jax.Array:
        return sample_directions(key, num_tasks)

    def _task_reward(self, velocity, task):
        return task * velocity


def forward_task_rewards(forward_reward, ctrl_cost, survive_reward, velocity, position):
    """r = forward term − ctrl cost + survive bonus; these tasks have no sparse variant (sparse = dense)."""
    reward = forward_reward - ctrl_cost + survive_reward
    info = {"position": position, "sparse_reward": reward, "truncation": jnp.zeros(())}
    metrics = {
        "x": position[0],
        "y": position[1],
        "forward_velocity": velocity,
        "reward_forward": forward_reward,
        "reward_ctrl": -ctrl_cost,
    }
    return reward, reward, jnp.zeros(()), info, metrics


class CheetahBase(MjxFamily):
    asset = "half_cheetah.xml"
    default_frame_skip = 5
    observation_size = 17

    def __init__(self, episode_length: int, xml_path: str | None = None, frame_skip: int | None = None):
        super().__init__(episode_length, xml_path=xml_path, frame_skip=frame_skip)
        self.torso = int(self.mj_model.body("torso").id)

    def _initial_qpos_qvel(self, key, task):
        # gym HalfCheetah: qpos0 + U(−0.1, 0.1), qvel ~ 0.1 N(0, 1)
        del task
        return self.perturbed_start(key, qpos_noise=0.1, qvel_noise=0.1)

    def _observation(self, data: mjx.Data, task) -> jax.Array:
        del task
        return jnp.concatenate([data.qpos[1:], data.qvel])

    def forward_velocity_and_position(self, data_before, data):
        com_before, com = data_before.xipos[self.torso], data.xipos[self.torso]
        return (com[0] - com_before[0]) / self.dt, com[:2]

    @abc.abstractmethod
    def _task_reward(self, velocity, task):
        """The task's forward term: −|v − v_goal| (velocity) or d · v (direction)."""

    def _rewards(self, data_before, data, action, task):
        action = jnp.clip(action, self.ctrl_low, self.ctrl_high)
        velocity, position = self.forward_velocity_and_position(data_before, data)
        ctrl_cost = CHEETAH_CTRL_COST * jnp.sum(action**2)
        return forward_task_rewards(self._task_reward(velocity, task), ctrl_cost, 0.0, velocity, position)


class CheetahVel(VelocityTasks, CheetahBase):
    name = "cheetah_vel"

    def __init__(
        self,
        episode_length: int = 200,
        max_velocity: float = 2.0,
        frame_skip: int | None = None,
        xml_path: str | None = None,
    ):
        self.max_velocity = check_positive_float(max_velocity, "max_velocity", self.name)
        super().__init__(episode_length, xml_path=xml_path, frame_skip=frame_skip)


class CheetahDir(DirectionTasks, CheetahBase):
    name = "cheetah_dir"

    def __init__(self, episode_length: int = 200, frame_skip: int | None = None, xml_path: str | None = None):
        super().__init__(episode_length, xml_path=xml_path, frame_skip=frame_skip)


class AntLocomotion(AntBase):
    observation_size = 27

    def _observation(self, data: mjx.Data, task) -> jax.Array:
        del task
        return jnp.concatenate([data.qpos[2:], data.qvel])

    @abc.abstractmethod
    def _task_reward(self, velocity, task):
        """The task's forward term: −|v − v_goal| (velocity) or d · v (direction)."""

    def _rewards(self, data_before, data, action, task):
        action = jnp.clip(action, self.ctrl_low, self.ctrl_high)
        com_before, com = self.torso_com(data_before), self.torso_com(data)
        velocity = (com[0] - com_before[0]) / self.dt
        ctrl_cost = ANT_CTRL_COST * jnp.sum(action**2)
        return forward_task_rewards(self._task_reward(velocity, task), ctrl_cost, SURVIVE_REWARD, velocity, com[:2])


class AntVel(VelocityTasks, AntLocomotion):
    name = "ant_vel"

    def __init__(
        self,
        episode_length: int = 200,
        max_velocity: float = 3.0,
        frame_skip: int | None = None,
        xml_path: str | None = None,
    ):
        self.max_velocity = check_positive_float(max_velocity, "max_velocity", self.name)
        super().__init__(episode_length, xml_path=xml_path, frame_skip=frame_skip)


class AntDir(DirectionTasks, AntLocomotion):
    name = "ant_dir"

    def __init__(self, episode_length: int = 200, frame_skip: int | None = None, xml_path: str | None = None):
        super().__init__(episode_length, xml_path=xml_path, frame_skip=frame_skip)
