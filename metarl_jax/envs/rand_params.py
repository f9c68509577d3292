"""Dynamics-varying task families: rand_param_envs' hopper and walker (MAME Fig. 2d-e, ProMP, PEARL).

A task is a pytree of MJX model parameters: ``{"body_mass", "body_inertia", "dof_damping",
"geom_friction", "pair_friction"}``, each the model's own field with per-element multipliers

    body_mass, body_inertia, geom_friction  ×  1.5^U(−L, L)
    dof_damping                             ×  1.3^U(−L, L)          (L = ``log_scale_limit`` = 3)

drawn independently per element, as rand_param_envs' ``RandomEnv.sample_tasks``. ``physics_model(task)``
is the family's mjx.Model with these fields replaced, so a ``vmap`` over tasks is a ``vmap`` over
physics models (one compiled program for every task of a meta-batch).

Contacts. Our models use explicit floor contact pairs (MJX speed rule), whose friction is the pair's
own, not the geoms'. rand_param_envs scales geom friction under MuJoCo's default contacts, where a
contact's friction is the element-wise max of its two geoms'; so a task's ``pair_friction`` is that
max of the scaled ``geom_friction`` of the pair's geoms, (slide, slide, spin, roll, roll), which with
unit multipliers is exactly the model's compiled pair friction.

Like rand_param_envs (which assigns ``model.body_mass`` etc. at run time) the constants MuJoCo
derives from these fields at compile time (``body_invweight0``, ``dof_invweight0``, ``body_subtreemass``)
keep their nominal values; so does the C-engine reference, which sets the same fields on an MjModel.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from metarl_jax.envs.mjx_base import check_positive_float, mjx
from metarl_jax.envs.planar import HopperBase, WalkerBase

# rand_param_envs: the base of each field's log-uniform multiplier.
SCALE_BASES = {"body_mass": 1.5, "body_inertia": 1.5, "dof_damping": 1.3, "geom_friction": 1.5}
TASK_FIELDS = (*SCALE_BASES, "pair_friction")


def pair_friction_from_geoms(geom_friction: jax.Array, pair_geom1: np.ndarray, pair_geom2: np.ndarray) -> jax.Array:
    """MuJoCo's contact mixing for explicit pairs: max of the two geoms' (slide, spin, roll) → [npair, 5]."""
    mixed = jnp.maximum(geom_friction[pair_geom1], geom_friction[pair_geom2])
    return jnp.stack([mixed[:, 0], mixed[:, 0], mixed[:, 1], mixed[:, 2], mixed[:, 2]], axis=-1)


class RandParamsTasks:
    """Mixin: tasks are scaled model parameters; ``physics_model`` puts them into the mjx.Model."""

    log_scale_limit: float

    def _setup_rand_params(self, log_scale_limit: float) -> None:
        self.log_scale_limit = check_positive_float(log_scale_limit, "log_scale_limit", self.name)
        model = self.mj_model
        self.nominal = {field: jnp.asarray(np.asarray(getattr(model, field)), jnp.float32) for field in SCALE_BASES}
        self.pair_geom1 = np.asarray(model.pair_geom1)
        self.pair_geom2 = np.asarray(model.pair_geom2)

    def scale_parameters(self, log_multipliers: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """The task of exponents u (per field, shaped like it): field = nominal × base^u."""
        task = {field: self.nominal[field] * SCALE_BASES[field] ** log_multipliers[field] for field in SCALE_BASES}
        task["pair_friction"] = pair_friction_from_geoms(task["geom_friction"], self.pair_geom1, self.pair_geom2)
        return task

    def sample_tasks(self, key: jax.Array, num_tasks: int) -> dict[str, jax.Array]:
        keys = jax.random.split(key, len(SCALE_BASES))
        limit = self.log_scale_limit
        exponents = {field: jax.random.uniform(k, (num_tasks, *self.nominal[field].shape), minval=-limit,
                                               maxval=limit) for field, k in zip(SCALE_BASES, keys)}
        return jax.vmap(self.scale_parameters)(exponents)

    def nominal_task(self) -> dict[str, jax.Array]:
        """The unscaled model as a task (every multiplier 1)."""
        return self.scale_parameters({field: jnp.zeros_like(value) for field, value in self.nominal.items()})

    def physics_model(self, task: Any) -> mjx.Model:
        return self.mjx_model.replace(**{field: task[field] for field in TASK_FIELDS})


class HopperRandParams(RandParamsTasks, HopperBase):
    name = "hopper_rand_params"

    def __init__(self, episode_length: int = 200, log_scale_limit: float = 3.0, frame_skip: int | None = None,
                 xml_path: str | None = None):
        super().__init__(episode_length, xml_path=xml_path, frame_skip=frame_skip)
        self._setup_body()
        self._setup_rand_params(log_scale_limit)


class Walker2dRandParams(RandParamsTasks, WalkerBase):
    name = "walker2d_rand_params"

    def __init__(self, episode_length: int = 200, log_scale_limit: float = 3.0, frame_skip: int | None = None,
                 xml_path: str | None = None):
        super().__init__(episode_length, xml_path=xml_path, frame_skip=frame_skip)
        self._setup_body()
        self._setup_rand_params(log_scale_limit)
