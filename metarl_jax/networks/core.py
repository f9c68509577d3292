"""Gaussian policies, the diagonal-Gaussian distribution math and the MLP every network uses.

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
    "swish": nn.swish,  # x·σ(x): brax's default for PPO and SAC
}

_LOG_2PI = math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)


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
    """Dense layers with ``activation``; ``layer_norm`` puts a LayerNorm before each activation.

    The last layer is small: variance scaling ``output_scale`` (rllab's init), or, with
    ``output_uniform``, U(−output_uniform, output_uniform) (DDPG's 3e-3, Lillicrap et al. 2016, Sec. 7).
    """

    hidden_sizes: Sequence[int]
    output_size: int
    activation: str = "tanh"
    output_scale: float = 0.01
    layer_norm: bool = False
    output_uniform: float | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = hidden_layers(x, self.hidden_sizes, self.activation, self.layer_norm)
        return output_layer(x, self.output_size, self.output_scale, self.output_uniform)


def hidden_layers(x: jax.Array, widths: Sequence[int], activation: str, layer_norm: bool) -> jax.Array:
    """Dense → (LayerNorm) → activation for each width (call inside a compact module)."""
    act = ACTIVATIONS[activation]
    for width in widths:
        x = nn.Dense(width, kernel_init=nn.initializers.lecun_normal(), param_dtype=float_dtype())(x)
        if layer_norm:
            x = nn.LayerNorm(param_dtype=float_dtype())(x)
        x = act(x)
    return x


def output_layer(x: jax.Array, size: int, scale: float = 0.01, uniform: float | None = None) -> jax.Array:
    """The last Dense layer, initialised small (call inside a compact module)."""
    if uniform is not None:
        kernel_init = lambda key, shape, dtype: jax.random.uniform(key, shape, dtype, -uniform, uniform)  # noqa: E731
    else:  # A small last layer keeps the initial policy mean near zero (rllab's init).
        kernel_init = nn.initializers.variance_scaling(scale, "fan_in", "truncated_normal")
    return nn.Dense(size, kernel_init=kernel_init, param_dtype=float_dtype())(x)


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


def normc_initializer(scale: float) -> Callable[..., jax.Array]:
    """Columns of unit norm times ``scale``: w = scale · n / ‖n‖ per output unit, n ~ N(0, I) (rllib/baselines)."""

    def init(key, shape, dtype=None):
        noise = jax.random.normal(key, shape, float_dtype() if dtype is None else dtype)
        return scale * noise / jnp.sqrt(jnp.sum(noise**2, axis=0, keepdims=True))

    return init


def _check_mlp(hidden_sizes: Sequence[int], activation: str) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if not hidden_sizes or any(int(w) <= 0 for w in hidden_sizes):
        raise ValueError(f"hidden_sizes must be a non-empty tuple of positive ints, got {tuple(hidden_sizes)!r}")
