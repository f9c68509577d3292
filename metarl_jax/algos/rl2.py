"""RL²: fast reinforcement learning via slow reinforcement learning (Duan et al. 2016), with PPO.

    1: sample a batch of tasks T_i ~ p(T)
    2: for each task (vmapped, sharded over devices):
    3:     roll out one trial: K episodes of T_i with the recurrent policy, h_0 at the start of the
           trial, the hidden state carried across the episode boundaries; input x_t = s_t ⧺ a_{t−1} ⧺
           r_{t−1} ⧺ d_{t−1} (``rollout.rollout_trial``)
    4:     advantages over the whole trial: GAE(γ, λ) with a linear feature baseline fitted on the trial's
           inputs, discounting across episode boundaries (the trial is one long episode of the meta-MDP)
    5: θ ← PPO on mean_t min(ρ_t A_t, clip(ρ_t, 1 ± ε) A_t), ρ_t = π_θ(a_t | x_≤t) / π_old(a_t | x_≤t),
       epochs over shuffled minibatches of trials; ``score_trial`` re-runs the GRU over the stored inputs

The "fast" learner is the GRU's hidden state: at meta-test there are no gradient steps, the
adaptation curve is the return of episode k = 1..K of a trial on held-out tasks (``returns[:, k − 1]``
of the ``AdaptationCurve``, logged as ``eval/return_step{k − 1}``).

Defaults are garage's ``RL2PPO`` (examples/tf/rl2_ppo_halfcheetah.py): GRU 64, 10 trials of 4
episodes per iteration, PPO clip 0.2, Adam 1e-3 (garage's FirstOrderOptimizer), 10 epochs over
minibatches of 32 trials, γ 0.99, GAE λ 0.95, uncentred advantages, linear feature baseline, and the
entropy bonus ``entropy_method="max"``: r_t + 0.02 H(π(·|x_t)) with no gradient through H (the
maximum-entropy objective; "regularized" instead adds −c · mean H to the loss, with its gradient).
At meta-test the policy observes the meta-test reward ``eval_reward`` (MAESN's protocol, Sec. 5.2: every
method trains on dense rewards and meta-tests on sparse ones, so a sparse test task gives nothing else);
``eval_observe="train_reward"`` shows it the training reward instead while reporting ``eval_reward``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from metarl_jax import estimators, optim, parallel
from metarl_jax.algos import common
from metarl_jax.algos.base import Algorithm, TrainState, new_train_state, split_rng
from metarl_jax.algos.config import AlgoConfig, in_range, non_negative, one_of, positive, unit_interval
from metarl_jax.evaluation import AdaptationCurve
from metarl_jax.networks import make_recurrent_policy
from metarl_jax.optim import PolicyObjective
from metarl_jax.rollout import Trial, recurrent_input_size, rollout_trials, score_trial

ENTROPY_METHODS = ("max", "regularized")


@dataclasses.dataclass(frozen=True)
class Config(AlgoConfig):
    """garage RL2PPO defaults (see the module docstring)."""

    gru_size: int = positive(64)
    init_log_std: float = in_range(0.0, -5.0, 2.0)
    meta_batch_size: int = positive(10)  # tasks per iteration, one trial each
    episodes_per_trial: int = positive(4)
    discount: float = unit_interval(0.99)
    gae_lambda: float = unit_interval(0.95)
    normalize_advantages: bool = False  # garage: center_adv=False
    train_reward: str = one_of("dense", common.REWARD_KINDS)
    learning_rate: float = positive(1e-3)
    ppo_clip: float = in_range(0.2, 0.0, 1.0, low_inclusive=False)
    ppo_epochs: int = positive(10)
    minibatch_size: int = positive(32)  # trials per minibatch (all of them when meta_batch_size is smaller)
    entropy_coeff: float = non_negative(0.02)
    entropy_method: str = one_of("max", ENTROPY_METHODS)
    # Meta-test: trials on held-out tasks; the curve is the return of episode k = 1..K.
    eval_num_tasks: int = positive(40)
    eval_trials_per_task: int = positive(1)
    eval_reward: str = one_of("dense", common.REWARD_KINDS)
    eval_observe: str = one_of("eval_reward", ("eval_reward", "train_reward"))  # r_{t−1} at meta-test

    def validate(self) -> None:
        if self.minibatch_size < self.meta_batch_size and self.meta_batch_size % self.minibatch_size:
            raise ValueError(
                f"config field 'minibatch_size' = {self.minibatch_size} must divide 'meta_batch_size' = "
                f"{self.meta_batch_size} (or be at least as large: one full-batch step per epoch)")

    @property
    def num_minibatches(self) -> int:
        return max(1, self.meta_batch_size // self.minibatch_size)


PRESETS: dict[str, Config] = {
    "paper": Config(),
    # Point navigation (horizon 100 / 20): garage's settings.
    "point_corner": Config(),
    "point_semicircle": Config(),
    # MAESN's families: meta-test on 30 validation goals with the sparse reward (MAESN's protocol).
    **{family: Config(eval_num_tasks=30, eval_reward="sparse") for family in common.MAESN_FAMILIES},
    # Velocity / direction families: garage's half-cheetah settings.
    **{family: Config() for family in ("cheetah_vel", "cheetah_dir", "ant_vel", "ant_dir")},
    # Small and fast on a 2-core CPU (tests).
    "smoke": Config(gru_size=16, meta_batch_size=8, minibatch_size=4, ppo_epochs=4, eval_num_tasks=8),
}


def trial_advantages(trial: Trial, config: Config) -> jax.Array:
    """Step 4 for one trial [K, T]: GAE over its K episodes as ONE sequence, [K, T].

    Steps are ordered as in the trial with the masked-out ones (after an early termination) moved to
    the end (a stable sort), so the return of episode k + 1 discounts back into episode k without a gap;
    the linear baseline sees the policy inputs x_t and the step index within the trial.
    """
    episodes = trial.episodes
    rewards = episodes.select_rewards(config.train_reward)
    if config.entropy_method == "max" and config.entropy_coeff > 0:
        rewards = rewards + config.entropy_coeff * episodes.dist.entropy()
    mask = episodes.mask.reshape(-1)
    order = jnp.argsort(1.0 - mask, stable=True)
    flat = lambda x: x.reshape(mask.shape[0], *x.shape[2:])[order][None]  # noqa: E731
    adv = estimators.advantages(flat(trial.inputs), flat(rewards), flat(episodes.mask), config.discount,
                                config.gae_lambda, config.normalize_advantages)[0]
    return jnp.zeros_like(mask).at[order].set(adv).reshape(episodes.mask.shape)


class RL2(Algorithm):
    name = "rl2"
    Config = Config

    def setup(self) -> None:
        cfg = self.config
        parallel.check_divisible(cfg.meta_batch_size, self.mesh, "meta_batch_size")
        self.policy = make_recurrent_policy(recurrent_input_size(self.family), self.family.action_size,
                                            cfg.gru_size, cfg.init_log_std)
        self.optimizer = optim.ppo(cfg.learning_rate, cfg.ppo_clip, cfg.ppo_epochs,
                                   num_minibatches=cfg.num_minibatches)

    def init(self, key: jax.Array) -> TrainState:
        init_key, rng = jax.random.split(key)
        params = self.policy.init(init_key)
        return new_train_state(params, self.optimizer.init(params), rng)

    def objective(self, params: Any, batch: tuple[Trial, jax.Array]) -> PolicyObjective:
        """Step 5's ratios (the optimiser clips them) on a batch of trials [B, K, T], and the KL to π_old."""
        trials, adv = batch
        log_probs, dist = score_trial(self.policy, params, trials)
        mask = trials.episodes.mask
        penalty = jnp.zeros((), log_probs.dtype)
        if self.config.entropy_method == "regularized":
            penalty = -self.config.entropy_coeff * estimators.masked_mean(dist.entropy(), mask)
        return PolicyObjective(log_ratio=log_probs - trials.episodes.log_probs, advantages=adv, mask=mask,
                               kl=estimators.masked_mean(trials.episodes.dist.kl(dist), mask), penalty=penalty)

    def collect(self, params: Any, task_key: jax.Array, sample_key: jax.Array) -> tuple[Trial, jax.Array]:
        """Steps 1-4: one trial per task [N, K, T] and its advantages."""
        cfg = self.config
        tasks = self.shard(self.family.sample_tasks(task_key, cfg.meta_batch_size))
        trials = rollout_trials(self.family, self.policy, params, tasks, sample_key, cfg.episodes_per_trial,
                                cfg.train_reward)
        trials = jax.tree.map(lambda x: x[:, 0], trials)  # one trial per task
        return trials, jax.vmap(lambda trial: trial_advantages(trial, cfg))(trials)

    def _train_step(self, ts: TrainState):
        cfg = self.config
        ts, (task_key, sample_key, minibatch_key) = split_rng(ts, 3)
        trials, adv = self.collect(ts.params, task_key, sample_key)
        params, opt_state, info = self.optimizer.update(
            self.objective, ts.params, ts.opt_state, minibatches=optim.Minibatches((trials, adv), minibatch_key))
        ts = ts.replace(params=params, opt_state=opt_state, step=ts.step + 1,
                        nonfinite_updates=ts.nonfinite_updates + info["nonfinite"])
        episodes = trials.episodes
        per_episode = jnp.mean(trials.episode_returns("dense"), axis=0)  # [K]
        steps_per_iteration = cfg.meta_batch_size * cfg.episodes_per_trial * self.family.episode_length
        metrics = {
            **common.return_metrics("train/", episodes),
            **{f"train/return_episode{k + 1}": per_episode[k] for k in range(cfg.episodes_per_trial)},
            **common.optimizer_metrics(info),
            "train/nonfinite_updates": ts.nonfinite_updates.astype(jnp.float32),
            "train/policy_std": jnp.mean(jnp.exp(episodes.dist.log_std)),
            "train/entropy": estimators.masked_mean(episodes.dist.entropy(), episodes.mask),
            "adapt/episode_gain": per_episode[-1] - per_episode[0],
            "time/env_steps": ts.step.astype(jnp.float32) * steps_per_iteration,
        }
        return ts, metrics

    def meta_test_trials(self, ts: TrainState, tasks: Any, key: jax.Array):
        """``eval_trials_per_task`` trials per held-out task, [tasks, trials, K, T, ...]."""
        cfg = self.config
        observed = cfg.eval_reward if cfg.eval_observe == "eval_reward" else cfg.train_reward
        return rollout_trials(self.family, self.policy, ts.params, self.shard(tasks), key, cfg.episodes_per_trial,
                              observed, cfg.eval_trials_per_task)

    def _evaluate(self, ts: TrainState, tasks: Any, key: jax.Array) -> AdaptationCurve:
        """Meta-test: ``eval_trials_per_task`` trials per held-out task; returns [tasks, K], entry k − 1 the
        mean ``eval_reward`` return of episode k."""
        trials = self.meta_test_trials(ts, tasks, key)
        return AdaptationCurve(jnp.mean(trials.episode_returns(self.config.eval_reward), axis=1))

    def _record_stages(self, ts: TrainState, tasks: Any, key: jax.Array):
        """The meta-test's trials; stage k: episode k of each task's first trial."""
        trials = self.meta_test_trials(ts, tasks, key)
        return jnp.mean(trials.episode_returns(self.config.eval_reward), axis=1), trials.episodes.qpos[:, 0]

    def stage_labels(self) -> list[str]:
        return [f"episode {k} of the trial" for k in range(1, self.config.episodes_per_trial + 1)]
