"""MAME's self-supervision network M_{β,z}(s, a) = w_βᵀ m_β(s, a)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from metarl_jax.networks.core import (
    ACTIVATIONS,
    float_dtype,
)

# ---- MAME: the self-supervision network M_{β,z}(s, a) = w_βᵀ m_β(s, a) -----------------------------


class FeatureMLP(nn.Module):
    """h(x): an MLP whose every layer (the last included) is activated: the features m_β sums."""

    hidden_sizes: Sequence[int]
    activation: str = "tanh"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        for width in self.hidden_sizes:
            x = act(nn.Dense(width, kernel_init=nn.initializers.lecun_normal(), param_dtype=float_dtype())(x))
        return x


class FeatureRegressor(NamedTuple):
    """A regression network split at its last hidden layer (optax style pure functions).

    ``init(key) -> params``; ``features(params, x) -> h`` ([..., hidden_sizes[-1]]);
    ``head(params, m) -> w m + b`` ([..., output_size]). MAME sums ``features`` over a window of
    time steps (a truncated successor representation) before applying the linear ``head``.
    """

    init: Callable[[jax.Array], chex.ArrayTree]
    features: Callable[[chex.ArrayTree, jax.Array], jax.Array]
    head: Callable[[chex.ArrayTree, jax.Array], jax.Array]


def make_feature_regressor(input_size: int, output_size: int, hidden_sizes: Sequence[int] = (64, 64),
                           activation: str = "tanh") -> FeatureRegressor:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if not hidden_sizes:
        raise ValueError("make_feature_regressor: hidden_sizes must name at least one layer (the features)")
    body = FeatureMLP(tuple(hidden_sizes), activation)
    head = nn.Dense(output_size, kernel_init=nn.initializers.lecun_normal(), param_dtype=float_dtype())

    def init(key):
        body_key, head_key = jax.random.split(key)
        return {"features": body.init(body_key, jnp.zeros((input_size,))),
                "head": head.init(head_key, jnp.zeros((hidden_sizes[-1],)))}

    return FeatureRegressor(init=init, features=lambda params, x: body.apply(params["features"], x),
                            head=lambda params, m: head.apply(params["head"], m))


# ============================================================================ recurrent networks
# One GRU (flax's ``GRUCell``) runs RL²'s recurrent policy and TESP's episode encoder.
