"""Figures: meta-training curves (pre- vs post-update return) and adaptation curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

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


def plot_learning_curves(curves: Sequence[Mapping[str, Any]], path: str, title: str = "",
                         ylabel: str = "return") -> None:
    """Return against environment steps, one line per run (``label``, ``env_steps``, ``mean``) with its
    band ``low``..``high`` where given (Xu et al. Fig. 3)."""
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for curve in curves:
        x, mean = np.asarray(curve["env_steps"], float), np.asarray(curve["mean"], float)
        (line,) = ax.plot(x, mean, marker="o" if len(mean) <= 12 else None, ms=3, label=curve["label"])
        if curve.get("low") is not None and curve.get("high") is not None:
            ax.fill_between(x, np.asarray(curve["low"], float), np.asarray(curve["high"], float),
                            color=line.get_color(), alpha=0.2, lw=0)
    ax.set_xlabel("environment steps")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_adaptation_curves(curves: Mapping[str, Mapping[str, Any]], path: str, title: str = "",
                           ylabel: str = "return", xlabel: str = "adaptation steps") -> None:
    """Return after 0..K adaptation steps, one line per method/run with its 95% interval
    (``ci95_low``/``ci95_high``; older curve files without them: ± s.e.)."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for label, curve in curves.items():
        mean = np.asarray(curve["mean"])
        if curve.get("ci95_low") is not None and curve.get("ci95_high") is not None:
            low, high = np.asarray(curve["ci95_low"]), np.asarray(curve["ci95_high"])
        else:
            err = np.asarray(curve.get("stderr", np.zeros_like(mean)))
            low, high = mean - err, mean + err
        x = np.arange(len(mean))
        ax.plot(x, mean, marker="o", label=label)
        ax.fill_between(x, low, high, alpha=0.25)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xticks(np.arange(max(len(np.asarray(c["mean"])) for c in curves.values())))
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title or "meta-test adaptation")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---- meta-test figures (MAESN Figs. 6-9): data in, PNG out ---------------------------------------


def _draw_curves(ax, curves: Sequence[Mapping[str, Any]]) -> None:
    """One line per curve (``label``, ``mean``) with the band ``low``..``high`` where given; the x-axis is the
    curves' ``x_label`` (what their index counts: "adaptation iteration", PEARL's "trajectories of context")."""
    for curve in curves:
        mean = np.asarray(curve["mean"], dtype=float)
        x = np.arange(len(mean))
        (line,) = ax.plot(x, mean, marker="o" if len(mean) <= 12 else None, ms=3, label=curve["label"])
        if curve.get("low") is not None and curve.get("high") is not None:
            ax.fill_between(x, np.asarray(curve["low"], dtype=float), np.asarray(curve["high"], dtype=float),
                            color=line.get_color(), alpha=0.2, lw=0)
    ax.set_xlabel(" / ".join(sorted({str(c.get("x_label") or "adaptation iteration") for c in curves})))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def plot_method_comparison(curves: Sequence[Mapping[str, Any]], path: str, title: str = "",
                           ylabel: str = "return") -> None:
    """MAESN Fig. 6: return vs adaptation iteration on held-out tasks, mean and interval per method.

    Each curve: ``label``, ``mean`` [K + 1] and optionally ``low``/``high`` (the interval) and
    ``interval`` (what the band is, shown under the title).
    """
    fig, ax = plt.subplots(figsize=(6, 4.4))
    _draw_curves(ax, curves)
    ax.set_ylabel(ylabel)
    bands = sorted({str(c["interval"]) for c in curves if c.get("interval") and c.get("low") is not None})
    subtitle = f"\nbands: {'; '.join(bands)}" if bands else ""
    ax.set_title((title or "learning progress on novel tasks") + subtitle, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _draw_trajectories(ax, positions: np.ndarray, goals: np.ndarray | None, goal_radius: float | None) -> None:
    """Episodes [E, T, 2] as lines (start dot, end cross) over the goals (markers; with a few goals,
    also the sparse-reward discs: for many they merge into one band that hides the paths)."""
    from matplotlib.patches import Circle

    if goals is not None and len(goals):
        goals = np.asarray(goals, dtype=float)
        if goal_radius and len(goals) <= 12:
            for g in goals:
                ax.add_patch(Circle(g, goal_radius, color="tab:green", alpha=0.15, lw=0))
        ax.scatter(goals[:, 0], goals[:, 1], marker="*", s=40, c="tab:green", alpha=0.6, label="goals", zorder=3)
    colors = plt.get_cmap("viridis")(np.linspace(0.0, 1.0, max(len(positions), 1)))
    for episode, color in zip(np.asarray(positions, dtype=float), colors):
        ax.plot(episode[:, 0], episode[:, 1], color=color, lw=0.9, alpha=0.8)
        ax.plot(episode[-1, 0], episode[-1, 1], marker="x", color=color, ms=4)
    if len(positions):
        starts = np.asarray(positions, dtype=float)[:, 0]
        ax.scatter(starts[:, 0], starts[:, 1], s=8, c="k", zorder=4, label="start")
    ax.set_aspect("equal", adjustable="box")
    ax.grid(alpha=0.3)


def plot_exploration_trajectories(panels: Sequence[tuple[str, np.ndarray]], path: str,
                                  goals: np.ndarray | None = None, goal_radius: float | None = None,
                                  title: str = "") -> None:
    """MAESN Fig. 7: 2-D positions of exploration episodes, one panel per policy (same axes)."""
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 4.2), squeeze=False, sharex=True, sharey=True)
    for ax, (label, positions) in zip(axes[0], panels):
        _draw_trajectories(ax, positions, goals, goal_radius)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("x")
    axes[0, 0].set_ylabel("y")
    axes[0, 0].legend(fontsize=7, loc="best")
    fig.suptitle(title or "exploration before adaptation")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _draw_ellipses(ax, mean: np.ndarray, std: np.ndarray, colors, sigmas: Sequence[float] = (1.0, 2.0)) -> None:
    """Axis-aligned ellipses of diagonal Gaussians (mean [N, 2], std [N, 2]) at ``sigmas`` standard deviations."""
    from matplotlib.patches import Ellipse

    for m, s, color in zip(np.asarray(mean, dtype=float), np.asarray(std, dtype=float), colors):
        for k, sigma in enumerate(sigmas):
            ax.add_patch(Ellipse(m, 2 * sigma * s[0], 2 * sigma * s[1], fill=k == 0, facecolor=color,
                                 edgecolor=color, alpha=0.25 if k == 0 else 0.7, ls="-" if k == 0 else "--",
                                 lw=1.0))
        ax.plot(m[0], m[1], marker=".", color=color)


def plot_latent_ellipses(rows: Sequence[Mapping[str, Any]], path: str, title: str = "") -> None:
    """MAESN Fig. 8: latent distributions before (left) and after (right) adaptation, per task.

    Each row: ``label``, ``pre_mean``/``pre_std``/``post_mean``/``post_std`` [N, 2]. Filled
    ellipses are 1 σ, dashed 2 σ; a task has the same colour in both panels.
    """
    fig, axes = plt.subplots(len(rows), 2, figsize=(9, 4.3 * len(rows)), squeeze=False)
    for row_axes, row in zip(axes, rows):
        n = len(row["pre_mean"])
        colors = plt.get_cmap("hsv")(np.linspace(0.0, 1.0, n, endpoint=False))
        spans = []
        for ax, when in zip(row_axes, ("pre", "post")):
            mean, std = np.asarray(row[f"{when}_mean"], float), np.asarray(row[f"{when}_std"], float)
            _draw_ellipses(ax, mean, std, colors)
            spans.append(np.concatenate([mean - 2 * std, mean + 2 * std]))
            ax.set_title(f"{row['label']}: {'pre' if when == 'pre' else 'post'}-update", fontsize=10)
            ax.set_xlabel("z[0]")
            ax.set_ylabel("z[1]")
            ax.grid(alpha=0.3)
        span = np.concatenate(spans)
        lo, hi = span.min(axis=0), span.max(axis=0)
        pad = 0.05 * (hi - lo).max()
        for ax in row_axes:  # the same window left and right, so that the two panels compare directly
            ax.set_xlim(lo[0] - pad, hi[0] + pad)
            ax.set_ylim(lo[1] - pad, hi[1] + pad)
            ax.set_aspect("equal", adjustable="box")
    fig.suptitle(title or "latent distributions (1 σ filled, 2 σ dashed)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_noise_ablation(curves: Sequence[Mapping[str, Any]], panels: Sequence[tuple[str, np.ndarray]], path: str,
                        goals: np.ndarray | None = None, goal_radius: float | None = None, title: str = "",
                        ylabel: str = "return") -> None:
    """MAESN Fig. 9: adaptation with z ~ N(μ, σ) vs z fixed at μ, and the visitations of both."""
    n = len(panels)
    fig = plt.figure(figsize=(4.5 * (n + 1), 4.2))
    ax = fig.add_subplot(1, n + 1, 1)
    _draw_curves(ax, curves)
    ax.set_ylabel(ylabel)
    ax.set_title("adaptation", fontsize=10)
    first = None
    for i, (label, positions) in enumerate(panels):
        pax = fig.add_subplot(1, n + 1, i + 2, sharex=first, sharey=first)
        first = first or pax
        _draw_trajectories(pax, positions, goals, goal_radius)
        pax.set_title(label, fontsize=10)
    fig.suptitle(title or "role of structured noise")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
