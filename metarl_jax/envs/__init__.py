"""Task families: ``make(name, **kwargs)``, ``names()``, and the protocol they follow.

MJX families are registered by import path and imported on first use, so that
point-navigation runs (and every launcher's start-up) never load MuJoCo.

A user's own family needs no registration: ``make("package.module:factory")`` imports
it, and so does ``make("path/to/file.py:factory")`` (``--env=`` of the launchers);
``factory(**kwargs)`` returns the family, which is checked against the protocol
(``validate_family``) before anything compiles.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
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


def is_import_path(name: str) -> bool:
    """True for ``module:factory`` / ``file.py:factory`` names (a user's family), False for registry names."""
    return ":" in name


def normalize(name: str) -> str:
    """The name to record in config.json: a ``file.py:factory`` path made absolute (so that a resume
    from another directory finds the file), anything else unchanged."""
    if is_import_path(name):
        target, attribute = name.rsplit(":", 1)
        if target.endswith(".py"):
            return f"{os.path.abspath(os.path.expanduser(target))}:{attribute}"
    return name


def _import_file(path: str) -> Any:
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.isfile(path):
        raise ValueError(f"--env: no Python file {path!r}")
    # One module per file (its absolute path hashed into the name), imported once per process.
    digest = hashlib.sha1(path.encode()).hexdigest()[:10]
    module_name = f"metarl_jax_user_env_{os.path.splitext(os.path.basename(path))[0]}_{digest}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception:
        del sys.modules[module_name]
        raise
    return module


def load_factory(name: str) -> Callable[..., Any]:
    """The factory named by ``package.module:factory`` or ``path/to/file.py:factory``."""
    target, _, attribute = name.rpartition(":")
    if not target or not attribute:
        raise ValueError(f"--env {name!r}: an import path has the form package.module:factory or "
                         "path/to/file.py:factory")
    if target.endswith(".py") or os.sep in target:
        module = _import_file(target)
    else:
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as error:
            raise ValueError(f"--env {name!r}: cannot import module {target!r} ({error}); is it on the "
                             "Python path? (a file is named path/to/file.py:factory)") from None
    factory = getattr(module, attribute, None)
    if factory is None:
        public = sorted(n for n in vars(module) if not n.startswith("_") and callable(getattr(module, n)))
        raise ValueError(f"--env {name!r}: {target} has no attribute {attribute!r}; its callables are {public}")
    if not callable(factory):
        raise ValueError(f"--env {name!r}: {attribute!r} is a {type(factory).__name__}, not a callable that "
                         "returns a task family")
    return factory


def make(name: str, **kwargs: Any):
    """Builds the task family ``name``: a registered name, or a user's ``package.module:factory`` /
    ``path/to/file.py:factory``. Unknown names, unknown keyword arguments and objects that do not
    follow the task-family protocol raise ValueError (before anything is compiled)."""
    if is_import_path(name):
        factory = load_factory(name)
    elif name not in _REGISTRY:
        raise ValueError(f"unknown env {name!r}; valid envs are {names()}, or a family of your own as "
                         "package.module:factory or path/to/file.py:factory")
    else:
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
    "is_import_path",
    "load_factory",
    "make",
    "names",
    "normalize",
    "register",
    "time_limit",
    "validate_family",
    *sorted(_LAZY),
]
