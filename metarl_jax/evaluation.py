"""Meta-test protocol: adaptation curves on a fixed task split.

For every held-out task, start from the meta-learned initialisation, then
repeat K times: sample episodes with the current policy, record their mean
return, take one adaptation step. A final batch measures the return after K
steps. The result is the return after 0, 1, ..., K adaptation steps (MAML
Fig. 5, MAESN Fig. 6), measured with the sparse or the dense reward.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class AdaptationCurve(NamedTuple):
    """Returns after 0..K adaptation steps: ``returns`` has shape [num_tasks, K + 1]."""

    returns: jax.Array

    @property
    def mean(self) -> np.ndarray:
        return np.asarray(jnp.mean(self.returns, axis=0))

    @property
    def stderr(self) -> np.ndarray:
        r = np.asarray(self.returns)
        return r.std(axis=0, ddof=1) / np.sqrt(max(r.shape[0] - 1, 1)) if r.shape[0] > 1 else np.zeros(r.shape[1])

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.tolist(), "stderr": self.stderr.tolist(),
                "per_task": np.asarray(self.returns).tolist()}


def maml_step_sizes(lr: float, num_steps: int) -> jax.Array:
    """MAML's meta-test schedule: lr for the first step, lr/2 for the rest."""
    return jnp.where(jnp.arange(num_steps) == 0, lr, lr / 2.0)


def halving_step_sizes(lr: float, num_steps: int) -> jax.Array:
    """MAESN's schedule: the step size halves after every iteration (lr, lr/2, lr/4, ...)."""
    return lr * 0.5 ** jnp.arange(num_steps)


SCHEDULES = {"maml": maml_step_sizes, "halving": halving_step_sizes}

AdaptStep = Callable[[Any, Any, jax.Array, jax.Array], tuple[Any, jax.Array]]
Measure = Callable[[Any, Any, jax.Array], jax.Array]


def adaptation_curve(
    adapt_step: AdaptStep,
    measure: Measure,
    init_state: Any,
    tasks: Any,
    key: jax.Array,
    step_sizes: jax.Array,
) -> AdaptationCurve:
    """Runs the protocol for every task (vmapped) with ``len(step_sizes)`` adaptation steps.

    ``adapt_step(state, task, key, lr) -> (state', return measured before the step)`` and
    ``measure(state, task, key) -> return``. ``init_state`` is shared by all tasks.
    """
    num_tasks = jax.tree.leaves(tasks)[0].shape[0]
    task_keys = jax.random.split(key, num_tasks)

    def one_task(task, task_key):
        step_keys = jax.random.split(task_key, step_sizes.shape[0] + 1)

        def body(state, inputs):
            step_key, lr = inputs
            return adapt_step(state, task, step_key, lr)

        final_state, returns = jax.lax.scan(body, init_state, (step_keys[:-1], step_sizes))
        final_return = measure(final_state, task, step_keys[-1])
        return jnp.concatenate([returns, final_return[None]])

    return AdaptationCurve(jax.vmap(one_task)(tasks, task_keys))
