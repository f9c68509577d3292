"""Replay buffers on device: flashbax's item buffer behind four pure functions.

    buffer = make_replay_buffer(capacity)                   # or make_replay_buffer(capacity, num_tasks=N)
    state = buffer.init(example_transition)                 # one unbatched item fixes the structure
    state = buffer.add(state, transitions)                  # leading axis [n] ([N, n] per task)
    batch = buffer.sample(state, key, batch_size)           # [batch_size] ([N, batch_size])
    buffer.size(state)                                      # items held (≤ capacity); [N] per task

A circular buffer: the (n + 1)-th item past ``capacity`` overwrites the oldest, and ``sample``
draws uniformly with replacement among the items held. Everything is a pure function of a
pytree of arrays, so the state lives in ``TrainState.extras`` (checkpoints carry it and a
resume continues bit-identically) and ``add``/``sample`` run inside the jitted train step.

With ``num_tasks`` every task has its own buffer of ``capacity`` items (PEARL's per-task
replay): ``init`` stacks N empty buffers and ``add``/``sample``/``size`` are vmapped over the
leading task axis (each task samples with its own key).

flashbax (InstaDeep) supplies the storage: its state is a dataclass of arrays (no host
objects, no typed keys), it needs nothing beyond jax/chex, and it works on jax 0.10 and
0.11 (``docs/design_notes.md``, "Replay").
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import flashbax
import jax
import jax.numpy as jnp


@functools.cache
def _item_buffer(capacity: int, batch_size: int):
    # min_length 1: sampling is allowed as soon as one item is held (learners fill before sampling).
    return flashbax.make_item_buffer(max_length=capacity, min_length=1, sample_batch_size=batch_size,
                                     add_sequences=True, add_batches=False)


class ReplayBuffer(NamedTuple):
    capacity: int
    num_tasks: int | None
    init: Callable[[Any], Any]
    add: Callable[[Any, Any], Any]
    sample: Callable[[Any, jax.Array, int], Any]
    size: Callable[[Any], jax.Array]


def make_replay_buffer(capacity: int, num_tasks: int | None = None) -> ReplayBuffer:
    """A circular buffer of ``capacity`` items (per task, with ``num_tasks``)."""
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
        raise ValueError(f"make_replay_buffer: capacity must be a positive int, got {capacity!r}")
    if num_tasks is not None and (isinstance(num_tasks, bool) or not isinstance(num_tasks, int) or num_tasks < 1):
        raise ValueError(f"make_replay_buffer: num_tasks must be None or a positive int, got {num_tasks!r}")

    def init(example: Any) -> Any:
        state = _item_buffer(capacity, 1).init(example)
        if num_tasks is None:
            return state
        return jax.tree.map(lambda x: jnp.broadcast_to(x, (num_tasks, *x.shape)), state)

    def add(state: Any, items: Any) -> Any:
        count = jax.tree.leaves(items)[0].shape[0]
        if count > capacity:
            raise ValueError(f"replay add: {count} items exceed the capacity {capacity}; add fewer at a time")
        return _item_buffer(capacity, 1).add(state, items)

    def sample(state: Any, key: jax.Array, batch_size: int) -> Any:
        if batch_size > capacity:
            raise ValueError(f"replay sample: batch_size {batch_size} exceeds the capacity {capacity}")
        return _item_buffer(capacity, batch_size).sample(state, key).experience

    def size(state: Any) -> jax.Array:
        return jnp.where(state.is_full, capacity, state.current_index).astype(jnp.int32)

    if num_tasks is None:
        return ReplayBuffer(capacity, None, init, add, sample, size)

    def sample_tasks(state: Any, key: jax.Array, batch_size: int) -> Any:
        keys = jax.random.split(key, num_tasks)
        return jax.vmap(sample, in_axes=(0, 0, None))(state, keys, batch_size)

    return ReplayBuffer(capacity, num_tasks, init, jax.vmap(add), sample_tasks, jax.vmap(size))


# ---- per-task buffers: one chosen task at a time (PEARL) -----------------------------------------
# A per-task state holds experience [N, 1, capacity, ...], current_index [N] and is_full [N] (flashbax's
# item-buffer layout, stacked by ``init``). These functions address one task's row, or sample a chosen
# list of tasks, without touching (or copying) the other tasks' buffers.


def add_to_task(buffer: ReplayBuffer, state: Any, task: jax.Array, items: Any, clear: bool | jax.Array = False
                ) -> Any:
    """Adds ``items`` ([n, ...]) to task ``task``'s buffer (circularly, as ``add``); with ``clear`` the task's
    buffer is emptied first (oyster's ``enc_replay_buffer.task_buffers[idx].clear()``)."""
    if buffer.num_tasks is None:
        raise ValueError("add_to_task needs a per-task buffer (make_replay_buffer(capacity, num_tasks=N))")
    capacity = buffer.capacity
    count = jax.tree.leaves(items)[0].shape[0]
    if count > capacity:
        raise ValueError(f"add_to_task: {count} items exceed the capacity {capacity}; add fewer at a time")
    clear = jnp.asarray(clear)
    start = jnp.where(clear, 0, state.current_index[task])
    positions = (start + jnp.arange(count)) % capacity
    experience = jax.tree.map(lambda stored, x: stored.at[task, 0, positions].set(x.astype(stored.dtype)),
                              state.experience, items)
    end = start + count
    is_full = jnp.where(clear, False, state.is_full[task]) | (end >= capacity)
    return state.replace(experience=experience, current_index=state.current_index.at[task].set(end % capacity),
                         is_full=state.is_full.at[task].set(is_full))


def sample_tasks(buffer: ReplayBuffer, state: Any, tasks: jax.Array, key: jax.Array, batch_size: int) -> Any:
    """``batch_size`` items of each of ``tasks`` ([M] indices, repeats allowed), uniformly with replacement
    among the items each task holds: leaves [M, batch_size, ...]. A task must hold at least one item."""
    if buffer.num_tasks is None:
        raise ValueError("sample_tasks needs a per-task buffer (make_replay_buffer(capacity, num_tasks=N))")
    sizes = buffer.size(state)[tasks]
    items = jax.random.randint(key, (tasks.shape[0], batch_size), 0, jnp.maximum(sizes, 1)[:, None])
    return jax.tree.map(lambda stored: stored[tasks[:, None], 0, items], state.experience)
