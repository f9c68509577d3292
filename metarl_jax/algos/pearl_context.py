"""PEARL's probabilistic context encoder q_φ(z | c) (Rakelly et al. 2019, Sec. 4.1, eq. 3).

Each transition c_n = (s, a, r) (or (s, a, r, s′)) is mapped by an MLP to the parameters of a
Gaussian factor Ψ_φ(z | c_n) = N(μ_n, σ_n²); the posterior is their product,

    q_φ(z | c_{1:N}) ∝ Π_n N(z; μ_n, σ_n²):   1/σ² = Σ_n 1/σ_n²,   μ = σ² Σ_n μ_n / σ_n²,

which is permutation-invariant and closed-form. As in oyster (``_product_of_gaussians``) the
factors' variances are softplus outputs clamped at 1e-7 and the product has no prior factor;
a context with no transitions (every ``mask`` entry 0) gives the prior N(0, I). The KL term of
the encoder loss is KL(q(z|c) ‖ N(0, I)) = ½ Σ_d (σ_d² + μ_d² − 1 − log σ_d²).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp

from metarl_jax.networks import DDPG_OUTPUT_UNIFORM, MLP, _check_mlp, float_dtype

MIN_VARIANCE = 1e-7  # oyster: torch.clamp(sigmas_squared, min=1e-7)


class Posterior(NamedTuple):
    """A diagonal Gaussian over z: ``mean`` and ``variance`` [..., latent]."""

    mean: jax.Array
    variance: jax.Array

    def sample(self, key: jax.Array) -> jax.Array:
        """z = μ + σ ε (reparameterised: differentiable in μ and σ²)."""
        return self.mean + jnp.sqrt(self.variance) * jax.random.normal(key, self.mean.shape, self.mean.dtype)

    def kl_to_prior(self) -> jax.Array:
        """KL(N(μ, σ²) ‖ N(0, I)) summed over the last axis."""
        return 0.5 * jnp.sum(self.variance + self.mean**2 - 1.0 - jnp.log(self.variance), axis=-1)


def prior(shape: tuple[int, ...], latent_size: int) -> Posterior:
    """N(0, I) with leading ``shape``."""
    dtype = float_dtype()
    return Posterior(jnp.zeros((*shape, latent_size), dtype), jnp.ones((*shape, latent_size), dtype))


def product_of_gaussians(means: jax.Array, variances: jax.Array, mask: jax.Array | None = None) -> Posterior:
    """Π_n N(μ_n, σ_n²) over axis −2 (the transitions), the factors with ``mask`` 0 left out.

    ``means``, ``variances``: [..., N, latent]; ``mask``: [..., N] (0/1). Where no factor is left
    (an empty context) the result is the prior N(0, I).
    """
    chex.assert_equal_shape((means, variances))
    precision = 1.0 / jnp.maximum(variances, MIN_VARIANCE)
    if mask is not None:
        chex.assert_shape(mask, means.shape[:-1])
        precision = precision * mask[..., None].astype(precision.dtype)
    total_precision = jnp.sum(precision, axis=-2)
    empty = total_precision <= 0.0
    variance = 1.0 / jnp.where(empty, 1.0, total_precision)
    mean = variance * jnp.sum(precision * means, axis=-2)
    return Posterior(jnp.where(empty, 0.0, mean), jnp.where(empty, 1.0, variance))


def context_features(obs: jax.Array, action: jax.Array, reward: jax.Array, next_obs: jax.Array,
                     use_next_obs: bool) -> jax.Array:
    """c_n = s ⧺ a ⧺ r (⧺ s′ with ``use_next_obs``), [..., features]."""
    parts = [obs, action, reward[..., None]] + ([next_obs] if use_next_obs else [])
    return jnp.concatenate(parts, axis=-1)


def context_size(observation_size: int, action_size: int, use_next_obs: bool) -> int:
    return observation_size + action_size + 1 + (observation_size if use_next_obs else 0)


class ContextEncoder(NamedTuple):
    """``init(key) -> params``; ``factors(params, c) -> (μ_n, σ_n²)``; ``posterior(params, c, mask) -> q(z|c)``."""

    init: Callable
    factors: Callable
    posterior: Callable
    latent_size: int


def make_context_encoder(input_size: int, latent_size: int, hidden_sizes=(200, 200, 200),
                         activation: str = "relu", information_bottleneck: bool = True) -> ContextEncoder:
    """The MLP c_n ↦ (μ_n, softplus(ρ_n)); oyster's last layer is U(−3e-3, 3e-3).

    Without ``information_bottleneck`` (oyster's ``use_information_bottleneck=False``) z is
    deterministic: the mean of the factors' means, with zero variance and no KL.
    """
    _check_mlp(hidden_sizes, activation)
    module = MLP(tuple(hidden_sizes), 2 * latent_size, activation, output_uniform=DDPG_OUTPUT_UNIFORM)

    def init(key: jax.Array):
        return module.init(key, jnp.zeros((input_size,), float_dtype()))

    def factors(params, context: jax.Array) -> tuple[jax.Array, jax.Array]:
        out = module.apply(params, context)
        return out[..., :latent_size], jax.nn.softplus(out[..., latent_size:])

    def posterior(params, context: jax.Array, mask: jax.Array | None = None) -> Posterior:
        means, variances = factors(params, context)
        if information_bottleneck:
            return product_of_gaussians(means, variances, mask)
        weights = jnp.ones(means.shape[:-1], means.dtype) if mask is None else mask.astype(means.dtype)
        mean = jnp.sum(weights[..., None] * means, axis=-2) / jnp.maximum(jnp.sum(weights, -1), 1.0)[..., None]
        return Posterior(mean, jnp.zeros_like(mean))

    return ContextEncoder(init, factors, posterior, latent_size)
