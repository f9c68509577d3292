"""Task families: ``make(name, **kwargs)``, ``names()``, and the protocol they follow.

MJX families are registered by import path and imported on first use, so that
point-navigation runs (and every launcher's start-up) never load MuJoCo.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from metarl_jax.envs.base import (
    SPLIT_SEEDS,
    TASKS_PER_SPLIT,
    State,
    TaskFamily,
    check_kwargs,
    time_limit,
    validate_family,
)
from metarl_jax.envs.brax_adapter import BraxFamily, from_brax
from metarl_jax.envs.point import PointCorner, PointSemicircle

# Lazily imported classes: public name -> "module:attribute".
_LAZY = {
    "MjxFamily": "metarl_jax.envs.mjx_base:MjxFamily",
    "load_mj_model": "metarl_jax.envs.mjx_base:load_mj_model",
    "Wheeled": "metarl_jax.envs.wheeled:Wheeled",
    "Reacher2": "metarl_jax.envs.reacher:Reacher2",
    "Reacher4": "metarl_jax.envs.reacher:Reacher4",
    "AntGoal": "metarl_jax.envs.ant:AntGoal",
    "BlockPush": "metarl_jax.envs.block_push:BlockPush",
    "CheetahVel": "metarl_jax.envs.locomotion:CheetahVel",
    "CheetahDir": "metarl_jax.envs.locomotion:CheetahDir",
    "AntVel": "metarl_jax.envs.locomotion:AntVel",
    "AntDir": "metarl_jax.envs.locomotion:AntDir",
    "Pendulum": "metarl_jax.envs.control_suite:Pendulum",
    "InvertedPendulum": "metarl_jax.envs.control_suite:InvertedPendulum",
    "InvertedDoublePendulum": "metarl_jax.envs.control_suite:InvertedDoublePendulum",
    "Hopper": "metarl_jax.envs.control_suite:Hopper",
    "HalfCheetah": "metarl_jax.envs.control_suite:HalfCheetah",
    "Reacher": "metarl_jax.envs.control_suite:Reacher",
    # dynamics-varying and walker families (MAME, ProMP, PEARL)
    "Walker2dDir": "metarl_jax.envs.planar:Walker2dDir",
    "HopperRandParams": "metarl_jax.envs.rand_params:HopperRandParams",
    "Walker2dRandParams": "metarl_jax.envs.rand_params:Walker2dRandParams",
}

_REGISTRY: dict[str, Callable[..., Any] | str] = {
    "point_corner": PointCorner,
    "point_semicircle": PointSemicircle,
    # MJX families (metarl_jax/envs/assets/*.xml)
    "wheeled": "Wheeled",
    "reacher2": "Reacher2",
    "reacher4": "Reacher4",
    "ant_goal": "AntGoal",
    "block_push": "BlockPush",
    "cheetah_vel": "CheetahVel",
    "cheetah_dir": "CheetahDir",
    "ant_vel": "AntVel",
    "ant_dir": "AntDir",
    # single-task control suite
    "pendulum": "Pendulum",
    "inverted_pendulum": "InvertedPendulum",
    "inverted_double_pendulum": "InvertedDoublePendulum",
    "hopper": "Hopper",
    "half_cheetah": "HalfCheetah",
    "reacher": "Reacher",
    # dynamics-varying and walker families (MAME Fig. 2, ProMP, PEARL)
    "walker2d_dir": "Walker2dDir",
    "hopper_rand_params": "HopperRandParams",
    "walker2d_rand_params": "Walker2dRandParams",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attribute = _LAZY[name].split(":")
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def register(name: str, factory: Callable[..., Any], *, overwrite: bool = False) -> None:
    """Adds a family factory under ``name`` so that ``make`` and the launchers find it."""
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"envs.register: {name!r} is already registered")
    _REGISTRY[name] = factory


def names() -> list[str]:
    """All registered family names."""
    return sorted(_REGISTRY)


def make(name: str, **kwargs: Any):
    """Builds the task family ``name``; unknown names or keyword arguments raise ValueError."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown env {name!r}; valid envs are {names()}")
    factory = _REGISTRY[name]
    if isinstance(factory, str):
        factory = __getattr__(factory)
    check_kwargs(factory, kwargs, f"envs.make({name!r})")
    family = factory(**kwargs)
    validate_family(family)
    return family


__all__ = [
    "SPLIT_SEEDS",
    "TASKS_PER_SPLIT",
    "BraxFamily",
    "PointCorner",
    "PointSemicircle",
    "State",
    "TaskFamily",
    "from_brax",
    "make",
    "names",
    "register",
    "time_limit",
    "validate_family",
    *sorted(_LAZY),
]
