"""Checkpoints of the whole train state with orbax's ``CheckpointManager``.

Layout of a run directory:

    logdir/config.json                 algo, env, env kwargs, config (written once)
    logdir/checkpoints/<step>/state    the TrainState (params, optimiser, rng, step, extras)
    logdir/checkpoints/<step>/meta     {"algo", "env", "step"} (JSON)

Nothing is ever deleted unless ``max_to_keep`` asks for rotation.
"""

from __future__ import annotations

import json
import os
from typing import Any

import orbax.checkpoint as ocp
from flax import serialization

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"


class CheckpointError(ValueError):
    """A run directory or checkpoint that cannot be used (wrong algorithm, config, corrupted)."""


def read_run_config(logdir: str) -> dict[str, Any] | None:
    """The run's ``config.json``, or None if the logdir has none."""
    path = os.path.join(logdir, CONFIG_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON ({e}); refusing to touch this logdir") from None


def write_run_config(logdir: str, run_config: dict[str, Any]) -> None:
    """Writes ``config.json`` atomically (never overwrites a different existing one)."""
    os.makedirs(logdir, exist_ok=True)
    path = os.path.join(logdir, CONFIG_FILE)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(run_config, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def check_resume_compatible(saved: dict[str, Any], requested: dict[str, Any], logdir: str) -> None:
    """Raises CheckpointError naming what differs between a logdir's run and the requested one."""
    if saved.get("algo") != requested["algo"]:
        raise CheckpointError(
            f"logdir {logdir} holds a run of algo {saved.get('algo')!r}, not {requested['algo']!r}; "
            "use another --logdir")
    if saved.get("env") != requested["env"] or saved.get("env_kwargs", {}) != requested.get("env_kwargs", {}):
        raise CheckpointError(
            f"logdir {logdir} holds a run on env {saved.get('env')!r} with kwargs {saved.get('env_kwargs', {})}, "
            f"not {requested['env']!r} with {requested.get('env_kwargs', {})}; use another --logdir")
    old, new = saved.get("config", {}), requested["config"]
    differing = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if differing:
        details = ", ".join(f"{k}: saved {old.get(k)!r} vs requested {new.get(k)!r}" for k in differing)
        raise CheckpointError(f"config of logdir {logdir} is incompatible with the requested one ({details})")


class Checkpointer:
    """Saves and restores TrainStates under ``logdir/checkpoints``."""

    def __init__(self, logdir: str, algo: str, env: str, max_to_keep: int | None = None):
        self.directory = os.path.abspath(os.path.join(logdir, CHECKPOINT_DIR))
        self.algo = algo
        self.env = env
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def check_meta(self, step: int) -> None:
        """Checks that checkpoint ``step`` was written by the same algorithm (cheap, before compiling)."""
        try:
            meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        except Exception as e:  # orbax raises many types for unreadable directories
            raise CheckpointError(f"checkpoint {self.directory}/{step} is unreadable or corrupted: "
                                  f"{type(e).__name__}: {e}") from None
        if meta.get("algo") != self.algo:
            raise CheckpointError(f"checkpoint {self.directory}/{step} was written by algo {meta.get('algo')!r}, "
                                  f"not {self.algo!r}; use another --logdir")

    def save(self, step: int, train_state: Any) -> None:
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(serialization.to_state_dict(train_state)),
            meta=ocp.args.JsonSave({"algo": self.algo, "env": self.env, "step": int(step)}),
        ))

    def restore(self, template: Any, step: int | None = None) -> Any:
        """Restores into the structure of ``template``; errors name the checkpoint."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint found in {self.directory}")
        self.check_meta(step)
        target = serialization.to_state_dict(template)
        try:
            restored = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
            return serialization.from_state_dict(template, restored["state"])
        except Exception as e:
            raise CheckpointError(f"checkpoint {self.directory}/{step} is corrupted or does not match this "
                                  f"algorithm's train state: {type(e).__name__}: {str(e)[:300]}") from None

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
