"""Checkpoints of the whole train state with orbax's ``CheckpointManager``, verified on restore.

Layout of a run directory:

    logdir/config.json                 algo, env, env kwargs, config (written once)
    logdir/checkpoints/<step>/state    the TrainState (params, optimiser, rng, step, extras)
    logdir/checkpoints/<step>/meta     {"algo", "env", "step", "float_dtype", "digests"} (JSON)
    logdir/checkpoints/<step>/file_digests.json   SHA-256 of every file of the step, once committed
    logdir/checkpoints_abandoned/      checkpoints set aside by ``--resume_step`` (resume from an earlier step)

Integrity, checked on every restore, so that a corrupted checkpoint is never used silently:

1. ``file_digests.json`` (written when the asynchronous save has committed: at the next save or at
   ``close``) lists a SHA-256 of every file; a changed, truncated or missing file is reported before
   orbax reads anything.
2. ``meta["digests"]`` holds a SHA-256 of every saved array (dtype, shape and bytes), computed from
   the train state when it is saved; the restored arrays must match them.

Nothing written is ever deleted: rotation (``max_to_keep``) applies only to the checkpoints this
``Checkpointer`` saves; those already in the directory are preserved.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import numpy as np
import orbax.checkpoint as ocp
from flax import serialization
from orbax.checkpoint import checkpoint_managers

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
ABANDONED_DIR = "checkpoints_abandoned"
FILE_DIGESTS = "file_digests.json"


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


def _host_arrays(state_dict: Any) -> Any:
    """Every leaf as a numpy array on this host (shards of other processes gathered)."""
    import jax

    from metarl_jax import parallel

    return jax.tree.map(np.asarray, parallel.to_host(state_dict))


def array_digests(state_dict: Any) -> dict[str, str]:
    """``{array path: sha256 of its dtype, shape and bytes}`` for every leaf of a state dict."""
    import jax

    digests = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(_host_arrays(state_dict))[0]:
        array = np.ascontiguousarray(leaf)
        digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
        digests[jax.tree_util.keystr(path)] = digest.hexdigest()
    return digests


def file_digests(directory: str) -> dict[str, str]:
    """``{path relative to directory: sha256}`` of every file under ``directory`` but the digest file."""
    digests = {}
    for root, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            relative = os.path.relpath(path, directory)
            if relative in (FILE_DIGESTS, FILE_DIGESTS + ".tmp"):
                continue
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            digests[relative] = digest.hexdigest()
    return digests


def float_dtype_name() -> str:
    from metarl_jax.networks import float_dtype

    return np.dtype(float_dtype()).name


class Checkpointer:
    """Saves and restores TrainStates under ``logdir/checkpoints``; a context manager (closes orbax)."""

    def __init__(self, logdir: str, algo: str, env: str, max_to_keep: int | None = None):
        if max_to_keep is not None and (isinstance(max_to_keep, bool) or max_to_keep < 1):
            raise ValueError(f"max_to_keep must be None (keep all) or >= 1, got {max_to_keep!r}")
        self.logdir = logdir
        self.directory = os.path.abspath(os.path.join(logdir, CHECKPOINT_DIR))
        self.algo = algo
        self.env = env
        preexisting = self._steps_on_disk()
        policy = None
        if max_to_keep is not None:
            # Rotate only what this Checkpointer writes: earlier checkpoints are always preserved.
            policy = checkpoint_managers.AnyPreservationPolicy([
                checkpoint_managers.LatestN(max_to_keep), checkpoint_managers.CustomSteps(preexisting)])
        self.manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(preservation_policy=policy, create=True))
        self._uncommitted: list[int] = []  # saved steps whose file digests are not written yet

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _steps_on_disk(self) -> list[int]:
        if not os.path.isdir(self.directory):
            return []
        return sorted(int(name) for name in os.listdir(self.directory) if name.isdigit())

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def read_meta(self, step: int) -> dict[str, Any]:
        try:
            return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        except Exception as e:  # orbax raises many types for unreadable directories
            raise CheckpointError(f"checkpoint {self.directory}/{step} is unreadable or corrupted: "
                                  f"{type(e).__name__}: {str(e)[:300]}") from None

    def check_meta(self, step: int) -> dict[str, Any]:
        """Checks that checkpoint ``step`` was written by the same algorithm and precision (cheap)."""
        meta = self.read_meta(step)
        if meta.get("algo") != self.algo:
            raise CheckpointError(f"checkpoint {self.directory}/{step} was written by algo {meta.get('algo')!r}, "
                                  f"not {self.algo!r}; use another --logdir")
        saved_dtype = meta.get("float_dtype", "float32")
        if saved_dtype != float_dtype_name():
            raise CheckpointError(
                f"checkpoint {self.directory}/{step} holds {saved_dtype} parameters but this process runs in "
                f"{float_dtype_name()}; set JAX_ENABLE_X64={'1' if saved_dtype == 'float64' else '0'}")
        return meta

    def save(self, step: int, train_state: Any) -> None:
        state = serialization.to_state_dict(train_state)
        meta = {"algo": self.algo, "env": self.env, "step": int(step), "float_dtype": float_dtype_name(),
                "digests": array_digests(state)}
        self._write_file_digests()  # of the previous save, which has committed by the time it returns
        self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                        meta=ocp.args.JsonSave(meta)))
        self._uncommitted.append(step)

    def _write_file_digests(self) -> None:
        """Waits for pending saves to commit, then writes each one's ``file_digests.json`` (process 0)."""
        if not self._uncommitted:
            return
        import jax

        self.manager.wait_until_finished()
        for step in self._uncommitted:
            step_dir = os.path.join(self.directory, str(step))
            if jax.process_index() == 0 and os.path.isdir(step_dir):  # rotation may have removed it
                digests = file_digests(step_dir)
                tmp = os.path.join(step_dir, FILE_DIGESTS + ".tmp")
                with open(tmp, "w") as f:
                    json.dump(digests, f, indent=1, sort_keys=True)
                os.replace(tmp, os.path.join(step_dir, FILE_DIGESTS))
        self._uncommitted = []

    def verify_files(self, step: int) -> None:
        """Compares the files of checkpoint ``step`` with its ``file_digests.json`` (if it has one)."""
        step_dir = os.path.join(self.directory, str(step))
        path = os.path.join(step_dir, FILE_DIGESTS)
        if not os.path.exists(path):
            return  # a save that never committed its digests (a crash): the array digests still apply
        try:
            with open(path) as f:
                saved = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise CheckpointError(f"checkpoint {step_dir} is corrupted: unreadable {FILE_DIGESTS} ({e})") from None
        actual = file_digests(step_dir)
        bad = sorted(k for k in set(saved) | set(actual) if saved.get(k) != actual.get(k))
        if bad:
            what = "missing" if bad[0] not in actual else ("unexpected" if bad[0] not in saved else "changed")
            raise CheckpointError(f"checkpoint {step_dir} is corrupted: {len(bad)} file(s) differ from "
                                  f"{FILE_DIGESTS} (first, {what}: {bad[0]})")

    def restore(self, template: Any, step: int | None = None) -> Any:
        """Restores step ``step`` (default: the latest) into the structure of ``template``, verified.

        A checkpoint whose arrays do not match their saved digests raises CheckpointError naming it
        and the latest earlier checkpoint that verifies, to resume from instead.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint found in {self.directory}")
        if step not in self.all_steps():
            raise CheckpointError(f"no checkpoint {step} in {self.directory}; it holds {self.all_steps()}")
        problem = None
        try:
            restored = self._restore_verified(template, step)
        except CheckpointError as e:
            problem = str(e)
        if problem is None:
            return restored
        earlier = self.latest_good_step(template, before=step)
        hint = (f"; resume from checkpoint {earlier}, the latest that verifies, with --resume_step={earlier} "
                f"(later checkpoints are moved to {ABANDONED_DIR}/, nothing is deleted)" if earlier is not None
                else "; no earlier checkpoint verifies either")
        raise CheckpointError(problem + hint)

    def latest_good_step(self, template: Any, before: int) -> int | None:
        """The latest checkpoint before ``before`` that restores and matches its digests."""
        for step in reversed([s for s in self.all_steps() if s < before]):
            try:
                self._restore_verified(template, step)
                return step
            except CheckpointError:
                continue
        return None

    def _restore_verified(self, template: Any, step: int) -> Any:
        self.verify_files(step)
        meta = self.check_meta(step)
        target = serialization.to_state_dict(template)
        where = f"checkpoint {self.directory}/{step}"
        try:
            restored = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
            state = restored["state"]
            train_state = serialization.from_state_dict(template, state)
        except Exception as e:
            raise CheckpointError(f"{where} is corrupted or does not match this algorithm's train state: "
                                  f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}") from None
        saved = meta.get("digests")
        if saved is None:
            raise CheckpointError(f"{where} has no integrity digests (written before they were introduced); "
                                  "it cannot be verified")
        actual = array_digests(state)
        bad = sorted(k for k in set(saved) | set(actual) if saved.get(k) != actual.get(k))
        if bad:
            raise CheckpointError(f"{where} is corrupted: {len(bad)} array(s) differ from the digests written "
                                  f"with it (first: {bad[0]})")
        return train_state

    def abandon_after(self, step: int) -> list[int]:
        """Moves the checkpoints after ``step`` to ``logdir/checkpoints_abandoned/`` (kept, not deleted)."""
        later = [s for s in self.all_steps() if s > step]
        if not later:
            return []
        self._write_file_digests()
        target_root = os.path.join(self.logdir, ABANDONED_DIR)
        os.makedirs(target_root, exist_ok=True)
        for s in later:
            target, n = os.path.join(target_root, str(s)), 1
            while os.path.exists(target):
                target, n = os.path.join(target_root, f"{s}.{n}"), n + 1
            os.rename(os.path.join(self.directory, str(s)), target)
        self.manager.reload()
        return later

    def close(self) -> None:
        self._write_file_digests()
        self.manager.close()

