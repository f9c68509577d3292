"""Rollouts: ``lax.scan`` over time, ``vmap`` over episodes and tasks.

Physics is never differentiated: rollouts produce data (observations, actions,
behaviour log-probs) that the estimators re-score under the current parameters.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from metarl_jax.networks import DiagGaussian, Policy, RecurrentPolicy


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
      final_obs: s_T, the observation after the last step of the horizon, [..., E, obs] (None where
        not recorded, e.g. trials): a learned value bootstraps episodes the horizon truncated.
      truncated: 1.0 where the time limit ended the episode (the family's ``info["truncation"]``),
        0.0 where it terminated, [..., E].
      qpos: the physics state after each step, [..., E, T, nq], when the family reports ``info["qpos"]``
        (``envs.recording.RecordQpos``: videos of the meta-test); else ``()``, nothing.
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
    final_obs: jax.Array | None = None
    truncated: jax.Array | None = None
    qpos: Any = ()

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
               dist.log_prob(action), dist, position, next_state.info.get("qpos", ()))
        next_alive = alive * (1.0 - next_state.done)
        return (next_state, next_alive), out

    step_keys = jax.random.split(action_key, family.episode_length)
    (final_state, _), (obs, actions, rewards, sparse, mask, log_probs, dist, positions, qpos) = jax.lax.scan(
        step_fn, (state, jnp.ones(())), step_keys
    )
    return Trajectory(obs, actions, rewards, sparse, mask, log_probs, dist, latent, positions,
                      final_obs=final_state.obs, truncated=final_state.info.get("truncation", jnp.zeros(())),
                      qpos=qpos)


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


# ============================================================================ trials (recurrent policies)
# A trial is K consecutive episodes of one task under a recurrent policy (RL², Duan et al. 2016): the
# hidden state is carried across the episode boundaries and reset to h_0 only at the start of the trial.


class Trial(NamedTuple):
    """Trials of K episodes. Leading axes are [..., K, T] (K episodes of T steps each).

    Attributes:
      episodes: the per-step data as a ``Trajectory`` ([..., K, T]; no latents); its ``log_probs`` and
        ``dist`` are the behaviour policy's, computed from the hidden state carried through the trial.
      inputs: the policy input x_t = s_t ⧺ a_{t−1} ⧺ r_{t−1} ⧺ d_{t−1} of every step, [..., K, T, in]:
        the previous action and reward (zero at the start of the trial) and whether the previous step
        ended an episode (1 at the first step of episodes 2..K). ``score_trial`` re-runs the GRU on them.
    """

    episodes: Trajectory
    inputs: jax.Array

    def episode_returns(self, kind: str = "dense") -> jax.Array:
        """Undiscounted return of episode k = 1..K of each trial, [..., K]."""
        return self.episodes.episode_returns(kind)


def recurrent_input_size(family: Any) -> int:
    """Size of x_t = s_t ⧺ a_{t−1} ⧺ r_{t−1} ⧺ d_{t−1}."""
    return family.observation_size + family.action_size + 2


def rollout_trial(
    family: Any,
    policy: RecurrentPolicy,
    params: Any,
    task: Any,
    key: jax.Array,
    num_episodes: int,
    reward_kind: str = "dense",
) -> Trial:
    """One trial of ``num_episodes`` episodes of ``task``: [K, T, ...].

    ``reward_kind`` ("dense" or "sparse") is the reward the policy observes as r_{t−1}. After an
    episode ends early its remaining steps are masked, the environment is frozen and so is the
    hidden state (``policy.step`` with m = 0), so episode k + 1 continues from the last valid step.
    """
    if reward_kind not in ("dense", "sparse"):
        raise ValueError(f"reward kind must be 'dense' or 'sparse', got {reward_kind!r}")
    dtype = policy.initial_state().dtype
    zero_action = jnp.zeros((family.action_size,), dtype)

    def episode(carry, episode_key):
        h, prev_action, prev_reward, prev_done = carry
        reset_key, action_key = jax.random.split(episode_key)
        state = family.reset(reset_key, task)

        def step_fn(step_carry, step_key):
            state, alive, h, prev_action, prev_reward, prev_done = step_carry
            x = jnp.concatenate([state.obs.astype(dtype), prev_action, prev_reward[None], prev_done[None]])
            h, dist = policy.step(params, h, x, alive)
            action = dist.sample(step_key)
            next_state = family.step(state, action)
            next_state = jax.tree.map(lambda new, old: jnp.where(alive > 0, new, old), next_state, state)
            sparse = next_state.info["sparse_reward"]
            observed = next_state.reward if reward_kind == "dense" else sparse
            position = next_state.info.get("position", jnp.zeros((2,)))
            keep = lambda new, old: jnp.where(alive > 0, new, old)  # noqa: E731
            next_carry = (next_state, alive * (1.0 - next_state.done), h, keep(action, prev_action),
                          keep(observed.astype(dtype), prev_reward), keep(jnp.zeros((), dtype), prev_done))
            out = (x, state.obs, action, next_state.reward, sparse, alive, dist.log_prob(action), dist, position,
                   next_state.info.get("qpos", ()))
            return next_carry, out

        step_keys = jax.random.split(action_key, family.episode_length)
        init = (state, jnp.ones((), dtype), h, prev_action, prev_reward, prev_done)
        (_, _, h, prev_action, prev_reward, _), outs = jax.lax.scan(step_fn, init, step_keys)
        # The next episode's first input says that an episode has just ended (d = 1).
        return (h, prev_action, prev_reward, jnp.ones((), dtype)), outs

    init = (policy.initial_state(), zero_action, jnp.zeros((), dtype), jnp.zeros((), dtype))
    _, (inputs, obs, actions, rewards, sparse, mask, log_probs, dist, positions, qpos) = jax.lax.scan(
        episode, init, jax.random.split(key, num_episodes))
    episodes = Trajectory(obs, actions, rewards, sparse, mask, log_probs, dist,
                          jnp.zeros((num_episodes, 0), dtype), positions, qpos=qpos)
    return jax.lax.stop_gradient(Trial(episodes, inputs))


def rollout_trials(
    family: Any,
    policy: RecurrentPolicy,
    params: Any,
    tasks: Any,
    key: jax.Array,
    num_episodes: int,
    reward_kind: str = "dense",
    trials_per_task: int = 1,
) -> Trial:
    """``trials_per_task`` trials of every task in ``tasks`` (leading axis N), vmapped: [N, trials, K, T, ...]."""
    num_tasks = jax.tree.leaves(tasks)[0].shape[0]
    keys = jax.random.split(key, (num_tasks, trials_per_task))

    def one_trial(task, trial_key):
        return rollout_trial(family, policy, params, task, trial_key, num_episodes, reward_kind)

    return jax.vmap(jax.vmap(one_trial, in_axes=(None, 0)))(tasks, keys)


def score_trial(policy: RecurrentPolicy, params: Any, trial: Trial) -> tuple[jax.Array, DiagGaussian]:
    """Re-scores trials under ``params``: (log π_params(a_t | x_1..x_t), action distribution), [..., K, T].

    Re-runs the GRU from h_0 over each trial's stored inputs, its K episodes in order, with the same
    masks as the rollout, so at the sampling parameters it reproduces the behaviour log-probs.
    """
    inputs, mask = trial.inputs, trial.episodes.mask
    num_episodes, horizon = mask.shape[-2:]

    def one(inputs, mask, actions):
        dist = policy.unroll(params, inputs.reshape(num_episodes * horizon, -1), mask.reshape(-1))
        dist = jax.tree.map(lambda x: x.reshape(num_episodes, horizon, -1), dist)
        return dist.log_prob(actions), dist

    fn = one
    for _ in range(mask.ndim - 2):
        fn = jax.vmap(fn)
    return fn(inputs, mask, trial.episodes.actions)
