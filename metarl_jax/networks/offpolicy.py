"""Off-policy learners' networks (DDPG, SAC, Xu et al.'s teacher): deterministic actors,
Q-functions (one head or a twin), tanh-squashed and adaptive-σ Gaussians.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from metarl_jax.networks.core import (
    _LOG_2,
    MLP,
    DiagGaussian,
    _check_mlp,
    float_dtype,
    hidden_layers,
    output_layer,
)

# ---- off-policy learners: deterministic actors, Q-functions, squashed Gaussians ----------------


class Network(NamedTuple):
    """A network as two pure functions: ``init(key) -> params`` and ``apply(params, *inputs)``."""

    init: Callable[[jax.Array], chex.ArrayTree]
    apply: Callable[..., chex.ArrayTree]


# DDPG's last-layer init, U(−3e-3, 3e-3) (Lillicrap et al. 2016, Sec. 7).
DDPG_OUTPUT_UNIFORM = 3e-3


class DeterministicActor(nn.Module):
    """μ(s) = tanh(MLP(s)) ∈ [−1, 1]^A; learners rescale to the family's action bounds."""

    action_size: int
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "relu"
    layer_norm: bool = False

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        return jnp.tanh(MLP(self.hidden_sizes, self.action_size, self.activation, layer_norm=self.layer_norm,
                            output_uniform=DDPG_OUTPUT_UNIFORM)(obs))


class QFunction(nn.Module):
    """Q(s, a) with ``num_critics`` independent heads, output [..., num_critics].

    ``action_layer`` is the hidden layer whose input the action joins: 0 concatenates it to
    s (SAC, brax), 1 after the first hidden layer (OpenAI baselines' DDPG critic).
    """

    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "relu"
    layer_norm: bool = False
    num_critics: int = 1
    action_layer: int = 0

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        chex.assert_equal_shape_prefix((obs, action), obs.ndim - 1)
        heads = []
        for _ in range(self.num_critics):
            x = hidden_layers(obs, self.hidden_sizes[:self.action_layer], self.activation, self.layer_norm)
            x = jnp.concatenate([x, action], axis=-1)
            x = hidden_layers(x, self.hidden_sizes[self.action_layer:], self.activation, self.layer_norm)
            heads.append(output_layer(x, 1, uniform=DDPG_OUTPUT_UNIFORM)[..., 0])
        return jnp.stack(heads, axis=-1)


def make_deterministic_actor(observation_size: int, action_size: int, hidden_sizes: Sequence[int] = (64, 64),
                             activation: str = "relu", layer_norm: bool = False) -> Network:
    """``apply(params, obs) -> action`` in [−1, 1]^A."""
    _check_mlp(hidden_sizes, activation)
    module = DeterministicActor(action_size, tuple(hidden_sizes), activation, layer_norm)
    return Network(init=lambda key: module.init(key, jnp.zeros((observation_size,), float_dtype())),
                   apply=module.apply)


def make_q_function(observation_size: int, action_size: int, hidden_sizes: Sequence[int] = (64, 64),
                    activation: str = "relu", layer_norm: bool = False, num_critics: int = 1,
                    action_layer: int = 0) -> Network:
    """``apply(params, obs, action) -> [..., num_critics]``."""
    _check_mlp(hidden_sizes, activation)
    if not 0 <= action_layer < len(hidden_sizes):
        raise ValueError(f"action_layer must be in [0, {len(hidden_sizes) - 1}] (a hidden layer), got {action_layer}")
    module = QFunction(tuple(hidden_sizes), activation, layer_norm, num_critics, action_layer)
    dtype = float_dtype()
    return Network(init=lambda key: module.init(key, jnp.zeros((observation_size,), dtype),
                                                jnp.zeros((action_size,), dtype)),
                   apply=module.apply)


class TanhGaussian(NamedTuple):
    """a = tanh(u), u ~ N(mean, exp(log_std)²) per dimension (actions in (−1, 1)^A).

    Change of variables: log π(a) = log N(u; μ, σ²) − Σ_d log(1 − tanh²(u_d)), with the
    stable form log(1 − tanh²u) = 2 (log 2 − u − softplus(−2u)).
    """

    mean: jax.Array
    log_std: jax.Array

    @property
    def pre_tanh(self) -> DiagGaussian:
        return DiagGaussian(self.mean, self.log_std)

    def sample_with_log_prob(self, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(a, log π(a)) by the reparametrisation a = tanh(μ + σ ε): differentiable in (μ, σ)."""
        pre_tanh = self.pre_tanh.sample(key)
        return jnp.tanh(pre_tanh), self.log_prob_pre_tanh(pre_tanh)

    def log_prob_pre_tanh(self, pre_tanh: jax.Array) -> jax.Array:
        log_det = 2.0 * (_LOG_2 - pre_tanh - jax.nn.softplus(-2.0 * pre_tanh))
        return self.pre_tanh.log_prob(pre_tanh) - jnp.sum(log_det, axis=-1)

    def log_prob(self, action: jax.Array, eps: float = 1e-6) -> jax.Array:
        """log π(a) of an action in (−1, 1)^A (clipped to 1 − eps before arctanh)."""
        return self.log_prob_pre_tanh(jnp.arctanh(jnp.clip(action, -1.0 + eps, 1.0 - eps)))

    def mode(self) -> jax.Array:
        """tanh(μ): the deterministic action used for evaluation."""
        return jnp.tanh(self.mean)


class TanhGaussianPolicy(nn.Module):
    """SAC's actor: an MLP outputs (μ, ρ) and σ = softplus(ρ) + min_std (brax's SAC parametrisation)."""

    action_size: int
    hidden_sizes: Sequence[int] = (256, 256)
    activation: str = "relu"
    layer_norm: bool = False
    min_std: float = 1e-3

    @nn.compact
    def __call__(self, obs: jax.Array) -> TanhGaussian:
        x = hidden_layers(obs, self.hidden_sizes, self.activation, self.layer_norm)
        out = nn.Dense(2 * self.action_size, kernel_init=nn.initializers.lecun_normal(), param_dtype=float_dtype())(x)
        mean, raw_std = jnp.split(out, 2, axis=-1)
        return TanhGaussian(mean, jnp.log(jax.nn.softplus(raw_std) + self.min_std))


def make_tanh_gaussian_policy(observation_size: int, action_size: int, hidden_sizes: Sequence[int] = (256, 256),
                              activation: str = "relu", layer_norm: bool = False, min_std: float = 1e-3) -> Network:
    """``apply(params, obs) -> TanhGaussian``."""
    _check_mlp(hidden_sizes, activation)
    module = TanhGaussianPolicy(action_size, tuple(hidden_sizes), activation, layer_norm, min_std)
    return Network(init=lambda key: module.init(key, jnp.zeros((observation_size,), float_dtype())),
                   apply=module.apply)


class AdaptiveStdGaussianPolicy(nn.Module):
    """N(μ(s), σ(s)²) with separate mean and log-std MLPs (rllab's adaptive_std; Xu et al.'s teacher (ii)).

    Both outputs start near their initial values: μ ≈ 0 and log σ ≈ ``init_log_std``.
    """

    action_size: int
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "relu"
    layer_norm: bool = False
    init_log_std: float = 0.0

    @nn.compact
    def __call__(self, obs: jax.Array) -> DiagGaussian:
        mean = MLP(self.hidden_sizes, self.action_size, self.activation, layer_norm=self.layer_norm, name="mean")(obs)
        log_std = MLP(self.hidden_sizes, self.action_size, self.activation, layer_norm=self.layer_norm,
                      name="log_std")(obs)
        return DiagGaussian(mean, log_std + self.init_log_std)


def make_adaptive_std_gaussian_policy(observation_size: int, action_size: int,
                                      hidden_sizes: Sequence[int] = (64, 64), activation: str = "relu",
                                      layer_norm: bool = False, init_log_std: float = 0.0) -> Network:
    """``apply(params, obs) -> DiagGaussian``."""
    _check_mlp(hidden_sizes, activation)
    module = AdaptiveStdGaussianPolicy(action_size, tuple(hidden_sizes), activation, layer_norm, init_log_std)
    return Network(init=lambda key: module.init(key, jnp.zeros((observation_size,), float_dtype())),
                   apply=module.apply)
