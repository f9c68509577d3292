"""Policies and the diagonal-Gaussian distribution math.

* ``GaussianMLPPolicy``: π(a | s) = N(μ_θ(s), diag(σ²)) with a state-independent,
  learned log σ (rllab / ProMP style).
* ``LatentGaussianMLPPolicy``: π(a | s, z) with input s ⧺ z, where z is drawn once
  per episode (MAESN, MAME).
* ``DiagGaussian``: log-prob, entropy, KL and sampling as small pure functions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "tanh": jnp.tanh,
    "elu": nn.elu,
}

_LOG_2PI = math.log(2.0 * math.pi)


def float_dtype() -> jnp.dtype:
    """The parameter dtype: float32, or float64 when ``jax_enable_x64`` is set.

    Every network and learned constant is created in this dtype, so a whole run (rollouts,
    estimators, TRPO's conjugate gradient) is float64 under ``JAX_ENABLE_X64=1``: the
    equivalence tests use that to compare programs at 1e-16 rounding (``tests/equivalence.py``).
    """
    return jax.dtypes.canonicalize_dtype(jnp.float64)


class DiagGaussian(NamedTuple):
    """A diagonal Gaussian over the last axis; ``mean`` and ``log_std`` broadcast."""

    mean: jax.Array
    log_std: jax.Array

    def log_prob(self, x: jax.Array) -> jax.Array:
        # log N(x; μ, σ²) = −½ Σ_d [((x − μ)/σ)² + 2 log σ + log 2π]
        z = (x - self.mean) * jnp.exp(-self.log_std)
        return -0.5 * jnp.sum(z**2 + 2.0 * self.log_std + _LOG_2PI, axis=-1)

    def entropy(self) -> jax.Array:
        # H = Σ_d (log σ + ½ log 2πe)
        log_std = jnp.broadcast_to(self.log_std, self.mean.shape)
        return jnp.sum(log_std + 0.5 * (_LOG_2PI + 1.0), axis=-1)

    def kl(self, other: DiagGaussian) -> jax.Array:
        """KL(self ‖ other) = Σ_d [log σ₂/σ₁ + (σ₁² + (μ₁ − μ₂)²) / (2σ₂²) − ½]."""
        var_ratio = jnp.exp(2.0 * (self.log_std - other.log_std))
        mean_term = ((self.mean - other.mean) * jnp.exp(-other.log_std)) ** 2
        return jnp.sum(other.log_std - self.log_std + 0.5 * (var_ratio + mean_term) - 0.5, axis=-1)

    def sample(self, key: jax.Array) -> jax.Array:
        noise = jax.random.normal(key, jnp.broadcast_shapes(self.mean.shape, self.log_std.shape))
        return self.mean + jnp.exp(self.log_std) * noise


def standard_normal_kl(mean: jax.Array, log_std: jax.Array) -> jax.Array:
    """KL(N(μ, σ²) ‖ N(0, I)) summed over the last axis (MAESN's latent prior term)."""
    return DiagGaussian(mean, log_std).kl(DiagGaussian(jnp.zeros_like(mean), jnp.zeros_like(log_std)))


class MLP(nn.Module):
    hidden_sizes: Sequence[int]
    output_size: int
    activation: str = "tanh"
    output_scale: float = 0.01

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        for width in self.hidden_sizes:
            x = act(nn.Dense(width, kernel_init=nn.initializers.lecun_normal(), param_dtype=float_dtype())(x))
        # A small last layer keeps the initial policy mean near zero (rllab's init).
        return nn.Dense(self.output_size, kernel_init=nn.initializers.variance_scaling(
            self.output_scale, "fan_in", "truncated_normal"), param_dtype=float_dtype())(x)


class GaussianMLPPolicy(nn.Module):
    """π(a | s) = N(MLP(s), diag(exp(2 log σ))), log σ a learned vector."""

    action_size: int
    hidden_sizes: Sequence[int] = (100, 100)
    activation: str = "relu"
    init_log_std: float = 0.0

    @nn.compact
    def __call__(self, obs: jax.Array) -> DiagGaussian:
        mean = MLP(self.hidden_sizes, self.action_size, self.activation)(obs)
        log_std = self.param("log_std", nn.initializers.constant(self.init_log_std), (self.action_size,),
                             float_dtype())
        return DiagGaussian(mean, jnp.broadcast_to(log_std, mean.shape))


class LatentGaussianMLPPolicy(nn.Module):
    """π(a | s, z): the Gaussian MLP policy on the input s ⧺ z (MAESN eq. 2)."""

    action_size: int
    latent_size: int
    hidden_sizes: Sequence[int] = (100, 100)
    activation: str = "relu"
    init_log_std: float = 0.0

    @nn.compact
    def __call__(self, obs: jax.Array, latent: jax.Array) -> DiagGaussian:
        chex.assert_shape(latent, (*obs.shape[:-1], self.latent_size))
        return GaussianMLPPolicy(
            self.action_size, self.hidden_sizes, self.activation, self.init_log_std, name="policy"
        )(jnp.concatenate([obs, latent], axis=-1))


class Policy(NamedTuple):
    """A stochastic policy as two pure functions (optax style).

    ``init(key) -> params`` and ``apply(params, obs, latent) -> DiagGaussian``;
    ``latent`` is a per-episode vector of size ``latent_size`` (empty when 0).
    """

    init: Callable[[jax.Array], chex.ArrayTree]
    apply: Callable[[chex.ArrayTree, jax.Array, jax.Array], DiagGaussian]
    latent_size: int


def make_gaussian_policy(
    observation_size: int,
    action_size: int,
    hidden_sizes: Sequence[int] = (100, 100),
    activation: str = "relu",
    init_log_std: float = 0.0,
    latent_size: int = 0,
) -> Policy:
    """Builds a (latent-conditioned when ``latent_size`` > 0) Gaussian MLP policy."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if latent_size:
        module = LatentGaussianMLPPolicy(action_size, latent_size, tuple(hidden_sizes), activation, init_log_std)

        def init(key):
            return module.init(key, jnp.zeros((observation_size,)), jnp.zeros((latent_size,)))

        def apply(params, obs, latent):
            return module.apply(params, obs, latent)
    else:
        module = GaussianMLPPolicy(action_size, tuple(hidden_sizes), activation, init_log_std)

        def init(key):
            return module.init(key, jnp.zeros((observation_size,)))

        def apply(params, obs, latent=None):
            del latent
            return module.apply(params, obs)

    return Policy(init=init, apply=apply, latent_size=latent_size)


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
