"""TESP: meta-RL with task embedding and shared policy (Lan et al. 2019, Algorithm 1), and AdaptSV.

    1: randomly initialise θ_TE, α and θ_policy
    2: while not done:
    3:     sample a batch of tasks T_i from the training tasks D
    4:     for all T_i (vmapped, sharded over devices):
    5:         θ¹_TE,i = θ_TE;  warm up B⁰_i = S_M(τ^warm_i) with episodes sampled at h^warm = 0
    6:         for k = 1..K:
    7:             hᵏ_i = (1/|Bᵏ⁻¹_i|) Σ_{τ ∈ Bᵏ⁻¹_i} g(τ; θᵏ_TE,i)                                  (eq. 5)
    8:             sample τᵏ_i with π(a | s ⧺ hᵏ_i; θ_policy)                                    (eqs. 6-7)
    9:             θᵏ⁺¹_TE,i = θᵏ_TE,i + clip(α, ±0.1) ∘ clip_norm(∇_θTE J(τᵏ_i), 60)             (eq. 9)
   10:             Bᵏ_i = S_M(Bᵏ⁻¹_i ∪ τᵏ_i)                                                    (eqs. 3-4)
   11:         h^{K+1}_i from B^K_i and θ^{K+1}_TE,i; sample τ^{K+1}_i
   12:     update θ_TE, α, θ_policy by PPO on Σ_i L(τ^{K+1}_i) + η Σ_i mean_d (h^{K+1}_i)²         (eq. 10)

The model (``networks.make_episode_encoder``): the task encoder g is a GRU over an episode's steps,
input s_t ⧺ (μ_t, log σ_t) ⧺ r_t (the behaviour action distribution's parameters), whose final state
is projected linearly to d dimensions. The embedding is the MEAN of g over the buffered episodes (eq. 5;
llan-ml/tesp encodes every buffered episode and averages the projected states). The shared policy is
an MLP on s ⧺ h; it is meta-trained only and never fast-updated (except in ablation V2).

The inner step is VPG with a linear feature baseline and GAE(γ, λ) on the fresh batch τᵏ, the embedding
computed from the buffer BEFORE τᵏ is added. The meta-gradient is first-order in θ_TE and exact in α,
as in the original: the inner gradients are data (``stop_gradient``), θ^{K+1}_TE = θ_TE + clip(α) ∘ Σ_k ĝ_k,
so ∂/∂θ_TE is the identity and ∂/∂α = Σ_k ĝ_k where |α| < 0.1 (zero where the clip is active).
The embedding penalty is η times the mean over tasks and dimensions of h² (the supplement's η ← η/d).

Defaults: llan-ml/tesp's main_train.py and the supplement (20 tasks of the 100 training tasks per
meta-update, 25 episodes per batch (100 000 steps over 20 tasks × 200 steps), M = 16, K = 3, α₀ = 0.001,
PPO clip 0.15, Adam 3e-4, 20 full-batch epochs, γ 0.99, λ 0.97, uncentred advantages), network sizes per
family from the supplement's Table 1. Differences from the original: the policy's log σ is a learned
state-independent vector (rllib's policy outputs it), and the outer loop keeps the last PPO iterate
(the original keeps the lowest-loss iterate whose KL is below 0.01).

The paper's ablations are config fields (``ABLATIONS``): V1 ``episode_buffer="all"``, V2
``adapt_policy=True``, V3 ``embedding_l2=0``, V4 ``fast_lr=0, learn_step_sizes=False`` and V5
``learn_step_sizes=False``. ``adapt_sv`` (AdaptSV, the paper's baseline, in the spirit of MAESN;
``algos/adapt_sv.py``) is the same model with a single learned vector z as the embedding, fast-updated
instead of an encoder.

Meta-test on any task split (D, D′, D″): the same procedure, ``eval_adaptation_steps`` fast updates
with the learned rates; ``returns[:, k]`` is the mean return of batch k + 1 (after k fast updates).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from metarl_jax import estimators, optim, parallel
from metarl_jax.algos import common
from metarl_jax.algos.base import Algorithm, TrainState, new_train_state, split_rng
from metarl_jax.algos.config import AlgoConfig, in_range, non_negative, one_of, positive, unit_interval
from metarl_jax.episode_buffer import EpisodeBuffer, empty_buffer, keep_best, masked_episode_mean
from metarl_jax.evaluation import AdaptationCurve
from metarl_jax.networks import ACTIVATIONS, float_dtype, make_episode_encoder, make_gaussian_policy
from metarl_jax.optim import PolicyObjective
from metarl_jax.rollout import Trajectory, rollout, score


@dataclasses.dataclass(frozen=True)
class Config(AlgoConfig):
    """TESP on the wheeled robot (llan-ml/tesp main_train.py; supplement Table 1)."""

    # Networks (all tanh): the shared policy MLP, the encoder's GRU, the embedding size d.
    hidden_sizes: tuple[int, ...] = positive((256, 256))
    activation: str = one_of("tanh", tuple(ACTIVATIONS))
    init_log_std: float = in_range(0.0, -5.0, 2.0)
    gru_size: int = positive(256)
    embedding_size: int = positive(8)
    # Batches: meta_batch_size of the num_train_tasks fixed training tasks D, N episodes per batch.
    meta_batch_size: int = positive(20)
    episodes_per_task: int = positive(25)
    num_train_tasks: int = positive(100)
    # Episode buffer: the best M episodes by return ("all": every episode, ablation V1).
    buffer_size: int = positive(16)
    episode_buffer: str = one_of("best", ("best", "all"))
    # Fast updates (eq. 9): learned per-parameter rates from fast_lr, clipped to ±step_size_clip.
    num_inner_steps: int = positive(3)
    fast_lr: float = non_negative(0.001)
    learn_step_sizes: bool = True
    step_size_clip: float = positive(0.1)
    inner_grad_clip: float = positive(60.0)
    adapt_policy: bool = False
    # η of eq. (10), on the mean over dimensions of h² (0.005 for the reachers).
    embedding_l2: float = non_negative(0.01)
    # Returns and advantages: GAE(γ, λ) with a linear feature baseline per batch, not centred.
    discount: float = unit_interval(0.99)
    gae_lambda: float = unit_interval(0.97)
    normalize_advantages: bool = False
    baseline: str = one_of("linear", estimators.BASELINES)
    train_reward: str = one_of("dense", common.REWARD_KINDS)
    # Outer loop: PPO, full-batch Adam epochs.
    learning_rate: float = positive(3e-4)
    ppo_clip: float = in_range(0.15, 0.0, 1.0, low_inclusive=False)
    ppo_epochs: int = positive(20)
    # Meta-test: every task of a split, the same fast updates (the paper reports the return after 3).
    eval_num_tasks: int = positive(100)
    eval_episodes_per_task: int = positive(25)
    eval_adaptation_steps: int = non_negative(3)
    eval_reward: str = one_of("dense", common.REWARD_KINDS)

    def validate(self) -> None:
        common.check_train_task_sampling(self)


# Supplement Table 1: (policy MLP, GRU units, d, η for TESP, η for AdaptSV); the MLPs are MAML's too.
NETWORKS = {
    "wheeled": (common.TESP_MLP["wheeled"], 256, 8, 0.01, 0.01),
    "ant_goal": (common.TESP_MLP["ant_goal"], 256, 32, 0.01, 0.01),
    "reacher2": (common.TESP_MLP["reacher2"], 256, 8, 0.005, 0.001),
    "reacher4": (common.TESP_MLP["reacher4"], 256, 16, 0.005, 0.005),
}

# The paper's ablations (Sec. 5.3, Fig. 5) as config overrides.
ABLATIONS: dict[str, dict[str, Any]] = {
    "V1": {"episode_buffer": "all"},  # a buffer of all episodes
    "V2": {"adapt_policy": True},  # the fast updates also adapt the policy
    "V3": {"embedding_l2": 0.0},  # η = 0
    "V4": {"fast_lr": 0.0, "learn_step_sizes": False},  # α = 0: one encoder for every task
    "V5": {"learn_step_sizes": False},  # a constant learning rate
}

_SMOKE = dict(hidden_sizes=(16,), gru_size=8, embedding_size=2, meta_batch_size=4, episodes_per_task=4,
              num_train_tasks=8, buffer_size=2, ppo_epochs=2, eval_num_tasks=4, eval_episodes_per_task=4)


def _presets(cls: type[Config], column: int) -> dict[str, Config]:
    def family(name):
        mlp, gru, d = NETWORKS[name][:3]
        return cls(hidden_sizes=mlp, gru_size=gru, embedding_size=d, embedding_l2=NETWORKS[name][column])

    return {"paper": family("wheeled"), **{name: family(name) for name in NETWORKS}, "smoke": cls(**_SMOKE)}


PRESETS: dict[str, Config] = _presets(Config, 3)


class Adaptation(NamedTuple):
    """One task's fast adaptation (Algorithm 1, lines 5-11), all without gradient.

    grad_sum: Σ_k ĝ_k, the clipped inner gradients (a pytree like the fast parameters).
    buffer: B^K.   post: τ^{K+1} and its advantages.   returns: mean return of batches 1..K+1, [K + 1].
    warmup_return: mean return of the warm-up batch (0 without a buffer).
    embeddings: h¹ .. h^{K+1}, [K + 1, d].
    qpos: the first episode of batches 1..K+1, [K + 1, T, nq], when the family records qpos (videos); else ().
    """

    grad_sum: Any
    buffer: Any
    post: tuple[Trajectory, jax.Array]
    returns: jax.Array
    warmup_return: jax.Array
    embeddings: jax.Array
    qpos: Any = ()


def with_embedding(trajectories: Trajectory, embedding: jax.Array) -> Trajectory:
    """The batch conditioned on ``embedding`` at every episode (the policy's s ⧺ h input)."""
    return trajectories._replace(latents=jnp.broadcast_to(embedding, trajectories.latents.shape))


def encoder_inputs(trajectories: Trajectory, reward_kind: str) -> jax.Array:
    """The encoder's per-step input s_t ⧺ μ_t ⧺ log σ_t ⧺ r_t, [..., E, T, obs + 2 act + 1]."""
    dist = trajectories.dist
    rewards = trajectories.select_rewards(reward_kind)[..., None]
    parts = [trajectories.obs, dist.mean, jnp.broadcast_to(dist.log_std, dist.mean.shape), rewards]
    return jnp.concatenate([x.astype(float_dtype()) for x in parts], axis=-1)


class TESP(Algorithm):
    name = "tesp"
    Config = Config
    uses_buffer = True  # AdaptSV has no encoder, hence no episode buffer

    def setup(self) -> None:
        cfg, family = self.config, self.family
        parallel.check_divisible(cfg.meta_batch_size, self.mesh, "meta_batch_size")
        self.policy = make_gaussian_policy(family.observation_size, family.action_size, cfg.hidden_sizes,
                                           cfg.activation, cfg.init_log_std, latent_size=cfg.embedding_size)
        if self.uses_buffer:  # AdaptSV has no encoder
            self.encoder = make_episode_encoder(family.observation_size + 2 * family.action_size + 1,
                                                cfg.gru_size, cfg.embedding_size)
        self.optimizer = optim.ppo(cfg.learning_rate, cfg.ppo_clip, cfg.ppo_epochs)
        self.train_tasks = family.task_set("train", cfg.num_train_tasks)  # D
        # Static: with α = 0 and nothing learned the fast update is the identity (ablation V4).
        self.adapts = cfg.learn_step_sizes or cfg.fast_lr > 0.0

    def init(self, key: jax.Array) -> TrainState:
        policy_key, model_key, rng = jax.random.split(key, 3)
        params = {"policy": self.policy.init(policy_key), **self.init_task_model(model_key)}
        if self.config.learn_step_sizes:
            params["step_size"] = jax.tree.map(lambda p: jnp.full_like(p, self.config.fast_lr),
                                               self.fast_params(params))
        return new_train_state(params, self.optimizer.init(params), rng)

    # -- the model: what is fast-updated and how it embeds the task -------------------------

    def init_task_model(self, key: jax.Array) -> dict[str, Any]:
        return {"encoder": self.encoder.init(key)}

    def fast_params(self, params: Any) -> dict[str, Any]:
        """The parameters the fast updates adapt: θ_TE (and θ_policy in ablation V2)."""
        fast = {"encoder": params["encoder"]}
        return {**fast, "policy": params["policy"]} if self.config.adapt_policy else fast

    def embedding(self, fast: Any, buffer: EpisodeBuffer) -> jax.Array:
        """Eq. (5): h = mean over the buffered episodes of g(τ) = W GRU(τ) + b."""
        encode = jax.vmap(self.encoder.encode, in_axes=(None, 0, 0))
        return masked_episode_mean(encode(fast["encoder"], buffer.steps, buffer.mask), buffer)

    def policy_params(self, params: Any, fast: Any) -> Any:
        return fast["policy"] if self.config.adapt_policy else params["policy"]

    def step_sizes(self, params: Any) -> Any:
        """α like the fast parameters: the learned rates clipped to ±step_size_clip, or the constant fast_lr."""
        cfg = self.config
        if cfg.learn_step_sizes:
            return jax.tree.map(lambda a: jnp.clip(a, -cfg.step_size_clip, cfg.step_size_clip), params["step_size"])
        return jax.tree.map(lambda p: jnp.full_like(p, cfg.fast_lr), self.fast_params(params))

    def adapted(self, params: Any, grad_sum: Any) -> Any:
        """θᵏ = θ¹ + clip(α) ∘ Σ_{j<k} ĝ_j: the fast parameters after the updates summed in ``grad_sum``."""
        return jax.tree.map(lambda p, a, g: p + a * g, self.fast_params(params), self.step_sizes(params), grad_sum)

    def adapted_params(self, params: Any, grad_sum: Any) -> Any:
        """Every parameter after the fast updates (the policy is unchanged unless ``adapt_policy``)."""
        return {**params, **self.adapted(params, grad_sum)}

    # -- the inner loop (Algorithm 1, lines 5-11) -------------------------------------------

    def buffer_capacity(self, num_episodes: int, num_steps: int) -> int:
        if self.config.episode_buffer == "all":
            return num_episodes * (num_steps + 1)  # warm-up + every fast-update batch
        return self.config.buffer_size

    def add_episodes(self, buffer: Any, trajectories: Trajectory, reward_kind: str) -> Any:
        if not self.uses_buffer:
            return buffer
        return keep_best(buffer, encoder_inputs(trajectories, reward_kind), trajectories.mask,
                         trajectories.episode_returns(reward_kind))

    def sample(self, policy_params: Any, embedding: jax.Array, task: Any, key: jax.Array, num_episodes: int,
               reward_kind: str) -> tuple[Trajectory, jax.Array]:
        latents = jnp.broadcast_to(embedding, (num_episodes, self.config.embedding_size))
        trajectories = rollout(self.family, self.policy, policy_params, task, key, num_episodes, latents=latents)
        return trajectories, common.task_advantages(trajectories, self.config, reward_kind)

    def fast_gradient(self, params: Any, fast: Any, buffer: Any, trajectories: Trajectory, adv: jax.Array):
        """ĝ = clip_norm(∇ mean_t log π(a_t | s_t ⧺ h(θ_TE, B)) A_t, inner_grad_clip), as data (first order)."""

        def surrogate(fast):
            conditioned = with_embedding(trajectories, self.embedding(fast, buffer))
            log_probs, _ = score(self.policy, self.policy_params(params, fast), conditioned)
            return estimators.vpg_surrogate(log_probs, adv, trajectories.mask)

        grads = jax.grad(surrogate)(fast)
        scale = jnp.minimum(1.0, self.config.inner_grad_clip / jnp.maximum(optax.global_norm(grads), 1e-30))
        return jax.lax.stop_gradient(jax.tree.map(lambda g: g * scale, grads))

    def adapt_task(self, params: Any, task: Any, key: jax.Array, num_episodes: int, num_steps: int,
                   reward_kind: str) -> Adaptation:
        """Lines 5-11 for one task: warm-up (batch 0), ``num_steps`` fast updates (batches 1..K), τ^{K+1}.

        All batches are drawn by ONE scan over the batch index k (the rollout is compiled once): batch 0
        uses h = 0, batches 1..K take a fast update, every batch but the last enters the buffer. The
        branches on k are ``lax.cond`` on the scan index, which stays unbatched under the task vmap.
        """
        cfg, horizon = self.config, self.family.episode_length
        first = 0 if self.uses_buffer else 1  # AdaptSV has no warm-up batch
        indices = jnp.arange(first, num_steps + 2)
        buffer = ()
        if self.uses_buffer:
            buffer = empty_buffer(self.buffer_capacity(num_episodes, num_steps), horizon,
                                  self.encoder.gru.input_size, float_dtype())
        zero_embedding = jnp.zeros((cfg.embedding_size,), float_dtype())

        def batch(carry, inputs):
            grad_sum, buffer = carry
            k, batch_key = inputs
            fast = self.adapted(params, grad_sum)
            embedding = jax.lax.cond(k == 0, lambda: zero_embedding, lambda: self.embedding(fast, buffer))
            trajectories, adv = self.sample(self.policy_params(params, fast), embedding, task, batch_key,
                                            num_episodes, reward_kind)
            if self.adapts:
                grad_sum = jax.lax.cond(
                    (k >= 1) & (k <= num_steps),
                    lambda: jax.tree.map(jnp.add, grad_sum, self.fast_gradient(params, fast, buffer, trajectories,
                                                                               adv)),
                    lambda: grad_sum)
            if self.uses_buffer:
                buffer = jax.lax.cond(k <= num_steps, lambda: self.add_episodes(buffer, trajectories, reward_kind),
                                      lambda: buffer)
            return (grad_sum, buffer), (trajectories, adv, jnp.mean(trajectories.episode_returns(reward_kind)),
                                        embedding)

        zeros = jax.tree.map(jnp.zeros_like, self.fast_params(params))
        keys = jax.random.split(key, indices.shape[0])
        (grad_sum, buffer), (trajectories, adv, returns, embeddings) = jax.lax.scan(
            batch, (zeros, buffer), (indices, keys))
        post = jax.tree.map(lambda x: x[-1], (trajectories, adv))
        warmup_return = returns[0] if self.uses_buffer else jnp.zeros((), returns.dtype)
        visited = jax.tree.map(lambda x: x[1 - first:, 0], trajectories.qpos)
        return jax.lax.stop_gradient(Adaptation(grad_sum, buffer, post, returns[1 - first:], warmup_return,
                                                embeddings[1 - first:], visited))

    # -- the outer loop (Algorithm 1, line 12) ----------------------------------------------

    def meta_objective(self, params: Any, adaptations: Adaptation) -> PolicyObjective:
        """Eq. (10) as a PPO objective: ratios of π(a | s ⧺ h^{K+1}(θ_TE, α)) on τ^{K+1}, penalty η mean h²."""

        def one_task(grad_sum, buffer, post_batch):
            post, post_adv = post_batch
            fast = self.adapted(params, grad_sum)
            embedding = self.embedding(fast, buffer)
            log_probs, dist = score(self.policy, self.policy_params(params, fast), with_embedding(post, embedding))
            kl = estimators.masked_mean(post.dist.kl(dist), post.mask)
            return PolicyObjective(log_probs - post.log_probs, post_adv, post.mask, kl, jnp.mean(embedding**2))

        per_task = jax.vmap(one_task)(adaptations.grad_sum, adaptations.buffer, adaptations.post)
        return per_task._replace(kl=jnp.mean(per_task.kl),
                                 penalty=self.config.embedding_l2 * jnp.mean(per_task.penalty))

    def collect(self, params: Any, key: jax.Array) -> Adaptation:
        """Lines 3-11 for the meta-batch: tasks drawn from D without replacement."""
        cfg = self.config
        index_key, sample_key = jax.random.split(key)
        indices = jax.random.choice(index_key, cfg.num_train_tasks, (cfg.meta_batch_size,), replace=False)
        tasks = self.shard(jax.tree.map(lambda x: x[indices], self.train_tasks))
        keys = self.shard(jax.random.split(sample_key, cfg.meta_batch_size))
        return jax.vmap(self.adapt_task, in_axes=(None, 0, 0, None, None, None))(
            params, tasks, keys, cfg.episodes_per_task, cfg.num_inner_steps, cfg.train_reward)

    def _train_step(self, ts: TrainState):
        cfg = self.config
        ts, (key,) = split_rng(ts, 1)
        adaptations = self.collect(ts.params, key)
        params, opt_state, info = self.optimizer.update(
            lambda p: self.meta_objective(p, adaptations), ts.params, ts.opt_state)
        ts = ts.replace(params=params, opt_state=opt_state, step=ts.step + 1,
                        nonfinite_updates=ts.nonfinite_updates + info["nonfinite"])
        post, _ = adaptations.post
        embeddings = adaptations.embeddings  # [N, K + 1, d]
        distance = jax.vmap(lambda g: optax.global_norm(jax.tree.map(lambda a, x: a * x,
                                                                     self.step_sizes(ts.params), g)))
        batches = cfg.num_inner_steps + 1 + int(self.uses_buffer)
        metrics = {
            # Batch 1 (after the warm-up, before any fast update) in the train reward; τ^{K+1} in both.
            "train/pre_return": jnp.mean(adaptations.returns[:, 0]),
            **common.return_metrics("train/post_", post),
            **common.optimizer_metrics(info),
            "train/nonfinite_updates": ts.nonfinite_updates.astype(jnp.float32),
            "train/policy_std": jnp.mean(jnp.exp(post.dist.log_std)),
            "train/embedding_norm": jnp.mean(jnp.linalg.norm(embeddings[:, -1], axis=-1)),
            "adapt/embedding_shift": jnp.mean(jnp.linalg.norm(embeddings[:, -1] - embeddings[:, 0], axis=-1)),
            "adapt/param_distance": jnp.mean(distance(adaptations.grad_sum)),
            "adapt/step_size_abs_mean": jnp.mean(jnp.abs(ravel_pytree(self.step_sizes(ts.params))[0])),
            "time/env_steps": ts.step.astype(jnp.float32) * (cfg.meta_batch_size * cfg.episodes_per_task
                                                            * self.family.episode_length * batches),
        }
        if self.uses_buffer:
            metrics["train/warmup_return"] = jnp.mean(adaptations.warmup_return)
        return ts, metrics

    # -- meta-test ---------------------------------------------------------------------------

    def meta_test(self, ts: TrainState, tasks: Any, key: jax.Array) -> Adaptation:
        """Every task of ``tasks`` (any split) adapted with K fast updates (vmapped; its ``returns`` [tasks, K + 1])."""
        cfg = self.config
        tasks = self.shard(tasks)
        keys = self.shard(jax.random.split(key, jax.tree.leaves(tasks)[0].shape[0]))
        return jax.vmap(self.adapt_task, in_axes=(None, 0, 0, None, None, None))(
            ts.params, tasks, keys, cfg.eval_episodes_per_task, cfg.eval_adaptation_steps, cfg.eval_reward)

    def _evaluate(self, ts: TrainState, tasks: Any, key: jax.Array) -> AdaptationCurve:
        """Returns after 0..K fast updates on ``tasks`` (any split), [tasks, K + 1]."""
        return AdaptationCurve(self.meta_test(ts, tasks, key).returns)

    def _record_stages(self, ts: TrainState, tasks: Any, key: jax.Array):
        adaptations = self.meta_test(ts, tasks, key)
        return adaptations.returns, adaptations.qpos
