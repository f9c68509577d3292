"""``reacher2`` and ``reacher4``: planar 2-link and 4-link reachers (TESP, Lan et al. 2019, §5.1).

The arm (``assets/reacher2.xml``: links 0.8 + 0.8; ``assets/reacher4.xml``: 4 × 0.4)
rotates in the horizontal plane about its base at the origin; every joint is a
torque-driven hinge about z. The fingertip's forward kinematics is

    fingertip = Σ_i L_i (cos φ_i, sin φ_i),   φ_i = q_0 + … + q_i.

Tasks are fingertip targets: "train"/"val" in the disk 0.2 < ρ < 1.1 (val ≥ 0.1
from every train target), "ood" in the annulus 1.1 < ρ < 1.5. Reward
−‖fingertip − target‖ − 0.001‖a‖². Sparse reward (for meta-test): −‖target‖ − 0.001‖a‖²
while ‖fingertip − target‖ > ``sparse_radius`` (default 0.2), else the dense reward.

Observation: cos q, sin q, q̇ and the fingertip xy (2: 8, 4: 14); the target is not
observed. ``info["position"]`` holds the fingertip xy.

Accuracy of the speed settings (no contacts, Newton 1 iteration, dt = 0.01, frame
skip 5): MJX (float32) and MuJoCo's C engine agree on the joint angles within
1e-5 (measured < 1e-6) over 40 control steps of PD torques
(tests/test_envs_mjx.py::test_matches_c_engine).
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

CTRL_COST = 0.001  # TESP reacher control cost weight


class _Reacher(GoalTaskFamily, MjxFamily):
    default_frame_skip = 5
    num_links: int
    link_length: float

    def __init__(
        self,
        episode_length: int = 200,
        sparse_radius: float = 0.2,
        frame_skip: int | None = None,
        xml_path: str | None = None,
    ):
        self._setup_goal_tasks("tesp", sparse_radius)
        super().__init__(episode_length, xml_path=xml_path, frame_skip=frame_skip)
        self.num_joints = int(self.mj_model.njnt)
        self.observation_size = 3 * self.num_joints + 2
        self.fingertip_site = int(self.mj_model.site("fingertip").id)

    def fingertip(self, data: mjx.Data) -> jax.Array:
        return data.site_xpos[self.fingertip_site, :2]

    def _observation(self, data: mjx.Data, task) -> jax.Array:
        del task
        return jnp.concatenate([jnp.cos(data.qpos), jnp.sin(data.qpos), data.qvel, self.fingertip(data)])

    def _rewards(self, data_before, data, action, task):
        del data_before
        action = jnp.clip(action, self.ctrl_low, self.ctrl_high)
        fingertip = self.fingertip(data)
        ctrl_cost = CTRL_COST * jnp.sum(action**2)
        dense, sparse, distance = goal_rewards(fingertip, task, ctrl_cost, self.sparse_radius, -jnp.linalg.norm(task))
        info = {"position": fingertip, "sparse_reward": sparse, "truncation": jnp.zeros(())}
        metrics = {"x": fingertip[0], "y": fingertip[1], "goal_distance": distance, "reward_ctrl": -ctrl_cost}
        return dense, sparse, jnp.zeros(()), info, metrics


class Reacher2(_Reacher):
    name = "reacher2"
    asset = "reacher2.xml"
    observation_size = 8


class Reacher4(_Reacher):
    name = "reacher4"
    asset = "reacher4.xml"
    observation_size = 14
