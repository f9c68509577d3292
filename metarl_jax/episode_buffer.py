"""A fixed-size buffer of whole episodes inside the program (TESP's per-task episode buffer, eqs. 3-4).

    B⁰ = ∅,   Bᵏ = S_M(Bᵏ⁻¹ ∪ {τᵏ_1, ..., τᵏ_N}),   S_M(X) = argmax_{X' ⊂ X, |X'| = M} Σ_{τ ∈ X'} R(τ)

The buffer holds M slots of [T, F] per-step features with their step mask, the episode returns and a
slot-validity flag, so its shapes never change under ``jit``/``scan``; an empty or partly filled buffer
is a validity mask, not a shorter array. ``keep_best`` is S_M by ``lax.top_k`` over the returns of the
valid candidates. Ties keep the earlier episode (buffer slots before new episodes, then by index), which
is what a stable sort of "old episodes + new episodes" by return does (llan-ml/tesp's ``sorted``).
With a capacity at least the number of episodes ever added, the buffer keeps every episode (TESP's
ablation V1, "a buffer of all episodes").
"""

from __future__ import annotations

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp


class EpisodeBuffer(NamedTuple):
    """M episode slots.

    Attributes:
      steps: per-step features of each held episode, [M, T, F].
      mask: 1.0 on the steps the episode took, [M, T].
      returns: the return R(τ) the slots are ranked by, [M].
      valid: 1.0 where the slot holds an episode, [M].
    """

    steps: jax.Array
    mask: jax.Array
    returns: jax.Array
    valid: jax.Array

    @property
    def capacity(self) -> int:
        return self.valid.shape[-1]

    @property
    def size(self) -> jax.Array:
        """How many slots hold an episode."""
        return jnp.sum(self.valid, axis=-1)


def empty_buffer(capacity: int, horizon: int, num_features: int, dtype=jnp.float32) -> EpisodeBuffer:
    """B⁰ = ∅ with room for ``capacity`` episodes of ``horizon`` steps."""
    return EpisodeBuffer(steps=jnp.zeros((capacity, horizon, num_features), dtype),
                         mask=jnp.zeros((capacity, horizon), dtype), returns=jnp.zeros((capacity,), dtype),
                         valid=jnp.zeros((capacity,), dtype))


def keep_best(buffer: EpisodeBuffer, steps: jax.Array, mask: jax.Array, returns: jax.Array) -> EpisodeBuffer:
    """S_M(B ∪ X) for N new episodes X ([N, T, F], [N, T], [N]): the M valid episodes of highest return."""
    chex.assert_rank([steps, mask, returns], [3, 2, 1])
    chex.assert_equal_shape_prefix([steps, mask, returns], 1)
    chex.assert_equal_shape_suffix([steps, buffer.steps], 2)
    candidates = EpisodeBuffer(
        steps=jnp.concatenate([buffer.steps, steps.astype(buffer.steps.dtype)]),
        mask=jnp.concatenate([buffer.mask, mask.astype(buffer.mask.dtype)]),
        returns=jnp.concatenate([buffer.returns, returns.astype(buffer.returns.dtype)]),
        valid=jnp.concatenate([buffer.valid, jnp.ones(returns.shape, buffer.valid.dtype)]),
    )
    # Empty slots rank last; lax.top_k puts the lower index first among equal values.
    score = jnp.where(candidates.valid > 0, candidates.returns, -jnp.inf)
    _, best = jax.lax.top_k(score, buffer.capacity)
    return jax.tree.map(lambda x: x[best], candidates)


def masked_episode_mean(values: jax.Array, buffer: EpisodeBuffer) -> jax.Array:
    """(1/|B|) Σ_{τ ∈ B} values(τ) over the valid slots; ``values`` is [M, ...]; 0 for an empty buffer."""
    weights = buffer.valid / jnp.maximum(buffer.size, 1.0)
    return jnp.tensordot(weights, values, axes=1)
