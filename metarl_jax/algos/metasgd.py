"""Meta-SGD for reinforcement learning (Li et al. 2017, Algorithm 2).

MAML with a learned, per-parameter inner learning rate: the meta-parameters are
(θ, α) with α a vector of the same shape as θ, and

    θ'_i = θ + α ∘ ∇_θ L_{T_i}(f_θ; D_i)                    (inner step, element-wise; α clipped to
                                                              ±step_size_clip where set)
    (θ, α) ← outer step on Σ_i L_{T_i}(f_θ'_i; D'_i)         (TRPO or PPO on both)

Everything else -- fresh samples per inner step, the DiCE inner surrogate, the
outer optimiser and the one-program train step -- is MAML's. At meta-test the
policy adapts with the learned α (scaled by ``eval_schedule``) unless ``eval_lr``
sets a scalar rate.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from metarl_jax.algos import maml
from metarl_jax.algos.config import positive


@dataclasses.dataclass(frozen=True)
class Config(maml.Config):
    """MAML's fields; ``fast_lr`` is the initial value of every entry of α."""

    # α clipped to ±step_size_clip where it is used (TESP's protocol, llan-ml/tesp: 0.1; zero gradient
    # where the clip is active); None: unclipped (Li et al.).
    step_size_clip: float | None = positive(None)


# MAML's presets; with TESP's protocol (its families' tesp_* presets and the reachers) α is clipped to ±0.1.
PRESETS: dict[str, Config] = {
    name: Config(**preset.to_dict(), **({"step_size_clip": 0.1} if preset.inner_grad_clip is not None else {}))
    for name, preset in maml.PRESETS.items()}


class MetaSGD(maml.MAML):
    name = "metasgd"
    Config = Config

    def init_meta_params(self, key: jax.Array) -> Any:
        theta = self.policy.init(key)
        alpha = jax.tree.map(lambda p: jnp.full_like(p, self.config.fast_lr), theta)
        return {"policy": theta, "inner_lr": alpha}

    def policy_params(self, meta_params: Any) -> Any:
        return meta_params["policy"]

    def step_sizes(self, meta_params: Any) -> Any:
        clip = self.config.step_size_clip
        alpha = meta_params["inner_lr"]
        return alpha if clip is None else jax.tree.map(lambda a: jnp.clip(a, -clip, clip), alpha)
