"""Packaging: the wheel that ``python -m build`` makes carries the MJCF assets and an SPDX license."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ASSETS = sorted(p.name for p in (ROOT / "metarl_jax" / "envs" / "assets").glob("*.xml"))


def test_license_is_an_spdx_string():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"  # PEP 639; the {text = ...} table is deprecated


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(ROOT)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    wheels = list(out.glob("metarl_jax-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_carries_the_mjcf_assets_and_license(wheel):
    assert len(ASSETS) >= 9
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = next(archive.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    missing = [a for a in ASSETS if f"metarl_jax/envs/assets/{a}" not in names]
    assert not missing, f"the wheel lacks the assets {missing}"
    assert {"metarl_jax/envs/mjx_base.py", "experiments/train.py", "experiments/evaluate.py"} <= names
    assert "License-Expression: Apache-2.0" in metadata
    assert "Provides-Extra: video" in metadata and "Provides-Extra: wandb" in metadata


@pytest.mark.slow
def test_wheel_installs_in_a_fresh_virtualenv(wheel, tmp_path):
    """pip installs the wheel into a new virtualenv (no dependencies: they are PyPI's) and the assets
    land next to the installed package, where ``mjx_base.ASSET_DIR`` looks for them."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)],
                             capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-2000:]
    probe = ("import importlib.util, pathlib; spec = importlib.util.find_spec('metarl_jax'); "
             f"root = pathlib.Path(spec.origin).parent; assert root.is_relative_to({str(env_dir)!r}), root; "
             "print(sorted(p.name for p in (root / 'envs' / 'assets').glob('*.xml')))")
    result = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, timeout=60,
                            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == str(ASSETS)
