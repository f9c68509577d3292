"""Single-task control suite of Xu et al. (meta-policy-gradient exploration for DDPG).

* ``pendulum``: gym's Pendulum-v1 on our MJX model (``assets/pendulum.xml``).
  θ = 0 is upright; start θ ~ U(−π, π), θ̇ ~ U(−1, 1); torque u ∈ [−2, 2];
  reward −(norm(θ)² + 0.1 θ̇² + 0.001 u²) from the state before the step, as in gym;
  θ̇ is clipped to ±8 after every control step (gym's max_speed); horizon 200;
  observation (cos θ, sin θ, θ̇).
* ``half_cheetah``: gym's HalfCheetah-v2 on our MJX model (``assets/half_cheetah.xml``,
  shared with ``cheetah_vel``/``cheetah_dir``): reward (x' − x)/dt − 0.1‖a‖² with x the
  root slide joint, observation qpos without root x and qvel (17), no termination,
  horizon 1000. It replaced brax's ``halfcheetah`` because it is 3–4× faster on CPU
  (1 658 / 6 381 / 4 954 vs 485 / 1 413 / 1 418 env steps/s with 1 / 16 / 128
  environments, benchmarks/RESULTS.md).
* ``inverted_pendulum``, ``inverted_double_pendulum``, ``hopper``, ``reacher``:
  brax's MJX-backed environments wrapped by ``from_brax`` (the same
  code path a user's brax env takes), with brax's rewards and terminations and the
  gym horizon of 1000 steps. Their models come from brax; ``mj_model`` is brax's
  ``sys.mj_model``. Where brax sets more than ``MAX_SOLVER_ITERATIONS`` Newton
  iterations (inverted pendulums, reacher: 100/50), the family lowers them to
  4 iterations and 8 line-search iterations for speed (these models have only
  joint limits and, for the reacher, no contacts at all).

Accuracy: ``pendulum`` (no contacts, no constraints) matches MuJoCo's C engine
within 1e-5 over 40 control steps; the brax models under the lowered solver
settings are checked against the C engine (100 iterations) over 8 control steps
(tests/test_envs_mjx.py::test_brax_control_suite_matches_c_engine, slow).

Single-task families have one task (an empty array); their sparse reward equals
the dense one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from metarl_jax.envs.brax_adapter import BraxFamily
from metarl_jax.envs.locomotion import CheetahBase
from metarl_jax.envs.mjx_base import (
    MjxFamily,
    check_positive_float,
    mjx,  # imported there with its warp notice silenced
)

MAX_SOLVER_ITERATIONS = 4
FAST_LS_ITERATIONS = 8


class Pendulum(MjxFamily):
    name = "pendulum"
    asset = "pendulum.xml"
    default_frame_skip = 5
    observation_size = 3

    def __init__(
        self,
        episode_length: int = 200,
        max_speed: float = 8.0,
        frame_skip: int | None = None,
        xml_path: str | None = None,
    ):
        self.max_speed = check_positive_float(max_speed, "max_speed", self.name)
        super().__init__(episode_length, xml_path=xml_path, frame_skip=frame_skip)

    def sample_tasks(self, key: jax.Array, num_tasks: int) -> jax.Array:
        del key
        return jnp.zeros((num_tasks, 0))

    def _initial_qpos_qvel(self, key, task):
        del task
        key_angle, key_speed = jax.random.split(key)
        angle = jax.random.uniform(key_angle, (1,), minval=-jnp.pi, maxval=jnp.pi)
        speed = jax.random.uniform(key_speed, (1,), minval=-1.0, maxval=1.0)
        return angle, speed

    def pipeline_step(self, data, action, model=None):
        data = super().pipeline_step(data, action, model)
        return data.replace(qvel=jnp.clip(data.qvel, -self.max_speed, self.max_speed))

    def _observation(self, data: mjx.Data, task) -> jax.Array:
        del task
        return jnp.concatenate([jnp.cos(data.qpos), jnp.sin(data.qpos), data.qvel])

    def _rewards(self, data_before, data, action, task):
        del task
        torque = jnp.clip(action, self.ctrl_low, self.ctrl_high)[0]
        angle = jnp.mod(data_before.qpos[0] + jnp.pi, 2 * jnp.pi) - jnp.pi  # gym's angle_normalize
        speed = data_before.qvel[0]
        reward = -(angle**2 + 0.1 * speed**2 + 0.001 * torque**2)
        info = {"position": jnp.stack([jnp.sin(data.qpos[0]), jnp.cos(data.qpos[0])]), "sparse_reward": reward,
                "truncation": jnp.zeros(())}
        metrics = {"angle": data.qpos[0], "angular_velocity": data.qvel[0]}
        return reward, reward, jnp.zeros(()), info, metrics


# Observation size per brax environment: tracing an MJX reset to find it takes seconds, once per process.
_OBSERVATION_SIZES: dict[str, int] = {}


class BraxControlFamily(BraxFamily):
    """A brax MJX environment as a single-task family, with MJX speed settings."""

    brax_name: str = ""

    def __init__(self, episode_length: int = 1000):
        from brax import envs as brax_envs

        env = brax_envs.get_environment(self.brax_name, backend="mjx")
        opt = env.sys.opt
        if opt.iterations > MAX_SOLVER_ITERATIONS:
            env.sys = env.sys.replace(
                opt=opt.replace(iterations=MAX_SOLVER_ITERATIONS, ls_iterations=FAST_LS_ITERATIONS)
            )
            env.sys.mj_model.opt.iterations = MAX_SOLVER_ITERATIONS
            env.sys.mj_model.opt.ls_iterations = FAST_LS_ITERATIONS
        super().__init__(env, episode_length=episode_length, name=type(self).name,
                         observation_size=_OBSERVATION_SIZES.get(self.brax_name))
        _OBSERVATION_SIZES[self.brax_name] = self.observation_size
        self.mj_model = env.sys.mj_model


class InvertedPendulum(BraxControlFamily):
    name = "inverted_pendulum"
    brax_name = "inverted_pendulum"


class InvertedDoublePendulum(BraxControlFamily):
    name = "inverted_double_pendulum"
    brax_name = "inverted_double_pendulum"


class Hopper(BraxControlFamily):
    name = "hopper"
    brax_name = "hopper"


class HalfCheetah(CheetahBase):
    """Gym HalfCheetah-v2: forward progress of the root joint minus 0.1‖a‖²."""

    name = "half_cheetah"
    ctrl_cost_weight = 0.1

    def __init__(self, episode_length: int = 1000, frame_skip: int | None = None, xml_path: str | None = None):
        super().__init__(episode_length, xml_path=xml_path, frame_skip=frame_skip)

    def sample_tasks(self, key: jax.Array, num_tasks: int) -> jax.Array:
        del key
        return jnp.zeros((num_tasks, 0))

    def _task_reward(self, velocity, task):
        del task
        return velocity  # the single task: run forward

    def _rewards(self, data_before, data, action, task):
        action = jnp.clip(action, self.ctrl_low, self.ctrl_high)
        # Gym measures progress on the root slide joint, not the torso's centre of mass.
        velocity = (data.qpos[0] - data_before.qpos[0]) / self.dt
        ctrl_cost = self.ctrl_cost_weight * jnp.sum(action**2)
        reward = self._task_reward(velocity, task) - ctrl_cost
        position = data.xipos[self.torso, :2]
        info = {"position": position, "sparse_reward": reward, "truncation": jnp.zeros(())}
        metrics = {
            "x": data.qpos[0],
            "forward_velocity": velocity,
            "reward_forward": velocity,
            "reward_ctrl": -ctrl_cost,
        }
        return reward, reward, jnp.zeros(()), info, metrics


class Reacher(BraxControlFamily):
    name = "reacher"
    brax_name = "reacher"
