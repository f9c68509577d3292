"""Metrics writers: ``metrics.jsonl`` (one JSON object per logged step) and TensorBoard events.

``metrics.jsonl`` is append-only, so a resumed run never rewrites history; a
reader takes the last record of each step.
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


class MetricsWriter:
    def __init__(self, logdir: str, tensorboard: bool = True):
        os.makedirs(logdir, exist_ok=True)
        self.path = os.path.join(logdir, METRICS_FILE)
        self._file = open(self.path, "a")
        self._tb = None
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(logdir)

    def write(self, step: int, metrics: dict[str, Any]) -> None:
        record = {"step": int(step), **to_python(metrics)}
        self._file.write(json.dumps(record, sort_keys=True) + "\n")
        self._file.flush()
        if self._tb is not None:
            for k, v in record.items():
                if k != "step" and isinstance(v, float):
                    self._tb.add_scalar(k, v, int(step))

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


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
