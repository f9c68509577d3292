"""Benchmark records as JSON (no jax import, so a run-book section's subprocess starts fast)."""

from __future__ import annotations

from typing import Any


def clean(value: Any) -> Any:
    """JSON-ready: tuples to lists, None-valued keys dropped, numpy/jax scalars to Python numbers."""
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        return value.item()
    return value
