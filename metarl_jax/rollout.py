"""Rollouts: ``lax.scan`` over time, ``vmap`` over episodes and tasks.

Physics is never differentiated: rollouts produce data (observations, actions,
behaviour log-probs) that the estimators re-score under the current parameters.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from metarl_jax.networks import DiagGaussian, Policy


class Trajectory(NamedTuple):
    """A batch of episodes. Leading axes are [..., episodes, time].

    Attributes:
      obs: observations s_t, [..., E, T, obs].
      actions: sampled (unclipped) actions a_t, [..., E, T, act].
      rewards: dense rewards r_t, [..., E, T].
      sparse_rewards: sparse rewards, [..., E, T].
      mask: 1.0 for steps taken before the episode ended, [..., E, T].
      log_probs: behaviour log π(a_t | s_t) at sampling time (for DiCE / importance ratios).
      dist: behaviour action distribution (for the TRPO/PPO KL).
      latents: per-episode latent z the policy was conditioned on, [..., E, z].
      positions: the family's ``info["position"]`` when it reports one, [..., E, T, 2].
    """

    obs: jax.Array
    actions: jax.Array
    rewards: jax.Array
    sparse_rewards: jax.Array
    mask: jax.Array
    log_probs: jax.Array
    dist: DiagGaussian
    latents: jax.Array
    positions: jax.Array

    def select_rewards(self, kind: str) -> jax.Array:
        """``"dense"`` (meta-training) or ``"sparse"`` (meta-test) rewards."""
        if kind == "dense":
            return self.rewards
        if kind == "sparse":
            return self.sparse_rewards
        raise ValueError(f"reward kind must be 'dense' or 'sparse', got {kind!r}")

    def episode_returns(self, kind: str = "dense") -> jax.Array:
        """Undiscounted return of each episode, [..., E]."""
        return jnp.sum(self.select_rewards(kind) * self.mask, axis=-1)

    @property
    def num_steps(self) -> jax.Array:
        return jnp.sum(self.mask)


def rollout_episode(
    family: Any, policy: Policy, params: Any, task: Any, latent: jax.Array, key: jax.Array
) -> Trajectory:
    """One episode of ``family.episode_length`` steps; time axis first-level [T]."""
    reset_key, action_key = jax.random.split(key)
    state = family.reset(reset_key, task)

    def step_fn(carry, step_key):
        state, alive = carry
        dist = policy.apply(params, state.obs, latent)
        action = dist.sample(step_key)
        next_state = family.step(state, action)
        # After the episode has ended the state is frozen and steps are masked out.
        next_state = jax.tree.map(lambda new, old: jnp.where(alive > 0, new, old), next_state, state)
        position = next_state.info.get("position", jnp.zeros((2,)))
        out = (state.obs, action, next_state.reward, next_state.info["sparse_reward"], alive,
               dist.log_prob(action), dist, position)
        next_alive = alive * (1.0 - next_state.done)
        return (next_state, next_alive), out

    step_keys = jax.random.split(action_key, family.episode_length)
    _, (obs, actions, rewards, sparse, mask, log_probs, dist, positions) = jax.lax.scan(
        step_fn, (state, jnp.ones(())), step_keys
    )
    return Trajectory(obs, actions, rewards, sparse, mask, log_probs, dist, latent, positions)


def rollout(
    family: Any,
    policy: Policy,
    params: Any,
    task: Any,
    key: jax.Array,
    num_episodes: int,
    latents: jax.Array | None = None,
) -> Trajectory:
    """``num_episodes`` episodes of one task under ``params``: [E, T, ...].

    ``latents`` ([E, z]) conditions each episode on its own z (drawn once per episode).
    """
    if latents is None:
        latents = jnp.zeros((num_episodes, policy.latent_size))
    keys = jax.random.split(key, num_episodes)
    trajectory = jax.vmap(rollout_episode, in_axes=(None, None, None, None, 0, 0))(
        family, policy, params, task, latents, keys
    )
    return jax.lax.stop_gradient(trajectory)


def rollout_tasks(
    family: Any,
    policy: Policy,
    params: Any,
    tasks: Any,
    key: jax.Array,
    num_episodes: int,
    latents: jax.Array | None = None,
    params_per_task: bool = False,
) -> Trajectory:
    """Rollouts of every task in ``tasks`` (leading axis N): [N, E, T, ...].

    With ``params_per_task`` the params carry a leading task axis (adapted policies).
    """
    num_tasks = jax.tree.leaves(tasks)[0].shape[0]
    keys = jax.random.split(key, num_tasks)
    in_axes = (0 if params_per_task else None, 0, 0, 0 if latents is not None else None)

    def one_task(params, task, task_key, task_latents):
        return rollout(family, policy, params, task, task_key, num_episodes, task_latents)

    return jax.vmap(one_task, in_axes=in_axes)(params, tasks, keys, latents)


def score(policy: Policy, params: Any, trajectory: Trajectory) -> tuple[jax.Array, DiagGaussian]:
    """Re-scores a batch under ``params``: (log π_params(a_t | s_t, z), action distribution).

    Works for any leading batch axes [..., E, T]; the per-episode latent is
    broadcast over time.
    """
    latents = jnp.broadcast_to(
        trajectory.latents[..., None, :], (*trajectory.obs.shape[:-1], trajectory.latents.shape[-1])
    )
    dist = policy.apply(params, trajectory.obs, latents)
    return dist.log_prob(trajectory.actions), dist
