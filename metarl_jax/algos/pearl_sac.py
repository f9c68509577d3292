"""SAC conditioned on the task variable z, with the context encoder trained through the critic (PEARL, Sec. 4.2).

Oyster's ``PEARLSoftActorCritic._take_step``, one gradient step on a meta-batch of tasks i:

    z^i ~ q_φ(z | c^i)                                                      (reparameterised)
    (φ, Q_1, Q_2) ← Adam ∇ [Σ_j E(Q_j(s, a, z) − y)² + λ_KL Σ_i KL(q_φ(z|c^i) ‖ N(0, I))]
        y = scale·r + γ (1 − termination) V̄(s′, z̄)     (twin_q: min_j Q̄_j(s′, ã′, z̄) − log π(ã′|s′, z̄))
    ã ~ π(·|s, z̄), with the critics just updated:
        V ← Adam ∇ E(V(s, z̄) − (min_j Q_j(s, ã, z̄) − log π(ã|s, z̄)))²
        π ← Adam ∇ E[log π(ã|s, z̄) − min_j Q_j(s, ã, z̄)] + w_μ E[μ²] + w_σ E[(log σ)²]
    V̄ ← τ V + (1 − τ) V̄  (twin_q: Q̄ ← τ Q + (1 − τ) Q̄)

z̄ = stop_gradient(z): the actor and V see z but do not train the encoder. The temperature is 1;
``reward_scale`` weighs the reward against the entropy. A terminal transition does not bootstrap; a
truncated one bootstraps from its true s′ (the off-policy learners' rule, ``algos/offpolicy.py``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from metarl_jax.algos import pearl_context
from metarl_jax.algos.offpolicy import adam_step, soft_update
from metarl_jax.collector import Transition
from metarl_jax.networks import DDPG_OUTPUT_UNIFORM, MLP, float_dtype, make_q_function, make_tanh_gaussian_policy

CRITIC_TARGETS = ("value", "twin_q")


class ContextualSAC:
    """Mixin: the encoder, the z-conditioned policy, critics and V, and their gradient step (needs ``config``)."""

    def setup_networks(self, observation_size: int, action_size: int) -> None:
        cfg = self.config
        latent = cfg.latent_size
        self.encoder = pearl_context.make_context_encoder(
            pearl_context.context_size(observation_size, action_size, cfg.use_next_obs_in_context), latent,
            cfg.encoder_hidden_sizes, cfg.activation, cfg.information_bottleneck)
        self.policy = make_tanh_gaussian_policy(observation_size + latent, action_size, cfg.hidden_sizes,
                                                cfg.activation, False, cfg.min_std)
        self.critic = make_q_function(observation_size + latent, action_size, cfg.hidden_sizes, cfg.activation,
                                      num_critics=2)
        self.value = MLP(cfg.hidden_sizes, 1, cfg.activation, output_uniform=DDPG_OUTPUT_UNIFORM)
        self.obs_z_size = observation_size + latent
        # The encoder and the critics descend one loss, each with its own Adam (oyster: context_lr and qf_lr).
        self.txs = {"critic": optax.multi_transform({"encoder": optax.adam(cfg.context_lr),
                                                     "critic": optax.adam(cfg.qf_lr)},
                                                    {"encoder": "encoder", "critic": "critic"}),
                    "actor": optax.adam(cfg.policy_lr)}
        if cfg.critic_target == "value":
            self.txs["value"] = optax.adam(cfg.vf_lr)

    def init_networks(self, key: jax.Array):
        """(params, optimiser states, target network: V̄ or the twin Q̄)."""
        encoder_key, critic_key, actor_key, value_key = jax.random.split(key, 4)
        params = {"encoder": self.encoder.init(encoder_key), "critic": self.critic.init(critic_key),
                  "actor": self.policy.init(actor_key)}
        if self.config.critic_target == "value":
            params["value"] = self.value.init(value_key, jnp.zeros((self.obs_z_size,), float_dtype()))
        opt_state = {"critic": self.txs["critic"].init({"encoder": params["encoder"], "critic": params["critic"]}),
                     **{name: self.txs[name].init(params[name]) for name in ("actor", "value") if name in self.txs}}
        target = params["value"] if self.config.critic_target == "value" else params["critic"]
        return params, opt_state, target

    def critic_loss(self, trainable: Any, target: Any, actor_params: Any, context: jax.Array, batch: Transition,
                    key: jax.Array):
        """Σ_j mean (Q_j(s, a, z) − y)² + λ_KL Σ_i KL(q(z|c^i) ‖ N(0, I)), z ~ q_φ(z | c^i) reparameterised."""
        cfg = self.config
        z_key, next_key = jax.random.split(key)
        posterior = self.encoder.posterior(trainable["encoder"], context)  # [M, latent]
        z = posterior.sample(z_key)
        z_batch = jnp.broadcast_to(z[:, None, :], (*batch.reward.shape, cfg.latent_size))
        q = self.critic.apply(trainable["critic"], jnp.concatenate([batch.obs, z_batch], -1), batch.action)
        y = self.target(target, actor_params, batch, jax.lax.stop_gradient(z_batch), next_key)
        kl = jnp.sum(posterior.kl_to_prior()) if cfg.information_bottleneck else jnp.zeros((), q.dtype)
        loss = jnp.sum(jnp.mean((q - y[..., None]) ** 2, axis=(0, 1))) + cfg.kl_lambda * kl
        return loss, (z, kl, jnp.mean(q), jnp.mean(posterior.variance))

    def target(self, target: Any, actor_params: Any, batch: Transition, z: jax.Array, key: jax.Array) -> jax.Array:
        """y = scale·r + γ (1 − termination) V̄(s′, z)  (twin_q: min_j Q̄_j(s′, ã′, z) − log π(ã′|s′, z))."""
        cfg = self.config
        next_obs_z = jnp.concatenate([batch.next_obs, z], -1)
        if cfg.critic_target == "value":
            next_value = self.value.apply(target, next_obs_z)[..., 0]
        else:
            next_action, next_log_prob = self.policy.apply(actor_params, next_obs_z).sample_with_log_prob(key)
            next_value = jnp.min(self.critic.apply(target, next_obs_z, next_action), axis=-1) - next_log_prob
        y = cfg.reward_scale * batch.reward + cfg.discount * (1.0 - batch.termination) * next_value
        return jax.lax.stop_gradient(y)

    def actor_loss(self, actor_params: Any, critic_params: Any, obs_z: jax.Array, key: jax.Array):
        """mean(log π(ã|s, z̄) − min_j Q_j(s, ã, z̄)) + mean-and-log-std regularisers; aux: V's target."""
        cfg = self.config
        dist = self.policy.apply(actor_params, obs_z)
        action, log_prob = dist.sample_with_log_prob(key)
        min_q = jnp.min(self.critic.apply(critic_params, obs_z, action), axis=-1)
        regulariser = (cfg.policy_mean_reg_weight * jnp.mean(dist.mean**2)
                       + cfg.policy_std_reg_weight * jnp.mean(dist.log_std**2))
        return jnp.mean(log_prob - min_q) + regulariser, (jax.lax.stop_gradient(min_q - log_prob), -jnp.mean(log_prob))

    def value_loss(self, value_params: Any, obs_z: jax.Array, value_target: jax.Array):
        return jnp.mean((self.value.apply(value_params, obs_z)[..., 0] - value_target) ** 2), ()

    def gradient_step(self, params, opt_state, target, context: jax.Array, batch: Transition, key: jax.Array):
        cfg = self.config
        critic_key, actor_key = jax.random.split(key)
        trainable = {"encoder": params["encoder"], "critic": params["critic"]}
        trainable, critic_opt, critic_loss, (z, kl, q_mean, z_var), critic_norm, critic_ok = adam_step(
            self.txs["critic"], self.critic_loss, trainable, opt_state["critic"], target, params["actor"], context,
            batch, critic_key)
        z_batch = jnp.broadcast_to(jax.lax.stop_gradient(z)[:, None, :], (*batch.reward.shape, cfg.latent_size))
        obs_z = jnp.concatenate([batch.obs, z_batch], -1)
        # The actor (and V's target) use the critics just updated, as oyster's _take_step does.
        actor, actor_opt, actor_loss, (value_target, entropy), actor_norm, actor_ok = adam_step(
            self.txs["actor"], self.actor_loss, params["actor"], opt_state["actor"], trainable["critic"], obs_z,
            actor_key)
        params = {**params, **trainable, "actor": actor}
        opt_state = {**opt_state, "critic": critic_opt, "actor": actor_opt}
        info = {"train/critic_loss": critic_loss, "train/actor_loss": actor_loss, "train/kl": kl,
                "train/q_mean": q_mean, "train/z_variance": z_var, "train/entropy": entropy,
                "train/critic_grad_norm": critic_norm, "train/actor_grad_norm": actor_norm}
        oks = [critic_ok, actor_ok]
        if cfg.critic_target == "value":
            value, value_opt, value_loss, _, value_norm, value_ok = adam_step(
                self.txs["value"], self.value_loss, params["value"], opt_state["value"], obs_z, value_target)
            params, opt_state = {**params, "value": value}, {**opt_state, "value": value_opt}
            target = soft_update(target, value, cfg.tau)
            info["train/value_loss"], info["train/value_grad_norm"] = value_loss, value_norm
            oks.append(value_ok)
        else:
            target = soft_update(target, params["critic"], cfg.tau)
        info["nonfinite"] = len(oks) - sum(ok.astype(jnp.int32) for ok in oks)
        return params, opt_state, target, info
