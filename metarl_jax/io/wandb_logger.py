"""Weights & Biases logging (``--logger=tensorboard,wandb``; ``pip install 'metarl-jax[wandb]'``).

One W&B run per run directory: its id is kept in ``<logdir>/wandb_run.json``, so a resumed
run (and ``experiments.evaluate``) appends to the same W&B run. ``WANDB_MODE=offline`` writes
the run under ``<logdir>/wandb/`` for a later ``wandb sync``; every other W&B setting (API key,
``WANDB_ENTITY``, ``WANDB_DIR``) is W&B's own.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

RUN_FILE = "wandb_run.json"


def run_id(logdir: str) -> str:
    """The W&B run id of ``logdir``: the recorded one, else a new one (recorded now)."""
    path = os.path.join(logdir, RUN_FILE)
    if os.path.exists(path):
        with open(path) as fh:
            return json.load(fh)["id"]
    os.makedirs(logdir, exist_ok=True)
    new = uuid.uuid4().hex[:8]  # W&B run ids: [a-z0-9]
    with open(path, "w") as fh:
        json.dump({"id": new}, fh)
    return new


class WandbLogger:
    """Logs the launcher's flat scalar dicts and its figures to one W&B run."""

    def __init__(self, logdir: str, config: dict[str, Any], project: str = "metarl_jax", name: str | None = None,
                 entity: str | None = None, group: str | None = None):
        import wandb

        self._wandb = wandb
        self.run = wandb.init(project=project, entity=entity, name=name or os.path.basename(os.path.normpath(logdir)),
                              group=group, id=run_id(logdir), resume="allow", config=config,
                              dir=os.environ.get("WANDB_DIR", logdir))

    def log(self, step: int, scalars: dict[str, float]) -> None:
        self.run.log(scalars, step=step)

    def log_images(self, step: int, figures: dict[str, str]) -> None:
        self.run.log({tag: self._wandb.Image(path) for tag, path in figures.items()}, step=step)

    def close(self) -> None:
        self.run.finish()
