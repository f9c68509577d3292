"""The one timing helper every benchmark uses, plus device, versions and memory figures.

* ``time_call``: median of ``repeats`` runs after ``warmup`` runs, each blocked until
  ready, with the spread (min, max and inter-quartile range) reported beside it.
* ``compile_program``: trace + lower, then ``.compile()``, timed separately, so that
  compile time never mixes with run time.
* ``program_memory`` (XLA's own estimate of one compiled program's peak) and
  ``peak_memory`` (GPU: ``memory_stats()['peak_bytes_in_use']``; CPU: the process's
  peak resident set size, which only grows during a run).
* ``environment``: device, library versions, date, persistent compilation cache.
"""

from __future__ import annotations

import datetime
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from importlib import metadata
from typing import Any

import jax


def summarize(times: list[float]) -> dict[str, float]:
    """Median, min, max and inter-quartile range of a list of seconds."""
    ordered = sorted(times)
    if len(ordered) >= 2:
        q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    else:
        q1 = q3 = ordered[0]
    return {"median_s": statistics.median(ordered), "min_s": ordered[0], "max_s": ordered[-1],
            "q1_s": q1, "q3_s": q3, "repeats": len(ordered)}


def time_call(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> dict[str, float]:
    """Median (and spread) of the wall time of ``fn()``, each call blocked until ready."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"time_call: repeats must be >= 1 and warmup >= 0, got {repeats}, {warmup}")
    for _ in range(warmup):
        jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return summarize(times)


def time_iterations(step: Callable[[Any], tuple[Any, Any]], state: Any, iterations: int, repeats: int
                    ) -> tuple[dict[str, float], float]:
    """Times ``iterations`` consecutive calls of a compiled ``step`` from ``state`` (already warm):
    the timing summary and the median seconds per iteration. The loop is the benchmark's host loop
    over separate program calls, as a launcher runs them, not a loop inside a program."""

    def run_iterations():
        current = state
        for _ in range(iterations):
            current, _ = step(current)
        return current

    timing = time_call(run_iterations, repeats=repeats, warmup=0)
    return timing, timing["median_s"] / iterations


def time_compile(lowered: Any) -> float:
    """Seconds for XLA to compile an already-lowered program (``.lower(...)``)."""
    start = time.perf_counter()
    lowered.compile()
    return time.perf_counter() - start


def compile_program(lower: Callable[[], Any]) -> tuple[Any, dict[str, float]]:
    """``lower()`` then ``.compile()``: (compiled executable, {lower_s, compile_s})."""
    start = time.perf_counter()
    lowered = lower()
    lowered_at = time.perf_counter()
    compiled = lowered.compile()
    done = time.perf_counter()
    return compiled, {"lower_s": lowered_at - start, "compile_s": done - lowered_at}


def program_memory(compiled: Any) -> int | None:
    """XLA's estimate of the peak bytes one compiled program needs (arguments, outputs, temporaries)."""
    try:
        stats = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - not every backend implements it
        return None
    if stats is None:
        return None
    peak = getattr(stats, "peak_memory_in_bytes", None)
    if peak:
        return int(peak)
    total = (stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes
             - stats.alias_size_in_bytes)
    return int(total) if total > 0 else None


def peak_memory() -> dict[str, Any]:
    """Peak memory so far: device peak on accelerators, process peak RSS on CPU."""
    device = jax.devices()[0]
    stats = None
    try:
        stats = device.memory_stats()
    except Exception:  # noqa: BLE001
        stats = None
    if stats and "peak_bytes_in_use" in stats:
        return {"peak_bytes": int(stats["peak_bytes_in_use"]), "peak_kind": "device peak_bytes_in_use"}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 if sys.platform == "darwin" else 1024  # Linux reports KiB
    return {"peak_bytes": int(rss * scale), "peak_kind": "process peak RSS (cumulative)"}


def version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def compilation_cache_dir() -> str | None:
    """The persistent compilation cache in use (compile times may then be cache hits)."""
    try:
        return jax.config.jax_compilation_cache_dir or None
    except AttributeError:
        return None


def environment() -> dict[str, Any]:
    """Device, library versions and date, recorded beside every number."""
    device = jax.devices()[0]
    return {
        "device": f"{device.platform}:{getattr(device, 'device_kind', '')} x{jax.device_count()}",
        "platform": device.platform,
        "device_count": jax.device_count(),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": version("jaxlib"),
        "mujoco": version("mujoco"),
        "mujoco-mjx": version("mujoco-mjx"),
        "brax": version("brax"),
        "date": datetime.date.today().isoformat(),
        "compilation_cache": compilation_cache_dir(),
    }
