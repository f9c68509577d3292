"""Policy gradient from scratch: REINFORCE/VPG and TRPO (PPO, with its value function: ``algos.ppo``).

    1: sample tasks (a single-task family has exactly one)
    2: sample trajectories with π_θ
    3: advantages: baseline (``baseline``; rllab's linear feature baseline by default), GAE(γ, λ)
    4: θ ← VPG / TRPO step on mean_t ρ_t A_t,  ρ = π_θ / π_θ_old

Trained across a task family this is the "pretrained" multi-task baseline of
MAML (Finn et al. 2017, Sec. 5.3); its meta-test fine-tunes θ with VPG.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from metarl_jax.algos import common
from metarl_jax.algos.base import Algorithm, TrainState, new_train_state, split_rng
from metarl_jax.algos.config import non_negative, one_of, positive
from metarl_jax.evaluation import SCHEDULES, AdaptationCurve
from metarl_jax.rollout import rollout_tasks


@dataclasses.dataclass(frozen=True)
class Config(common.PolicyGradientConfig):
    """Shared by the three learners; each has its own defaults below."""

    tasks_per_iteration: int = positive(1)
    episodes_per_task: int = positive(20)
    eval_num_tasks: int = positive(40)
    eval_episodes_per_task: int = positive(20)
    eval_adaptation_steps: int = non_negative(3)
    eval_reward: str = one_of("dense", common.REWARD_KINDS)
    eval_schedule: str = one_of("maml", tuple(SCHEDULES))
    eval_lr: float = positive(0.1)


@dataclasses.dataclass(frozen=True)
class VPGConfig(Config):
    """REINFORCE with a linear baseline (rllab VPG), Adam 1e-2."""

    optimizer: str = one_of("vpg", ("vpg",))
    learning_rate: float = positive(1e-2)


@dataclasses.dataclass(frozen=True)
class TRPOConfig(Config):
    """TRPO, KL 0.01 (Schulman et al. 2015; rllab defaults)."""

    optimizer: str = one_of("trpo", ("trpo",))


def _presets(cls):
    return {
        "paper": cls(),
        "smoke": cls(hidden_sizes=(32, 32), tasks_per_iteration=4, episodes_per_task=8, eval_num_tasks=8,
                     eval_episodes_per_task=8, eval_adaptation_steps=2),
    }


PRESETS_BY_ALGO = {"vpg": _presets(VPGConfig), "trpo": _presets(TRPOConfig)}


class _PolicyGradient(Algorithm):
    def setup(self) -> None:
        self.policy = common.make_policy(self.family, self.config)
        self.optimizer = common.make_optimizer(self.config)

    def init(self, key: jax.Array) -> TrainState:
        init_key, rng = jax.random.split(key)
        params = self.policy.init(init_key)
        return new_train_state(params, self.optimizer.init(params), rng)

    def _train_step(self, ts: TrainState):
        cfg = self.config
        ts, (task_key, sample_key) = split_rng(ts, 2)
        tasks = self.shard(self.family.sample_tasks(task_key, cfg.tasks_per_iteration))
        trajectories = rollout_tasks(self.family, self.policy, ts.params, tasks, sample_key, cfg.episodes_per_task)
        adv = common.task_advantages(trajectories, cfg, cfg.train_reward)

        # CG's Fisher products on an episode subsample when cg_subsample < 1 (axis 1: [tasks, episodes, T]).
        fisher_batch = common.subsample((trajectories, adv), cfg.cg_subsample, axis=1)
        params, opt_state, info = self.optimizer.update(
            lambda p: common.importance_objective(self.policy, p, trajectories, adv), ts.params, ts.opt_state,
            None if cfg.cg_subsample == 1.0 else lambda p: common.importance_objective(self.policy, p, *fisher_batch))
        ts = ts.replace(params=params, opt_state=opt_state, step=ts.step + 1,
                        nonfinite_updates=ts.nonfinite_updates + info["nonfinite"])
        steps_per_iteration = cfg.tasks_per_iteration * cfg.episodes_per_task * self.family.episode_length
        metrics = {
            **common.return_metrics("train/", trajectories),
            **common.optimizer_metrics(info),
            "train/nonfinite_updates": ts.nonfinite_updates.astype(jnp.float32),
            "train/policy_std": jnp.mean(jnp.exp(trajectories.dist.log_std)),
            "time/env_steps": ts.step.astype(jnp.float32) * steps_per_iteration,
        }
        return ts, metrics

    def _evaluate(self, ts: TrainState, tasks: Any, key: jax.Array) -> AdaptationCurve:
        return common.policy_adaptation_curve(self.family, self.policy, ts.params, self.shard(tasks), key,
                                              self.config, self.config.eval_lr)

    def _record_stages(self, ts: TrainState, tasks: Any, key: jax.Array):
        trace = common.policy_adaptation_trace(self.family, self.policy, ts.params, self.shard(tasks), key,
                                               self.config, self.config.eval_lr, keep=common.first_episode_qpos)
        return trace.returns, trace.kept


class VPG(_PolicyGradient):
    name = "vpg"
    Config = VPGConfig


class TRPO(_PolicyGradient):
    name = "trpo"
    Config = TRPOConfig

