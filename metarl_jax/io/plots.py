"""Figures: meta-training curves (pre- vs post-update return) and adaptation curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from metarl_jax.io.metrics import column  # noqa: E402


def plot_training_curves(records: Sequence[dict[str, Any]], path: str, title: str = "") -> None:
    """Pre-update vs post-update return over meta-training iterations."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, kind in zip(axes, ("return", "sparse_return")):
        for key, label in ((f"train/pre_{kind}", "pre-update"), (f"train/post_{kind}", "post-update"),
                           (f"train/{kind}", "policy")):
            steps, values = column(records, key)
            if len(steps):
                ax.plot(steps, values, label=label)
        ax.set_xlabel("meta-iteration")
        ax.set_ylabel("dense return" if kind == "return" else "sparse return")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title or "meta-training")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_adaptation_curves(curves: Mapping[str, Mapping[str, Any]], path: str, title: str = "",
                           ylabel: str = "return") -> None:
    """Return after 0..K adaptation steps, one line (mean ± s.e.) per method/run."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for label, curve in curves.items():
        mean = np.asarray(curve["mean"])
        err = np.asarray(curve.get("stderr", np.zeros_like(mean)))
        x = np.arange(len(mean))
        ax.plot(x, mean, marker="o", label=label)
        ax.fill_between(x, mean - err, mean + err, alpha=0.25)
    ax.set_xlabel("adaptation steps")
    ax.set_ylabel(ylabel)
    ax.set_xticks(np.arange(max(len(np.asarray(c["mean"])) for c in curves.values())))
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title or "meta-test adaptation")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
