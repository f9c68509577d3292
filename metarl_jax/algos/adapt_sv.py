"""AdaptSV (Lan et al. 2019, Sec. 5), TESP's baseline in the spirit of MAESN: TESP's model and
Algorithm 1 (``algos/tesp.py``), where the task embedding is a single meta-learned vector z (init
normc(0.01)) and the fast updates adapt z instead of a task encoder; no episode buffer, no warm-up batch.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

from metarl_jax.algos import tesp
from metarl_jax.networks import normc_initializer


@dataclasses.dataclass(frozen=True)
class Config(tesp.Config):
    """AdaptSV: TESP's fields; the GRU and buffer fields are unused (the embedding is one learned vector)."""


# Supplement Table 1's networks, with AdaptSV's η (the table's last column).
PRESETS: dict[str, Config] = tesp._presets(Config, 4)


class AdaptSV(tesp.TESP):
    """TESP with z in place of the encoder: h = z, and the fast updates (eq. 9) adapt z."""

    name = "adapt_sv"
    Config = Config
    uses_buffer = False

    def init_task_model(self, key: jax.Array) -> dict[str, Any]:
        return {"vector": normc_initializer(0.01)(key, (self.config.embedding_size,))}

    def fast_params(self, params: Any) -> dict[str, Any]:
        fast = {"vector": params["vector"]}
        return {**fast, "policy": params["policy"]} if self.config.adapt_policy else fast

    def embedding(self, fast: Any, buffer: Any) -> jax.Array:
        del buffer
        return fast["vector"]
