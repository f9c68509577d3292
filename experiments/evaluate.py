r"""Meta-test a trained run and draw its figures.

    python -m experiments.evaluate --logdir=runs/x [--split=val] [--reward=sparse] [--video]

Restores the latest checkpoint, measures the adaptation curve (return after
0..K adaptation steps) on the fixed task split, and writes into ``logdir/eval``:
``adaptation_curve.json``/``.png`` (``--curve_name`` renames them) and ``training_curves.png`` (pre- vs
post-update return over meta-training). Prints both as a table. For a run trained
with ``--num_seeds`` every seed is evaluated (one vmapped program, the same
evaluation key for every seed) and the curve is the mean over seeds with its 95%
t-interval; the JSON also holds each seed's curve.

``--video`` (MJX families; ``pip install 'metarl-jax[video]'``) also writes
``eval/videos/<split>_task<i>.mp4`` for the first ``--video_tasks`` tasks of the split:
the meta-test's adaptation stages side by side (before adaptation, after 1..K steps;
RL²: the episodes of a trial), one recorded episode each, the goal as a red marker.
Rendering is headless (EGL, else OSMesa); without imageio-ffmpeg the videos are GIFs.
A run with several seeds is filmed with its first seed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Any

from absl import flags

from experiments import common as launch

# Own flag set, so that train, evaluate and the reproduction harness run in one process.
FLAGS = flags.FlagValues()
flags.DEFINE_string("logdir", None, "Run directory written by experiments.train.", flag_values=FLAGS)
flags.DEFINE_string("split", "val", "Task split to meta-test on.", flag_values=FLAGS)
flags.DEFINE_string("reward", None, "'dense' or 'sparse' (default: the config's eval_reward).", flag_values=FLAGS)
flags.DEFINE_integer("num_tasks", None, "Number of tasks of the split (default: config eval_num_tasks).",
                     flag_values=FLAGS)
flags.DEFINE_integer("adaptation_steps", None, "Adaptation steps K (default: config eval_adaptation_steps).",
                     flag_values=FLAGS)
flags.DEFINE_integer("seed", 0, "Evaluation seed.", flag_values=FLAGS)
flags.DEFINE_string("curve_name", "adaptation_curve", "Stem of the files written into logdir/eval (e.g. "
                    "adaptation_curve_ood, so that meta-tests on several splits sit side by side).",
                    flag_values=FLAGS)
flags.DEFINE_bool("video", False, "Also write a video per task of the meta-test's adaptation stages (MJX families).",
                  flag_values=FLAGS)
flags.DEFINE_integer("video_tasks", 3, "--video: how many tasks of the split to film.", flag_values=FLAGS)
flags.DEFINE_integer("video_width", 320, "--video: width of one panel in pixels.", flag_values=FLAGS)
flags.DEFINE_integer("video_height", 240, "--video: height of one panel in pixels.", flag_values=FLAGS)
MAX_PANELS = 4  # stages drawn side by side: the first, the last and evenly spaced ones between
MAX_FPS = 30


def training_table(records: list[dict[str, Any]], rows: int = 6) -> str:
    keys = [k for k in ("train/pre_return", "train/post_return", "train/return") if any(k in r for r in records)]
    if not records or not keys:
        return "(no training metrics)"
    idx = sorted({round(i * (len(records) - 1) / max(rows - 1, 1)) for i in range(rows)})
    lines = ["meta-iteration " + " ".join(f"{k.split('/')[1]:>14}" for k in keys)]
    for i in idx:
        r = records[i]
        lines.append(f"{r['step']:>14} " + " ".join(f"{r.get(k, float('nan')):>14.2f}" for k in keys))
    return "\n".join(lines)


def curve_table(curve: dict[str, Any]) -> str:
    x_label = curve.get("x_label", "adaptation step")  # what k counts (PEARL: trajectories of context)
    width = max(15, len(x_label))
    lines = [f"{x_label:>{width}} {'return':>13}   (± s.e.)     95% interval"]
    for k, (m, s, lo, hi) in enumerate(zip(curve["mean"], curve["stderr"], curve["ci95_low"], curve["ci95_high"])):
        lines.append(f"{k:>{width}} {m:>13.2f}   ({s:.2f})    [{lo:.2f}, {hi:.2f}]")
    return "\n".join(lines)


def run(f: Any) -> int:
    import jax

    from metarl_jax.io.metrics import read_metrics
    from metarl_jax.io.plots import plot_adaptation_curves, plot_training_curves

    if not f.curve_name or any(c in f.curve_name for c in "/\\."):
        raise ValueError(f"--curve_name must be a plain file stem (no '/', '\\' or '.'), got {f.curve_name!r}")
    spec = launch.RunSpec.from_logdir(f.logdir)
    fields = {field.name for field in dataclasses.fields(spec.config)}
    changes = {}
    for flag, field, value in (("reward", "eval_reward", f.reward), ("num_tasks", "eval_num_tasks", f.num_tasks),
                               ("adaptation_steps", "eval_adaptation_steps", f.adaptation_steps)):
        if value is None:
            continue
        if field not in fields:  # the single-task learners (ddpg, sac, teacher_ddpg) neither adapt nor relabel
            raise ValueError(f"--{flag}: {spec.algo}'s config has no field {field!r}; it evaluates its policy "
                             f"as it is (its meta-test fields: {sorted(n for n in fields if n.startswith('eval_'))})")
        changes[field] = value
    spec.config = spec.config.replace(**changes)
    reward = getattr(spec.config, "eval_reward", "dense")  # single-task families have one (dense) reward
    family, algo = spec.build()
    tasks = family.task_set(f.split, spec.config.eval_num_tasks)  # unknown split -> ValueError
    video = f.video and check_video(f, spec, family, algo)
    ts = launch.load_checkpoint(f.logdir, spec, algo)

    key = jax.random.key(f.seed)
    if spec.num_seeds == 1:
        curve = algo.evaluate(ts, tasks, key).to_dict()
    else:
        curve = algo.evaluate_seeds(ts, tasks, jax.numpy.stack([key] * spec.num_seeds)).to_dict()
    step = int(jax.numpy.ravel(ts.step)[0])
    out_dir = os.path.join(f.logdir, "eval")
    os.makedirs(out_dir, exist_ok=True)
    result = {"algo": spec.algo, "env": spec.env, "split": f.split, "reward": reward,
              "num_tasks": spec.config.eval_num_tasks, "adaptation_steps": len(curve["mean"]) - 1,  # K: the curve's
              "seed": f.seed, "step": step, "x_label": algo.curve_x_label, **curve}
    with open(os.path.join(out_dir, f"{f.curve_name}.json"), "w") as fh:
        json.dump(result, fh, indent=2)
    label = f"{spec.algo} ({spec.env}, step {step}" + (f", {spec.num_seeds} seeds)" if spec.num_seeds > 1 else ")")
    plot_adaptation_curves({label: curve}, os.path.join(out_dir, f"{f.curve_name}.png"),
                           title=f"meta-test on {f.split} ({reward} reward)", ylabel=f"{reward} return",
                           xlabel=algo.curve_x_label)
    records = read_metrics(f.logdir) if os.path.exists(os.path.join(f.logdir, "metrics.jsonl")) else []
    if records:
        plot_training_curves(records, os.path.join(out_dir, "training_curves.png"), title=label)

    print(f"\n{label}: meta-training (dense return per episode)")
    print(training_table(records))
    print(f"\nmeta-test on {jax.tree.leaves(tasks)[0].shape[0]} {f.split} tasks, {reward} reward"
          + (f", mean over {spec.num_seeds} seeds" if spec.num_seeds > 1 else ""))
    print(curve_table({**curve, "x_label": algo.curve_x_label}))
    print(f"\nwrote {out_dir}/{f.curve_name}.json, {f.curve_name}.png"
          + (", training_curves.png" if records else ""))
    if video:
        seed_ts = ts if spec.num_seeds == 1 else jax.tree.map(lambda x: x[0], ts)
        paths = write_videos(f, family, algo, seed_ts, tasks, jax.random.fold_in(key, 1), out_dir)
        print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def check_video(f: Any, spec: Any, family: Any, algo: Any) -> bool:
    """Before anything compiles: can this run be filmed? (False with a note for families without an MJCF.)"""
    from metarl_jax.algos.base import Algorithm
    from metarl_jax.io.video import check_writer

    if not hasattr(family, "mj_model"):
        print(f"--video: {spec.env} has no MuJoCo model to render; its trajectory figures serve instead: "
              f"python -m experiments.figures trajectories --logdirs={f.logdir} --out={f.logdir}/eval",
              file=sys.stderr)
        return False
    if type(algo)._record_stages is Algorithm._record_stages:
        raise ValueError(f"--video: {spec.algo} does not record its meta-test for videos yet")
    for flag in ("video_tasks", "video_width", "video_height"):
        if getattr(f, flag) < 1:
            raise ValueError(f"--{flag} must be >= 1, got {getattr(f, flag)}")
    if f.video_tasks > spec.config.eval_num_tasks:
        raise ValueError(f"--video_tasks={f.video_tasks}: the split holds {spec.config.eval_num_tasks} tasks "
                         "(--num_tasks)")
    check_writer()  # imageio missing -> ValueError naming the extra
    return True


def write_videos(f: Any, family: Any, algo: Any, ts: Any, tasks: Any, key: Any, out_dir: str) -> list:
    """Films the first ``--video_tasks`` tasks: their adaptation stages side by side, one file each."""
    import jax
    import numpy as np

    from experiments.figures import goal_radius
    from metarl_jax.io.video import VideoJob, render_videos

    filmed = jax.tree.map(lambda x: x[:f.video_tasks], tasks)
    recording = algo.record_adaptation(ts, filmed, key)
    num_stages = len(recording.labels)
    stages = sorted({round(i * (num_stages - 1) / (MAX_PANELS - 1)) for i in range(MAX_PANELS)}) \
        if num_stages > MAX_PANELS else list(range(num_stages))
    stride = max(1, int(np.ceil(1.0 / (getattr(family, "dt", 1.0 / MAX_FPS) * MAX_FPS))))
    fps = 1.0 / (getattr(family, "dt", 1.0 / MAX_FPS) * stride)
    jobs = []
    for i in range(f.video_tasks):
        task = jax.tree.map(lambda x: x[i], filmed)
        marker = family.goal_marker(task) if callable(getattr(family, "goal_marker", None)) else None
        labels = [f"{recording.labels[s]}: return {recording.returns[i, s]:.1f}" for s in stages]
        jobs.append(VideoJob(os.path.join(out_dir, "videos", f"{f.split}_task{i}.mp4"),
                             recording.qpos[i, stages, ::stride], labels,
                             None if marker is None else np.asarray(marker, np.float64), goal_radius(family)))
    return render_videos(family.mj_model, jobs, f.video_width, f.video_height, fps)


def cli(argv: list[str]) -> int:
    """Parses ``argv`` (``argv[0]`` is the program name) and runs; returns the exit status (2: bad input)."""
    return launch.cli(run, FLAGS, argv, __doc__)


if __name__ == "__main__":
    sys.exit(cli(sys.argv))
