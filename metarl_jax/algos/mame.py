"""MAME: a separate exploration policy with a self-supervised inner loop (Gurumurthy et al. 2019, Secs. 4-5).

Three modules: the exploration policy μ_φ(a|s), the exploitation policy π_{θ,z}(a|s) and the
self-supervision network M_{β,z}(s, a) = w_βᵀ m_β(s, a). π and M read the task-specific z ⧺ input;
z starts at 0 and is *not* meta-learned (the biases of the layers reading z compensate, Sec. 4.1).

    1: sample a batch of tasks T_i ~ p(T)
    2: for each task (vmapped, sharded over devices):
    3:     τ_i ~ μ_φ                                                         (exploration)
    4:     z'_i = z − α ∇_z mean_t □(W_t) (M_{β,z}(s_t, a_t) − M(s_t, a_t))²   (eq. 4 with DiCE; only z adapts)
    5:     τ'_i ~ π_{θ,z'_i}                                                  (exploitation)
    6: J(θ, β) = PPO's clipped surrogate of π_{θ,z'_i(β)} on τ'_i            (eq. 5; β through z')
    7: r^μ_{i,t} = −α ⊥(∂J/∂z'_i)ᵀ ∇_z ℓ_{i,t}                              (eq. 9)
    8: A^μ = GAE of r^μ against a linear-feature or value-network baseline   (eq. 8)
    9: for n = 1..5: Adam step (lr 7e-4) on −J(θ, β) − J^CLIP_μ(φ; τ, A^μ) (+ the value-network loss)

All of it is one XLA program (``train_step``). ``window_sum`` and the other pieces are in
``algos/self_supervision.py``. M is the N-step return (N = 15, ``target``; or the reward, the return,
the next state) and m_β the truncated N-step successor representation: the average of the features
h_β(s_{t+k}, a_{t+k}, z), k < N, along the episode (the author's normalisation), so that w_βᵀ m_β
predicts the N-step return of the reward w_βᵀ h_β / N.

What φ's gradient estimates. z' depends on φ only through the DiCE weights □(W_t),
W_t = Σ_{t'≤t} log μ_φ(a_t'|s_t') (value 1). Backpropagating J through z' (``explorer_gradient=
"vanilla_dice"``) gives dJ/dφ = Σ_t ∇_φ W_t r^μ_t = Σ_t ∇_φ log μ_φ(a_t|s_t) Σ_{t'≥t} r^μ_t', eqs. (6)-(7):
a policy gradient for μ with per-step rewards r^μ_t (eq. 9). The default ``"low_variance"`` replaces
Σ_{t'≥t} r^μ_t' by an advantage against a baseline (eq. 8) and optimises μ by PPO on it (per-task
RMS-normalised rewards as in the author's code, GAE(γ, λ), normalised advantages), which is the
paper's estimator and biased for dJ/dφ by γ < 1 and the normalisations. ``"emaml_explorer"`` gives
every step of task i's exploration batch E-MAML's adjusted post-update reward R̂'_i instead (no causal
credit). As in the paper, the weight of ℓ_t collects the actions up to t only, although the N-step
target and m_β also depend on a_{t+1..t+N−1}: the score terms of those actions are dropped (exact
for ``target="reward"``).

``inner_loss="vpg_inner"`` (Fig. 4's VPG-Inner ablation) adapts z by a policy-gradient step of
π_{θ,z} on the exploration episodes with per-step importance weights π_{θ,z}(a|s)/μ(a|s): ℓ_t = −ρ_t A_t.

Meta-test: for every held-out task, from z = 0: K times [explorer episodes, one inner step on z with
the eval reward, step sizes by ``eval_schedule``]; the curve is the return of π_{θ,z_k} after k steps.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from metarl_jax import estimators, optim, parallel
from metarl_jax.algos import common, emaml
from metarl_jax.algos import self_supervision as ss
from metarl_jax.algos.base import Algorithm, TrainState, new_train_state, split_rng
from metarl_jax.algos.config import in_range, non_negative, one_of, positive
from metarl_jax.evaluation import SCHEDULES, AdaptationCurve, AdaptationTrace, adaptation_trace
from metarl_jax.networks import ACTIVATIONS, MLP, float_dtype, make_feature_regressor, make_gaussian_policy
from metarl_jax.rollout import Trajectory, rollout, score

INNER_LOSSES = ("self_supervised", "vpg_inner")
EXPLORER_GRADIENTS = ("low_variance", "vanilla_dice", "emaml_explorer")


@dataclasses.dataclass(frozen=True)
class Config(common.PolicyGradientConfig):
    """MAME defaults (paper App. 7.2; author's code): the three networks are ProMP's (64, 64) tanh policy
    network, embedding z of size 32, N = 15, α = 0.1, 40 tasks × 20 episodes, PPO 5 × Adam 7e-4, clip 0.2."""

    hidden_sizes: tuple[int, ...] = positive((64, 64))
    activation: str = one_of("tanh", tuple(ACTIVATIONS))
    meta_batch_size: int = positive(40)
    episodes_per_task: int = positive(20)
    latent_size: int = positive(32)
    fast_lr: float = non_negative(0.1)
    # Self-supervision target M(s_t, a_t) and M_{β,z}'s truncated successor representation (N steps).
    target: str = one_of("n_step_return", ss.TARGETS)
    n_step: int = positive(15)
    successor_features: bool = True
    inner_loss: str = one_of("self_supervised", INNER_LOSSES)
    # φ's gradient: eqs. (6)-(9) with a baseline ("low_variance"), the full DiCE gradient, or E-MAML's returns.
    explorer_gradient: str = one_of("low_variance", EXPLORER_GRADIENTS)
    explorer_baseline: str = one_of("linear", ss.EXPLORER_BASELINES)
    normalize_explorer_rewards: bool = True
    optimizer: str = one_of("ppo", ("ppo", "vpg"))
    learning_rate: float = positive(7e-4)
    ppo_clip: float = in_range(0.2, 0.0, 1.0, low_inclusive=False)
    ppo_epochs: int = positive(5)
    max_grad_norm: float | None = positive(None)  # global-norm clip of the outer gradient (author's code: 0.5)
    # Meta-test (single adaptation step, as in the paper).
    eval_num_tasks: int = positive(40)
    eval_episodes_per_task: int = positive(20)
    eval_adaptation_steps: int = non_negative(1)
    eval_reward: str = one_of("dense", common.REWARD_KINDS)
    eval_schedule: str = one_of("maml", tuple(SCHEDULES))
    eval_lr: float | None = positive(None)

    def validate(self) -> None:
        if self.explorer_baseline == "value_network" and self.explorer_gradient != "low_variance":
            raise ValueError(
                "config field 'explorer_baseline' = 'value_network' needs 'explorer_gradient' = 'low_variance' "
                f"(got {self.explorer_gradient!r}, which uses no baseline, so the network would never be trained)")


PRESETS: dict[str, Config] = {
    "paper": Config(),
    # The paper's benchmarks (Fig. 2; horizons are the family's) and ProMP's corner task (Figs. 3-4).
    **{family: Config() for family in ("cheetah_dir", "cheetah_vel", "ant_dir", "walker2d_dir", "hopper_rand_params",
                                       "walker2d_rand_params", "point_corner", "point_semicircle")},
    # Small and fast on a 2-core CPU (tests).
    "smoke": Config(hidden_sizes=(32, 32), latent_size=8, meta_batch_size=8, episodes_per_task=8, eval_num_tasks=8,
                    eval_episodes_per_task=8),
}


class MAME(Algorithm):
    name = "mame"
    Config = Config

    def setup(self) -> None:
        cfg = self.config
        parallel.check_divisible(cfg.meta_batch_size, self.mesh, "meta_batch_size")
        family = self.family
        self.policy = make_gaussian_policy(family.observation_size, family.action_size, cfg.hidden_sizes,
                                           cfg.activation, cfg.init_log_std, latent_size=cfg.latent_size)
        self.explorer = make_gaussian_policy(family.observation_size, family.action_size, cfg.hidden_sizes,
                                             cfg.activation, cfg.init_log_std)
        target_size = family.observation_size if cfg.target == "next_state" else 1
        self.model = make_feature_regressor(family.observation_size + family.action_size + cfg.latent_size,
                                            target_size, cfg.hidden_sizes, cfg.activation)
        self.value = MLP(cfg.hidden_sizes, 1, cfg.activation)
        if cfg.optimizer == "ppo":
            self.optimizer = optim.ppo(cfg.learning_rate, cfg.ppo_clip, cfg.ppo_epochs, cfg.max_grad_norm)
        else:
            self.optimizer = optim.vpg(cfg.learning_rate, cfg.max_grad_norm)

    @property
    def clip(self) -> float | None:
        return self.config.ppo_clip if self.config.optimizer == "ppo" else None

    def init(self, key: jax.Array) -> TrainState:
        policy_key, explorer_key, model_key, value_key, rng = jax.random.split(key, 5)
        params = {"policy": self.policy.init(policy_key), "explorer": self.explorer.init(explorer_key),
                  "model": self.model.init(model_key)}
        if self.config.explorer_baseline == "value_network":
            params["explorer_value"] = self.value.init(value_key, jnp.zeros((self.family.observation_size,)))
        return new_train_state(params, self.optimizer.init(params), rng)

    @property
    def initial_latent(self) -> jax.Array:
        """z = 0: not meta-learned (Sec. 4.1)."""
        return jnp.zeros((self.config.latent_size,), float_dtype())

    # -- inner loop (eq. 4): only z adapts ---------------------------------------------------

    def inner_data(self, explorer_batch: Trajectory, reward_kind: str):
        """What the inner loss regresses on (no gradient): (targets M, step weights), or the advantages."""
        cfg = self.config
        if cfg.inner_loss == "vpg_inner":
            return common.task_advantages(explorer_batch, cfg, reward_kind), explorer_batch.mask
        return ss.targets(explorer_batch, cfg.target, reward_kind, cfg.n_step, cfg.discount)

    def per_step_losses(self, params: Any, z: jax.Array, explorer_batch: Trajectory, inner_data) -> jax.Array:
        """ℓ_t(z) [E, T]: (M_{β,z}(s_t, a_t) − M_t)², or −ρ_t A_t with ρ_t = π_{θ,z}/μ_old for vpg_inner."""
        cfg = self.config
        values, _ = inner_data
        if cfg.inner_loss == "vpg_inner":
            latents = jnp.broadcast_to(z, (*explorer_batch.mask.shape[:-1], z.shape[-1]))
            with_z = explorer_batch._replace(latents=latents)
            log_probs, _ = score(self.policy, params["policy"], with_z)
            return -jnp.exp(log_probs - explorer_batch.log_probs) * values
        obs, actions = explorer_batch.obs, explorer_batch.actions
        inputs = jnp.concatenate([obs, actions, jnp.broadcast_to(z, (*obs.shape[:-1], z.shape[-1]))], axis=-1)
        prediction = ss.successor_prediction(self.model, params["model"], inputs, explorer_batch.mask, cfg.target,
                                             cfg.n_step, cfg.discount, cfg.successor_features)
        return jnp.sum((prediction - values) ** 2, axis=-1)

    def dice(self, params: Any, explorer_batch: Trajectory) -> jax.Array | None:
        """□(W_t) with φ's gradient (``vanilla_dice``); otherwise None (weights 1, no φ-dependence)."""
        if self.config.explorer_gradient != "vanilla_dice":
            return None
        log_probs, _ = score(self.explorer, params["explorer"], explorer_batch)
        return ss.dice_weights(log_probs, explorer_batch.log_probs, explorer_batch.mask)

    def inner_loss(self, params: Any, z: jax.Array, explorer_batch: Trajectory, inner_data) -> jax.Array:
        return ss.weighted_loss(self.per_step_losses(params, z, explorer_batch, inner_data), inner_data[1],
                                self.dice(params, explorer_batch))

    def adapt(self, params: Any, z: jax.Array, explorer_batch: Trajectory, inner_data, lr: Any = None) -> jax.Array:
        """z' = z − α ∇_z L(z): θ, β and φ are not changed (only z is task-specific)."""
        lr = self.config.fast_lr if lr is None else lr
        return z - lr * jax.grad(self.inner_loss, argnums=1)(params, z, explorer_batch, inner_data)

    def sample_adaptation(self, params: Any, task: Any, key: jax.Array):
        """Steps 3-5 for one task: (exploration batch, its inner data, z', post-update batch, its advantages)."""
        cfg = self.config
        explore_key, exploit_key = jax.random.split(key)
        explorer_batch = rollout(self.family, self.explorer, params["explorer"], task, explore_key,
                                 cfg.episodes_per_task)
        inner_data = self.inner_data(explorer_batch, cfg.train_reward)
        z_new = self.adapt(params, self.initial_latent, explorer_batch, inner_data)
        post = rollout(self.family, self.policy, params["policy"], task, exploit_key, cfg.episodes_per_task,
                       latents=jnp.broadcast_to(z_new, (cfg.episodes_per_task, cfg.latent_size)))
        post_adv = common.task_advantages(post, cfg, cfg.train_reward)
        return jax.lax.stop_gradient((explorer_batch, inner_data, z_new, post, post_adv))

    # -- outer loop ----------------------------------------------------------------------------

    def post_update_surrogate(self, policy_params: Any, latents: jax.Array, post: Trajectory,
                              post_adv: jax.Array) -> jax.Array:
        """J: mean ρA of π_{θ,z'_i} on every task's post-update batch (unclipped; ρ = 1 at sampling)."""
        with_z = post._replace(latents=jnp.broadcast_to(latents[:, None, :], post.latents.shape))
        log_probs, _ = score(self.policy, policy_params, with_z)
        return estimators.importance_surrogate(log_probs - post.log_probs, post_adv, post.mask)

    def explorer_rewards(self, params: Any, batch) -> tuple[jax.Array, jax.Array]:
        """(r^μ [N, E, T] of eq. (9), ∂J/∂z'_i [N, d]) at the sampling parameters (no gradient)."""
        explorer_batches, inner_data, z_new, post, post_adv = batch
        outer_gradient = jax.grad(self.post_update_surrogate, argnums=1)(params["policy"], z_new, post, post_adv)

        def rewards_of_task(explorer_batch, data, gradient):
            losses = lambda z: self.per_step_losses(params, z, explorer_batch, data)  # noqa: E731
            return ss.explorer_rewards(losses, self.initial_latent, gradient, data[1], self.config.fast_lr)

        rewards = jax.vmap(rewards_of_task)(explorer_batches, inner_data, outer_gradient)
        return rewards, jax.lax.stop_gradient(outer_gradient)

    def explorer_advantages(self, params: Any, batch) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
        """(A^μ, R^μ, metrics) for every exploration step [N, E, T] (eqs. 8-9, or E-MAML's returns)."""
        cfg = self.config
        explorer_batches, inner_data, z_new, post, post_adv = batch
        mask = explorer_batches.mask
        zeros = jnp.zeros_like(mask)
        if cfg.explorer_gradient == "vanilla_dice":
            return zeros, zeros, {}
        if cfg.explorer_gradient == "emaml_explorer":
            per_task = jnp.sum(post.select_rewards(cfg.train_reward) * post.mask, (1, 2)) / jnp.maximum(
                jnp.sum(post.mask, (1, 2)), 1.0)
            adjusted = emaml.normalized_post_update_rewards(per_task, post, cfg.train_reward)
            return adjusted[:, None, None] * mask, zeros, {}
        rewards, _ = self.explorer_rewards(params, batch)
        values = None
        if cfg.explorer_baseline == "value_network":
            values = self.value.apply(params["explorer_value"], explorer_batches.obs)[..., 0]
        advantages = jax.vmap(lambda obs, r, m, v: ss.explorer_advantages(
            obs, r, m, v, cfg.discount, cfg.gae_lambda, cfg.explorer_baseline, cfg.normalize_explorer_rewards,
            cfg.normalize_advantages), in_axes=(0, 0, 0, None if values is None else 0))
        adv, returns = advantages(explorer_batches.obs, rewards, mask, values)
        # Σ_t r^μ_t = (∂J/∂z')ᵀ (z' − z): the first-order gain of J from each task's inner step.
        metrics = {"adapt/predicted_improvement": jnp.sum(rewards) / cfg.meta_batch_size,
                   "train/explorer_reward_rms": jnp.sqrt(estimators.masked_mean(rewards**2, mask))}
        return adv, returns, metrics

    def explorer_loss(self, params: Any, explorer_batches: Trajectory, adv: jax.Array, returns: jax.Array):
        """−J^CLIP_μ(φ) on the exploration episodes (+ ½ mean (V_ψ(s) − R^μ)² for the value baseline)."""
        cfg = self.config
        if cfg.explorer_gradient == "vanilla_dice":
            return jnp.zeros((), adv.dtype)
        log_probs, _ = score(self.explorer, params["explorer"], explorer_batches)
        mask = explorer_batches.mask
        loss = -estimators.importance_surrogate(log_probs - explorer_batches.log_probs, adv, mask, self.clip)
        if cfg.explorer_baseline == "value_network":
            values = self.value.apply(params["explorer_value"], explorer_batches.obs)[..., 0]
            loss = loss + 0.5 * estimators.masked_mean((values - returns) ** 2, mask)
        return loss

    def meta_objective(self, params: Any, batch, explorer_adv: jax.Array, explorer_returns: jax.Array):
        """The PolicyObjective PPO optimises: π's ratios on τ'_i through z'_i(β) and μ's loss as the penalty."""
        explorer_batches, inner_data, _, post, post_adv = batch

        def one_task(explorer_batch, data, post_batch):
            z_new = self.adapt(params, self.initial_latent, explorer_batch, data)
            with_z = post_batch._replace(latents=jnp.broadcast_to(z_new, post_batch.latents.shape))
            log_probs, dist = score(self.policy, params["policy"], with_z)
            kl = estimators.masked_mean(post_batch.dist.kl(dist), post_batch.mask)
            return log_probs - post_batch.log_probs, kl

        log_ratio, kls = jax.vmap(one_task)(explorer_batches, inner_data, post)
        penalty = self.explorer_loss(params, explorer_batches, explorer_adv, explorer_returns)
        return optim.PolicyObjective(log_ratio, post_adv, post.mask, jnp.mean(kls), penalty)

    def collect(self, params: Any, task_key: jax.Array, sample_key: jax.Array):
        cfg = self.config
        tasks = self.shard(self.family.sample_tasks(task_key, cfg.meta_batch_size))
        keys = self.shard(jax.random.split(sample_key, cfg.meta_batch_size))
        return jax.vmap(self.sample_adaptation, in_axes=(None, 0, 0))(params, tasks, keys)

    def prepare(self, ts: TrainState):
        """Steps 1-8 (everything before the optimiser): (ts with a fresh key, (batch, A^μ, R^μ), metrics)."""
        ts, (task_key, sample_key) = split_rng(ts, 2)
        batch = self.collect(ts.params, task_key, sample_key)
        explorer_adv, explorer_returns, metrics = self.explorer_advantages(ts.params, batch)
        return ts, (batch, explorer_adv, explorer_returns), metrics

    def _train_step(self, ts: TrainState):
        ts, (batch, explorer_adv, explorer_returns), explorer_metrics = self.prepare(ts)
        params, opt_state, info = self.optimizer.update(
            lambda p: self.meta_objective(p, batch, explorer_adv, explorer_returns), ts.params, ts.opt_state)
        ts = ts.replace(params=params, opt_state=opt_state, step=ts.step + 1,
                        nonfinite_updates=ts.nonfinite_updates + info["nonfinite"])
        return ts, {**self.train_metrics(ts, batch, info), **explorer_metrics}

    def train_metrics(self, ts: TrainState, batch, info: dict[str, jax.Array]) -> dict[str, jax.Array]:
        cfg = self.config
        explorer_batches, inner_data, z_new, post, _ = batch
        log_probs, dist = score(self.explorer, ts.params["explorer"], explorer_batches)
        inner_before, inner_after = jax.vmap(lambda b, d, z: (
            self.inner_loss(ts.params, self.initial_latent, b, d), self.inner_loss(ts.params, z, b, d)))(
                explorer_batches, inner_data, z_new)
        steps_per_iteration = 2 * cfg.meta_batch_size * cfg.episodes_per_task * self.family.episode_length
        return {
            **common.return_metrics("train/pre_", explorer_batches),
            **common.return_metrics("train/post_", post),
            **common.optimizer_metrics(info),
            "train/nonfinite_updates": ts.nonfinite_updates.astype(jnp.float32),
            "train/policy_std": jnp.mean(jnp.exp(post.dist.log_std)),
            "train/explorer_std": jnp.mean(jnp.exp(explorer_batches.dist.log_std)),
            "train/explorer_kl": estimators.masked_mean(explorer_batches.dist.kl(dist), explorer_batches.mask),
            "adapt/latent_norm": jnp.mean(jnp.linalg.norm(z_new, axis=-1)),
            # The inner loss on the exploration batch at z (before) and z' (after), with the updated θ, β.
            "adapt/inner_loss_before": jnp.mean(inner_before),
            "adapt/inner_loss_after": jnp.mean(inner_after),
            "time/env_steps": ts.step.astype(jnp.float32) * steps_per_iteration,
        }

    # -- meta-test -------------------------------------------------------------------------------

    def meta_test_trace(self, params: Any, tasks: Any, key: jax.Array,
                        keep: Any = lambda batch: ()) -> AdaptationTrace:
        """Per task from z = 0, K times: explorer episodes, z ← z − α_k ∇_z L(z) with the eval reward;
        the return is π_{θ,z_k}'s. ``states`` are the z_k; ``keep(batch)`` sees (explorer batch, π batch)."""
        cfg = self.config
        lr = cfg.fast_lr if cfg.eval_lr is None else cfg.eval_lr
        schedule = SCHEDULES[cfg.eval_schedule](lr, cfg.eval_adaptation_steps)
        num_episodes = cfg.eval_episodes_per_task

        def sample(z, task, sample_key):
            explore_key, exploit_key = jax.random.split(sample_key)
            explorer_batch = rollout(self.family, self.explorer, params["explorer"], task, explore_key, num_episodes)
            exploit = rollout(self.family, self.policy, params["policy"], task, exploit_key, num_episodes,
                              latents=jnp.broadcast_to(z, (num_episodes, cfg.latent_size)))
            return (explorer_batch, exploit), jnp.mean(exploit.episode_returns(cfg.eval_reward))

        def update(z, task, batch, step_size):
            explorer_batch, _ = batch
            return self.adapt(params, z, explorer_batch, self.inner_data(explorer_batch, cfg.eval_reward), step_size)

        return adaptation_trace(sample, update, self.initial_latent, self.shard(tasks), key, schedule, keep)

    def _evaluate(self, ts: TrainState, tasks: Any, key: jax.Array) -> AdaptationCurve:
        return AdaptationCurve(self.meta_test_trace(ts.params, tasks, key).returns)

    def _record_stages(self, ts: TrainState, tasks: Any, key: jax.Array):
        """Stage k: an episode of π_{θ,z_k} (the policy whose return the curve reports)."""
        trace = self.meta_test_trace(ts.params, tasks, key, keep=lambda batch: common.first_episode_qpos(batch[1]))
        return trace.returns, trace.kept

    def adapted_rollout(self, params: Any, task: Any, key: jax.Array) -> tuple[Trajectory, Trajectory]:
        """(μ_φ's exploration episodes [E, T], one episode of the adapted π_{θ,z'} [1, T]) for one task:
        what the exploration-trajectory figure draws (E = ``eval_episodes_per_task``, eval reward)."""
        cfg = self.config
        explore_key, exploit_key = jax.random.split(key)
        explorer_batch = rollout(self.family, self.explorer, params["explorer"], task, explore_key,
                                 cfg.eval_episodes_per_task)
        inner_data = self.inner_data(explorer_batch, cfg.eval_reward)
        z_new = self.adapt(params, self.initial_latent, explorer_batch, inner_data)
        exploit = rollout(self.family, self.policy, params["policy"], task, exploit_key, 1, latents=z_new[None])
        return explorer_batch, exploit
