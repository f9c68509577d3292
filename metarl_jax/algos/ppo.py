"""PPO-clip with a learned value function (Schulman et al. 2017, Algorithm 1), single-task.

    for iteration = 1, 2, ...:
      1: run π_θ_old in N × E environments for T steps (observations normalised by the running
         statistics of everything seen so far, ``normalize_observations``)
      2: V̂: GAE(γ, λ) advantages A_t from the learned V_φ (or rllab's linear baseline,
         ``value_function="none"``), rewards × ``reward_scale``; value targets V̂_t = A_t + V_φ(s_t);
         episodes the horizon truncated bootstrap from V_φ(s_T) (``bootstrap_on_timeout``)
      3: for K epochs, for each of M minibatches of the shuffled N·E·T steps, one Adam step on
            L = −mean min(ρ_t A_t, clip(ρ_t, 1 ± ε) A_t)            (clipped surrogate)
                + c_V · ½ mean (V_φ(s_t) − V̂_t)²                   (value loss, optionally clipped)
                − c_H · mean H[π_θ(·|s_t)]                           (entropy bonus)
      4: merge the batch's observations into the running statistics

The ``paper`` preset is PPO's MuJoCo setting as run by OpenAI baselines' ``ppo1`` (2048 steps per
update in 32 minibatches, 10 epochs, Adam 3e-4, γ 0.99, λ 0.95, separate (64, 64) tanh value network,
observations normalised and clipped to ±5); ``brax`` is brax's PPO on its control suite (the training
notebook's inverted_pendulum settings, brax's network sizes and loss coefficients). The meta-learners
keep their papers' linear feature baselines; this learner's value function is its own.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

from metarl_jax import estimators, normalization, optim
from metarl_jax.algos import common
from metarl_jax.algos.base import Algorithm, TrainState, new_train_state, split_rng
from metarl_jax.algos.config import non_negative, one_of, positive, unit_interval
from metarl_jax.algos.policy_gradient import Config
from metarl_jax.networks import ACTIVATIONS, VALUE_FUNCTIONS, make_actor_critic, make_gaussian_policy
from metarl_jax.rollout import Trajectory, rollout_tasks


@dataclasses.dataclass(frozen=True)
class PPOConfig(Config):
    """PPO-clip: (64, 64) tanh, λ 0.95, Adam 3e-4, clip 0.2, 10 epochs × 32 minibatches (baselines ppo1)."""

    optimizer: str = one_of("ppo", ("ppo",))
    hidden_sizes: tuple[int, ...] = positive((64, 64))
    activation: str = one_of("tanh", tuple(ACTIVATIONS))
    gae_lambda: float = unit_interval(0.95)
    learning_rate: float = positive(3e-4)
    ppo_epochs: int = positive(10)
    episodes_per_task: int = positive(32)  # 32 × T steps per update: 2048 at T = 64
    ppo_minibatches: int = positive(32)  # minibatches per epoch over the shuffled steps; must divide N·E·T
    # V_φ: "separate" MLP of value_hidden_sizes, "shared" torso with the policy, or "none" (linear baseline).
    value_function: str = one_of("separate", ("none", *VALUE_FUNCTIONS))
    value_hidden_sizes: tuple[int, ...] = positive((64, 64))
    value_loss_coef: float = non_negative(1.0)
    value_clip: float = non_negative(0.0)  # ε_V of PPO2's clipped value loss; 0: unclipped
    bootstrap_on_timeout: bool = False  # baselines ppo1 treats the horizon as terminal
    entropy_coef: float = non_negative(0.0)
    reward_scale: float = positive(1.0)
    normalize_observations: bool = True
    max_grad_norm: float = non_negative(0.0)  # 0: no clipping

    def __post_init__(self):
        super().__post_init__()
        if self.value_function == "none" and self.value_clip > 0:
            raise ValueError(f"config field 'value_clip' = {self.value_clip} needs a learned value function "
                             f"('value_function' one of {list(VALUE_FUNCTIONS)}), got 'none'")


# brax's PPO on its control suite: the training notebook's inverted_pendulum call
# (reward_scaling 10, normalize_observations, unroll_length 5, num_minibatches 32, num_updates_per_batch 4,
# discounting 0.97, learning_rate 3e-4, entropy_cost 1e-2, num_envs 2048, batch_size 1024) with train()'s
# defaults for the rest (clipping_epsilon 0.3, gae_lambda 0.95, vf_loss_coefficient 0.5, normalize_advantage)
# and make_ppo_networks' sizes (policy (32,) × 4, value (256,) × 5, swish). brax's initial σ is
# softplus(0) + 0.001. One update there is 1024 × 32 × 5 = 163 840 steps; here 160 episodes of the
# family's horizon (1000 for brax's inverted_pendulum: 160 000 steps, 32 minibatches of 5 000).
BRAX = dict(hidden_sizes=(32, 32, 32, 32), value_hidden_sizes=(256,) * 5, activation="swish",
            init_log_std=math.log(math.log(2.0) + 0.001), discount=0.97, gae_lambda=0.95, learning_rate=3e-4,
            ppo_clip=0.3, ppo_epochs=4, ppo_minibatches=32, episodes_per_task=160, value_function="separate",
            value_loss_coef=0.5, entropy_coef=1e-2, reward_scale=10.0, normalize_observations=True,
            normalize_advantages=True, bootstrap_on_timeout=True)

PRESETS = {
    "paper": PPOConfig(),
    "brax": PPOConfig(**BRAX),
    "smoke": PPOConfig(hidden_sizes=(32, 32), value_hidden_sizes=(32, 32), tasks_per_iteration=4,
                       episodes_per_task=8, ppo_minibatches=4, eval_num_tasks=8, eval_episodes_per_task=8,
                       eval_adaptation_steps=2),
}
PRESETS_BY_ALGO = {"ppo": PRESETS}


class PPO(Algorithm):
    name = "ppo"
    Config = PPOConfig

    def setup(self) -> None:
        cfg, family = self.config, self.family
        steps = cfg.tasks_per_iteration * cfg.episodes_per_task * family.episode_length
        if steps % cfg.ppo_minibatches:
            raise ValueError(
                f"config field 'ppo_minibatches' = {cfg.ppo_minibatches} must divide the steps per update, "
                f"'tasks_per_iteration' x 'episodes_per_task' x horizon = {cfg.tasks_per_iteration} x "
                f"{cfg.episodes_per_task} x {family.episode_length} = {steps}")
        if cfg.value_function == "none":
            self.policy = make_gaussian_policy(family.observation_size, family.action_size, cfg.hidden_sizes,
                                               cfg.activation, cfg.init_log_std)
            self.value = None
        else:
            actor_critic = make_actor_critic(family.observation_size, family.action_size, cfg.hidden_sizes,
                                             cfg.activation, cfg.init_log_std, cfg.value_hidden_sizes,
                                             cfg.value_function)
            self.policy, self.value = actor_critic.policy, actor_critic.value
        self.optimizer = optim.ppo(cfg.learning_rate, cfg.ppo_clip, cfg.ppo_epochs, cfg.max_grad_norm or None,
                                   cfg.ppo_minibatches)

    def init(self, key: jax.Array) -> TrainState:
        init_key, rng = jax.random.split(key)
        params = self.policy.init(init_key)  # policy and value parameters, one pytree
        extras = {"obs_stats": normalization.init(self.family.observation_size)} if self.normalizing else {}
        return new_train_state(params, self.optimizer.init(params), rng, extras)

    @property
    def normalizing(self) -> bool:
        return self.config.normalize_observations

    def observe(self, ts: TrainState, obs: jax.Array) -> jax.Array:
        """What the networks see: the observation, normalised by the running statistics if configured."""
        return normalization.normalize(ts.extras["obs_stats"], obs) if self.normalizing else obs

    def acting_policy(self, ts: TrainState):
        """π_θ on raw observations (the normalisation, if any, inside): rollouts and meta-test."""
        return normalization.normalized_policy(self.policy, ts.extras["obs_stats"]) if self.normalizing else self.policy

    def advantages_and_targets(self, params: Any, trajectories: Trajectory, obs: jax.Array,
                               final_obs: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """(A_t, V̂_t, V_φ_old(s_t)), each [N, E, T], from the scaled training rewards."""
        cfg, mask = self.config, trajectories.mask
        rewards = trajectories.select_rewards(cfg.train_reward) * cfg.reward_scale
        if self.value is None:  # rllab's linear feature baseline, fitted per task
            scaled = trajectories._replace(rewards=rewards, sparse_rewards=rewards)
            adv = common.task_advantages(scaled, cfg, cfg.train_reward)
            return adv, jnp.zeros_like(adv), jnp.zeros_like(adv)
        values = self.value(params, obs) * mask
        bootstrap = self.value(params, final_obs) * trajectories.truncated if cfg.bootstrap_on_timeout else None
        adv = estimators.gae(rewards, values, mask, cfg.discount, cfg.gae_lambda, bootstrap)
        targets = (adv + values) * mask  # V̂_t = A_t + V(s_t): the λ-return
        if cfg.normalize_advantages:
            adv = jax.vmap(estimators.normalize)(adv, mask)  # per task, as the linear-baseline learners
        return jax.lax.stop_gradient((adv, targets, values))

    def objective(self, params: Any, batch: dict[str, Any]) -> optim.PolicyObjective:
        """The clipped surrogate's pieces on a minibatch of steps, plus c_V·L_V − c_H·H as the penalty."""
        cfg, mask = self.config, batch["mask"]
        dist = self.policy.apply(params, batch["obs"])  # batch["obs"] is already normalised
        log_probs = dist.log_prob(batch["actions"])
        entropy = estimators.masked_mean(dist.entropy(), mask)
        penalty = -cfg.entropy_coef * entropy
        if self.value is not None:
            v_loss = estimators.value_loss(self.value(params, batch["obs"]), batch["targets"], mask,
                                           batch["old_values"], cfg.value_clip or None)
            penalty = penalty + cfg.value_loss_coef * v_loss
        return optim.PolicyObjective(log_ratio=log_probs - batch["log_probs"], advantages=batch["adv"], mask=mask,
                                     kl=estimators.masked_mean(batch["dist"].kl(dist), mask), penalty=penalty)

    def _train_step(self, ts: TrainState):
        cfg = self.config
        ts, (task_key, sample_key, minibatch_key) = split_rng(ts, 3)
        tasks = self.shard(self.family.sample_tasks(task_key, cfg.tasks_per_iteration))
        trajectories = rollout_tasks(self.family, self.acting_policy(ts), ts.params, tasks, sample_key,
                                     cfg.episodes_per_task)
        obs, final_obs = self.observe(ts, trajectories.obs), self.observe(ts, trajectories.final_obs)
        adv, targets, old_values = self.advantages_and_targets(ts.params, trajectories, obs, final_obs)
        # The N·E·T steps as one sample axis, for the shuffled minibatches (optim.minibatch_partition).
        steps = {"obs": obs, "actions": trajectories.actions, "log_probs": trajectories.log_probs,
                 "dist": trajectories.dist, "mask": trajectories.mask, "adv": adv, "targets": targets,
                 "old_values": old_values}
        batch = jax.tree.map(lambda x: x.reshape(-1, *x.shape[3:]), steps)
        before = self.objective(ts.params, batch)
        params, opt_state, info = self.optimizer.update(self.objective, ts.params, ts.opt_state,
                                                        minibatches=optim.Minibatches(batch, minibatch_key))
        extras = dict(ts.extras)
        if self.normalizing:  # 4: the statistics the next rollout normalises with
            extras["obs_stats"] = normalization.update(ts.extras["obs_stats"], trajectories.obs, trajectories.mask)
        ts = ts.replace(params=params, opt_state=opt_state, step=ts.step + 1, extras=extras,
                        nonfinite_updates=ts.nonfinite_updates + info["nonfinite"])
        steps_per_iteration = cfg.tasks_per_iteration * cfg.episodes_per_task * self.family.episode_length
        metrics = {
            **common.return_metrics("train/", trajectories),
            **common.optimizer_metrics(info),
            "train/nonfinite_updates": ts.nonfinite_updates.astype(jnp.float32),
            "train/policy_std": jnp.mean(jnp.exp(trajectories.dist.log_std)),
            "train/penalty": before.penalty,  # c_V·L_V − c_H·H before the update
            "time/env_steps": ts.step.astype(jnp.float32) * steps_per_iteration,
        }
        if self.value is not None:
            # 1 − Var[V̂ − V_old] / Var[V̂] over the valid steps (1: V predicts its targets).
            def variance(x):
                return estimators.masked_mean(estimators.normalize(x, trajectories.mask, True) ** 2, trajectories.mask)

            metrics["train/explained_variance"] = 1.0 - variance(targets - old_values) / jnp.maximum(
                variance(targets), 1e-8)
        return ts, metrics

    def _evaluate(self, ts: TrainState, tasks: Any, key: jax.Array):
        return common.policy_adaptation_curve(self.family, self.acting_policy(ts), ts.params, self.shard(tasks), key,
                                              self.config, self.config.eval_lr)
