"""``wheeled``: a two-wheeled differential-drive robot navigating to hidden goals.

Model (``assets/wheeled.xml``): a free-floating chassis on two independently
motorised wheels (hinges about the chassis y axis) and a frictionless ball
caster. Equal wheel commands drive straight, opposite commands turn in place
(yaw rate = r (ω_R − ω_L) / track).

Task distributions (keyword ``task_distribution``):

* ``"maesn"`` (default; MAESN, Gupta et al. 2018, §5 and maesn_suite
  ``wheeled_robot.py``): goals on the upper semicircle of radius 2, splits
  "train"/"val". Dense reward −‖xy − g‖ − 0.05‖a‖²; sparse reward −‖g‖ − 0.05‖a‖²
  while ‖xy − g‖ > 0.8, else the dense reward.
* ``"tesp"`` (TESP, Lan et al. 2019, §5.1): targets in the disk 0.2 < ρ < 1.1,
  "train"/"val" with val ≥ 0.1 from every train target, "ood" in the annulus
  1.1 < ρ < 1.5. Reward −‖xy − target‖ − 0.001‖a‖²; the sparse reward uses the same
  rule as MAESN with ``sparse_radius`` (default 0.2).

The observation (15) is the chassis pose (xyz, quaternion), its 6-D velocity and
the two wheel speeds; the goal is not observed. ``a`` is the clipped action in
[−1, 1]². ``info["position"]`` holds the chassis xy for plotting exploration.

Accuracy of the speed settings (Newton, 3 iterations, 4 line-search iterations,
dt = 0.01, frame skip 5; with 2 iterations MJX's Newton solve has not converged
and drifts ~1e-2 from the C engine within 5 steps): over 20 control steps (1 s)
of the scripted goal-seeking controller, every qpos entry (chassis pose and wheel
angles) of MJX in float32 stays within 2e-2 (measured 7e-3) of MuJoCo's C engine run with 100
solver iterations (tests/test_envs_mjx.py::test_matches_c_engine).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from metarl_jax.envs.mjx_base import (
    GoalTaskFamily,
    MjxFamily,
    goal_rewards,
    mjx,  # imported there with its warp notice silenced
)

CTRL_COST = {"maesn": 0.05, "tesp": 0.001}
MAESN_SPARSE_RADIUS = 0.8


class Wheeled(GoalTaskFamily, MjxFamily):
    name = "wheeled"
    asset = "wheeled.xml"
    default_frame_skip = 5
    observation_size = 15

    def __init__(
        self,
        task_distribution: str = "maesn",
        episode_length: int = 200,
        sparse_radius: float | None = None,
        frame_skip: int | None = None,
        xml_path: str | None = None,
    ):
        self._setup_goal_tasks(task_distribution, sparse_radius, MAESN_SPARSE_RADIUS)
        self.ctrl_cost_weight = CTRL_COST[task_distribution]
        super().__init__(episode_length, xml_path=xml_path, frame_skip=frame_skip)

    def _initial_qpos_qvel(self, key, task):
        # Start at the origin facing +x; small noise on the heading only (yaw ∈ ±0.05 rad).
        del task
        yaw = 0.05 * jax.random.uniform(key, (), minval=-1.0, maxval=1.0)
        qpos = jnp.asarray(self.mj_model.qpos0)
        qpos = qpos.at[3:7].set(jnp.array([jnp.cos(yaw / 2), 0.0, 0.0, jnp.sin(yaw / 2)]))
        return qpos, jnp.zeros((self.mj_model.nv,))

    def _observation(self, data: mjx.Data, task) -> jax.Array:
        del task
        return jnp.concatenate([data.qpos[:7], data.qvel[:6], data.qvel[6:8]])

    def _rewards(self, data_before, data, action, task):
        del data_before
        action = jnp.clip(action, self.ctrl_low, self.ctrl_high)
        position = data.qpos[:2]
        ctrl_cost = self.ctrl_cost_weight * jnp.sum(action**2)
        # MAESN's sparse reward: −‖g‖ (distance from the start) while outside the goal radius.
        miss_value = -jnp.linalg.norm(task)
        dense, sparse, distance = goal_rewards(position, task, ctrl_cost, self.sparse_radius, miss_value)
        info = {"position": position, "sparse_reward": sparse, "truncation": jnp.zeros(())}
        metrics = {
            "x": position[0],
            "y": position[1],
            "goal_distance": distance,
            "reward_ctrl": -ctrl_cost,
        }
        return dense, sparse, jnp.zeros(()), info, metrics
