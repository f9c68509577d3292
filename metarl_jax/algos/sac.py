"""Soft actor-critic with automatic temperature (Haarnoja et al. 2018, "SAC: Algorithms and Applications", Alg. 1).

    Initialise twin critics Q_φ1, Q_φ2, targets φ̄_i ← φ_i, policy π_θ (tanh-Gaussian), temperature α
    for each cycle (``epoch_cycles`` per iteration):
        for each of rollout_steps:  a_t ~ π_θ(·|s_t), store (s_t, a_t, r_t, s_{t+1}, termination, truncation)
        for each of train_steps (from one minibatch, all gradients at the same parameters):
            ã′ ~ π_θ(·|s′):  y = r + γ (1 − termination) (min_i Q_φ̄i(s′, ã′) − α log π_θ(ã′|s′))   (eq. 3)
            φ_i ← φ_i − λ_Q ∇ ½ (Q_φi(s, a) − y)²                                               (eq. 5)
            ã = tanh(μ + σ ε):  θ ← θ − λ_π ∇ [α log π_θ(ã|s) − min_i Q_φi(s, ã)]             (eq. 7)
            log α ← log α − λ_α ∇ [−α (log π_θ(ã|s) + H̄)]                                     (eq. 18)
            φ̄_i ← τ φ_i + (1 − τ) φ̄_i

Paper values: Adam 3e-4 for everything, batch 256, MLP 256-256 ReLU, γ 0.99, τ 0.005, target
entropy H̄ = −dim(A), one gradient step per environment step, buffer 10⁶. Where the paper
leaves a choice the defaults are brax's SAC (``brax.training.agents.sac``): σ = softplus(ρ) +
0.001, α starts at 1, no observation normalisation, no layer norm, no warm-up, all three
updates from the same parameters. Unlike brax, a truncated transition is bootstrapped from its
true s′ (brax drops it from the loss because its auto-reset overwrites s′).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax

from metarl_jax import normalization
from metarl_jax.algos import offpolicy
from metarl_jax.algos.base import Algorithm, TrainState, new_train_state, split_rng
from metarl_jax.algos.config import in_range, non_negative, positive
from metarl_jax.collector import Transition
from metarl_jax.networks import float_dtype, make_q_function, make_tanh_gaussian_policy


@dataclasses.dataclass(frozen=True)
class Config(offpolicy.OffPolicyConfig):
    """Haarnoja et al. (2018b) Table 1; brax's SAC where the paper is silent."""

    epoch_cycles: int = positive(1000)
    rollout_steps: int = positive(1)
    train_steps: int = positive(1)
    batch_size: int = positive(256)
    tau: float = in_range(0.005, 0.0, 1.0)
    hidden_sizes: tuple[int, ...] = positive((256, 256))
    layer_norm: bool = False
    normalize_observations: bool = False
    actor_lr: float = positive(3e-4)
    critic_lr: float = positive(3e-4)
    alpha_lr: float = positive(3e-4)
    init_alpha: float = positive(1.0)
    target_entropy: float | None = None  # None: −dim(A)
    reward_scale: float = positive(1.0)
    min_std: float = non_negative(1e-3)


PRESETS: dict[str, Config] = {
    "paper": Config(),
    **offpolicy.control_suite_presets(Config()),
    "smoke": Config(hidden_sizes=(16, 16), epoch_cycles=8, rollout_steps=2, train_steps=2, batch_size=16,
                    buffer_size=1000, eval_num_tasks=2),
}


class SAC(offpolicy.OffPolicyBase, Algorithm):
    name = "sac"
    Config = Config

    def setup(self) -> None:
        cfg = self.config
        self.setup_experience()
        obs_size, action_size = self.family.observation_size, self.family.action_size
        self.policy = make_tanh_gaussian_policy(obs_size, action_size, cfg.hidden_sizes, cfg.activation,
                                                cfg.layer_norm, cfg.min_std)
        self.critic = make_q_function(obs_size, action_size, cfg.hidden_sizes, cfg.activation, cfg.layer_norm,
                                      num_critics=2)
        self.target_entropy = -float(action_size) if cfg.target_entropy is None else cfg.target_entropy
        self.txs = {"actor": optax.adam(cfg.actor_lr), "critic": optax.adam(cfg.critic_lr),
                    "log_alpha": optax.adam(cfg.alpha_lr)}

    def init(self, key: jax.Array) -> TrainState:
        actor_key, critic_key, env_key, rng = jax.random.split(key, 4)
        params = {"actor": self.policy.init(actor_key), "critic": self.critic.init(critic_key),
                  "log_alpha": jnp.log(jnp.asarray(self.config.init_alpha, float_dtype()))}
        opt_state = {name: tx.init(params[name]) for name, tx in self.txs.items()}
        return new_train_state(params, opt_state, rng,
                               extras={"target_critic": params["critic"], "experience": self.init_experience(env_key)})

    # -- the three losses ----------------------------------------------------------------------

    def soft_target(self, params: Any, target_critic: Any, batch: Transition, stats, key: jax.Array) -> jax.Array:
        """y = r·scale + γ (1 − termination) (min_i Q̄_i(s′, ã′) − α log π(ã′|s′)), ã′ ~ π(·|s′) (eq. 3)."""
        next_obs = self.normalize(stats, batch.next_obs)
        next_action, next_log_prob = self.policy.apply(params["actor"], next_obs).sample_with_log_prob(key)
        next_q = jnp.min(self.critic.apply(target_critic, next_obs, next_action), axis=-1)
        alpha = jnp.exp(params["log_alpha"])
        soft_value = next_q - alpha * next_log_prob
        y = self.config.reward_scale * batch.reward + self.config.discount * (1.0 - batch.termination) * soft_value
        return jax.lax.stop_gradient(y)

    def critic_loss(self, critic_params: Any, obs: jax.Array, batch: Transition, y: jax.Array):
        q = self.critic.apply(critic_params, obs, batch.action)  # [B, 2]
        return 0.5 * jnp.mean(jnp.sum((q - y[:, None]) ** 2, axis=-1)), jnp.mean(q)

    def actor_loss(self, actor_params: Any, critic_params: Any, log_alpha: jax.Array, obs: jax.Array,
                   key: jax.Array):
        action, log_prob = self.policy.apply(actor_params, obs).sample_with_log_prob(key)
        min_q = jnp.min(self.critic.apply(critic_params, obs, action), axis=-1)
        return jnp.mean(jnp.exp(log_alpha) * log_prob - min_q), jnp.mean(-log_prob)

    def alpha_loss(self, log_alpha: jax.Array, actor_params: Any, obs: jax.Array, key: jax.Array):
        """−α (log π(ã|s) + H̄): its gradient in log α is α (Ĥ − H̄), so α grows while the entropy is below H̄."""
        _, log_prob = self.policy.apply(actor_params, obs).sample_with_log_prob(key)
        return jnp.mean(-jnp.exp(log_alpha) * jax.lax.stop_gradient(log_prob + self.target_entropy)), ()

    def gradient_step(self, params, opt_state, target_critic, batch: Transition, stats, key: jax.Array):
        target_key, actor_key, alpha_key = jax.random.split(key, 3)
        obs = self.normalize(stats, batch.obs)
        y = self.soft_target(params, target_critic, batch, stats, target_key)
        critic, critic_opt, critic_loss, q_mean, critic_norm, critic_ok = offpolicy.adam_step(
            self.txs["critic"], self.critic_loss, params["critic"], opt_state["critic"], obs, batch, y)
        actor, actor_opt, actor_loss, entropy, actor_norm, actor_ok = offpolicy.adam_step(
            self.txs["actor"], self.actor_loss, params["actor"], opt_state["actor"], params["critic"],
            params["log_alpha"], obs, actor_key)
        log_alpha, alpha_opt, alpha_loss, _, _, alpha_ok = offpolicy.adam_step(
            self.txs["log_alpha"], self.alpha_loss, params["log_alpha"], opt_state["log_alpha"], params["actor"],
            obs, alpha_key)
        params = {"actor": actor, "critic": critic, "log_alpha": log_alpha}
        opt_state = {"actor": actor_opt, "critic": critic_opt, "log_alpha": alpha_opt}
        target_critic = offpolicy.soft_update(target_critic, critic, self.config.tau)
        nonfinite = 3 - sum(ok.astype(jnp.int32) for ok in (critic_ok, actor_ok, alpha_ok))
        info = {"train/critic_loss": critic_loss, "train/actor_loss": actor_loss, "train/alpha_loss": alpha_loss,
                "train/q_mean": q_mean, "train/entropy": entropy, "train/alpha": jnp.exp(log_alpha),
                "train/critic_grad_norm": critic_norm, "train/actor_grad_norm": actor_norm, "nonfinite": nonfinite}
        return params, opt_state, target_critic, info

    # -- one epoch -----------------------------------------------------------------------------

    def actor(self, actor_params: Any, stats: normalization.RunningStatistics, deterministic: bool = False):
        def act(actor_state, obs, key):
            dist = self.policy.apply(actor_params, self.normalize(stats, obs))
            action = dist.mode() if deterministic else dist.sample_with_log_prob(key)[0]
            return action, actor_state, {}

        return act

    def _train_step(self, ts: TrainState):
        cfg = self.config
        ts, (key,) = split_rng(ts, 1)

        def cycle(carry, cycle_key):
            params, opt_state, target_critic, experience = carry
            collect_key, train_key = jax.random.split(cycle_key)
            collector, transitions, episodes = self.collector.collect(
                experience.collector, self.actor(params["actor"], experience.obs_stats), collect_key,
                self.steps_per_env, self.to_env)
            experience = self.store(experience._replace(collector=collector), transitions, episodes)

            def train(carry, step_key):
                params, opt_state, target_critic = carry
                sample_key, step_key = jax.random.split(step_key)
                batch = self.sample_batch(experience, sample_key)
                params, opt_state, target_critic, info = self.gradient_step(
                    params, opt_state, target_critic, batch, experience.obs_stats, step_key)
                return (params, opt_state, target_critic), info

            (params, opt_state, target_critic), infos = jax.lax.scan(
                train, (params, opt_state, target_critic), jax.random.split(train_key, cfg.train_steps))
            nonfinite = jnp.sum(infos.pop("nonfinite"))
            infos = {**jax.tree.map(jnp.mean, infos), "nonfinite": nonfinite, **self.episode_info(episodes)}
            return (params, opt_state, target_critic, experience), infos

        carry = (ts.params, ts.opt_state, ts.extras["target_critic"], ts.extras["experience"])
        (params, opt_state, target_critic, experience), infos = jax.lax.scan(
            cycle, carry, jax.random.split(key, cfg.epoch_cycles))
        ts = ts.replace(params=params, opt_state=opt_state, step=ts.step + 1,
                        nonfinite_updates=ts.nonfinite_updates + jnp.sum(infos.pop("nonfinite")).astype(jnp.int32),
                        extras={"target_critic": target_critic, "experience": experience})
        experience_metrics = self.experience_metrics(experience, infos)
        metrics = {
            **{k: jnp.mean(v).astype(jnp.float32) for k, v in infos.items()},
            **experience_metrics,
            "train/nonfinite_updates": ts.nonfinite_updates.astype(jnp.float32),
            "time/gradient_steps": (ts.step * cfg.epoch_cycles * cfg.train_steps).astype(jnp.float32),
        }
        return ts, metrics

    def eval_policy(self, ts: TrainState):
        """The mean action tanh(μ(s)) (evaluated with K = 0)."""
        act = self.actor(ts.params["actor"], ts.extras["experience"].obs_stats, deterministic=True)
        return lambda obs, k: act((), obs, k)[0]
