"""MAML for reinforcement learning (Finn et al. 2017, Algorithm 3).

    1: sample a batch of tasks T_i ~ p(T)
    2: for each task (vmapped, sharded over devices):
    3:     sample trajectories D_i with f_θ
    4:     θ'_i = θ + α ∇_θ L_{T_i}(f_θ; D_i)            (inner VPG step; K steps, each on FRESH samples)
    5:     sample trajectories D'_i with f_θ'_i
    6: θ ← outer step on Σ_i L_{T_i}(f_θ'_i; D'_i)      (TRPO or PPO; the gradient flows through 4)

All of 1-6 is one XLA program (``train_step``).

What the meta-gradient estimates. With ĝ(D) the inner gradient estimate from a batch D of n
episodes, two objectives differ at finite n:

    J_inf(θ) = J_post(θ + α E_D[ĝ])          the infinite-batch objective;
    J_fin(θ) = E_D[J_post(θ + α ĝ(D))]        what MAML optimises at batch size n, whose gradient
             = E[∇J_post(θ')ᵀ (I + α ∂ĝ/∂θ|_D)] + E[J_post(θ') ∇log p_θ(D)]   (pathwise + score part).

``outer_estimator="post_update"`` (Finn et al.) differentiates step 6 through step 4 only:
dθ'/dθ = I + α Ĥ, Ĥ the Hessian of the inner surrogate (``inner_estimator``). It is unbiased for
*neither* objective:

* "dice" (default): Ĥ is unbiased for ∇²J (it has the ∇log π ∇log πᵀ A term of D's dependence on
  θ), but ĝ and Ĥ come from the same batch, so (with an unbiased post-update surrogate) the mean
  is ∇J_inf + α²·E[(Ĥ − EĤ)ᵀ ∇²J_post (ĝ − Eĝ)] (exactly, for a quadratic J_post; + O(α³)
  otherwise): an α²·Cov(ĝ, Ĥ) bias that shrinks like 1/n and is large at small n. "lvc"
  (ProMP) equals it for one-step episodes.
* "vpg" (the original implementation): Ĥ = ∂ĝ/∂θ with the samples held fixed, the exact pathwise
  part of ∇J_fin but no score part. ``first_order=True`` (FOMAML): Ĥ = 0.

``outer_estimator="pre_update_score"`` adds the score part, the surrogate
mean_i ⊥(R̄'_i − b_i) Σ_{k, (s, a) ∈ D_{i,k}} log π_{θ_k(θ)}(a|s) over every inner batch under the
θ_k that sampled it (R̄'_i: task i's mean post-update reward per step; b_i = mean_{j≠i} R̄'_j with
``score_baseline="leave_one_out"``, independent of D_i, or 0). It needs ``inner_estimator="vpg"``
(the score part accounts for D's dependence on θ; DiCE's Hessian would count it twice). With an
unbiased episode ``baseline`` ("none" or "leave_one_out", ``normalize_advantages=False``, so that
step 6's surrogate is unbiased for ∇J_post(θ')) it is unbiased for ∇J_fin: exactly for γ = 1 and
fixed-length episodes, the units of the per-step surrogate (E-MAML's exploration term is the
same score part, rescaled). docs/design_notes.md tabulates every combination with its
closed-form bias on a bandit, which ``tests/test_gradient_meta.py`` checks.
``inner_adapts_log_std=False`` holds the policy's σ fixed in the inner step (and at meta-test).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax

from metarl_jax import estimators, parallel
from metarl_jax.algos import common
from metarl_jax.algos.base import Algorithm, TrainState, new_train_state, split_rng
from metarl_jax.algos.config import non_negative, one_of, positive
from metarl_jax.evaluation import SCHEDULES, AdaptationCurve
from metarl_jax.rollout import Trajectory, rollout, score

OUTER_ESTIMATORS = ("post_update", "pre_update_score")


@dataclasses.dataclass(frozen=True)
class Config(common.PolicyGradientConfig):
    """MAML-TRPO defaults (cbfinn/maml_rl): MLP (100, 100) ReLU, α = 0.1, 40 tasks × 20 episodes."""

    meta_batch_size: int = positive(40)
    episodes_per_task: int = positive(20)
    num_inner_steps: int = positive(1)
    fast_lr: float = non_negative(0.1)
    # The inner gradient clipped to this global norm before the step (llan-ml/tesp: 60); None: unclipped.
    inner_grad_clip: float | None = positive(None)
    inner_estimator: str = one_of("dice", tuple(estimators.SURROGATES))
    first_order: bool = False
    # The inner step (and meta-test fine-tuning) also adapts log σ; False: α = 0 for log σ.
    inner_adapts_log_std: bool = True
    # "post_update": Finn et al.'s gradient through the inner step only; "pre_update_score": plus
    # the inner batches' score term (unbiased for E_D[J_post(θ + α ĝ(D))]; module docstring).
    outer_estimator: str = one_of("post_update", OUTER_ESTIMATORS)
    # b_i of the score term: the other tasks' mean post-update reward, or none.
    score_baseline: str = one_of("leave_one_out", estimators.SCORE_BASELINES)
    # Meta-test (MAML: 40 goals, 4000 env steps per step, lr then lr/2, 3 steps).
    eval_num_tasks: int = positive(40)
    eval_episodes_per_task: int = positive(20)
    eval_adaptation_steps: int = non_negative(3)
    eval_reward: str = one_of("dense", common.REWARD_KINDS)
    eval_schedule: str = one_of("maml", tuple(SCHEDULES))
    eval_lr: float | None = positive(None)

    def validate(self) -> None:
        super().validate()
        if self.outer_estimator != "pre_update_score":
            return
        if self.inner_estimator != "vpg":
            raise ValueError(
                f"config field 'inner_estimator' = {self.inner_estimator!r} must be 'vpg' with 'outer_estimator' = "
                "'pre_update_score': the score term accounts for the inner samples' dependence on θ, which the "
                "DiCE/LVC Hessian would count a second time")
        if self.score_baseline == "leave_one_out" and self.meta_batch_size < 2:
            raise ValueError(
                "config field 'score_baseline' = 'leave_one_out' needs 'meta_batch_size' >= 2 (the baseline of a "
                f"task is the other tasks' mean post-update reward), got {self.meta_batch_size}; use 'none'")


PRESETS: dict[str, Config] = {
    "paper": Config(),
    # Point navigation: α = 0.5, 100 iterations (maml_rl's point preset).
    "point_corner": Config(fast_lr=0.5),
    "point_semicircle": Config(fast_lr=0.5),
    # MAESN's MAML baseline: MAESN's batches and sparse-reward meta-test (common.maesn_protocol).
    **{family: Config(**common.maesn_protocol(family)) for family in common.MAESN_FAMILIES},
    # The walker and dynamics-varying families (ProMP's benchmarks, MAME Fig. 2), which cbfinn/maml_rl never
    # ran: MAML-TRPO as in ProMP's code, with its (64, 64) tanh policy; horizons are the family's.
    **{family: Config(hidden_sizes=(64, 64), activation="tanh")
       for family in ("walker2d_dir", "hopper_rand_params", "walker2d_rand_params")},
    # ProMP's MAML-PPO variant: (64, 64) tanh, normalised advantages, Adam 1e-3.
    "ppo": Config(hidden_sizes=(64, 64), activation="tanh", optimizer="ppo", learning_rate=1e-3,
                  ppo_clip=0.3, ppo_epochs=5),
    # `make demo`: ProMP's (64, 64) tanh policy on point navigation, sized for a 2-core CPU.
    "demo": Config(hidden_sizes=(64, 64), activation="tanh", fast_lr=0.5, meta_batch_size=20, episodes_per_task=10,
                   eval_num_tasks=20, eval_episodes_per_task=10),
    # Small and fast on a 2-core CPU (tests).
    "smoke": Config(hidden_sizes=(32, 32), meta_batch_size=8, episodes_per_task=8, fast_lr=0.5,
                    eval_num_tasks=8, eval_episodes_per_task=8, eval_adaptation_steps=2),
    # TESP's baselines (Lan et al. 2019, Fig. 4): its families, networks and protocol (common.tesp_protocol);
    # the reachers' only published MAML settings, so also their family presets.
    **{f"tesp_{family}": Config(**common.tesp_protocol(family)) for family in common.TESP_FAMILIES},
    **{family: Config(**common.tesp_protocol(family)) for family in ("reacher2", "reacher4")},
}


class MAML(Algorithm):
    name = "maml"
    Config = Config

    def setup(self) -> None:
        parallel.check_divisible(self.config.meta_batch_size, self.mesh, "meta_batch_size")
        self.policy = common.make_policy(self.family, self.config)
        self.optimizer = common.make_optimizer(self.config)

    def init(self, key: jax.Array) -> TrainState:
        init_key, rng = jax.random.split(key)
        params = self.init_meta_params(init_key)
        return new_train_state(params, self.optimizer.init(params), rng)

    # -- meta-parameters: θ for MAML (subclasses add learned step sizes) ---------------------

    def init_meta_params(self, key: jax.Array) -> Any:
        return self.policy.init(key)

    def policy_params(self, meta_params: Any) -> Any:
        """θ: the initial policy parameters inside the meta-parameters."""
        return meta_params

    def step_sizes(self, meta_params: Any) -> Any:
        """α as a pytree like θ: the fixed fast learning rate for MAML."""
        return jax.tree.map(lambda p: jnp.asarray(self.config.fast_lr, p.dtype), self.policy_params(meta_params))

    def inner_step_sizes(self, meta_params: Any) -> Any:
        """The α the inner step uses: ``step_sizes``, 0 for log σ unless ``inner_adapts_log_std``."""
        sizes = self.step_sizes(meta_params)
        return sizes if self.config.inner_adapts_log_std else common.without_log_std(sizes)

    # -- inner loop ------------------------------------------------------------------------

    def inner_objective(self, params: Any, trajectories: Trajectory, adv: jax.Array,
                        realized: bool = False) -> jax.Array:
        """L_T(f_θ; D): the policy-gradient surrogate whose gradient is the inner step direction.

        ``realized``: the surrogate of the step the code actually takes at any θ, as a plain function.
        DiCE's and LVC's magic boxes evaluate to 1, so at every θ their step is REINFORCE with the
        samples held fixed ("vpg"); only their derivatives differ (they add the score terms of the
        sampling). TRPO's Fisher and line search must describe the same function, the realized one
        (``realized_objective``).
        """
        log_probs, _ = score(self.policy, params, trajectories)
        kind = "vpg" if realized else self.config.inner_estimator
        return estimators.SURROGATES[kind](log_probs, adv, trajectories.mask)

    def inner_step(self, meta_params: Any, params: Any, trajectories: Trajectory, adv: jax.Array,
                   realized: bool = False) -> Any:
        """θ' = θ + α ∘ ∇_θ L(θ; D) (gradient ascent on the surrogate; ∇ clipped to ``inner_grad_clip``)."""
        grads = jax.grad(self.inner_objective)(params, trajectories, adv, realized)
        if self.config.inner_grad_clip is not None:  # g · min(1, c / ‖g‖)
            grads = optax.clip_by_global_norm(self.config.inner_grad_clip).update(grads, None)[0]
        if self.config.first_order and not realized:
            grads = jax.lax.stop_gradient(grads)
        return jax.tree.map(lambda p, a, g: p + a * g, params, self.inner_step_sizes(meta_params), grads)

    @property
    def estimator_differs_from_realized(self) -> bool:
        """Whether the meta-gradient estimator's derivatives differ from the realized map's (see inner_objective)."""
        return self.config.inner_estimator != "vpg" or self.config.first_order

    def adapt_with_log_likelihood(self, meta_params: Any, inner_batches: tuple[Trajectory, jax.Array],
                                  realized: bool = False):
        """(θ_K(θ, α), Σ_k Σ_{D_k} log π_{θ_k}(a|s)) from the K stored inner batches, differentiably.

        Replays step 4; the second output is log p(D_1..D_K) under the parameters that sampled each
        batch (the score term of ``outer_estimator="pre_update_score"``).
        """

        def body(p, batch):
            trajectories, adv = batch
            log_probs, _ = score(self.policy, p, trajectories)
            return (self.inner_step(meta_params, p, trajectories, adv, realized),
                    jnp.sum(log_probs * trajectories.mask))

        adapted, log_likelihoods = jax.lax.scan(body, self.policy_params(meta_params), inner_batches)
        return adapted, jnp.sum(log_likelihoods)

    def adapt(self, meta_params: Any, inner_batches: tuple[Trajectory, jax.Array], realized: bool = False) -> Any:
        """θ_K(θ, α) from the K stored inner batches, differentiably (replays step 4)."""
        return self.adapt_with_log_likelihood(meta_params, inner_batches, realized)[0]

    def sample_adaptation(self, meta_params: Any, task: Any, key: jax.Array):
        """Steps 3-5 for one task: K inner batches (each from the latest θ_k) and the post-update batch."""
        cfg = self.config
        keys = jax.random.split(key, cfg.num_inner_steps + 1)
        params = self.policy_params(meta_params)

        def inner(p, step_key):
            trajectories = rollout(self.family, self.policy, p, task, step_key, cfg.episodes_per_task)
            adv = common.task_advantages(trajectories, cfg, cfg.train_reward)
            return self.inner_step(meta_params, p, trajectories, adv), (trajectories, adv)

        adapted, inner_batches = jax.lax.scan(inner, params, keys[:-1])
        post = rollout(self.family, self.policy, adapted, task, keys[-1], cfg.episodes_per_task)
        post_adv = common.task_advantages(post, cfg, cfg.train_reward)
        return jax.lax.stop_gradient((inner_batches, (post, post_adv), _distance(adapted, params)))

    # -- outer loop ------------------------------------------------------------------------

    def meta_objective(self, meta_params: Any, inner_batches, post_batches, realized: bool = False):
        """The outer objective over all tasks: importance ratios of π_{θ'_i(θ)} on D'_i (and, with
        ``outer_estimator="pre_update_score"``, minus the score term as a penalty). ``realized``: with
        the realized inner step (``inner_objective``): what TRPO's line search and Fisher see."""

        def one_task(inner_batch, post_batch):
            adapted, log_likelihood = self.adapt_with_log_likelihood(meta_params, inner_batch, realized)
            post, post_adv = post_batch
            return common.importance_objective(self.policy, adapted, post, post_adv), log_likelihood

        per_task, log_likelihoods = jax.vmap(one_task)(inner_batches, post_batches)
        num_tasks = per_task.kl.shape[0]
        penalty = jnp.mean(per_task.penalty)
        if self.config.outer_estimator == "pre_update_score":
            penalty = penalty - estimators.score_function_surrogate(
                log_likelihoods, self.post_update_rewards(post_batches), self.config.score_baseline)
        # The KL is the mean over tasks of per-task KLs: its Hessian weights scale by 1/N.
        return per_task._replace(kl=jnp.mean(per_task.kl), penalty=penalty,
                                 fisher_weights=jax.tree.map(lambda w: w / num_tasks, per_task.fisher_weights))

    def post_update_rewards(self, post_batches) -> jax.Array:
        """R̄'_i: each task's mean ``train_reward`` per valid post-update step, [N] (no gradient)."""
        post, _ = post_batches
        rewards, mask = post.select_rewards(self.config.train_reward), post.mask
        task_axes = tuple(range(1, rewards.ndim))
        total = jnp.sum(rewards * mask, task_axes) / jnp.maximum(jnp.sum(mask, task_axes), 1.0)
        return jax.lax.stop_gradient(total)

    def collect(self, params: Any, task_key: jax.Array, sample_key: jax.Array):
        """Steps 1-5 for the meta-batch: (inner batches [N, K, ...], post-update batches, ‖θ'_i − θ‖)."""
        cfg = self.config
        tasks = self.shard(self.family.sample_tasks(task_key, cfg.meta_batch_size))
        sample_keys = self.shard(jax.random.split(sample_key, cfg.meta_batch_size))
        return jax.vmap(self.sample_adaptation, in_axes=(None, 0, 0))(params, tasks, sample_keys)

    def fisher_objective(self, inner_batches, post_batches, *args):
        """The realized outer objective on a task subsample for CG's Fisher products (None: the whole batch)."""
        if self.config.cg_subsample == 1.0:
            return None
        sub_inner, sub_post = common.subsample((inner_batches, post_batches), self.config.cg_subsample)
        return lambda p: self.meta_objective(p, sub_inner, sub_post, *args, realized=True)

    def realized_objective(self, inner_batches, post_batches, *args):
        """The outer objective with the realized inner step, for TRPO's line search and Fisher; None when
        it is the estimator's own objective (the "vpg" inner surrogate, second order)."""
        if not self.estimator_differs_from_realized:
            return None
        return lambda p: self.meta_objective(p, inner_batches, post_batches, *args, realized=True)

    def _train_step(self, ts: TrainState):
        ts, (task_key, sample_key) = split_rng(ts, 2)
        inner_batches, post_batches, adaptation_distance = self.collect(ts.params, task_key, sample_key)
        params, opt_state, info = self.optimizer.update(
            lambda p: self.meta_objective(p, inner_batches, post_batches), ts.params, ts.opt_state,
            self.fisher_objective(inner_batches, post_batches),
            realized_objective_fn=self.realized_objective(inner_batches, post_batches))
        ts = self.apply_update(ts, params, opt_state, info)
        return ts, self.train_metrics(ts, inner_batches, post_batches, adaptation_distance, info)

    def apply_update(self, ts: TrainState, params: Any, opt_state: Any, info: dict[str, jax.Array]) -> TrainState:
        return ts.replace(params=params, opt_state=opt_state, step=ts.step + 1,
                          nonfinite_updates=ts.nonfinite_updates + info["nonfinite"])

    def train_metrics(self, ts: TrainState, inner_batches, post_batches, adaptation_distance,
                      info: dict[str, jax.Array]) -> dict[str, jax.Array]:
        cfg = self.config
        pre, _ = jax.tree.map(lambda x: x[:, 0], inner_batches)  # first inner batch = pre-update
        post, _ = post_batches
        steps_per_iteration = cfg.meta_batch_size * cfg.episodes_per_task * self.family.episode_length * (
            cfg.num_inner_steps + 1)
        return {
            **common.return_metrics("train/pre_", pre),
            **common.return_metrics("train/post_", post),
            **common.optimizer_metrics(info),
            "train/nonfinite_updates": ts.nonfinite_updates.astype(jnp.float32),
            "train/policy_std": jnp.mean(jnp.exp(post.dist.log_std)),
            "adapt/param_distance": jnp.mean(adaptation_distance),
            "time/env_steps": ts.step.astype(jnp.float32) * steps_per_iteration,
        }

    # -- meta-test ---------------------------------------------------------------------------

    def _evaluate(self, ts: TrainState, tasks: Any, key: jax.Array) -> AdaptationCurve:
        """Meta-test: VPG fine-tuning from θ, step sizes α then α/2 (MAML's test protocol).

        Meta-SGD adapts with its learned per-parameter α, scaled by the same schedule; log σ stays
        fixed unless ``inner_adapts_log_std``, as in training.
        """
        return common.policy_adaptation_curve(self.family, self.policy, self.policy_params(ts.params),
                                              self.shard(tasks), key, self.config, self.eval_step_sizes(ts.params))

    def _record_stages(self, ts: TrainState, tasks: Any, key: jax.Array):
        trace = common.policy_adaptation_trace(self.family, self.policy, self.policy_params(ts.params),
                                               self.shard(tasks), key, self.config, self.eval_step_sizes(ts.params),
                                               keep=common.first_episode_qpos)
        return trace.returns, trace.kept

    def eval_step_sizes(self, meta_params: Any) -> Any:
        """Meta-test α as a pytree like θ: ``eval_lr``, else ``step_sizes``; 0 for log σ unless
        ``inner_adapts_log_std``."""
        cfg = self.config
        if cfg.eval_lr is None:
            sizes = self.step_sizes(meta_params)
        else:
            sizes = jax.tree.map(lambda p: jnp.asarray(cfg.eval_lr, p.dtype), self.policy_params(meta_params))
        return sizes if cfg.inner_adapts_log_std else common.without_log_std(sizes)


def _distance(a: Any, b: Any) -> jax.Array:
    """‖a − b‖ over all leaves of two parameter pytrees."""
    return jnp.sqrt(sum(jnp.sum((x - y) ** 2) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))))
