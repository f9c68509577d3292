"""Recurrent networks on one GRU (flax's GRUCell scanned over time): RL²'s recurrent policy and
TESP's episode encoder.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from metarl_jax.networks.core import (
    DiagGaussian,
    GaussianMLPPolicy,
    float_dtype,
    normc_initializer,
)


class GRU(NamedTuple):
    """A GRU layer as pure functions over its parameters (optax style).

    ``step(params, h, x, m)``: h' = GRUCell(h, x) where m = 1, h' = h where m = 0 (a step after the
    episode ended leaves the state untouched). ``unroll(params, h_0, xs [T, in], mask [T])`` scans
    ``step`` over time with ``lax.scan`` and returns (h_T, [h_1 .. h_T]); the same function therefore
    runs a rollout step by step and re-scores the stored inputs afterwards.
    """

    init: Callable[[jax.Array], chex.ArrayTree]
    step: Callable[..., jax.Array]
    unroll: Callable[..., tuple[jax.Array, jax.Array]]
    input_size: int
    hidden_size: int

    def initial_state(self) -> jax.Array:
        """h_0 = 0, the state at the start of a trial (RL²) or an episode (TESP's encoder)."""
        return jnp.zeros((self.hidden_size,), float_dtype())


def make_gru(input_size: int, hidden_size: int) -> GRU:
    """flax's ``GRUCell`` with ``hidden_size`` units on inputs of size ``input_size``."""

    def cell() -> nn.GRUCell:  # built when used, so that its parameters follow jax_enable_x64
        return nn.GRUCell(features=hidden_size, param_dtype=float_dtype())

    def init(key):
        return cell().init(key, jnp.zeros((hidden_size,), float_dtype()), jnp.zeros((input_size,), float_dtype()))

    def step(params, h, x, m=1.0):
        chex.assert_shape([h, x], [(hidden_size,), (input_size,)])
        new_h, _ = cell().apply(params, h, x)
        return jnp.where(m > 0, new_h, h)

    def unroll(params, h0, inputs, mask=None):
        chex.assert_shape(inputs, (None, input_size))
        mask = jnp.ones(inputs.shape[:1], inputs.dtype) if mask is None else mask

        def body(h, x_and_m):
            h = step(params, h, *x_and_m)
            return h, h

        return jax.lax.scan(body, h0, (inputs, mask))

    return GRU(init=init, step=step, unroll=unroll, input_size=input_size, hidden_size=hidden_size)


class RecurrentPolicy(NamedTuple):
    """π(a_t | x_1..x_t) = N(W h_t + b, diag σ²), h_t = GRU(h_{t−1}, x_t), log σ learned (RL², garage's
    ``GaussianGRUPolicy``).

    ``step(params, h, x, m) -> (h', dist)`` is one time step of a rollout; ``unroll(params, xs [T, in],
    mask [T]) -> dist [T]`` re-runs the GRU from h_0 over stored inputs (``lax.scan`` of ``step``).
    """

    init: Callable[[jax.Array], chex.ArrayTree]
    step: Callable[..., tuple[jax.Array, DiagGaussian]]
    unroll: Callable[..., DiagGaussian]
    gru: GRU
    action_size: int

    @property
    def input_size(self) -> int:
        return self.gru.input_size

    def initial_state(self) -> jax.Array:
        return self.gru.initial_state()


def make_recurrent_policy(input_size: int, action_size: int, hidden_size: int = 64,
                          init_log_std: float = 0.0) -> RecurrentPolicy:
    """A GRU of ``hidden_size`` units and a Gaussian output layer on its state."""
    gru = make_gru(input_size, hidden_size)
    head = GaussianMLPPolicy(action_size, hidden_sizes=(), init_log_std=init_log_std)

    def init(key):
        gru_key, head_key = jax.random.split(key)
        return {"gru": gru.init(gru_key), "head": head.init(head_key, jnp.zeros((hidden_size,), float_dtype()))}

    def step(params, h, x, m=1.0):
        h = gru.step(params["gru"], h, x, m)
        return h, head.apply(params["head"], h)

    def unroll(params, inputs, mask=None):
        _, states = gru.unroll(params["gru"], gru.initial_state(), inputs, mask)
        return head.apply(params["head"], states)

    return RecurrentPolicy(init=init, step=step, unroll=unroll, gru=gru, action_size=action_size)


class EpisodeEncoder(NamedTuple):
    """g(τ) = W h_T(τ) + b: a GRU over an episode's steps, its final state projected to d dimensions
    (TESP's task encoder, Fig. 2; the projection starts small: normc(0.01) columns, as in llan-ml/tesp).

    ``encode(params, inputs [T, in], mask [T]) -> [d]``; h_T is the state after the last valid step.
    """

    init: Callable[[jax.Array], chex.ArrayTree]
    encode: Callable[..., jax.Array]
    gru: GRU
    embedding_size: int


def make_episode_encoder(input_size: int, hidden_size: int, embedding_size: int,
                         projection_scale: float = 0.01) -> EpisodeEncoder:
    gru = make_gru(input_size, hidden_size)

    def projection() -> nn.Dense:
        return nn.Dense(embedding_size, kernel_init=normc_initializer(projection_scale), param_dtype=float_dtype())

    def init(key):
        gru_key, projection_key = jax.random.split(key)
        return {"gru": gru.init(gru_key),
                "projection": projection().init(projection_key, jnp.zeros((hidden_size,), float_dtype()))}

    def encode(params, inputs, mask):
        final_state, _ = gru.unroll(params["gru"], gru.initial_state(), inputs, mask)
        return projection().apply(params["projection"], final_state)

    return EpisodeEncoder(init=init, encode=encode, gru=gru, embedding_size=embedding_size)
