"""Shared machinery of the MuJoCo-XLA (MJX) task families.

Every MJX family loads one of our own MJCF models from ``envs/assets/`` (or a
user-supplied ``xml_path``), keeps the C-engine ``mujoco.MjModel`` as
``family.mj_model`` (for rendering and C-engine checks) and simulates its
``mjx.Model`` copy. A control step is ``frame_skip`` physics steps of
``mjx.step`` inside ``lax.fori_loop``; the physics is wrapped in
``lax.stop_gradient`` because policy-gradient methods never need physics
gradients (DESIGN.md, performance rules).

A user's own MJX model needs no edit to the package: subclass ``MjxFamily`` with
``asset``/``xml_path``, ``observation_size``, ``sample_tasks``, ``_observation``
and ``_rewards`` (returning dense, sparse, terminated, info, metrics), or pass
``xml_path=`` to an existing family whose joint layout it shares. Tasks that vary
the dynamics override ``physics_model(task)`` (the mjx.Model that simulates a task;
default: the family's one model), as ``envs/rand_params.py`` does.

Goal-reaching task distributions shared by several families also live here:

* ``"maesn"``: goals on the upper semicircle of radius 2 (MAESN, Gupta et al. 2018, §5);
* ``"tesp"``: targets uniform in the disk 0.2 < ρ < 1.1 for train and val, with
  every val target at least 0.1 from every train target, and an ood split in the
  annulus 1.1 < ρ < 1.5 (TESP, Lan et al. 2019, §5.1).

Speed settings and their accuracy against MuJoCo's C engine (``mj_step`` with 100
Newton / 50 line-search iterations, same start state and controls; MJX in float32;
max |Δqpos| over the horizon; tests/test_envs_mjx.py::test_matches_c_engine):

    family        solver (iter/ls)  contacts                horizon  tolerance  measured
    wheeled       3 / 4             2 wheels + caster pairs 20       2e-2       7e-3
    reacher2/4    1 / 4             none                    40       1e-5       < 1e-6
    ant_*         4 / 8             torso + 4 feet pairs    10       0.15       7e-2
    block_push    2 / 4             15 puck pairs           30       2e-3       1e-4
    cheetah_*     2 / 6             6 pairs                 10       0.15       9e-2
    pendulum      1 / 4             none                    40       1e-5       1.5e-6
    hopper_*      4 / 8             4 floor pairs           20       1e-4       7e-7 (30 steps)
    walker2d_*    6 / 10            7 floor pairs           20       1e-3       3e-5 (30 steps)

The hopper/walker rows are the rand-params tasks' own scaled models (tests/test_envs_planar.py):
the C engine runs an MjModel with the task's parameters, and the nominal model misses by 5e-2–1.
With 3 / 6 iterations the walker's first floor impacts were off by 0.45; 6 / 10 converge there.

Halving the actuator gear moves the C-engine trajectory by 0.14–3.3, far outside
every tolerance, so the checks still catch a wrong model. The contact-rich bodies
(ant, cheetah) are chaotic: float64 MJX with converged solves also drifts ~1e-2
from the C engine within 5 control steps, hence their short horizons.
"""

from __future__ import annotations

import abc
import contextlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from jax import lax

# mujoco-mjx prints "Failed to import warp" to stdout when the optional warp backend is
# absent; keep stdout clean for tools that parse it (benchmark JSON).
with contextlib.redirect_stdout(io.StringIO()):
    from mujoco import mjx

from metarl_jax.envs.base import SPLIT_SEEDS, TASKS_PER_SPLIT, State, TaskFamily, check_split, time_limit

ASSET_DIR = Path(__file__).resolve().parent / "assets"


def load_mj_model(path: str | Path) -> mujoco.MjModel:
    """Compiles an MJCF file; a missing or malformed file raises ValueError naming the path."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"MJCF asset not found: {str(path)!r} (expected an MJCF .xml file)")
    try:
        return mujoco.MjModel.from_xml_path(str(path))
    except Exception as error:  # mujoco raises ValueError/Exception with the parser message
        raise ValueError(f"malformed MJCF asset {str(path)!r}: {error}") from error


def check_positive_int(value: Any, name: str, family: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{family}: {name} must be a positive int, got {value!r}")
    return int(value)


def check_positive_float(value: Any, name: str, family: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not value > 0:
        raise ValueError(f"{family}: {name} must be a positive number, got {value!r}")
    return float(value)


class MjxFamily(TaskFamily):
    """Base of the MJX families: model loading, frame-skipped stepping, episode bookkeeping.

    Subclasses set ``asset`` (file name under ``envs/assets``) and ``default_frame_skip``
    and implement ``sample_tasks``, ``_initial_qpos_qvel``, ``_observation`` and
    ``_rewards``; ``reset``/``step`` are shared.
    """

    asset: str = ""
    default_frame_skip: int = 1

    def __init__(self, episode_length: int, xml_path: str | None = None, frame_skip: int | None = None):
        self.episode_length = check_positive_int(episode_length, "episode_length", self.name)
        self.frame_skip = check_positive_int(
            self.default_frame_skip if frame_skip is None else frame_skip, "frame_skip", self.name
        )
        self.xml_path = str(ASSET_DIR / self.asset) if xml_path is None else str(xml_path)
        self.mj_model = load_mj_model(self.xml_path)
        self.mjx_model = mjx.put_model(self.mj_model, impl="jax")
        self.action_size = int(self.mj_model.nu)
        self.dt = float(self.mj_model.opt.timestep) * self.frame_skip
        ctrl_range = np.asarray(self.mj_model.actuator_ctrlrange, dtype=np.float32)
        limited = np.asarray(self.mj_model.actuator_ctrllimited, dtype=bool)
        self.ctrl_low = jnp.asarray(np.where(limited, ctrl_range[:, 0], -np.inf))
        self.ctrl_high = jnp.asarray(np.where(limited, ctrl_range[:, 1], np.inf))

    # ---- physics -------------------------------------------------------------------------

    def physics_model(self, task: Any) -> mjx.Model:
        """The mjx.Model that simulates ``task``: the family's own model, shared by every task.

        Dynamics-varying families (``envs/rand_params.py``) return a model with the task's
        parameters, so that a ``vmap`` over tasks is a ``vmap`` over physics models.
        """
        del task
        return self.mjx_model

    def pipeline_init(self, qpos: jax.Array, qvel: jax.Array, model: mjx.Model | None = None) -> mjx.Data:
        """mjx.Data at (qpos, qvel) with body poses and subtree centres of mass computed.

        Only kinematics runs here (collision and the constraint solve happen in the
        first ``mjx.step``), which keeps the compiled reset small.
        """
        model = self.mjx_model if model is None else model
        data = mjx.make_data(model, impl="jax")
        data = data.replace(qpos=qpos, qvel=qvel)
        data = mjx.kinematics(model, data)
        return mjx.com_pos(model, data)

    def pipeline_step(self, data: mjx.Data, action: jax.Array, model: mjx.Model | None = None) -> mjx.Data:
        """``frame_skip`` physics steps with ctrl = clip(action); no gradient flows through physics.

        ``mjx.step`` computes body poses before integrating, so they lag qpos by one
        physics step; a final ``mjx.kinematics`` makes xpos/xipos/site_xpos match qpos.
        """
        model = self.mjx_model if model is None else model
        ctrl = jnp.clip(lax.stop_gradient(action), self.ctrl_low, self.ctrl_high)
        data = data.replace(ctrl=ctrl)
        data = lax.fori_loop(0, self.frame_skip, lambda _, d: mjx.step(model, d), data)
        return lax.stop_gradient(mjx.kinematics(model, data))

    # ---- subclass hooks ------------------------------------------------------------------

    def goal_marker(self, task: Any) -> jax.Array | None:
        """Where a video draws the task's goal (world xyz, [3]), or None for tasks without a place
        (target velocities, dynamics). Goal-reaching families return their goal."""
        del task
        return None

    def _initial_qpos_qvel(self, key: jax.Array, task: Any) -> tuple[jax.Array, jax.Array]:
        """Start state; defaults to the model's qpos0 with small uniform noise."""
        del task
        return self.perturbed_start(key, qpos_noise=0.01, qvel_noise=0.01)

    def perturbed_start(self, key: jax.Array, qpos_noise: float, qvel_noise: float) -> tuple[jax.Array, jax.Array]:
        """qpos0 + U(−qpos_noise, qpos_noise), qvel ~ qvel_noise · N(0, 1) (the gym/rllab reset)."""
        key_pos, key_vel = jax.random.split(key)
        qpos = jnp.asarray(self.mj_model.qpos0) + jax.random.uniform(
            key_pos, (self.mj_model.nq,), minval=-qpos_noise, maxval=qpos_noise
        )
        return qpos, qvel_noise * jax.random.normal(key_vel, (self.mj_model.nv,))

    @abc.abstractmethod
    def _observation(self, data: mjx.Data, task: Any) -> jax.Array:
        """The policy's observation (without the task's goal, for goal-hiding families)."""

    @abc.abstractmethod
    def _rewards(self, data_before: mjx.Data, data: mjx.Data, action: jax.Array, task: Any):
        """Returns (dense, sparse, terminated, info, metrics) of one control step."""

    def _reset_info_metrics(self, data: mjx.Data, task: Any) -> tuple[dict, dict]:
        """info/metrics at reset: the step's dicts with zero rewards, so the pytree structure matches."""
        zero_action = jnp.zeros((self.action_size,))
        _, _, _, info, metrics = self._rewards(data, data, zero_action, task)
        zero = jnp.zeros(())
        info = {k: (zero if k in ("sparse_reward", "truncation") else v) for k, v in info.items()}
        metrics = {k: jnp.zeros_like(v) if k.startswith("reward") else v for k, v in metrics.items()}
        return info, metrics

    # ---- protocol ------------------------------------------------------------------------

    def reset(self, key: jax.Array, task: Any) -> State:
        qpos, qvel = self._initial_qpos_qvel(key, task)
        data = self.pipeline_init(qpos, qvel, self.physics_model(task))
        info, metrics = self._reset_info_metrics(data, task)
        zero = jnp.zeros(())
        return State(
            obs=self._observation(data, task),
            reward=zero,
            done=zero,
            info=info,
            metrics=metrics,
            step=jnp.zeros((), jnp.int32),
            task=task,
            env_state=data,
        )

    def step(self, state: State, action: jax.Array) -> State:
        data = self.pipeline_step(state.env_state, action, self.physics_model(state.task))
        dense, sparse, terminated, info, metrics = self._rewards(state.env_state, data, action, state.task)
        step = state.step + 1
        done, truncation = time_limit(step, self.episode_length, terminated)
        info = dict(info, sparse_reward=sparse, truncation=truncation)
        return state.replace(
            obs=self._observation(data, state.task),
            reward=dense,
            done=done,
            info=info,
            metrics=metrics,
            step=step,
            env_state=data,
        )


# ---- goal distributions shared by wheeled, ant_goal and the reachers ------------------------

TASK_DISTRIBUTIONS = ("maesn", "tesp")
SEMICIRCLE_RADIUS = 2.0  # MAESN: goals on the upper semicircle of radius 2
TESP_DISK = (0.2, 1.1)  # TESP: train D and test D' in the disk 0.2 < ρ < 1.1
TESP_OOD_ANNULUS = (1.1, 1.5)  # TESP: out-of-distribution D'' in the annulus 1.1 < ρ < 1.5
TESP_MIN_SPACING = 0.1  # TESP: D' targets keep at least this distance from every D target


def semicircle_goals(key: jax.Array, num_tasks: int, radius: float = SEMICIRCLE_RADIUS) -> jax.Array:
    angle = jax.random.uniform(key, (num_tasks,), minval=0.0, maxval=jnp.pi)
    return radius * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=-1)


def annulus_goals(key: jax.Array, num_tasks: int, inner: float, outer: float) -> jax.Array:
    """Uniform by area in inner < ρ < outer: ρ = sqrt(U(inner², outer²))."""
    key_radius, key_angle = jax.random.split(key)
    radius = jnp.sqrt(jax.random.uniform(key_radius, (num_tasks,), minval=inner**2, maxval=outer**2))
    angle = jax.random.uniform(key_angle, (num_tasks,), minval=-jnp.pi, maxval=jnp.pi)
    return radius[:, None] * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=-1)


def spaced_goals(
    sampler: Callable[[jax.Array, int], jax.Array],
    key: jax.Array,
    num_tasks: int,
    avoid: np.ndarray,
    min_spacing: float,
) -> jax.Array:
    """``num_tasks`` goals from ``sampler`` whose distance to every row of ``avoid`` is ≥ min_spacing.

    Host-side rejection sampling over a deterministic candidate stream (used only
    to build the fixed splits, never inside jit).
    """
    accepted: list[np.ndarray] = []
    count = 0
    for round_key in jax.random.split(key, 64):
        candidates = np.asarray(sampler(round_key, 4 * num_tasks))
        distance = np.linalg.norm(candidates[:, None, :] - avoid[None, :, :], axis=-1).min(axis=1)
        keep = candidates[distance >= min_spacing]
        accepted.append(keep)
        count += len(keep)
        if count >= num_tasks:
            break
    goals = np.concatenate(accepted)[:num_tasks]
    if len(goals) < num_tasks:
        raise ValueError(f"could not place {num_tasks} goals {min_spacing} away from the other split")
    return jnp.asarray(goals, dtype=jnp.float32)


class GoalTaskFamily:
    """Mixin for goal-reaching families: tasks, splits and sparse radius from a GoalTaskDistribution."""

    def _setup_goal_tasks(self, task_distribution: str, sparse_radius: float | None, maesn_radius: float = 0.8) -> None:
        self.tasks = GoalTaskDistribution(task_distribution, self.name)
        self.splits = self.tasks.splits
        self.task_distribution = task_distribution
        default_radius = maesn_radius if task_distribution == "maesn" else 0.2
        self.sparse_radius = check_positive_float(
            default_radius if sparse_radius is None else sparse_radius, "sparse_radius", self.name
        )

    def sample_tasks(self, key: jax.Array, num_tasks: int) -> jax.Array:
        return self.tasks.sample(key, num_tasks)

    def task_set(self, split: str, num_tasks: int = TASKS_PER_SPLIT) -> jax.Array:
        return self.tasks.split(self, split, num_tasks)

    def goal_marker(self, task: jax.Array) -> jax.Array:
        """The goal xy on the ground plane (videos)."""
        return jnp.append(jnp.asarray(task, jnp.float32), 0.0)


class GoalTaskDistribution:
    """Task = goal xy, shape (2,); MAESN semicircle or TESP disk with an ood annulus."""

    def __init__(self, task_distribution: str, family: str):
        if task_distribution not in TASK_DISTRIBUTIONS:
            raise ValueError(
                f"{family}: unknown task_distribution {task_distribution!r}; valid ones are {list(TASK_DISTRIBUTIONS)}"
            )
        self.kind = task_distribution
        self.splits = ("train", "val", "ood") if task_distribution == "tesp" else ("train", "val")

    def sample(self, key: jax.Array, num_tasks: int) -> jax.Array:
        if self.kind == "maesn":
            return semicircle_goals(key, num_tasks)
        return annulus_goals(key, num_tasks, *TESP_DISK)

    def split(self, family: Any, split: str, num_tasks: int) -> jax.Array:
        check_split(family, split)
        key = jax.random.key(SPLIT_SEEDS[split])
        if split == "ood":
            return annulus_goals(key, num_tasks, *TESP_OOD_ANNULUS)
        if self.kind == "tesp" and split == "val":
            train = np.asarray(self.sample(jax.random.key(SPLIT_SEEDS["train"]), TASKS_PER_SPLIT))
            return spaced_goals(self.sample, key, num_tasks, train, TESP_MIN_SPACING)
        return self.sample(key, num_tasks)


def goal_rewards(
    position: jax.Array,
    goal: jax.Array,
    ctrl_cost: jax.Array,
    sparse_radius: float,
    miss_value: jax.Array,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Dense −‖p − g‖ − ctrl; sparse = (miss_value while ‖p − g‖ > radius else −‖p − g‖) − ctrl.

    Returns (dense, sparse, distance).
    """
    distance = jnp.linalg.norm(position - goal)
    goal_term = -distance
    sparse_goal_term = jnp.where(distance <= sparse_radius, goal_term, miss_value)
    return goal_term - ctrl_cost, sparse_goal_term - ctrl_cost, distance
