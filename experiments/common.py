"""Shared launcher plumbing: run specs, logdir checks, error reporting."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable
from typing import Any

CACHE_DIR = os.environ.get("METARL_COMPILATION_CACHE", os.path.expanduser("~/.cache/metarl_jax/xla"))


def enable_compilation_cache() -> None:
    """JAX's persistent compilation cache: a re-run of the same program skips XLA compilation."""
    import jax

    if CACHE_DIR.lower() in ("", "0", "off", "none"):
        return
    jax.config.update("jax_compilation_cache_dir", CACHE_DIR)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def parse_env_kwargs(items: list[str]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--env_kwarg {item!r} must have the form key=value")
        key, raw = (s.strip() for s in item.split("=", 1))
        try:
            kwargs[key] = json.loads(raw)
        except json.JSONDecodeError:
            kwargs[key] = raw
    return kwargs


@dataclasses.dataclass
class RunSpec:
    """Everything that defines a run; validated on construction, before any compilation."""

    algo: str
    env: str
    env_kwargs: dict[str, Any]
    preset: str
    config: Any
    seed: int
    num_seeds: int = 1  # independent seeds seed, seed + 1, ..., trained as one vmapped program

    @classmethod
    def from_flags(cls, f: Any) -> RunSpec:
        from metarl_jax import algos, envs

        if f.algo not in algos.names():
            raise ValueError(f"unknown algo {f.algo!r}; valid algos are {algos.names()}")
        # A registered name, or a user's family by import path (module:factory, file.py:factory).
        env = envs.normalize(f.env)
        if not envs.is_import_path(env) and env not in envs.names():
            raise ValueError(f"unknown env {env!r}; valid envs are {envs.names()}, or a family of your own as "
                             "--env=package.module:factory or --env=path/to/file.py:factory")
        presets = algos.presets(f.algo)
        preset = f.preset or (env if env in presets else "paper")
        config = algos.preset(f.algo, preset).with_overrides(f.override)
        env_kwargs = parse_env_kwargs(f.env_kwarg)
        envs.make(env, **env_kwargs)  # imports a user's family, checks its kwargs and the protocol now
        num_seeds = getattr(f, "num_seeds", 1)
        if num_seeds < 1:
            raise ValueError(f"--num_seeds must be >= 1, got {num_seeds}")
        return cls(f.algo, env, env_kwargs, preset, config, f.seed, num_seeds)

    @classmethod
    def from_logdir(cls, logdir: str) -> RunSpec:
        from metarl_jax import algos
        from metarl_jax.io.checkpoints import CheckpointError, read_run_config

        saved = read_run_config(logdir)
        if saved is None:
            raise CheckpointError(f"{logdir} has no config.json; is it a run directory?")
        config = algos.config_class(saved["algo"]).from_dict(saved["config"])
        return cls(saved["algo"], saved["env"], saved.get("env_kwargs", {}), saved.get("preset", "paper"),
                   config, int(saved.get("seed", 0)), int(saved.get("num_seeds", 1)))

    def to_json(self) -> dict[str, Any]:
        return {"algo": self.algo, "env": self.env, "env_kwargs": self.env_kwargs, "preset": self.preset,
                "config": self.config.to_dict(), "seed": self.seed, "num_seeds": self.num_seeds}

    @property
    def seeds(self) -> list[int]:
        return list(range(self.seed, self.seed + self.num_seeds))

    def init_state(self, algo: Any) -> Any:
        """The initial train state: one seed, or ``num_seeds`` stacked on a leading seed axis."""
        import jax
        import jax.numpy as jnp

        if self.num_seeds == 1:
            return algo.init(jax.random.key(self.seed))
        return algo.init_seeds(jax.vmap(jax.random.key)(jnp.asarray(self.seeds)))

    def train(self, algo: Any, ts: Any, num_steps: int) -> tuple[Any, dict[str, Any]]:
        """``num_steps`` meta-iterations; metrics [steps] (one seed) or [seeds, steps]."""
        return algo.train(ts, num_steps) if self.num_seeds == 1 else algo.train_seeds(ts, num_steps)

    def evaluate(self, algo: Any, ts: Any, tasks: Any, eval_seed: int, step: int) -> Any:
        """Adaptation curve; seed k uses the key its own single-seed run would use."""
        import jax

        if self.num_seeds == 1:
            return algo.evaluate(ts, tasks, eval_key(eval_seed, step))
        keys = jax.numpy.stack([eval_key(eval_seed + k, step) for k in range(self.num_seeds)])
        return algo.evaluate_seeds(ts, tasks, keys)

    def build(self, num_devices: int | None = None):
        from metarl_jax import algos, envs, parallel

        family = envs.make(self.env, **self.env_kwargs)
        mesh = parallel.task_mesh(num_devices=num_devices)
        return family, algos.make(self.algo, family, self.config, mesh=mesh)


def prepare_logdir(logdir: str, spec: RunSpec, write: bool = True) -> None:
    """Creates a new run directory, or checks that an existing one is this run (resume).

    Call it only once everything is validated: for a new directory it writes ``config.json``, which
    then pins the directory's config. ``write=False`` (multi-host, processes other than 0) only checks.
    """
    from metarl_jax.io.checkpoints import (
        CHECKPOINT_DIR,
        Checkpointer,
        CheckpointError,
        check_resume_compatible,
        read_run_config,
        write_run_config,
    )

    if os.path.exists(logdir) and not os.path.isdir(logdir):
        raise CheckpointError(f"logdir {logdir} exists and is not a directory")
    saved = read_run_config(logdir)
    requested = spec.to_json()
    if saved is not None:
        check_resume_compatible(saved, requested, logdir)
        if saved.get("seed") != spec.seed:
            raise CheckpointError(f"logdir {logdir} holds a run with seed {saved.get('seed')}, not {spec.seed}")
        if saved.get("num_seeds", 1) != spec.num_seeds:
            raise CheckpointError(f"logdir {logdir} holds a run with num_seeds {saved.get('num_seeds', 1)}, "
                                  f"not {spec.num_seeds}")
    elif os.path.isdir(os.path.join(logdir, CHECKPOINT_DIR)) and os.listdir(os.path.join(logdir, CHECKPOINT_DIR)):
        # Checkpoints without config.json: at least make sure they are this algorithm's.
        with Checkpointer(logdir, spec.algo, spec.env) as checkpointer:
            latest = checkpointer.latest_step()
            if latest is not None:
                checkpointer.check_meta(latest)
    if saved is None and write:
        try:
            write_run_config(logdir, requested)
        except OSError as e:
            raise CheckpointError(f"cannot create logdir {logdir}: {e.strerror or e}") from None


def restore_for_resume(checkpointer: Any, template: Any, resume_step: int | None, primary: bool = True) -> Any:
    """The train state to continue from: ``template`` (a new run), the latest checkpoint, or ``resume_step``.

    With ``resume_step`` the checkpoints after it are moved to ``checkpoints_abandoned/`` (so that
    training can write those steps again); nothing is deleted. Every restore is verified.
    """
    from metarl_jax.io.checkpoints import ABANDONED_DIR, CheckpointError

    steps = checkpointer.all_steps()
    if resume_step is None:
        if not steps:
            return template
        ts = checkpointer.restore(template)
        print(f"resuming {checkpointer.logdir} from step {steps[-1]}", file=sys.stderr)
        return ts
    if resume_step not in steps:
        raise CheckpointError(f"--resume_step={resume_step}: {checkpointer.logdir} has checkpoints {steps}")
    ts = checkpointer.restore(template, resume_step)
    moved = checkpointer.abandon_after(resume_step) if primary else []
    _sync_processes("abandon_after")
    print(f"resuming {checkpointer.logdir} from step {resume_step}"
          + (f"; moved checkpoints {moved} to {ABANDONED_DIR}/" if moved else ""), file=sys.stderr)
    return ts


def _sync_processes(name: str) -> None:
    import jax

    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def load_checkpoint(logdir: str, spec: RunSpec, algo: Any, step: int | None = None) -> Any:
    """The verified train state of checkpoint ``step`` (default: the latest) of a run directory."""
    from metarl_jax.io.checkpoints import Checkpointer

    with Checkpointer(logdir, spec.algo, spec.env) as checkpointer:
        return checkpointer.restore(spec.init_state(algo), step)


def eval_key(seed: int, step: int):
    import jax

    return jax.random.fold_in(jax.random.key(seed + 10_007), step)


def is_eval_step(step: int, eval_every: int, num_steps: int) -> bool:
    return step >= num_steps or (eval_every > 0 and step % eval_every == 0)


def curve_metrics(curve: Any, prefix: str = "eval/") -> dict[str, float]:
    """Scalars of an adaptation curve (across seeds: the mean and its 95% interval)."""
    mean = curve.mean
    out = {f"{prefix}return_step{k}": float(v) for k, v in enumerate(mean)}
    out[f"{prefix}adaptation_gain"] = float(mean[-1] - mean[0])
    if curve.num_seeds > 1:
        low, high = curve.ci95
        out.update({f"{prefix}return_step{k}_ci95_low": float(v) for k, v in enumerate(low)})
        out.update({f"{prefix}return_step{k}_ci95_high": float(v) for k, v in enumerate(high)})
    return out


def split_curve_metrics(curves: dict[str, Any]) -> dict[str, float]:
    """Curves of several splits: ``eval/...`` for "val", ``eval/<split>/...`` for the others."""
    out: dict[str, float] = {}
    for split, curve in curves.items():
        out.update(curve_metrics(curve, "eval/" if split == "val" else f"eval/{split}/"))
    return out


FIGURE_DIR = "figures"


def run_label(spec: RunSpec) -> str:
    return f"{spec.algo} ({spec.env}" + (f", {spec.num_seeds} seeds)" if spec.num_seeds > 1 else ")")


def curve_figures(logdir: str, spec: RunSpec, curves: dict[str, Any], step: int) -> dict[str, str]:
    """The meta-test adaptation curve of each split at ``step`` as a PNG under ``figures/``: {tag: path}."""
    from metarl_jax.io.plots import plot_adaptation_curves

    os.makedirs(os.path.join(logdir, FIGURE_DIR), exist_ok=True)
    reward = getattr(spec.config, "eval_reward", "dense")
    figures = {}
    for split, curve in curves.items():
        path = os.path.join(logdir, FIGURE_DIR, f"adaptation_curve_{split}_step{step}.png")
        plot_adaptation_curves({f"{run_label(spec)}, step {step}": curve.to_dict()}, path,
                               title=f"meta-test on {split} ({reward} reward)", ylabel=f"{reward} return")
        figures["figures/adaptation_curve" + ("" if split == "val" else f"_{split}")] = path
    return figures


def training_figures(logdir: str, spec: RunSpec) -> dict[str, str]:
    """The training curves of ``metrics.jsonl`` as ``figures/training_curves.png``: {tag: path}."""
    from metarl_jax.io.metrics import read_metrics
    from metarl_jax.io.plots import plot_training_curves

    os.makedirs(os.path.join(logdir, FIGURE_DIR), exist_ok=True)
    path = os.path.join(logdir, FIGURE_DIR, "training_curves.png")
    plot_training_curves(read_metrics(logdir), path, title=run_label(spec))
    return {"figures/training_curves": path}


def wandb_logger(f: Any, spec: RunSpec) -> Any:
    """A ``WandbLogger`` for ``--logger=...,wandb`` (the run's config as the W&B config), else None."""
    if "wandb" not in f.logger:
        return None
    from metarl_jax.io.wandb_logger import WandbLogger

    return WandbLogger(f.logdir, spec.to_json(), project=f.wandb_project, entity=f.wandb_entity)


def seed_dir(logdir: str, seed: int) -> str:
    """Where a multi-seed run writes seed ``seed``'s own metrics (``metrics.jsonl`` + TensorBoard)."""
    return os.path.join(logdir, "seeds", f"seed_{seed}")


def postfix(metrics: dict[str, Any]) -> dict[str, str]:
    shown = {}
    for key in ("train/pre_return", "train/post_return", "train/return", "train/kl"):
        if key in metrics:
            shown[key.split("/", 1)[1]] = f"{float(metrics[key][-1]):.3g}"
    return shown


def progress_bar(enabled: bool, start: int, total: int):
    from tqdm import tqdm

    return tqdm(total=total, initial=start, disable=not enabled, unit="it", dynamic_ncols=True,
                file=sys.stderr)


def cli(fn: Callable[[Any], int], flag_values: Any, argv: list[str], doc: str | None = None,
        required: tuple[str, ...] = ("logdir",)) -> int:
    """A launcher's command line: parse ``argv`` into its own ``flag_values``, check the required
    flags, run ``fn`` guarded; returns the exit status (bad input: one ``error:`` line, status 2)."""
    from absl import flags

    if any(a in ("-h", "--help", "--helpfull") for a in argv[1:]):
        print(doc or "")
        print(flag_values.get_help())
        return 0
    flag_values.unparse_flags()
    try:
        try:
            rest = flag_values(list(argv))
        except flags.Error as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        if len(rest) > 1:
            print(f"error: unexpected arguments {rest[1:]} (flags take the form --name=value)", file=sys.stderr)
            return 2
        missing = [name for name in required if getattr(flag_values, name) in (None, "")]
        if missing:
            print(f"error: --{missing[0]} is required", file=sys.stderr)
            return 2
        return run_guarded(fn, flag_values)
    finally:
        flag_values.unparse_flags()


def run_guarded(fn: Callable[[Any], int], flag_values: Any) -> int:
    """Runs ``fn``; bad input becomes a one-line ``error: ...`` and exit status 2 (no traceback)."""
    from absl import logging

    from metarl_jax.io.checkpoints import CheckpointError

    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    enable_compilation_cache()
    try:
        return fn(flag_values)
    except (ValueError, CheckpointError, KeyError, OSError) as e:
        if isinstance(e, OSError) and e.filename is not None:
            message = f"{e.strerror or type(e).__name__}: {e.filename}"
        else:
            message = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
