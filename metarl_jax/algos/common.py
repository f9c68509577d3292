"""Pieces shared by the on-policy policy-gradient learners (VPG/TRPO/PPO, MAML and kin)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from metarl_jax import estimators, optim
from metarl_jax.algos.config import AlgoConfig, in_range, non_negative, one_of, positive, unit_interval
from metarl_jax.evaluation import SCHEDULES, AdaptationCurve, AdaptationTrace, adaptation_trace
from metarl_jax.networks import ACTIVATIONS, DiagGaussian, Policy, float_dtype, make_gaussian_policy
from metarl_jax.rollout import Trajectory, rollout, score

REWARD_KINDS = ("dense", "sparse")


@dataclasses.dataclass(frozen=True)
class PolicyGradientConfig(AlgoConfig):
    """Fields every on-policy learner has. Defaults: MAML-TRPO (cbfinn/maml_rl)."""

    # Policy: MLP Gaussian with learned, state-independent log σ.
    hidden_sizes: tuple[int, ...] = positive((100, 100))
    activation: str = one_of("relu", tuple(ACTIVATIONS))
    init_log_std: float = in_range(0.0, -5.0, 2.0)
    # Returns and advantages: γ, GAE λ, baseline, centred advantages.
    discount: float = unit_interval(0.99)
    gae_lambda: float = unit_interval(1.0)
    # "linear": rllab's feature regression fitted on the batch (own episode included: biased);
    # "none"; "leave_one_out": the other episodes' mean return-to-go at each t (unbiased, with
    # normalize_advantages=False). estimators.advantages; docs/design_notes.md, estimator table.
    baseline: str = one_of("linear", estimators.BASELINES)
    normalize_advantages: bool = True
    train_reward: str = one_of("dense", REWARD_KINDS)
    # Policy optimiser (outer loop for meta-learners).
    optimizer: str = one_of("trpo", ("trpo", "ppo", "vpg"))
    max_kl: float = positive(0.01)
    cg_iters: int = positive(10)
    cg_damping: float = non_negative(1e-5)
    # Fraction of the batch (tasks; episodes for single-task learners) in CG's Fisher-vector
    # products: rllab's subsample_factor. 1: the whole batch (MAML, MAESN).
    cg_subsample: float = in_range(1.0, 0.0, 1.0, low_inclusive=False)
    backtrack_ratio: float = in_range(0.8, 0.0, 1.0, low_inclusive=False, high_inclusive=False)
    max_backtracks: int = positive(15)
    # Evaluate every backtracking candidate in one vmapped pass (same step; for accelerators).
    batched_line_search: bool = False
    learning_rate: float = positive(1e-3)  # Adam, for "ppo" and "vpg"
    ppo_clip: float = in_range(0.2, 0.0, 1.0, low_inclusive=False)
    ppo_epochs: int = positive(5)


# MAESN's comparison protocol (Sec. 5, maesn_suite): on its families every method meta-trains on
# 20 tasks × 50 episodes (block push: 20) with the dense reward and meta-tests on 30 validation
# goals with the sparse reward, 10 000 env steps per adaptation iteration (horizon 200: 50
# episodes; block push, horizon 100: 100), step sizes halved every iteration, 100 iterations.
MAESN_FAMILIES = ("wheeled", "ant_goal", "block_push")


def maesn_protocol(family: str) -> dict[str, Any]:
    """Config fields for a MAML-type baseline on one of MAESN's families (``MAESN_FAMILIES``)."""
    if family not in MAESN_FAMILIES:
        raise ValueError(f"maesn_protocol: family must be one of {list(MAESN_FAMILIES)}, got {family!r}")
    block_push = family == "block_push"
    return dict(meta_batch_size=20, episodes_per_task=20 if block_push else 50, eval_num_tasks=30,
                eval_episodes_per_task=100 if block_push else 50, eval_adaptation_steps=100, eval_reward="sparse",
                eval_schedule="halving")


# TESP's comparison (Lan et al. 2019, Sec. 5 and supplement): MAML and Meta-SGD with TESP's batches and
# outer loop: 20 tasks x 25 episodes, K = 3 first-order VPG fast updates at lr 0.001 (Meta-SGD: the
# initial per-parameter rate), PPO clip 0.15 / Adam 3e-4 / 20 epochs, γ 0.99, λ 0.97, uncentred
# advantages, the supplement's MLP (tanh), meta-test = the same 3 fast updates on 100 tasks of a split.
# As in the original, the inner gradient is clipped to global norm 60 (and Meta-SGD's rates to ±0.1,
# ``metasgd.PRESETS``).
TESP_FAMILIES = ("wheeled", "ant_goal", "reacher2", "reacher4")
TESP_MLP = {"wheeled": (256, 256), "ant_goal": (512, 512), "reacher2": (256, 256), "reacher4": (512, 512)}


def tesp_protocol(family: str) -> dict[str, Any]:
    """Config fields for MAML or Meta-SGD as TESP's baselines on one of ``TESP_FAMILIES``."""
    if family not in TESP_FAMILIES:
        raise ValueError(f"tesp_protocol: family must be one of {list(TESP_FAMILIES)}, got {family!r}")
    return dict(hidden_sizes=TESP_MLP[family], activation="tanh", meta_batch_size=20, episodes_per_task=25,
                num_inner_steps=3, fast_lr=0.001, inner_grad_clip=60.0, first_order=True, inner_estimator="vpg",
                optimizer="ppo", learning_rate=3e-4, ppo_clip=0.15, ppo_epochs=20, gae_lambda=0.97,
                normalize_advantages=False, eval_num_tasks=100, eval_episodes_per_task=25, eval_adaptation_steps=3,
                eval_schedule="constant")


def check_train_task_sampling(config: Any) -> None:
    """For learners that draw ``meta_batch_size`` of ``num_train_tasks`` fixed tasks without replacement."""
    if config.meta_batch_size > config.num_train_tasks:
        raise ValueError(
            f"config field 'meta_batch_size' = {config.meta_batch_size} must be <= 'num_train_tasks' = "
            f"{config.num_train_tasks} (tasks are sampled from the training set without replacement)")


def make_policy(family: Any, config: PolicyGradientConfig, latent_size: int = 0) -> Policy:
    return make_gaussian_policy(
        family.observation_size,
        family.action_size,
        config.hidden_sizes,
        config.activation,
        config.init_log_std,
        latent_size=latent_size,
    )


def make_optimizer(config: PolicyGradientConfig) -> optim.PolicyOptimizer:
    if config.optimizer == "trpo":
        return optim.trpo(config.max_kl, config.cg_iters, config.cg_damping, config.backtrack_ratio,
                          config.max_backtracks, config.batched_line_search)
    if config.optimizer == "ppo":
        return optim.ppo(config.learning_rate, config.ppo_clip, config.ppo_epochs)
    return optim.vpg(config.learning_rate)


def subsample(tree: Any, fraction: float, axis: int = 0) -> Any:
    """Every round(1/fraction)-th entry along ``axis`` (a uniform subsample of i.i.d. tasks or episodes)."""
    stride = max(1, round(1.0 / fraction))
    if stride == 1:
        return tree
    return jax.tree.map(lambda x: jax.lax.slice_in_dim(x, 0, None, stride, axis), tree)


def task_advantages(trajectories: Trajectory, config: PolicyGradientConfig, reward_kind: str) -> jax.Array:
    """Per-task advantages (each task's baseline from its own episodes, ``config.baseline``): [..., N, E, T]."""
    rewards = trajectories.select_rewards(reward_kind)

    def one_task(obs, rew, mask):
        return estimators.advantages(obs, rew, mask, config.discount, config.gae_lambda,
                                     config.normalize_advantages, config.baseline)

    fn = one_task
    for _ in range(rewards.ndim - 2):
        fn = jax.vmap(fn)
    return fn(trajectories.obs, rewards, trajectories.mask)


def without_log_std(step_sizes: Any) -> Any:
    """α with every ``log_std`` leaf set to 0: an inner step that holds the policy's σ fixed."""
    return jax.tree_util.tree_map_with_path(
        lambda path, a: jnp.zeros_like(a) if "log_std" in jax.tree_util.keystr(path) else a, step_sizes)


def importance_objective(policy: Policy, params: Any, trajectories: Trajectory, adv: jax.Array,
                         penalty: jax.Array | float = 0.0) -> optim.PolicyObjective:
    """ρ = π_params/π_behaviour over a batch, and KL(π_behaviour ‖ π_params) averaged over valid steps."""
    log_probs, dist = score(policy, params, trajectories)
    mask = trajectories.mask
    kl = estimators.masked_mean(trajectories.dist.kl(dist), mask)
    return optim.PolicyObjective(
        log_ratio=log_probs - trajectories.log_probs,
        advantages=adv,
        mask=mask,
        kl=kl,
        penalty=jnp.asarray(penalty, log_probs.dtype),
        fisher_outputs=dist,
        fisher_weights=gaussian_kl_hessian(trajectories.dist, mask),
    )


def gaussian_kl_hessian(behaviour: DiagGaussian, mask: jax.Array) -> DiagGaussian:
    """Diagonal of ∂²/∂(μ, log σ)² of masked_mean KL(behaviour ‖ N(μ, σ²)) at the behaviour policy.

    Per dimension: ∂²KL/∂μ² = 1/σ², ∂²KL/∂(log σ)² = 2, cross terms 0.
    """
    weight = (mask / jnp.maximum(jnp.sum(mask), 1.0))[..., None]
    return DiagGaussian(mean=weight * jnp.exp(-2.0 * behaviour.log_std),
                        log_std=weight * 2.0 * jnp.ones_like(behaviour.log_std))


def return_metrics(prefix: str, trajectories: Trajectory) -> dict[str, jax.Array]:
    """Mean undiscounted dense and sparse episode returns."""
    return {
        f"{prefix}return": jnp.mean(trajectories.episode_returns("dense")),
        f"{prefix}sparse_return": jnp.mean(trajectories.episode_returns("sparse")),
    }


def optimizer_metrics(info: dict[str, jax.Array]) -> dict[str, jax.Array]:
    return {f"train/{k}": jnp.asarray(v, float_dtype()) for k, v in info.items() if k != "nonfinite"}


def policy_adaptation_trace(
    family: Any,
    policy: Policy,
    params: Any,
    tasks: Any,
    key: jax.Array,
    config: Any,
    lr: Any,
    keep: Callable[[Trajectory], Any] = lambda batch: (),
) -> AdaptationTrace:
    """Meta-test by fine-tuning the policy itself with VPG steps (MAML's protocol).

    ``lr`` is a scalar or a pytree like ``params`` (Meta-SGD's per-parameter rates); step k
    uses ``lr`` times the ``eval_schedule`` factor. Reads ``eval_episodes_per_task``,
    ``eval_adaptation_steps``, ``eval_reward`` and ``eval_schedule`` from ``config``; adapts
    with the eval reward, as at meta-test only that reward is observed. ``keep(batch)`` is kept
    for every batch (``AdaptationTrace.kept``; e.g. the recorded qpos of a video).
    """
    scales = SCHEDULES[config.eval_schedule](1.0, config.eval_adaptation_steps)
    if jax.tree.structure(lr) != jax.tree.structure(params):
        lr = jax.tree.map(lambda p: jnp.asarray(lr, p.dtype), params)

    def sample(p, task, step_key):
        trajectories = rollout(family, policy, p, task, step_key, config.eval_episodes_per_task)
        return trajectories, jnp.mean(trajectories.episode_returns(config.eval_reward))

    def update(p, task, trajectories, scale):
        adv = task_advantages(trajectories, config, config.eval_reward)
        grads = jax.grad(lambda q: estimators.vpg_surrogate(score(policy, q, trajectories)[0], adv,
                                                            trajectories.mask))(p)
        return jax.tree.map(lambda x, a, g: x + scale * a * g, p, lr, grads)

    return adaptation_trace(sample, update, params, tasks, key, scales, keep)


def policy_adaptation_curve(family: Any, policy: Policy, params: Any, tasks: Any, key: jax.Array, config: Any,
                            lr: Any) -> AdaptationCurve:
    """The returns of ``policy_adaptation_trace``."""
    return AdaptationCurve(policy_adaptation_trace(family, policy, params, tasks, key, config, lr).returns)


def first_episode_qpos(batch: Trajectory) -> Any:
    """The recorded qpos of a batch's first episode, [T, nq] (``keep`` of the video recordings)."""
    return batch.qpos[0]
