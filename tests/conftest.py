"""Test configuration: CPU, JAX's persistent compilation cache, shared compiled fixtures."""

from __future__ import annotations

import os
import pathlib

os.environ.setdefault("JAX_PLATFORMS", "cpu")
ROOT = pathlib.Path(__file__).resolve().parents[1]
CACHE = os.environ.setdefault("METARL_COMPILATION_CACHE", str(ROOT / ".jax_cache"))

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_compilation_cache_dir", CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


@pytest.fixture(scope="session")
def repo_root() -> pathlib.Path:
    return ROOT


@pytest.fixture(scope="session")
def subprocess_env() -> dict[str, str]:
    """Environment for launcher subprocesses: CPU, the shared compilation cache, the repo on the path."""
    env = dict(os.environ)
    env["JAX_PLATFORMS"] = "cpu"
    env["METARL_COMPILATION_CACHE"] = CACHE
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env
