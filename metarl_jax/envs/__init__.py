"""Task families: ``make(name, **kwargs)``, ``names()``, and the protocol they follow."""

from __future__ import annotations

from typing import Any, Callable

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

_REGISTRY: dict[str, Callable[..., Any]] = {
    "point_corner": PointCorner,
    "point_semicircle": PointSemicircle,
}
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
]
