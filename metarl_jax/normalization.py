"""Running observation normalisation, kept in the train state.

    stats = init(size)
    stats = update(stats, batch)                 # batch [..., size]: every leading axis is data
    x̂ = normalize(stats, x)                      # clip((x − mean) / max(std, min_std), ±clip)
    policy = normalized_policy(policy, stats)    # a Policy that sees x̂ instead of x

The statistics are exact running moments of every observation seen so far: a batch's mean and
sum of squared deviations are merged by Chan et al.'s pairwise update (1979),

    n = n_a + n_b,   δ = m_b − m_a,   m = m_a + δ n_b / n,   M₂ = M₂_a + M₂_b + δ² n_a n_b / n,

which is order-independent up to rounding and stable where E[x²] − E[x]² would cancel. The
defaults are OpenAI baselines' DDPG (``RunningMeanStd``; observations clipped to ±5, std floored
at 0.1). Everything is in ``networks.float_dtype()``, so a float64 run normalises in float64.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from metarl_jax.networks import Policy, float_dtype

CLIP = 5.0
MIN_STD = 0.1


class RunningStatistics(NamedTuple):
    """count n, mean m and sum of squared deviations M₂ of everything seen, per feature."""

    count: jax.Array
    mean: jax.Array
    sum_squared_deviations: jax.Array

    @property
    def variance(self) -> jax.Array:
        """M₂ / n, and 1 before any data (so an untouched normaliser is the identity up to clipping)."""
        return jnp.where(self.count > 0, self.sum_squared_deviations / jnp.maximum(self.count, 1.0), 1.0)

    def std(self, min_std: float = MIN_STD) -> jax.Array:
        return jnp.maximum(jnp.sqrt(self.variance), min_std)


def init(size: int) -> RunningStatistics:
    dtype = float_dtype()
    return RunningStatistics(jnp.zeros((), dtype), jnp.zeros((size,), dtype), jnp.zeros((size,), dtype))


def update(stats: RunningStatistics, batch: jax.Array, weights: jax.Array | None = None) -> RunningStatistics:
    """Merges ``batch`` ([..., size]) into the statistics; ``weights`` ([...], 0/1) drops entries."""
    size = stats.mean.shape[-1]
    if batch.shape[-1] != size:
        raise ValueError(f"normalization.update: batch has {batch.shape[-1]} features, the statistics {size}")
    x = batch.reshape(-1, size).astype(stats.mean.dtype)
    w = jnp.ones(x.shape[:1], x.dtype) if weights is None else weights.reshape(-1).astype(x.dtype)
    count_b = jnp.sum(w)
    mean_b = jnp.sum(w[:, None] * x, axis=0) / jnp.maximum(count_b, 1.0)
    m2_b = jnp.sum(w[:, None] * (x - mean_b) ** 2, axis=0)
    count = stats.count + count_b
    delta = mean_b - stats.mean
    ratio = count_b / jnp.maximum(count, 1.0)
    return RunningStatistics(
        count=count,
        mean=stats.mean + delta * ratio,
        sum_squared_deviations=stats.sum_squared_deviations + m2_b + delta**2 * stats.count * ratio,
    )


def normalize(stats: RunningStatistics, x: jax.Array, clip: float = CLIP, min_std: float = MIN_STD) -> jax.Array:
    """clip((x − mean) / std, −clip, clip), with std floored at ``min_std``."""
    return jnp.clip((x - stats.mean) / stats.std(min_std), -clip, clip).astype(stats.mean.dtype)



def normalized_policy(policy: Policy, stats: RunningStatistics, clip: float = CLIP,
                      min_std: float = MIN_STD) -> Policy:
    """``policy`` applied to normalised observations, with ``stats`` held fixed (no gradient flows into them).

    Used to act (rollouts) and to re-score a batch with the statistics it was collected under, so
    the importance ratio is exactly 1 at the sampling parameters.
    """
    stats = jax.lax.stop_gradient(stats)

    def apply(params, obs, latent=None):
        return policy.apply(params, normalize(stats, obs, clip, min_std), latent)

    return Policy(init=policy.init, apply=apply, latent_size=policy.latent_size)
