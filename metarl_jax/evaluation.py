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

# 0.975 quantiles of Student's t with 1..30 degrees of freedom.
_T975 = (12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004, 2.262157, 2.228139,
         2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905, 2.109816, 2.100922, 2.093024, 2.085963,
         2.079614, 2.073873, 2.068658, 2.063899, 2.059539, 2.055529, 2.051831, 2.048407, 2.045230, 2.042272)
_Z975 = 1.959964


def t_quantile_975(dof: int) -> float:
    """t_{0.975, ν}: the table up to ν = 30, beyond it the Cornish-Fisher expansion around z (error < 1e-4)."""
    if dof < 1:
        raise ValueError(f"t_quantile_975: degrees of freedom must be >= 1, got {dof}")
    if dof <= len(_T975):
        return _T975[dof - 1]
    z = _Z975
    return z + (z**3 + z) / (4 * dof) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * dof**2)


class AdaptationCurve(NamedTuple):
    """Returns after 0..K adaptation steps.

    ``returns`` has shape [num_tasks, K + 1] for one run, or [num_seeds, num_tasks, K + 1]
    for independent seeds (``evaluate_seeds``). ``stderr`` is the standard error across
    tasks (one seed) or across seeds' task-means (several seeds); ``ci95`` is the t-interval
    of the mean across seeds.
    """

    returns: jax.Array

    @property
    def num_seeds(self) -> int:
        return 1 if np.ndim(self.returns) == 2 else int(np.shape(self.returns)[0])

    @property
    def seed_means(self) -> np.ndarray:
        """[num_seeds, K + 1]: each seed's mean over tasks."""
        r = np.asarray(self.returns, dtype=np.float64)
        return r.mean(axis=-2).reshape(-1, r.shape[-1])

    @property
    def mean(self) -> np.ndarray:
        return self.seed_means.mean(axis=0)

    @property
    def stderr(self) -> np.ndarray:
        # Independent units: tasks of one seed, or seeds (tasks of one seed share its parameters).
        units = np.asarray(self.returns, dtype=np.float64) if self.num_seeds == 1 else self.seed_means
        n = units.shape[0]
        return units.std(axis=0, ddof=1) / np.sqrt(n) if n > 1 else np.zeros(units.shape[-1])

    @property
    def ci95(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean ± t_{0.975, n-1} · s.e. over the independent units of ``stderr``."""
        n = self.num_seeds if self.num_seeds > 1 else int(np.shape(self.returns)[0])
        half = t_quantile_975(n - 1) * self.stderr if n > 1 else np.zeros_like(self.mean)
        return self.mean - half, self.mean + half

    def to_dict(self) -> dict[str, Any]:
        low, high = self.ci95
        out = {"mean": self.mean.tolist(), "stderr": self.stderr.tolist(), "ci95_low": low.tolist(),
               "ci95_high": high.tolist(), "num_seeds": self.num_seeds}
        if self.num_seeds == 1:
            out["per_task"] = np.asarray(self.returns).reshape(-1, self.mean.shape[0]).tolist()
        else:
            out["per_seed"] = self.seed_means.tolist()
            out["per_seed_task"] = np.asarray(self.returns).tolist()
        return out


def maml_step_sizes(lr: float, num_steps: int) -> jax.Array:
    """MAML's meta-test schedule: lr for the first step, lr/2 for the rest."""
    return jnp.where(jnp.arange(num_steps) == 0, lr, lr / 2.0)


def halving_step_sizes(lr: float, num_steps: int) -> jax.Array:
    """MAESN's schedule: the step size halves after every iteration (lr, lr/2, lr/4, ...)."""
    return lr * 0.5 ** jnp.arange(num_steps)


def constant_step_sizes(lr: float, num_steps: int) -> jax.Array:
    """The training step size at every test step (TESP's protocol: the fast updates of meta-training)."""
    return jnp.full((num_steps,), lr)


SCHEDULES = {"maml": maml_step_sizes, "halving": halving_step_sizes, "constant": constant_step_sizes}

class AdaptationRecording(NamedTuple):
    """The meta-test as a video shows it: per task and adaptation stage, one episode's physics states.

    labels: what each stage is (["before adaptation", "after 1 step", ...]; RL²: the episodes of a trial).
    returns: mean return of each stage's batch, [N, S].   qpos: one episode of each stage, [N, S, T, nq].
    """

    labels: tuple[str, ...]
    returns: np.ndarray
    qpos: np.ndarray


Sample = Callable[[Any, Any, jax.Array], tuple[Any, jax.Array]]
Update = Callable[[Any, Any, Any, jax.Array], Any]


class AdaptationTrace(NamedTuple):
    """The protocol with its intermediate states: index k is before adaptation step k (k = K: final).

    returns: [N, K + 1];  states: the adapted state, [N, K + 1, ...];  kept: ``keep(batch)``, [N, K + 1, ...].
    """

    returns: jax.Array
    states: Any
    kept: Any


def adaptation_trace(
    sample: Sample,
    update: Update,
    init_state: Any,
    tasks: Any,
    key: jax.Array,
    step_sizes: jax.Array,
    keep: Callable[[Any], Any] = lambda batch: (),
) -> AdaptationTrace:
    """Runs the protocol for every task (vmapped) with ``len(step_sizes)`` adaptation steps.

    ``sample(state, task, key) -> (batch, mean return of the batch)`` and
    ``update(state, task, batch, lr) -> state'``; ``init_state`` is shared by all tasks.
    Batch k is drawn with key k of ``split(task_key, K + 1)``; the last key draws the final batch.
    """
    num_tasks = jax.tree.leaves(tasks)[0].shape[0]
    task_keys = jax.random.split(key, num_tasks)

    def append(history, last):
        return jax.tree.map(lambda xs, x: jnp.concatenate([xs, x[None]]), history, last)

    def one_task(task, task_key):
        step_keys = jax.random.split(task_key, step_sizes.shape[0] + 1)

        def body(state, inputs):
            step_key, lr = inputs
            batch, mean_return = sample(state, task, step_key)
            return update(state, task, batch, lr), (mean_return, state, keep(batch))

        final_state, history = jax.lax.scan(body, init_state, (step_keys[:-1], step_sizes))
        batch, final_return = sample(final_state, task, step_keys[-1])
        return AdaptationTrace(*append(history, (final_return, final_state, keep(batch))))

    return jax.vmap(one_task)(tasks, task_keys)


def adaptation_curve(sample: Sample, update: Update, init_state: Any, tasks: Any, key: jax.Array,
                     step_sizes: jax.Array) -> AdaptationCurve:
    """The returns of ``adaptation_trace`` (intermediate states are not kept, XLA drops them)."""
    return AdaptationCurve(adaptation_trace(sample, update, init_state, tasks, key, step_sizes).returns)
