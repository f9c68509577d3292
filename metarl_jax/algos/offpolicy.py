"""Pieces shared by the off-policy learners (DDPG, SAC, Xu et al.'s teacher; PEARL builds on them).

An iteration (``train_step``) is an *epoch*: ``epoch_cycles`` cycles, each collecting
``rollout_steps`` transitions from ``num_envs`` continuing environments into the replay
buffer and then taking ``train_steps`` gradient steps on minibatches drawn from it (OpenAI
baselines' DDPG loop, Xu et al. Table 1). Cycles are a ``lax.scan``, so the epoch is one
XLA program, and ``train(ts, n)`` scans epochs.

Actions live in [−1, 1]^A inside the learners (actors end in tanh, the buffer stores these
actions) and are rescaled to the family's bounds when the environment is stepped
(``action_bounds``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metarl_jax import normalization, optim
from metarl_jax.algos.config import AlgoConfig, non_negative, one_of, positive, unit_interval
from metarl_jax.collector import (
    Collector,
    CollectorState,
    EpisodeStats,
    Transition,
    episode_returns,
    episodes_with_qpos,
)
from metarl_jax.envs.wrappers import with_episode_length
from metarl_jax.evaluation import AdaptationCurve
from metarl_jax.networks import ACTIVATIONS, float_dtype
from metarl_jax.replay import make_replay_buffer

# Episode lengths of Xu et al.'s gym tasks (Pendulum-v0: 200; the MuJoCo-v1 tasks: 1000; Reacher-v1: 50).
EPISODE_LENGTHS = {"pendulum": 200, "inverted_pendulum": 1000, "inverted_double_pendulum": 1000, "hopper": 1000,
                   "half_cheetah": 1000, "reacher": 50}
CONTROL_SUITE = tuple(EPISODE_LENGTHS)


@dataclasses.dataclass(frozen=True)
class OffPolicyConfig(AlgoConfig):
    """Loop, replay and network fields of every off-policy learner (defaults: Xu et al.'s DDPG)."""

    # Loop: an iteration is `epoch_cycles` × (collect `rollout_steps`, then `train_steps` gradient steps).
    num_envs: int = positive(1)
    epoch_cycles: int = positive(20)
    rollout_steps: int = positive(200)  # transitions per cycle, all environments together
    train_steps: int = positive(50)
    batch_size: int = positive(64)
    buffer_size: int = positive(1_000_000)
    discount: float = unit_interval(0.99)
    tau: float = unit_interval(0.01)  # target networks: θ̄ ← (1 − τ) θ̄ + τ θ
    # Networks.
    hidden_sizes: tuple[int, ...] = positive((64, 64))
    activation: str = one_of("relu", tuple(ACTIVATIONS))
    layer_norm: bool = True
    normalize_observations: bool = True
    # Uniformly random actions collected into the buffer by `init` (0: none, as in DDPG and brax's SAC).
    warmup_steps: int = non_negative(0)
    # Episodes are cut after this many steps (None: the family's own length); presets: the paper's.
    episode_length: int | None = positive(None)
    # Evaluation: the deterministic policy's return on `eval_num_tasks` episodes (K = 0 curve).
    eval_num_tasks: int = positive(10)

    def validate(self) -> None:
        if self.rollout_steps % self.num_envs:
            raise ValueError(f"config field 'rollout_steps' ({self.rollout_steps}) must be a multiple of "
                             f"'num_envs' ({self.num_envs})")
        if self.warmup_steps % self.num_envs:
            raise ValueError(f"config field 'warmup_steps' ({self.warmup_steps}) must be a multiple of "
                             f"'num_envs' ({self.num_envs})")
        for name in ("rollout_steps", "warmup_steps"):
            if getattr(self, name) > self.buffer_size:
                raise ValueError(f"config field {name!r} ({getattr(self, name)}) must not exceed 'buffer_size' "
                                 f"({self.buffer_size}): one add must fit the buffer")
        if self.batch_size > self.buffer_size:
            raise ValueError(f"config field 'batch_size' ({self.batch_size}) must not exceed 'buffer_size' "
                             f"({self.buffer_size})")


def control_suite_presets(config: AlgoConfig, **per_family: dict[str, Any]) -> dict[str, AlgoConfig]:
    """``config`` with each control-suite family's episode length (and ``per_family[family]`` changes)."""
    return {family: config.replace(episode_length=length, **per_family.get(family, {}))
            for family, length in EPISODE_LENGTHS.items()}


# ---- actions -----------------------------------------------------------------------------------


def action_bounds(family: Any) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of the family's actions: ``action_low``/``action_high`` if it defines them, else the
    MJX actuator control range (``ctrl_low``/``ctrl_high``) where finite, else [−1, 1] (brax's convention)."""
    size = family.action_size
    low = getattr(family, "action_low", getattr(family, "ctrl_low", None))
    high = getattr(family, "action_high", getattr(family, "ctrl_high", None))
    low = np.broadcast_to(np.asarray(-1.0 if low is None else low, np.float64), (size,))
    high = np.broadcast_to(np.asarray(1.0 if high is None else high, np.float64), (size,))
    finite = np.isfinite(low) & np.isfinite(high)
    return np.where(finite, low, -1.0), np.where(finite, high, 1.0)


def make_to_env(family: Any):
    """a ∈ [−1, 1]^A ↦ low + (a + 1)(high − low)/2."""
    low, high = action_bounds(family)

    def to_env(action: jax.Array) -> jax.Array:
        return jnp.asarray(low, action.dtype) + (action + 1.0) * jnp.asarray((high - low) / 2.0, action.dtype)

    return to_env


# ---- shared state ------------------------------------------------------------------------------


class Experience(NamedTuple):
    """What every off-policy train state keeps in ``extras`` besides the learner's own fields."""

    buffer: Any
    obs_stats: normalization.RunningStatistics
    collector: CollectorState
    env_steps: jax.Array  # int32: every environment step taken so far
    last_return: jax.Array  # return of the latest finished training episode (for logging)


class OffPolicyBase:
    """Mixin of the off-policy learners: buffer, collector, normaliser, evaluation and metrics."""

    config: OffPolicyConfig

    def setup_experience(self, num_envs: int | None = None) -> None:
        """Buffer, action scaling and the continuing collector (``num_envs`` environments, default the config's)."""
        cfg = self.config
        self.family = with_episode_length(self.family, cfg.episode_length)
        self.collector = Collector(self.family, cfg.num_envs if num_envs is None else num_envs)
        self.buffer = make_replay_buffer(cfg.buffer_size)
        self.to_env = make_to_env(self.family)
        self.steps_per_env = cfg.rollout_steps // cfg.num_envs

    def example_transition(self, extras: dict | None = None) -> Transition:
        dtype = float_dtype()
        obs = jnp.zeros((self.family.observation_size,), dtype)
        zero = jnp.zeros((), dtype)
        return Transition(obs, jnp.zeros((self.family.action_size,), dtype), zero, obs, zero, zero,
                          {} if extras is None else extras)

    def init_experience(self, key: jax.Array, actor_state: Any = ()) -> Experience:
        """Empty buffer and statistics, fresh environments; then ``warmup_steps`` uniformly random actions."""
        task_key, env_key, warmup_key = jax.random.split(key, 3)
        num_envs = self.collector.num_envs
        tasks = self.family.sample_tasks(task_key, num_envs)
        experience = Experience(
            buffer=self.buffer.init(self.example_transition()),
            obs_stats=normalization.init(self.family.observation_size),
            collector=self.collector.init(env_key, tasks, actor_state),
            env_steps=jnp.zeros((), jnp.int32),
            last_return=jnp.zeros((), float_dtype()),
        )
        if not self.config.warmup_steps:
            return experience

        def uniform(actor_state, obs, act_key):
            action = jax.random.uniform(act_key, (obs.shape[0], self.family.action_size), float_dtype(), -1.0, 1.0)
            return action, actor_state, {}

        collector, transitions, episodes = self.collector.collect(
            experience.collector, uniform, warmup_key, self.config.warmup_steps // num_envs, self.to_env)
        return self.store(experience._replace(collector=collector), transitions, episodes)

    def normalize(self, stats: normalization.RunningStatistics, obs: jax.Array) -> jax.Array:
        if not self.config.normalize_observations:
            return obs
        return normalization.normalize(stats, obs)

    def store(self, experience: Experience, transitions: Transition, episodes: EpisodeStats | None = None
              ) -> Experience:
        """Adds [T, E] transitions to the buffer, updates the observation statistics and counters."""
        flat = transitions.flatten()
        flat = flat._replace(extras={})  # the buffer holds (s, a, r, s′, termination, truncation)
        flat = jax.tree.map(lambda x: x.astype(float_dtype()), flat)
        last = experience.last_return if episodes is None else episodes.mean_return(experience.last_return)
        return experience._replace(
            buffer=self.buffer.add(experience.buffer, flat),
            obs_stats=normalization.update(experience.obs_stats, flat.obs),
            env_steps=experience.env_steps + flat.reward.shape[0],
            last_return=last,
        )

    def sample_batch(self, experience: Experience, key: jax.Array) -> Transition:
        return self.buffer.sample(experience.buffer, key, self.config.batch_size)

    def deterministic_curve(self, act, tasks: Any, key: jax.Array) -> AdaptationCurve:
        """The return of ``act(obs, key)`` (the current deterministic policy): an adaptation curve with K = 0."""
        returns, _ = episode_returns(self.family, act, tasks, key, self.to_env)
        return AdaptationCurve(returns[:, None])

    def deterministic_recording(self, act, tasks: Any, key: jax.Array) -> tuple[jax.Array, Any]:
        """``deterministic_curve`` with each episode's qpos: (returns [N, 1], qpos [N, 1, T, nq]) (videos)."""
        returns, _, qpos = episodes_with_qpos(self.family, act, tasks, key, self.to_env)
        return returns[:, None], jax.tree.map(lambda x: x[:, None], qpos)

    def eval_policy(self, ts: Any):
        """The policy the learner is evaluated with, ``act(obs, key) -> action`` (each learner defines it)."""
        raise NotImplementedError(f"{type(self).__name__} must define eval_policy (its deterministic policy)")

    def _evaluate(self, ts: Any, tasks: Any, key: jax.Array) -> AdaptationCurve:
        return self.deterministic_curve(self.eval_policy(ts), tasks, key)

    def _record_stages(self, ts: Any, tasks: Any, key: jax.Array):
        """One stage: an episode of the evaluated policy per task."""
        return self.deterministic_recording(self.eval_policy(ts), tasks, key)

    def stage_labels(self) -> list[str]:
        return ["policy"]

    @staticmethod
    def episode_info(episodes: EpisodeStats) -> dict[str, jax.Array]:
        """Per cycle: the sum and number of finished episodes' returns (``experience_metrics`` averages them)."""
        return {"episode_return_sum": jnp.sum(episodes.returns * episodes.ended), "episodes": episodes.num_ended}

    def experience_metrics(self, experience: Experience, infos: dict | None = None) -> dict[str, jax.Array]:
        """Buffer, statistics and step counts; ``train/return``: the mean return of the training episodes that
        finished this iteration (``infos`` from ``episode_info``, popped), else the latest one that finished."""
        train_return = experience.last_return
        if infos is not None and "episodes" in infos:
            count, total = jnp.sum(infos.pop("episodes")), jnp.sum(infos.pop("episode_return_sum"))
            train_return = jnp.where(count > 0, total / jnp.maximum(count, 1.0), train_return)
        return {
            "train/return": train_return.astype(jnp.float32),
            "train/buffer_size": self.buffer.size(experience.buffer).astype(jnp.float32),
            "train/obs_std": jnp.mean(experience.obs_stats.std()).astype(jnp.float32),
            "time/env_steps": experience.env_steps.astype(jnp.float32),
        }


# ---- small pure functions ----------------------------------------------------------------------


def soft_update(target: Any, online: Any, tau: float) -> Any:
    """θ̄ ← (1 − τ) θ̄ + τ θ (Lillicrap et al. 2016, Algorithm 1)."""
    return jax.tree.map(lambda t, o: (1.0 - tau) * t + tau * o, target, online)


def hidden_kernel_l2(params: Any) -> jax.Array:
    """½ Σ w² over the hidden layers' kernels (not the output layer's, not biases or layer norms): OpenAI
    baselines' critic L2 (``tf.contrib.layers.l2_regularizer``); output kernels are those of width 1."""
    leaves = jax.tree_util.tree_leaves_with_path(params)
    total = jnp.zeros((), float_dtype())
    for path, leaf in leaves:
        if jax.tree_util.keystr(path).endswith("['kernel']") and leaf.shape[-1] > 1:
            total = total + 0.5 * jnp.sum(leaf**2)
    return total


def adam_step(tx: optax.GradientTransformation, loss_fn, params: Any, opt_state: Any, *args):
    """One guarded optimiser step on ``loss_fn(params, *args) -> (loss, aux)``: (params, opt_state, loss, aux,
    grad norm, finite). A non-finite loss or gradient leaves params and optimiser state unchanged."""
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, *args)
    updates, new_opt_state = tx.update(grads, opt_state, params)
    (new_params, new_opt_state), finite = optim.guard_nonfinite((params, opt_state),
                                                                (optax.apply_updates(params, updates), new_opt_state),
                                                                loss, grads)
    return new_params, new_opt_state, loss, aux, optax.global_norm(grads), finite
