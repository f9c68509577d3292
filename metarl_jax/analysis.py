"""Jitted data extraction for the meta-test figures (MAESN Figs. 7-9).

* ``exploration_policy(algo, params)``: the policy an algorithm explores with
  before any adaptation, as (policy, params, latent size). Latent-space
  algorithms (MAESN, LatentSpace) roll out π_θ(a|s, z) with z ~ N(0, I);
  MAML-type algorithms their pre-update θ (``algo.policy_params``); plain
  policy-gradient learners their parameters; MAME its separate explorer μ_φ.
* ``adapted_rollouts``: for algorithms with a separate explorer (MAME's
  ``algo.adapted_rollout``), the explorer's episodes and the adapted policy's
  episode after the inner step on them.
* ``prior_rollouts``: one episode per task with that policy (z drawn per episode
  from the prior); ``random_rollouts``: with uniformly random actions (``uniform_policy``).
* ``training_latents``: MAESN's learned per-task q_i = N(μ_i, σ_i) and the
  post-update q'_i of its own inner step (``algo.sample_adaptation``).
* ``meta_test_latents``: MAESN's meta-test protocol (``MAESN.meta_test_trace``) with
  the latent distribution recorded after every step, and optionally with z fixed at
  μ instead of sampled (the structured-noise ablation, MAESN Fig. 9).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from metarl_jax.networks import DiagGaussian, Policy
from metarl_jax.rollout import Trajectory, rollout_tasks


class ExplorationPolicy(NamedTuple):
    """The policy to roll out before adaptation: π(a | s, z) with z of size ``latent_size`` (0: none)."""

    policy: Policy
    params: Any
    latent_size: int


def has_latent_space(algo: Any) -> bool:
    """True for algorithms with per-task latent distributions q_i = N(μ_i, σ_i) (MAESN, LatentSpace)."""
    policy = getattr(algo, "policy", None)
    return callable(getattr(algo, "task_latent", None)) and getattr(policy, "latent_size", 0) > 0


def has_separate_explorer(algo: Any) -> bool:
    """True for algorithms that explore with their own policy ``algo.explorer`` and adapt from its
    episodes with ``algo.adapted_rollout`` (MAME)."""
    return isinstance(getattr(algo, "explorer", None), Policy) and callable(getattr(algo, "adapted_rollout", None))


def exploration_policy(algo: Any, params: Any) -> ExplorationPolicy:
    """The pre-adaptation policy of ``algo`` inside its meta-parameters ``params``."""
    policy = getattr(algo, "policy", None)
    if not isinstance(policy, Policy):
        raise ValueError(f"algo {getattr(algo, 'name', algo)!r} has no rollout policy (algo.policy) to visualise")
    if has_separate_explorer(algo):  # MAME: μ_φ(a|s), its own network
        return ExplorationPolicy(algo.explorer, params["explorer"], 0)
    if has_latent_space(algo):
        return ExplorationPolicy(policy, params["policy"], policy.latent_size)
    if callable(getattr(algo, "policy_params", None)):  # MAML, Meta-SGD, ... : θ inside the meta-parameters
        return ExplorationPolicy(policy, algo.policy_params(params), 0)
    return ExplorationPolicy(policy, params, 0)  # VPG / TRPO / PPO: the params are the policy's


class UniformActions(NamedTuple):
    """Uniform action distribution on the box [low, high] (the random-exploration baseline)."""

    low: jax.Array
    high: jax.Array

    def sample(self, key: jax.Array) -> jax.Array:
        return jax.random.uniform(key, self.low.shape, minval=self.low, maxval=self.high)

    def log_prob(self, x: jax.Array) -> jax.Array:
        del x
        return -jnp.sum(jnp.log(self.high - self.low), axis=-1)


def action_bounds(family: Any) -> tuple[jax.Array, jax.Array]:
    """The box the family clips actions to: MJX ctrl range, the point families' ±max_action, else ±1."""
    size = family.action_size
    if hasattr(family, "ctrl_low") and hasattr(family, "ctrl_high"):
        low = jnp.broadcast_to(jnp.asarray(family.ctrl_low, jnp.float32), (size,))
        high = jnp.broadcast_to(jnp.asarray(family.ctrl_high, jnp.float32), (size,))
        return low, high
    bound = float(getattr(family, "max_action", 1.0))
    return jnp.full((size,), -bound), jnp.full((size,), bound)


def uniform_policy(family: Any) -> Policy:
    """A policy with the rollout protocol that ignores s and z and draws uniform actions."""
    low, high = action_bounds(family)
    return Policy(init=lambda key: {}, apply=lambda params, obs, latent=None: UniformActions(low, high),
                  latent_size=0)


def check_positions(family: Any) -> None:
    """Raises ValueError unless the family reports 2-D positions in ``state.info["position"]``."""
    task = jax.tree.map(lambda x: x[0], family.task_set("val", 1))
    state = jax.eval_shape(family.reset, jax.random.key(0), task)
    position = state.info.get("position")
    if position is None or tuple(position.shape) != (2,):
        raise ValueError(f"family {getattr(family, 'name', family)!r} does not report a 2-D position in "
                         "state.info['position']; trajectory figures need one")


@functools.partial(jax.jit, static_argnames=("family", "policy", "latent_size"))
def _prior_rollouts(family, policy, params, tasks, key, latent_size):
    num_tasks = jax.tree.leaves(tasks)[0].shape[0]
    latent_key, rollout_key = jax.random.split(key)
    # The prior N(0, I): one z per episode, never a training task's q_i.
    latents = jax.random.normal(latent_key, (num_tasks, 1, latent_size))
    trajectories = rollout_tasks(family, policy, params, tasks, rollout_key, 1, latents=latents)
    return jax.tree.map(lambda x: x[:, 0], trajectories)


def prior_rollouts(algo: Any, params: Any, tasks: Any, key: jax.Array) -> Trajectory:
    """One episode per task of ``tasks`` before any adaptation: [N, T, ...] (latents [N, z]).

    Latent-space algorithms condition each episode on its own z ~ N(0, I)
    (``random_rollouts``: uniformly random actions instead).
    """
    explorer = exploration_policy(algo, params)
    return _prior_rollouts(algo.family, explorer.policy, explorer.params, tasks, key, explorer.latent_size)


def random_rollouts(family: Any, tasks: Any, key: jax.Array) -> Trajectory:
    """One uniformly-random-action episode per task: [N, T, ...]."""
    return _prior_rollouts(family, uniform_policy(family), {}, tasks, key, 0)


@functools.partial(jax.jit, static_argnames=("algo",))
def _adapted_rollouts(algo, params, tasks, key):
    num_tasks = jax.tree.leaves(tasks)[0].shape[0]
    explored, adapted = jax.vmap(algo.adapted_rollout, in_axes=(None, 0, 0))(params, tasks,
                                                                             jax.random.split(key, num_tasks))
    return jax.tree.map(lambda x: x[:, 0], explored), jax.tree.map(lambda x: x[:, 0], adapted)


def adapted_rollouts(algo: Any, params: Any, tasks: Any, key: jax.Array) -> tuple[Trajectory, Trajectory]:
    """(the explorer's first episode, the adapted policy's episode) per task of ``tasks``: [N, T, ...] each.

    For algorithms with a separate explorer (``has_separate_explorer``): per task the explorer samples
    its batch, the inner step adapts on it, and the adapted policy runs one episode.
    """
    if not has_separate_explorer(algo):
        raise ValueError(f"algo {getattr(algo, 'name', algo)!r} has no separate exploration policy (MAME only)")
    return _adapted_rollouts(algo, params, tasks, key)


def _require_latents(algo: Any) -> None:
    if not has_latent_space(algo):
        raise ValueError(f"algo {getattr(algo, 'name', algo)!r} has no latent space (MAESN / LatentSpace only)")


@functools.partial(jax.jit, static_argnames=("algo",))
def _training_latents(algo, params, task_indices, key):
    tasks = jax.tree.map(lambda x: x[task_indices], algo.train_tasks)
    keys = jax.random.split(key, task_indices.shape[0])
    _, _, adapted = jax.vmap(algo.sample_adaptation, in_axes=(None, 0, 0, 0))(params, task_indices, tasks, keys)
    return algo.task_latent(params, task_indices), adapted


def training_latents(algo: Any, params: Any, task_indices: jax.Array, key: jax.Array
                     ) -> tuple[DiagGaussian, DiagGaussian]:
    """(q_i, q'_i) for the training tasks ``task_indices``: MAESN's learned per-task latents and the
    post-update latents of its inner step on a fresh pre-update batch (``algo.sample_adaptation``)."""
    _require_latents(algo)
    return _training_latents(algo, params, jnp.asarray(task_indices), key)


class MetaTestLatents(NamedTuple):
    """The meta-test protocol with its latent distributions recorded.

    Attributes:
      returns: mean return of the batch after k adaptation steps, [N, K + 1].
      latent_mean, latent_log_std: q after k steps (k = 0: the prior), [N, K + 1, z].
      first_latents, last_latents: the z of every episode of the batch before the
        first step and of the final batch, [N, E, z].
      first_positions, last_positions: those batches' 2-D positions, [N, E, T, 2].
    """

    returns: jax.Array
    latent_mean: jax.Array
    latent_log_std: jax.Array
    first_latents: jax.Array
    last_latents: jax.Array
    first_positions: jax.Array
    last_positions: jax.Array


@functools.partial(jax.jit, static_argnames=("algo", "fixed_latent"))
def _meta_test_latents(algo, params, tasks, key, fixed_latent):
    trace = algo.meta_test_trace(params, tasks, key, fixed_latent=fixed_latent,
                                 keep=lambda batch: (batch.latents, batch.positions))
    latents, positions = trace.kept
    return MetaTestLatents(trace.returns, trace.states.mean, trace.states.log_std, latents[:, 0], latents[:, -1],
                           positions[:, 0], positions[:, -1])


def meta_test_latents(algo: Any, params: Any, tasks: Any, key: jax.Array, fixed_latent: bool = False
                      ) -> MetaTestLatents:
    """MAESN's meta-test (from the prior N(0, I), VPG on (μ, log σ), scheduled steps) on ``tasks``.

    With the same ``key``, ``returns`` equals ``algo.evaluate(ts, tasks, key).returns``.
    ``fixed_latent=True`` is the structured-noise ablation: every episode uses z = μ
    instead of z ~ N(μ, σ), so the latent REINFORCE gradient vanishes and only the
    action noise explores.
    """
    _require_latents(algo)
    return _meta_test_latents(algo, params, tasks, key, bool(fixed_latent))
