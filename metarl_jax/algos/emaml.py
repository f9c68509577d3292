"""E-MAML (Stadie et al. 2018, "Some considerations on learning to explore via meta-RL").

MAML's meta-objective J(θ) = E_{D ~ π_θ}[ E_{D' ~ π_θ'(D)}[R(D')] ], θ' = θ + α ∇_θ L(θ; D), has
two θ-dependences: through the update θ'(θ) and through the sampling distribution of D.
MAML differentiates only the first. E-MAML adds the second, a score-function term that
credits the pre-update (exploration) samples with the post-update return:

    1: sample a batch of tasks T_i ~ p(T)
    2: for each task (vmapped): D_i ~ π_θ,  θ'_i = θ + α ∇_θ L(θ; D_i),  D'_i ~ π_θ'_i
    3: θ ← outer step (TRPO; PPO option) on
           Σ_i L_{T_i}(f_θ'_i; D'_i)  +  λ Σ_i ⊥(R̂'_i) · mean_{(s, a) ∈ D_i} log π_θ(a|s)

with R̂'_i the "adjusted" mean post-update reward per step of task i (``exploration_baseline``):

    "normalized" (default, the ProMP code's E-MAML): R̂'_i = (R̄'_i − μ) / (σ + 1e-8), μ and σ the
                 mean and std of every post-update reward of the meta-batch (task i's own included);
    "leave_one_out": R̂'_i = R̄'_i − mean_{j≠i} R̄'_j (the other tasks only);
    "none":      R̂'_i = R̄'_i (raw; no baseline).

The term enters the outer loss as a negative ``penalty`` of the PolicyObjective, so TRPO's
gradient, natural-gradient step and line search and PPO's epochs all see it (unclipped).

What it estimates. The term's gradient is λ/(nT) times the score part E[J_post(θ') ∇log p_θ(D)]
of the gradient of MAML's finite-batch objective E_D[J_post(θ + α ĝ(D))] (n episodes of length T
per task; per-step units of MAML's surrogate), so with λ = n·T, ``inner_estimator="vpg"`` (the
inner update with samples held fixed, E-MAML's θ' = θ + α ∇log π_θ(τ) R(τ)), an unbiased episode
``baseline`` ("none" or "leave_one_out") and ``exploration_baseline`` "none" or "leave_one_out",
E-MAML is an unbiased estimate of that gradient; with one inner step it equals MAML with
``outer_estimator="pre_update_score"`` (which needs no λ) on every batch. "normalized" (λ = 1,
the ProMP implementation) is biased for it: μ and σ include task i's own post-update rewards,
which depend on D_i, and 1/σ rescales the term. (A baseline from the task's own post-update
episodes would zero the term in expectation.) Only the first (pre-update) inner batch is
credited, as there.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from metarl_jax import estimators
from metarl_jax.algos import common, maml
from metarl_jax.algos.config import non_negative, one_of, positive
from metarl_jax.networks import ACTIVATIONS
from metarl_jax.rollout import score

EXPLORATION_BASELINES = ("normalized", "leave_one_out", "none")


@dataclasses.dataclass(frozen=True)
class Config(maml.Config):
    """E-MAML-TRPO defaults (ProMP code, e-maml_run_mujoco.py): (64, 64) tanh, VPG inner step, λ = 1."""

    hidden_sizes: tuple[int, ...] = positive((64, 64))
    activation: str = one_of("tanh", tuple(ACTIVATIONS))
    inner_estimator: str = one_of("vpg", tuple(estimators.SURROGATES))
    exploration_weight: float = non_negative(1.0)
    exploration_baseline: str = one_of("normalized", EXPLORATION_BASELINES)

    def validate(self) -> None:
        super().validate()
        if self.outer_estimator != "post_update":
            raise ValueError(
                f"config field 'outer_estimator' = {self.outer_estimator!r} must be 'post_update' for E-MAML: its "
                "exploration term is the pre-update score term already (algo 'maml' has the unscaled one)")


PRESETS: dict[str, Config] = {
    "paper": Config(),
    # The ProMP paper's locomotion benchmarks, where it compares E-MAML (horizons are the family's).
    "cheetah_dir": Config(),
    "cheetah_vel": Config(),
    "ant_dir": Config(),
    "ant_vel": Config(),
    # MAESN's families: its batches and sparse-reward meta-test (common.maesn_protocol).
    **{family: Config(**common.maesn_protocol(family)) for family in common.MAESN_FAMILIES},
    # Point families (not in the paper): the paper's settings; horizons are the family's.
    "point_corner": Config(),
    "point_semicircle": Config(),
    # Small and fast on a 2-core CPU (tests).
    "smoke": Config(hidden_sizes=(32, 32), meta_batch_size=8, episodes_per_task=8, fast_lr=0.5,
                    eval_num_tasks=8, eval_episodes_per_task=8, eval_adaptation_steps=2),
}


class EMAML(maml.MAML):
    name = "emaml"
    Config = Config

    def exploration_objective(self, meta_params: Any, inner_batches, post_batches) -> jax.Array:
        """λ · mean_i ⊥(R̂'_i) · mean_{D_i} log π_θ(a|s): the score term of the pre-update sampling."""
        cfg = self.config
        pre, _ = jax.tree.map(lambda x: x[:, 0], inner_batches)  # D_i: the pre-update batch, [N, E, T]
        post_reward = self.post_update_rewards(post_batches)
        if cfg.exploration_baseline == "normalized":
            post, _ = post_batches
            rewards, post_mask = post.select_rewards(cfg.train_reward), post.mask
            mean = estimators.masked_mean(rewards, post_mask)
            std = jnp.sqrt(estimators.masked_mean((rewards - mean) ** 2, post_mask))
            post_reward, baseline = (post_reward - mean) / (std + 1e-8), "none"
        else:
            baseline = cfg.exploration_baseline
        log_probs, _ = score(self.policy, self.policy_params(meta_params), pre)
        task_axes = tuple(range(1, log_probs.ndim))
        mean_log_lik = jnp.sum(log_probs * pre.mask, task_axes) / jnp.maximum(jnp.sum(pre.mask, task_axes), 1.0)
        return cfg.exploration_weight * estimators.score_function_surrogate(mean_log_lik, post_reward, baseline)

    def meta_objective(self, meta_params: Any, inner_batches, post_batches, realized: bool = False):
        """MAML's outer objective minus the exploration term as a penalty (the loss is −surrogate + penalty)."""
        objective = super().meta_objective(meta_params, inner_batches, post_batches, realized)
        exploration = self.exploration_objective(meta_params, inner_batches, post_batches)
        return objective._replace(penalty=objective.penalty - exploration)
