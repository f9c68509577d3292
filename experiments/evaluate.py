r"""Meta-test a trained run and draw its figures.

    python -m experiments.evaluate --logdir=runs/x [--split=val] [--reward=sparse]

Restores the latest checkpoint, measures the adaptation curve (return after
0..K adaptation steps) on the fixed task split, and writes into ``logdir/eval``:
``adaptation_curve.json``/``.png`` and ``training_curves.png`` (pre- vs
post-update return over meta-training). Prints both as a table. For a run trained
with ``--num_seeds`` every seed is evaluated (one vmapped program, the same
evaluation key for every seed) and the curve is the mean over seeds with its 95%
t-interval; the JSON also holds each seed's curve.
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
    with open(os.path.join(out_dir, "adaptation_curve.json"), "w") as fh:
        json.dump(result, fh, indent=2)
    label = f"{spec.algo} ({spec.env}, step {step}" + (f", {spec.num_seeds} seeds)" if spec.num_seeds > 1 else ")")
    plot_adaptation_curves({label: curve}, os.path.join(out_dir, "adaptation_curve.png"),
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
    print(f"\nwrote {out_dir}/adaptation_curve.json, adaptation_curve.png"
          + (", training_curves.png" if records else ""))
    return 0


def cli(argv: list[str]) -> int:
    """Parses ``argv`` (``argv[0]`` is the program name) and runs; returns the exit status (2: bad input)."""
    return launch.cli(run, FLAGS, argv, __doc__)


if __name__ == "__main__":
    sys.exit(cli(sys.argv))
