"""``ant_goal``: MAESN's low-gear ant walking to hidden goals, plus TESP's ant targets.

Model (``assets/ant.xml``): the standard quadruped (sphere torso, capsule legs,
8 hinge motors with gear 30: the low-gear ant of rllab used by MAESN). Only the
torso and the four lower legs touch the floor. There is no termination (fixed
horizon, as in the meta-RL rollouts).

Task distributions (keyword ``task_distribution``):

* ``"maesn"`` (default; MAESN, Gupta et al. 2018, §5, ``ant_env_rand_goal_ring.py``):
  goals on the upper semicircle of radius 2. With c the torso centre of mass,

      dense  = −‖c_xy − g‖₁ + 4 − 0.005‖a‖² − contact + 0.05
      sparse = (−‖g‖₁ while ‖c_xy − g‖₂ > 0.8, else −‖c_xy − g‖₁) + 4 − 0.005‖a‖² − contact + 0.05

  The contact cost (0.5e-3 Σ clip(cfrc_ext)²) is 0 here: MJX does not compute
  cfrc_ext in ``mjx.step``, and with mujoco ≥ 2.0 the original evaluated to 0 too.
* ``"tesp"`` (TESP, Lan et al. 2019, §5.1): targets in the disk 0.2 < ρ < 1.1,
  "ood" in the annulus 1.1 < ρ < 1.5; reward −‖c_xy − target‖₂ − 0.001‖a‖², sparse as
  for the wheeled robot with ``sparse_radius`` (default 0.2).

Observation (29): qpos (torso xyz and quaternion, 8 joint angles) and qvel; the
goal is not observed. ``info["position"]`` holds the torso centre-of-mass xy.

Accuracy of the speed settings (Newton 4 iterations, 8 line-search iterations,
dt = 0.01, frame skip 5; 2 and 6 drift from the C engine twice as fast): the ant
is chaotic under contact (even float64 MJX with 100 iterations drifts ~1e-2 from
the C engine in 5 control steps), so the check against MuJoCo's C engine (100
solver iterations) uses 10 control steps (0.5 s) of random actions and requires
every qpos entry within 0.15; the same check with the actuator gear halved fails,
so it still catches a wrong model (tests/test_envs_mjx.py::test_matches_c_engine).
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

MAESN_SPARSE_RADIUS = 0.8
MAESN_GOAL_OFFSET = 4.0  # constant added to the −L1 goal term in MAESN's ant
SURVIVE_REWARD = 0.05
ANT_CTRL_COST = 0.005  # rllab ant: 0.5 · 1e-2 · ‖a‖²
TESP_CTRL_COST = 0.001


class AntBase(MjxFamily):
    """The ant model shared by ``ant_goal``, ``ant_vel`` and ``ant_dir``."""

    asset = "ant.xml"
    default_frame_skip = 5

    def __init__(self, episode_length: int, xml_path: str | None = None, frame_skip: int | None = None):
        super().__init__(episode_length, xml_path=xml_path, frame_skip=frame_skip)
        self.torso = int(self.mj_model.body("torso").id)

    def _initial_qpos_qvel(self, key, task):
        # gym/rllab ant: qpos0 + U(−0.1, 0.1), qvel ~ 0.1 N(0, 1)
        del task
        qpos, qvel = self.perturbed_start(key, qpos_noise=0.1, qvel_noise=0.1)
        return qpos.at[3:7].set(qpos[3:7] / jnp.linalg.norm(qpos[3:7])), qvel  # unit torso quaternion

    def torso_com(self, data: mjx.Data) -> jax.Array:
        return data.xipos[self.torso]


class AntGoal(GoalTaskFamily, AntBase):
    name = "ant_goal"
    observation_size = 29

    def __init__(
        self,
        task_distribution: str = "maesn",
        episode_length: int = 200,
        sparse_radius: float | None = None,
        frame_skip: int | None = None,
        xml_path: str | None = None,
    ):
        self._setup_goal_tasks(task_distribution, sparse_radius, MAESN_SPARSE_RADIUS)
        super().__init__(episode_length, xml_path=xml_path, frame_skip=frame_skip)

    def _observation(self, data: mjx.Data, task) -> jax.Array:
        del task
        return jnp.concatenate([data.qpos, data.qvel])

    def _rewards(self, data_before, data, action, task):
        del data_before
        action = jnp.clip(action, self.ctrl_low, self.ctrl_high)
        com_xy = self.torso_com(data)[:2]
        if self.task_distribution == "maesn":
            ctrl_cost = ANT_CTRL_COST * jnp.sum(action**2)
            distance = jnp.linalg.norm(com_xy - task)
            goal_term = -jnp.sum(jnp.abs(com_xy - task))
            sparse_goal_term = jnp.where(distance > self.sparse_radius, -jnp.sum(jnp.abs(task)), goal_term)
            bonus = MAESN_GOAL_OFFSET + SURVIVE_REWARD - ctrl_cost
            dense, sparse = goal_term + bonus, sparse_goal_term + bonus
        else:
            ctrl_cost = TESP_CTRL_COST * jnp.sum(action**2)
            dense, sparse, distance = goal_rewards(
                com_xy, task, ctrl_cost, self.sparse_radius, -jnp.linalg.norm(task)
            )
        info = {"position": com_xy, "sparse_reward": sparse, "truncation": jnp.zeros(())}
        metrics = {"x": com_xy[0], "y": com_xy[1], "goal_distance": distance, "reward_ctrl": -ctrl_cost}
        return dense, sparse, jnp.zeros(()), info, metrics
