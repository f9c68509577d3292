"""The continuing collector: vmapped environments stepped for a fixed number of steps, with auto-reset.

The episodic rollouts (``rollout.py``) run whole episodes from a reset; off-policy learners
instead keep their environments running across iterations and store transitions:

    collector = Collector(family, num_envs)
    state = collector.init(key, tasks)                     # tasks [num_envs, ...]: one per environment
    state, transitions, episodes = collector.collect(state, act, key, num_steps)

``act(actor_state, obs [E, obs], key) -> (action [E, A], actor_state, extras)`` chooses the
actions; ``actor_state`` (e.g. Ornstein-Uhlenbeck noise) is carried per environment and set to
zeros when that environment's episode ends. ``to_env`` maps the stored action to the one the
family receives (learners act in [−1, 1] and rescale to the family's bounds).

Termination and truncation stay apart (Pardo et al. 2018): a transition into a terminal state
has ``termination = 1`` (no bootstrap), one cut by the time limit has ``truncation = 1`` (the
target still bootstraps from ``next_obs``). ``next_obs`` is always the true successor s′, taken
before the automatic reset; the environment then restarts from ``family.reset`` with a fresh key
and the episode's own task. Finished episodes are reported in ``EpisodeStats``.

The collector uses only the task-family protocol (``reset``, ``step``, ``State.done`` and
``State.info["truncation"]``), so a user-written family works unchanged. Its state keeps the
environments as the flat tuple of their non-empty arrays: single-task families have empty task
arrays, which orbax cannot save, and they carry no information.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Actor = Callable[[Any, jax.Array, jax.Array], tuple[jax.Array, Any, dict]]


class Transition(NamedTuple):
    """(s, a, r, s′, termination, truncation, extras); leading axes as collected ([T, E] or flat [n])."""

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    next_obs: jax.Array
    termination: jax.Array
    truncation: jax.Array
    extras: dict

    def flatten(self) -> Transition:
        """[T, E, ...] → [T·E, ...], time-major (the order a buffer receives them)."""
        return jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), self)


class EpisodeStats(NamedTuple):
    """Per step and environment ([T, E]): ``ended`` marks the last step of an episode, whose
    undiscounted return and length are ``returns`` and ``lengths`` there (zero elsewhere)."""

    returns: jax.Array
    lengths: jax.Array
    ended: jax.Array

    @property
    def num_ended(self) -> jax.Array:
        return jnp.sum(self.ended)

    def mean_return(self, default: jax.Array | float = 0.0) -> jax.Array:
        """Mean return of the episodes that ended, ``default`` if none did."""
        count = self.num_ended
        return jnp.where(count > 0, jnp.sum(self.returns * self.ended) / jnp.maximum(count, 1.0), default)


class CollectorState(NamedTuple):
    """The running environments ([E]) and their episode bookkeeping."""

    env: tuple  # the non-empty arrays of the batched family State (``Collector.env_state`` rebuilds it)
    episode_return: jax.Array
    episode_length: jax.Array
    actor_state: Any


class Collector:
    """Steps ``num_envs`` environments of ``family``; pure functions of a ``CollectorState``."""

    def __init__(self, family: Any, num_envs: int):
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"Collector: num_envs must be a positive int, got {num_envs!r}")
        self.family = family
        self.num_envs = num_envs
        tasks = jax.eval_shape(lambda: family.sample_tasks(jax.random.key(0), num_envs))
        shapes = jax.eval_shape(lambda k, t: jax.vmap(family.reset)(jax.random.split(k, num_envs), t),
                                jax.random.key(0), tasks)
        leaves, self._treedef = jax.tree.flatten(shapes)
        self._empty = [leaf if int(np.prod(leaf.shape)) == 0 else None for leaf in leaves]

    # -- environments as flat arrays (``env_state`` ↔ ``CollectorState.env``) ---------------------

    def _pack(self, env_state: Any) -> tuple:
        leaves = self._treedef.flatten_up_to(env_state)
        return tuple(leaf for leaf, empty in zip(leaves, self._empty) if empty is None)

    def env_state(self, state: CollectorState) -> Any:
        """The batched family ``State`` of the running environments."""
        arrays = iter(state.env)
        leaves = [next(arrays) if empty is None else jnp.zeros(empty.shape, empty.dtype) for empty in self._empty]
        return self._treedef.unflatten(leaves)

    # -- protocol --------------------------------------------------------------------------------

    def init(self, key: jax.Array, tasks: Any, actor_state: Any = ()) -> CollectorState:
        """Fresh episodes of ``tasks`` ([num_envs, ...]); ``actor_state`` has a leading [num_envs] axis."""
        env = jax.vmap(self.family.reset)(jax.random.split(key, self.num_envs), tasks)
        zeros = jnp.zeros((self.num_envs,), env.reward.dtype)
        return CollectorState(self._pack(env), zeros, jnp.zeros((self.num_envs,), jnp.int32), actor_state)

    def collect(self, state: CollectorState, act: Actor, key: jax.Array, num_steps: int,
                to_env: Callable[[jax.Array], jax.Array] = lambda a: a, info_keys: tuple[str, ...] = (),
                ) -> tuple[CollectorState, Transition, EpisodeStats]:
        """``num_steps`` steps of every environment: transitions and episode stats are [num_steps, E].

        ``info_keys`` names entries of the stepped ``State.info`` (e.g. ``"sparse_reward"``) recorded in
        the transitions' ``extras`` next to the actor's.
        """
        family = self.family

        def step(carry, step_key):
            env, episode_return, episode_length, actor_state = carry
            act_key, reset_key = jax.random.split(step_key)
            action, next_actor_state, extras = act(actor_state, env.obs, act_key)
            stepped = jax.vmap(family.step)(env, to_env(action))
            done = stepped.done > 0
            truncation = stepped.info["truncation"].astype(stepped.reward.dtype)
            termination = jnp.where(done, 1.0 - truncation, 0.0).astype(stepped.reward.dtype)
            extras = {**extras, **{name: stepped.info[name] for name in info_keys}}
            transition = Transition(env.obs, action, stepped.reward, stepped.obs, termination, truncation, extras)
            episode_return = episode_return + stepped.reward
            episode_length = episode_length + 1
            stats = EpisodeStats(jnp.where(done, episode_return, 0.0), jnp.where(done, episode_length, 0),
                                 done.astype(stepped.reward.dtype))
            # Auto-reset: environments whose episode ended restart with a fresh key and their own task.
            fresh = jax.vmap(family.reset)(jax.random.split(reset_key, self.num_envs), stepped.task)
            env = jax.tree.map(lambda new, old: _where_env(done, new, old), fresh, stepped)
            next_actor_state = jax.tree.map(lambda x: _where_env(done, jnp.zeros_like(x), x), next_actor_state)
            carry = (env, jnp.where(done, 0.0, episode_return), jnp.where(done, 0, episode_length), next_actor_state)
            return carry, (transition, stats)

        carry = (self.env_state(state), state.episode_return, state.episode_length, state.actor_state)
        (env, episode_return, episode_length, actor_state), (transitions, stats) = jax.lax.scan(
            step, carry, jax.random.split(key, num_steps))
        new_state = CollectorState(self._pack(env), episode_return, episode_length, actor_state)
        return new_state, jax.lax.stop_gradient(transitions), stats


def _where_env(done: jax.Array, new: jax.Array, old: jax.Array) -> jax.Array:
    """Per environment (leading axis): ``new`` where its episode ended, else ``old``."""
    return jnp.where(done.reshape(done.shape + (1,) * (new.ndim - 1)), new, old)


def episode_returns(family: Any, act: Callable[[jax.Array, jax.Array], jax.Array], tasks: Any, key: jax.Array,
                    to_env: Callable[[jax.Array], jax.Array] = lambda a: a) -> tuple[jax.Array, jax.Array]:
    """One whole episode per task (vmapped) under ``act(obs, key) -> action``: (returns [N], steps taken [N]).

    Steps after the episode ended are masked out (the state is frozen), as in ``rollout.rollout_episode``.
    """
    returns, steps, _ = episodes_with_qpos(family, act, tasks, key, to_env)
    return returns, steps


def episodes_with_qpos(family: Any, act: Callable[[jax.Array, jax.Array], jax.Array], tasks: Any, key: jax.Array,
                       to_env: Callable[[jax.Array], jax.Array] = lambda a: a) -> tuple[jax.Array, jax.Array, Any]:
    """``episode_returns`` and each step's ``info["qpos"]`` ([N, T, nq]) where the family records it, else ()."""
    num = jax.tree.leaves(tasks)[0].shape[0]

    def one_episode(task, episode_key):
        reset_key, act_key = jax.random.split(episode_key)
        state = family.reset(reset_key, task)

        def step(carry, step_key):
            state, alive, total = carry
            stepped = family.step(state, to_env(act(state.obs, step_key)))
            total = total + alive * stepped.reward
            state = jax.tree.map(lambda new, old: jnp.where(alive > 0, new, old), stepped, state)
            return (state, alive * (1.0 - stepped.done), total), (alive, state.info.get("qpos", ()))

        zero = jnp.zeros((), state.reward.dtype)
        (_, _, total), (alive, qpos) = jax.lax.scan(step, (state, jnp.ones_like(zero), zero),
                                                    jax.random.split(act_key, family.episode_length))
        return total, jnp.sum(alive), qpos

    return jax.vmap(one_episode)(tasks, jax.random.split(key, num))
