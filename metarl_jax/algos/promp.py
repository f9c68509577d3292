"""ProMP: Proximal Meta-Policy Search (Rothfuss et al. 2019, Algorithm 1).

    1: sample a batch of tasks T_i ~ p(T)
    2: for each task (vmapped): D_i ~ π_θ,  θ'_{o,i} = θ + α ∇_θ J^LR(θ; D_i),  D'_i ~ π_θ'_{o,i}
    3: θ_o ← θ
    4: for n = 1..N (``ppo_epochs``, Adam ``learning_rate``; the same samples every step):
    5:     θ'_i(θ) = θ + α ∇_θ J^LR(θ; D_i)                       (adaptation replayed from θ)
    6:     J^ProMP(θ) = Σ_i J^CLIP_{T_i}(θ'_i) − η D̄_KL(π_θ_o, π_θ)
    7:     θ ← Adam step on J^ProMP

    J^LR(θ; D)   = mean_t [π_θ(a_t|s_t) / π_θ_o(a_t|s_t)] A_t      (eq. 11: the LVC objective; at θ = θ_o
                   its value is mean A, its gradient the policy gradient, its Hessian the low-variance one)
    J^CLIP(θ')   = mean_t min(ρ_t A'_t, clip(ρ_t, 1 ± ε) A'_t),   ρ_t = π_θ'(a_t|s_t) / π_θ'_o(a_t|s_t)
    D̄_KL         = mean over tasks (and inner steps) of KL(π_θ_o ‖ π_θ) on the inner batches D_i

All of it is one XLA program (``train_step``). Because the inner objective is a likelihood
ratio to the *sampling* policy π_θ_o, the replayed inner gradient stays an importance-weighted
policy gradient at every PPO step (θ ≠ θ_o); at step 0 every inner objective below equals
MAML's, so the first epoch's gradient is MAML's (``outer_estimator="post_update"``) with the same
inner estimator: unbiased for neither the infinite- nor the finite-batch objective (``algos/maml.py``;
the estimator table of docs/design_notes.md). ``inner_estimator`` selects the variant: "lvc" (ProMP),
"dice" (unbiased DiCE Hessian; ratios accumulate over time: mean_t [Π_{t'≤t} ρ_t' − Π_{t'<t} ρ_t'] A_t)
or "vpg" (the original MAML inner step: mean_t ⊥ρ_t log π_θ(a_t|s_t) A_t). η is fixed, or, with
``adaptive_inner_kl``, halved/doubled after each iteration when the inner KL is below/above
target/1.5, target·1.5.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from metarl_jax import estimators
from metarl_jax.algos import common, maml
from metarl_jax.algos.base import TrainState, split_rng
from metarl_jax.algos.config import in_range, non_negative, one_of, positive
from metarl_jax.networks import ACTIVATIONS, float_dtype
from metarl_jax.rollout import Trajectory, score


@dataclasses.dataclass(frozen=True)
class Config(maml.Config):
    """ProMP defaults (pro-mp_run_point_mass.py / _mujoco.py): (64, 64) tanh, α 0.1, 40 tasks × 20 episodes,
    5 Adam 1e-3 steps, clip 0.3, fixed inner KL penalty 5e-4 (target 0.01 when adaptive)."""

    hidden_sizes: tuple[int, ...] = positive((64, 64))
    activation: str = one_of("tanh", tuple(ACTIVATIONS))
    inner_estimator: str = one_of("lvc", tuple(estimators.SURROGATES))
    optimizer: str = one_of("ppo", ("ppo", "trpo", "vpg"))
    ppo_clip: float = in_range(0.3, 0.0, 1.0, low_inclusive=False)
    inner_kl_coeff: float = non_negative(5e-4)
    adaptive_inner_kl: bool = False
    target_inner_kl: float = positive(0.01)

    def validate(self) -> None:
        super().validate()
        if self.outer_estimator != "post_update":
            raise ValueError(
                f"config field 'outer_estimator' = {self.outer_estimator!r} must be 'post_update' for ProMP (its "
                "PPO epochs reuse the samples off θ_o, where the score term would need importance weights); "
                "algo 'maml' has 'pre_update_score'")


PRESETS: dict[str, Config] = {
    "paper": Config(),
    # ProMP's point_env_2d_corner run: the paper settings (α 0.1, horizon 100).
    "point_corner": Config(),
    "point_semicircle": Config(),
    # The paper's locomotion benchmarks (same settings; horizons are the family's).
    "cheetah_dir": Config(),
    "cheetah_vel": Config(),
    "ant_dir": Config(),
    "ant_vel": Config(),
    # MAESN's families: its batches and sparse-reward meta-test (common.maesn_protocol).
    **{family: Config(**common.maesn_protocol(family)) for family in common.MAESN_FAMILIES},
    # Small and fast on a 2-core CPU (tests).
    "smoke": Config(hidden_sizes=(32, 32), meta_batch_size=8, episodes_per_task=8, fast_lr=0.5,
                    eval_num_tasks=8, eval_episodes_per_task=8, eval_adaptation_steps=2),
}


def likelihood_ratio_surrogate(kind: str, log_probs: jax.Array, behaviour_log_probs: jax.Array, adv: jax.Array,
                               mask: jax.Array) -> jax.Array:
    """The inner objective with ratios ρ_t = π_θ/π_θ_o to the sampling policy; at θ = θ_o it equals
    ``estimators.SURROGATES[kind]`` in value (up to a constant), gradient and Hessian."""
    log_ratio = (log_probs - behaviour_log_probs) * mask
    if kind == "lvc":
        return estimators.masked_mean(jnp.exp(log_ratio) * adv, mask)
    if kind == "vpg":
        return estimators.masked_mean(jax.lax.stop_gradient(jnp.exp(log_ratio)) * log_probs * adv, mask)
    cumulative = jnp.cumsum(log_ratio, axis=-1)  # "dice": log Π_{t'≤t} ρ_t'
    previous = jnp.concatenate([jnp.zeros_like(cumulative[..., :1]), cumulative[..., :-1]], axis=-1)
    return estimators.masked_mean((jnp.exp(cumulative) - jnp.exp(previous)) * adv, mask)


class ProMP(maml.MAML):
    name = "promp"
    Config = Config

    def init(self, key: jax.Array) -> TrainState:
        ts = super().init(key)
        coeff = jnp.full((self.config.num_inner_steps,), self.config.inner_kl_coeff, float_dtype())
        return ts.replace(extras={"inner_kl_coeff": coeff})

    def inner_objective(self, params: Any, trajectories: Trajectory, adv: jax.Array,
                        realized: bool = False) -> jax.Array:
        """J^LR(θ; D). Its "lvc" and "dice" forms are plain functions of θ (ratios to the stored sampling
        policy, no magic box), so they are their own realized surrogate. The "vpg" form's stop-gradient
        ratio is not: its step ⊥ρ ∇log π A equals ∇ρ A at every θ, so its realized surrogate is LVC's."""
        log_probs, _ = score(self.policy, params, trajectories)
        kind = "lvc" if realized and self.config.inner_estimator == "vpg" else self.config.inner_estimator
        return likelihood_ratio_surrogate(kind, log_probs, trajectories.log_probs, adv, trajectories.mask)

    @property
    def estimator_differs_from_realized(self) -> bool:
        return self.config.inner_estimator == "vpg" or self.config.first_order

    def adapt_with_kls(self, meta_params: Any, inner_batches: tuple[Trajectory, jax.Array], realized: bool = False):
        """(θ_K(θ), [KL(π_θ_k,o ‖ π_θ_k(θ)) on D_k for k < K]) for one task."""

        def body(p, batch):
            trajectories, adv = batch
            _, dist = score(self.policy, p, trajectories)
            kl = estimators.masked_mean(trajectories.dist.kl(dist), trajectories.mask)
            return self.inner_step(meta_params, p, trajectories, adv, realized), kl

        return jax.lax.scan(body, self.policy_params(meta_params), inner_batches)

    def adapt(self, meta_params: Any, inner_batches: tuple[Trajectory, jax.Array], realized: bool = False) -> Any:
        return self.adapt_with_kls(meta_params, inner_batches, realized)[0]

    def inner_kls(self, meta_params: Any, inner_batches) -> jax.Array:
        """D̄_KL per inner step: the mean over tasks, [K]."""
        return jnp.mean(jax.vmap(lambda batch: self.adapt_with_kls(meta_params, batch)[1])(inner_batches), axis=0)

    def meta_objective(self, meta_params: Any, inner_batches, post_batches, inner_kl_coeff: Any = None,
                       realized: bool = False):
        """J^CLIP's ratios on D'_i (the optimiser clips them) and the penalty mean_k η_k D̄_KL,k."""

        def one_task(inner_batch, post_batch):
            adapted, kls = self.adapt_with_kls(meta_params, inner_batch, realized)
            post, post_adv = post_batch
            return common.importance_objective(self.policy, adapted, post, post_adv), kls

        per_task, kls = jax.vmap(one_task)(inner_batches, post_batches)
        coeff = self.config.inner_kl_coeff if inner_kl_coeff is None else inner_kl_coeff
        penalty = jnp.mean(per_task.penalty) + jnp.mean(coeff * jnp.mean(kls, axis=0))
        num_tasks = per_task.kl.shape[0]
        return per_task._replace(kl=jnp.mean(per_task.kl), penalty=penalty,
                                 fisher_weights=jax.tree.map(lambda w: w / num_tasks, per_task.fisher_weights))

    def _train_step(self, ts: TrainState):
        """MAML's step (sampling, one outer update) with η from the train state, then η's adaptation."""
        cfg = self.config
        coeff = ts.extras["inner_kl_coeff"]
        ts, (task_key, sample_key) = split_rng(ts, 2)
        inner_batches, post_batches, adaptation_distance = self.collect(ts.params, task_key, sample_key)
        params, opt_state, info = self.optimizer.update(
            lambda p: self.meta_objective(p, inner_batches, post_batches, coeff), ts.params, ts.opt_state,
            self.fisher_objective(inner_batches, post_batches, coeff),
            realized_objective_fn=self.realized_objective(inner_batches, post_batches, coeff))

        inner_kl = self.inner_kls(params, inner_batches)
        if cfg.adaptive_inner_kl:
            coeff = jnp.where(inner_kl < cfg.target_inner_kl / 1.5, coeff / 2.0,
                              jnp.where(inner_kl > cfg.target_inner_kl * 1.5, coeff * 2.0, coeff))
        ts = self.apply_update(ts, params, opt_state, info).replace(extras={**ts.extras, "inner_kl_coeff": coeff})
        metrics = {
            **self.train_metrics(ts, inner_batches, post_batches, adaptation_distance, info),
            "train/inner_kl": jnp.mean(inner_kl),
            "train/inner_kl_coeff": jnp.mean(coeff),
        }
        return ts, metrics
