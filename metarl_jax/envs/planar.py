"""Planar hopper and walker (gym's Hopper / Walker2d on our MJX models) and ProMP's walker directions.

* ``walker2d_dir`` (ProMP's ``walker2d_rand_direc``, MAME Fig. 2c): direction d ∈ {−1, +1};
  reward d·(x' − x)/dt + 1 − 1e-3‖a‖², x the root slide joint; control dt 0.015 (ProMP: 0.016).
* The hopper and walker bodies of the dynamics-varying families (``envs/rand_params.py``).

Both follow gym: observation qpos without root x and clip(qvel, ±10) (hopper 11, walker 17); the
episode terminates (``done``, the rollout masks the rest) when the torso leaves the healthy range:
hopper: height ≤ 0.7, |pitch| ≥ 0.2 or |state[2:]| ≥ 100; walker: height outside (0.8, 2), |pitch| ≥ 1.
Start: qpos0 and zero qvel plus U(−0.005, 0.005). The control cost uses the clipped action
(as every MJX family here); ``info["sparse_reward"]`` equals the dense reward.

Accuracy of the speed settings (Newton 3 / 6 line-search iterations, Euler with dt 0.004 hopper,
0.005 walker, explicit floor pairs): checked against MuJoCo's C engine with 100 iterations in
``tests/test_envs_planar.py`` (see ``envs/mjx_base.py`` for the table).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from metarl_jax.envs.locomotion import sample_directions
from metarl_jax.envs.mjx_base import MjxFamily, mjx

ALIVE_BONUS = 1.0
CTRL_COST = 1e-3
QVEL_CLIP = 10.0


class PlanarBase(MjxFamily):
    """Shared hopper/walker protocol: gym observation, forward reward with alive bonus, termination."""

    def _initial_qpos_qvel(self, key, task):
        del task
        key_pos, key_vel = jax.random.split(key)
        qpos = jnp.asarray(self.mj_model.qpos0) + jax.random.uniform(key_pos, (self.mj_model.nq,), minval=-0.005,
                                                                     maxval=0.005)
        qvel = jax.random.uniform(key_vel, (self.mj_model.nv,), minval=-0.005, maxval=0.005)
        return qpos, qvel

    def _observation(self, data: mjx.Data, task) -> jax.Array:
        del task
        return jnp.concatenate([data.qpos[1:], jnp.clip(data.qvel, -QVEL_CLIP, QVEL_CLIP)])

    def _forward_term(self, velocity, task):
        del task
        return velocity

    def _healthy(self, data: mjx.Data) -> jax.Array:
        """Whether the body is still up (gym's healthy range); each body defines its own (Hopper, Walker2d)."""
        raise NotImplementedError(f"{type(self).__name__} must define _healthy (gym's healthy range of its body)")

    def _rewards(self, data_before, data, action, task):
        action = jnp.clip(action, self.ctrl_low, self.ctrl_high)
        velocity = (data.qpos[0] - data_before.qpos[0]) / self.dt
        forward = self._forward_term(velocity, task)
        ctrl_cost = CTRL_COST * jnp.sum(action**2)
        reward = forward + ALIVE_BONUS - ctrl_cost
        terminated = 1.0 - self._healthy(data).astype(jnp.float32)
        position = data.xipos[self.torso, :2]
        info = {"position": position, "sparse_reward": reward, "truncation": jnp.zeros(())}
        metrics = {"x": data.qpos[0], "height": data.qpos[1], "forward_velocity": velocity,
                   "reward_forward": forward, "reward_ctrl": -ctrl_cost}
        return reward, reward, terminated, info, metrics

    def _setup_body(self) -> None:
        self.torso = int(self.mj_model.body("torso").id)


class HopperBase(PlanarBase):
    asset = "hopper.xml"
    default_frame_skip = 2  # dt 0.004 x 2 = 0.008 (gym: 0.002 x 4)
    observation_size = 11

    def _healthy(self, data):
        state = jnp.concatenate([data.qpos, data.qvel])
        height, angle = data.qpos[1], data.qpos[2]
        return (jnp.all(jnp.isfinite(state)) & jnp.all(jnp.abs(state[2:]) < 100.0) & (height > 0.7)
                & (jnp.abs(angle) < 0.2))


class WalkerBase(PlanarBase):
    asset = "walker2d.xml"
    default_frame_skip = 2  # dt 0.005 x 2 = 0.01 (rand_param_envs: 0.002 x 5)
    observation_size = 17

    def _healthy(self, data):
        height, angle = data.qpos[1], data.qpos[2]
        return (height > 0.8) & (height < 2.0) & (angle > -1.0) & (angle < 1.0)


class Walker2dDir(WalkerBase):
    """ProMP's walker2d_rand_direc: task = direction d ∈ {−1, +1}, forward term d · v."""

    name = "walker2d_dir"
    default_frame_skip = 3  # dt 0.005 x 3 = 0.015 (ProMP: 0.002 x 8 = 0.016)

    def __init__(self, episode_length: int = 200, frame_skip: int | None = None, xml_path: str | None = None):
        super().__init__(episode_length, xml_path=xml_path, frame_skip=frame_skip)
        self._setup_body()

    def sample_tasks(self, key: jax.Array, num_tasks: int) -> jax.Array:
        return sample_directions(key, num_tasks)

    def _forward_term(self, velocity, task):
        return task * velocity
