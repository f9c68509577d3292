r"""Meta-training launcher.

    python -m experiments.train --algo=maml --env=point_corner --preset=smoke \
        --num_steps=200 --seed=0 --logdir=runs/x [--override key=value ...]

Writes ``config.json``, ``metrics.jsonl``, TensorBoard events and orbax
checkpoints under ``checkpoints/`` into the logdir; at every meta-test the adaptation
curve, and at the end the training curves, as PNGs under ``figures/`` (logged to
TensorBoard as images). ``--logger=tensorboard,wandb`` also logs the metrics and
figures to Weights & Biases (``pip install 'metarl-jax[wandb]'``; ``WANDB_MODE=offline``
works without an account). Running the same command on
an existing logdir resumes from its latest checkpoint. Bad input ends with a
one-line ``error: ...`` on stderr and exit status 2; nothing written is deleted.

``--num_seeds=N`` trains seeds seed, ..., seed + N - 1 as one XLA program (vmapped
over a seed axis; seed k equals its own single-seed run). ``metrics.jsonl`` then holds
the mean over seeds (meta-test: with its 95% t-interval), ``seeds/seed_<k>/`` each
seed's own metrics and TensorBoard events, and each checkpoint all seeds at once.

Multi-host: start the same command on every host with ``--coordinator_address=host:port
--num_processes=P --process_id=i`` (or the METARL_COORDINATOR / METARL_NUM_PROCESSES /
METARL_PROCESS_ID environment variables). The task mesh then spans every process's
devices; process 0 writes config and metrics, all processes take part in checkpoints
(orbax), so the logdir must be on a filesystem every host sees.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from absl import flags

from experiments import common as launch

# Own flag set, so that train, evaluate and the reproduction harness run in one process.
FLAGS = flags.FlagValues()
flags.DEFINE_string("algo", "maml", "Algorithm; see metarl_jax.algos.names().", flag_values=FLAGS)
flags.DEFINE_string("env", "point_corner", "Task family: a name of metarl_jax.envs.names(), or your own family "
                    "as package.module:factory or path/to/file.py:factory (factory(**env_kwargs) returns it).",
                    flag_values=FLAGS)
flags.DEFINE_string("preset", None, "Config preset; default: the env's preset if the algo has one, else 'paper'.",
                    flag_values=FLAGS)
flags.DEFINE_integer("num_steps", 200, "Total meta-iterations (a resumed run continues up to this).", flag_values=FLAGS)
flags.DEFINE_integer("seed", 0, "Random seed (the first seed when --num_seeds > 1).", flag_values=FLAGS)
flags.DEFINE_integer("num_seeds", 1, "Independent seeds trained as one vmapped program.", flag_values=FLAGS)
flags.DEFINE_string("logdir", None, "Run directory (created; resumed if it holds a run).", flag_values=FLAGS)
flags.DEFINE_multi_string("override", [], "Config override key=value (repeatable).", flag_values=FLAGS)
flags.DEFINE_multi_string("env_kwarg", [], "Task-family keyword argument key=value (repeatable).", flag_values=FLAGS)
flags.DEFINE_integer("log_every", 10, "Meta-iterations per compiled chunk and metrics flush.", flag_values=FLAGS)
flags.DEFINE_integer("checkpoint_every", 50, "Checkpoint interval in meta-iterations (rounded up to chunks).",
                     flag_values=FLAGS)
flags.DEFINE_integer("eval_every", 0, "Meta-test interval in meta-iterations (0: only at the end).", flag_values=FLAGS)
flags.DEFINE_integer("num_devices", None, "Devices in the task mesh (default: all).", flag_values=FLAGS)
flags.DEFINE_integer("max_checkpoints", None,
                     "Keep at most this many of the checkpoints this run writes (default: all); checkpoints "
                     "of earlier runs in the logdir are never deleted.", flag_values=FLAGS)
flags.DEFINE_integer("resume_step", None,
                     "Resume from this checkpoint instead of the latest (e.g. when the latest is corrupted); "
                     "later checkpoints are moved to checkpoints_abandoned/, never deleted.", flag_values=FLAGS)
flags.DEFINE_list("eval_splits", ["val"], "Task splits to meta-test on; 'val' logs eval/..., any other split "
                  "eval/<split>/... (e.g. val,ood for TESP's out-of-distribution split).", flag_values=FLAGS)
flags.DEFINE_list("logger", ["tensorboard"], "Where metrics and figures go besides metrics.jsonl: tensorboard, "
                  "wandb (comma-separated; 'none': metrics.jsonl only).", flag_values=FLAGS)
flags.DEFINE_string("wandb_project", "metarl_jax", "--logger=wandb: the W&B project.", flag_values=FLAGS)
flags.DEFINE_string("wandb_entity", None, "--logger=wandb: the W&B entity (default: W&B's, e.g. $WANDB_ENTITY).",
                    flag_values=FLAGS)
flags.DEFINE_bool("figures", True, "Draw the meta-test adaptation curves and, at the end, the training curves "
                  "into figures/ and log them as images.", flag_values=FLAGS)
flags.DEFINE_bool("progress", True, "Show a tqdm progress bar.", flag_values=FLAGS)
flags.DEFINE_string("coordinator_address", None, "Multi-host: host:port of process 0 (or $METARL_COORDINATOR).",
                    flag_values=FLAGS)
flags.DEFINE_integer("num_processes", None, "Multi-host: number of processes (or $METARL_NUM_PROCESSES).",
                     flag_values=FLAGS)
flags.DEFINE_integer("process_id", None, "Multi-host: this process's index (or $METARL_PROCESS_ID).", flag_values=FLAGS)


def check_flags(f: Any) -> None:
    """The launcher's own flags, before anything is built or written (errors name the flag)."""
    for name in ("num_steps", "log_every", "checkpoint_every"):
        if getattr(f, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(f, name)}")
    if f.eval_every < 0:
        raise ValueError(f"--eval_every must be >= 0 (0: meta-test at the end only), got {f.eval_every}")
    if f.max_checkpoints is not None and f.max_checkpoints < 1:
        raise ValueError(f"--max_checkpoints must be >= 1 or unset (keep all), got {f.max_checkpoints}")
    if f.resume_step is not None and f.resume_step < 0:
        raise ValueError(f"--resume_step must be a checkpoint step >= 0, got {f.resume_step}")
    if not f.eval_splits or len(set(f.eval_splits)) != len(f.eval_splits):
        raise ValueError(f"--eval_splits must name distinct splits, got {f.eval_splits}")
    from metarl_jax.io.metrics import check_loggers

    check_loggers(f.logger)


def run(argv_flags: Any) -> int:
    import jax
    import numpy as np

    from metarl_jax import parallel
    from metarl_jax.envs.base import check_split
    from metarl_jax.io.checkpoints import Checkpointer

    # Before anything touches a device: join the other processes (no-op for a single process).
    parallel.initialize_distributed(argv_flags.coordinator_address, argv_flags.num_processes,
                                    argv_flags.process_id)
    primary = jax.process_index() == 0
    # Validate everything (flags, config, family, mesh, splits) before writing anything.
    check_flags(argv_flags)
    spec = launch.RunSpec.from_flags(argv_flags)
    family, algo = spec.build(num_devices=argv_flags.num_devices)
    for split in argv_flags.eval_splits:
        check_split(family, split)
    logdir = argv_flags.logdir
    launch.prepare_logdir(logdir, spec, write=primary)

    # Every process holds the same replicated state; the program shards the task axis over the mesh.
    template = parallel.replicate(spec.init_state(algo), algo.mesh)
    with Checkpointer(logdir, spec.algo, spec.env, max_to_keep=argv_flags.max_checkpoints) as checkpointer:
        ts = launch.restore_for_resume(checkpointer, template, argv_flags.resume_step, primary)
        start = int(np.ravel(ts.step)[0])
        if start >= argv_flags.num_steps:
            print(f"{logdir} is already at step {start} >= --num_steps={argv_flags.num_steps}; nothing to do",
                  file=sys.stderr)
            return 0
        train_loop(argv_flags, spec, family, algo, ts, checkpointer, start, primary)
    return 0


def train_loop(f: Any, spec: Any, family: Any, algo: Any, ts: Any, checkpointer: Any, start: int,
               primary: bool) -> None:
    """Chunks of ``--log_every`` meta-iterations (one compiled scan each), metrics, meta-tests, checkpoints."""
    import numpy as np

    from metarl_jax import parallel
    from metarl_jax.evaluation import AdaptationCurve
    from metarl_jax.io.metrics import MetricsWriter, check_loggers

    loggers = check_loggers(f.logger)
    tensorboard = "tensorboard" in loggers
    writer = MetricsWriter(f.logdir, tensorboard, launch.wandb_logger(f, spec) if primary else None) if primary \
        else None
    seed_writers = ([MetricsWriter(launch.seed_dir(f.logdir, s), tensorboard) for s in spec.seeds]
                    if spec.num_seeds > 1 and primary else [])
    eval_tasks = {split: family.task_set(split, spec.config.eval_num_tasks) for split in f.eval_splits}
    bar = launch.progress_bar(f.progress and primary, start, f.num_steps)
    step = start
    try:
        while step < f.num_steps:
            chunk = min(f.log_every, f.num_steps - step)
            t0 = time.perf_counter()
            ts, metrics = spec.train(algo, ts, chunk)
            metrics = parallel.to_host(metrics)
            seconds = time.perf_counter() - t0
            curves = {}
            if launch.is_eval_step(step + chunk, f.eval_every, f.num_steps):
                curves = {split: AdaptationCurve(parallel.to_host(spec.evaluate(algo, ts, tasks, spec.seed,
                                                                                step + chunk).returns))
                          for split, tasks in eval_tasks.items()}
            # Metrics are [steps] for one seed, [seeds, steps] for several: the log holds the seed mean.
            per_step = {k: np.mean(np.reshape(v, (-1, chunk)), axis=0) for k, v in metrics.items()}
            for i in range(chunk):
                last = i == chunk - 1
                record = {k: v[i] for k, v in per_step.items()}
                record["time/wall_seconds_per_iteration"] = seconds / chunk
                if last:
                    record.update(launch.split_curve_metrics(curves))
                if writer is not None:
                    writer.write(step + i + 1, record)
                    if last and curves and f.figures:
                        writer.write_figures(step + chunk, launch.curve_figures(f.logdir, spec, curves, step + chunk))
                for k, seed_writer in enumerate(seed_writers):
                    seed_record = {name: v[k, i] for name, v in metrics.items()}
                    if last:
                        seed_record.update(launch.split_curve_metrics(
                            {split: AdaptationCurve(curve.returns[k]) for split, curve in curves.items()}))
                    seed_writer.write(step + i + 1, seed_record)
            step += chunk
            bar.update(chunk)
            bar.set_postfix(launch.postfix(per_step))
            if step % f.checkpoint_every < chunk or step >= f.num_steps:
                checkpointer.save(step, ts)
        if writer is not None and f.figures:
            writer.write_figures(step, launch.training_figures(f.logdir, spec))
    finally:
        bar.close()
        for w in ([writer] if writer is not None else []) + seed_writers:
            w.close()


def cli(argv: list[str]) -> int:
    """Parses ``argv`` (``argv[0]`` is the program name) and runs; returns the exit status (2: bad input)."""
    return launch.cli(run, FLAGS, argv, __doc__)


if __name__ == "__main__":
    sys.exit(cli(sys.argv))
