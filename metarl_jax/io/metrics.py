"""Metrics writers: ``metrics.jsonl`` (one JSON object per logged step), TensorBoard events and,
optionally, Weights & Biases (``metarl_jax.io.wandb_logger``).

``metrics.jsonl`` is append-only, so a resumed run never rewrites history; a
reader takes the last record of each step. Every logger receives the same flat
dict of scalars; figures (PNG files) go to TensorBoard as images and to W&B as media.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from typing import Any

import numpy as np

METRICS_FILE = "metrics.jsonl"


def to_python(metrics: dict[str, Any]) -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        x = float(np.asarray(v))
        out[k] = x if math.isfinite(x) else str(x)
    return out


LOGGERS = ("tensorboard", "wandb")


def check_loggers(names: Iterable[str]) -> tuple[str, ...]:
    """The ``--logger`` list, validated: a subset of LOGGERS without repeats ("none" or empty: jsonl only)."""
    names = tuple(n.strip() for n in names if n.strip() and n.strip() != "none")
    unknown = [n for n in names if n not in LOGGERS]
    if unknown or len(set(names)) != len(names):
        raise ValueError(f"--logger must name distinct loggers of {list(LOGGERS)} (or none), got {list(names)}")
    if "wandb" in names:
        try:
            import wandb  # noqa: F401
        except ImportError:
            raise ValueError("--logger=wandb needs the wandb package: pip install 'metarl-jax[wandb]'") from None
    return names


def read_png(path: str) -> np.ndarray:
    """A PNG as uint8 RGB [H, W, 3]."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


class MetricsWriter:
    """``metrics.jsonl`` always; TensorBoard events unless ``tensorboard=False``; ``wandb``: a
    ``WandbLogger`` (or anything with ``log(step, scalars)``, ``log_images(step, {name: png})``, ``close()``)."""

    def __init__(self, logdir: str, tensorboard: bool = True, wandb: Any = None):
        os.makedirs(logdir, exist_ok=True)
        self.path = os.path.join(logdir, METRICS_FILE)
        self._file = open(self.path, "a")
        self._tb = None
        self._wandb = wandb
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(logdir)

    def write(self, step: int, metrics: dict[str, Any]) -> None:
        record = {"step": int(step), **to_python(metrics)}
        self._file.write(json.dumps(record, sort_keys=True) + "\n")
        self._file.flush()
        scalars = {k: v for k, v in record.items() if k != "step" and isinstance(v, float)}
        if self._tb is not None:
            for k, v in scalars.items():
                self._tb.add_scalar(k, v, int(step))
        if self._wandb is not None:
            self._wandb.log(int(step), scalars)

    def write_figures(self, step: int, figures: dict[str, str]) -> None:
        """Figures ``{tag: path to a PNG}``: TensorBoard images and W&B media at ``step``."""
        if self._tb is not None:
            for tag, path in figures.items():
                self._tb.add_image(tag, read_png(path), int(step), dataformats="HWC")
            self._tb.flush()
        if self._wandb is not None:
            self._wandb.log_images(int(step), figures)

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.close()


def read_metrics(path: str) -> list[dict[str, Any]]:
    """Records of a metrics.jsonl sorted by step, the last record of each step winning."""
    by_step: dict[int, dict[str, Any]] = {}
    if os.path.isdir(path):
        path = os.path.join(path, METRICS_FILE)
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                record = json.loads(line)
                by_step[int(record["step"])] = record
    return [by_step[s] for s in sorted(by_step)]


def column(records: Iterable[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    steps, values = [], []
    for r in records:
        if key in r and isinstance(r[key], (int, float)):
            steps.append(r["step"])
            values.append(r[key])
    return np.asarray(steps), np.asarray(values, dtype=float)
