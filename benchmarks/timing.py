"""Timing helpers shared by the benchmarks: medians after warm-up, device and versions."""

from __future__ import annotations

import datetime
import platform
import statistics
import time
from collections.abc import Callable
from importlib import metadata
from typing import Any

import jax


def time_call(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> dict[str, float]:
    """Median (and spread) of wall time of ``fn()``, each call blocked until ready."""
    for _ in range(warmup):
        jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "repeats": repeats}


def time_compile(lowered: Any) -> float:
    """Seconds for XLA to compile an already-lowered program (``.lower(...)``)."""
    t0 = time.perf_counter()
    lowered.compile()
    return time.perf_counter() - t0


def environment() -> dict[str, str]:
    """Device, library versions and date, recorded beside every number."""

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    device = jax.devices()[0]
    return {
        "device": f"{device.platform}:{getattr(device, 'device_kind', '')} x{jax.device_count()}",
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "mujoco": version("mujoco"),
        "mujoco-mjx": version("mujoco-mjx"),
        "date": datetime.date.today().isoformat(),
    }
