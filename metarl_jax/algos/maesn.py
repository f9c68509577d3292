"""MAESN: meta-reinforcement learning of structured exploration strategies (Gupta et al. 2018, Algorithm 1).

    1: initialise variational parameters μ_i, σ_i for each training task τ_i
    2: for iteration k ∈ {1, ..., K}:
    3:     sample a batch of N training tasks from p(τ)
    4:     for task τ_i (vmapped, sharded over devices):
    5:         gather data with the latent-conditioned policy θ, (μ_i, σ_i)      z ~ N(μ_i, σ_i) once per episode
    6:         inner policy gradient on the variational parameters, eqs. (4)-(5) (optionally (6) on θ)
    7:     (end for)
    8:     meta-update of the latents and policy parameters on objective (3) with TRPO
    9: (end for)

Objective (3)-(7), with q_i = N(μ_i, σ_i²) and learned per-dimension step sizes α:

    max_{θ, μ_i, σ_i, α}  Σ_i E_{z' ~ q'_i, a ~ π_θ(·|s, z')}[Σ_t R_i(s_t)]  −  w Σ_i KL(q_i ‖ N(0, I))
    μ'_i = μ_i + α_μ ∘ ∇_μ_i E_{z ~ q_i, a ~ π_θ(·|s, z)}[Σ_t R_i(s_t)]          (4)
    log σ'_i = log σ_i + α_σ ∘ ∇_log σ_i E[...]                                    (5)  (σ parameterised by log σ)

All of 3-8 is one XLA program (``train_step``); the per-task variational
parameters are rows of ``params["latent_mean"]`` / ``params["latent_log_std"]``
([num_train_tasks, d]) and the N sampled rows are gathered inside the program.

Inner step (eqs. 4-5). The latent gradient is REINFORCE on log N(z; μ_i, σ_i)
weighted by the advantage at t = 0 of each episode (maesn_suite):
    ĝ = mean_e ∇ log q_i(z_e) A_{e,0}.
It is taken as the gradient of a loaded-DiCE surrogate over the episode's
stochastic nodes (z, a_0, ..., a_{T−1}) (``latent_surrogate``), whose Hessian Ĥ
is an unbiased estimate of the objective's: it includes ∇log q ∇log qᵀ A_0 and
the ∇log q ∇_θ log π A_t cross terms that make θ learn to *use* the latent space.
What the meta-gradient then estimates is MAML's DiCE row of the estimator table
(docs/design_notes.md): the gradient of the infinite-batch objective
J_post(φ + α E ĝ), biased by an α²·Cov(ĝ, Ĥ) term because ĝ and Ĥ come from the
same pre-update batch (O(α²/n) for n episodes), and without the pre-update score
term of the finite-batch objective E_D[J_post(φ + α ĝ(D))]. ``baseline`` (every
learner's) sets the advantages of both batches.

Outer objective (3), the choice made here (``outer_latent_gradient="likelihood"``).
The post-update data D'_i are sampled variables (z'_e, a_{e,0..T−1}); z'_e
enters with the likelihood ratio q'_i(z'_e)/q'_old(z'_e), where
q'_i = N(μ'_i, σ'_i) is a differentiable function of (θ, μ_i, σ_i, α) through
the inner step. The latent is drawn together with a_0, so its log-ratio is
added to the log-ratio of step t = 0 only:

    ρ_{e,0} = q'(z'_e) π_θ'(a_0 | s_0, z'_e) / [q'_old(z'_e) π_old(a_0 | s_0, z'_e)],
    ρ_{e,t} = π_θ'(a_t | s_t, z'_e) / π_old(a_t | s_t, z'_e)   (t > 0)
    L = mean_{e,t} ρ_{e,t} A'_{e,t}  −  w · mean_i KL(N(μ_i, σ_i) ‖ N(0, I)).

Its gradient at ρ = 1 is the unbiased per-step REINFORCE estimate, with the
latent score weighted by A'_{e,0} (the same weighting as the inner step; adding
the latent log-ratio to *every* step would weight it by Σ_t A_t, which is biased).

TRPO constraint: KL(π_old(·|s, z') ‖ π_θ'(·|s, z')) averaged over the post-update
steps PLUS the mean over tasks of KL(q'_old ‖ q'_i) between the post-update
latent distributions. With the likelihood-ratio form the action KL does not
depend on (μ_i, σ_i, α) at all, so without the latent term the Fisher would be
singular in those directions. ``outer_latent_gradient="reparameterized"`` is the
maesn_suite variant instead: z' = μ'_i + σ'_i ε with ε stored, the gradient
reaches the latents through π_θ(a|s, z'), and the constraint is the action KL only.

Meta-test (Sec. 4.4): every task starts from the prior N(0, I) and VPG adapts
only (μ, log σ), with the sparse reward, the step size halved after every
iteration (``eval_schedule="halving"``).

``latent_space`` (MAESN's LSBaseline) is the same model trained with fast
learning rate 0 (the inner step is the identity, so the post-update batch is the
pre-update batch) and adapted at test time with step 1, halving.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from metarl_jax import estimators, parallel
from metarl_jax.algos import common
from metarl_jax.algos.base import Algorithm, TrainState, new_train_state, split_rng
from metarl_jax.algos.config import non_negative, one_of, positive
from metarl_jax.evaluation import SCHEDULES, AdaptationCurve, AdaptationTrace, adaptation_trace
from metarl_jax.networks import DiagGaussian, float_dtype, standard_normal_kl
from metarl_jax.optim import PolicyObjective
from metarl_jax.rollout import Trajectory, rollout, score

OUTER_LATENT_GRADIENTS = ("likelihood", "reparameterized")


@dataclasses.dataclass(frozen=True)
class Config(common.PolicyGradientConfig):
    """MAESN defaults (paper + maesn_suite): MLP (100, 100) ReLU, latent 2, 20 tasks × 50 episodes, 100 train tasks."""

    meta_batch_size: int = positive(20)
    episodes_per_task: int = positive(50)
    latent_size: int = positive(2)
    num_train_tasks: int = positive(100)
    # Initial value of the learned per-dimension latent step sizes α_μ, α_σ (0.5 or 1 in the paper).
    fast_lr: float = non_negative(0.5)
    learn_step_sizes: bool = True
    # w in objective (3): weight of KL(N(μ_i, σ_i) ‖ N(0, I)) (0.1 or 0.5).
    kl_weight: float = non_negative(0.1)
    # Eq. (6): also adapt θ in the inner step (off in the paper's experiments).
    adapt_policy: bool = False
    # α_θ of eq. (6); it multiplies the per-episode (time-summed) policy gradient.
    policy_fast_lr: float = non_negative(0.001)
    outer_latent_gradient: str = one_of("likelihood", OUTER_LATENT_GRADIENTS)
    # Meta-test: 30 validation goals, sparse reward, VPG on the latents, 100 iterations, halving steps.
    eval_num_tasks: int = positive(30)
    eval_episodes_per_task: int = positive(50)
    eval_adaptation_steps: int = non_negative(100)
    eval_reward: str = one_of("sparse", common.REWARD_KINDS)
    eval_schedule: str = one_of("halving", tuple(SCHEDULES))
    # None: the (learned) per-dimension step sizes, i.e. fast_lr when they are not learned.
    eval_lr: float | None = positive(None)

    def validate(self) -> None:
        common.check_train_task_sampling(self)


@dataclasses.dataclass(frozen=True)
class LatentSpaceConfig(Config):
    """MAESN's LSBaseline: the same model trained without adaptation (α = 0), adapted at test with step 1."""

    fast_lr: float = non_negative(0.0)
    learn_step_sizes: bool = False
    eval_lr: float | None = positive(1.0)

    def validate(self) -> None:
        super().validate()
        if self.fast_lr != 0.0 or self.learn_step_sizes or self.adapt_policy:
            raise ValueError(
                "latent_space trains without adaptation: config fields 'fast_lr' must be 0, 'learn_step_sizes' "
                f"and 'adapt_policy' False (got {self.fast_lr}, {self.learn_step_sizes}, {self.adapt_policy}); "
                "use algo 'maesn' for a trained inner step")


PRESETS: dict[str, Config] = {
    "paper": Config(),
    # maesn_suite FinalLaunchers: wheeled α 1, w 0.5, 50 episodes; ant α 0.5 (swept 0.1/0.5/1), w 0.1;
    # block push α 1, 20 episodes, horizon 100. Test batches: 10 000 env steps per iteration.
    "wheeled": Config(fast_lr=1.0, kl_weight=0.5),
    "ant_goal": Config(fast_lr=0.5, kl_weight=0.1),
    "block_push": Config(fast_lr=1.0, kl_weight=0.1, episodes_per_task=20, eval_episodes_per_task=100),
    # Point families (not in the paper): MAESN's settings with horizon-sized test batches.
    "point_corner": Config(eval_episodes_per_task=100),
    "point_semicircle": Config(eval_episodes_per_task=100),
    # Small and fast on a 2-core CPU (tests).
    "smoke": Config(hidden_sizes=(32, 32), meta_batch_size=8, episodes_per_task=8, num_train_tasks=16,
                    eval_num_tasks=8, eval_episodes_per_task=8, eval_adaptation_steps=3),
}


def _latent_space_preset(config: Config) -> LatentSpaceConfig:
    """The LatentSpace counterpart of a MAESN preset: same model and batches, no adaptation training."""
    values = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    values.update(fast_lr=0.0, learn_step_sizes=False, adapt_policy=False, eval_lr=1.0)
    return LatentSpaceConfig(**values)


PRESETS_BY_ALGO: dict[str, dict[str, Config]] = {
    "maesn": PRESETS,
    "latent_space": {name: _latent_space_preset(config) for name, config in PRESETS.items()},
}


def latent_surrogate(latent_log_probs: jax.Array, action_log_probs: jax.Array, adv: jax.Array,
                     mask: jax.Array) -> jax.Array:
    """Loaded DiCE over each episode's stochastic nodes (z, a_0, ..., a_{T−1}).

        S = mean_e [ (□(ℓ_e) − 1) A_{e,0} + Σ_t (□(W_{e,t}) − □(W_{e,t−1})) A_{e,t} ],
        ℓ_e = log q(z_e),  W_{e,t} = ℓ_e + Σ_{t'≤t} log π(a_t'|s_t', z_e),  W_{e,−1} = ℓ_e.

    Value 0. Gradient: mean_e ∇ℓ_e A_{e,0} (REINFORCE on the latent with the t = 0
    advantage) plus mean_e Σ_t ∇log π_t A_t. Hessian: unbiased, including
    ∇ℓ ∇ℓᵀ A_0 and the ∇ℓ ∇log π_tᵀ A_t cross terms. Shapes: ℓ [..., E], the rest [..., E, T].
    """
    cumulative = latent_log_probs[..., None] + jnp.cumsum(action_log_probs * mask, axis=-1)
    previous = jnp.concatenate([latent_log_probs[..., None], cumulative[..., :-1]], axis=-1)
    latent_term = (estimators.magic_box(latent_log_probs) - 1.0) * adv[..., 0]
    action_term = jnp.sum((estimators.magic_box(cumulative) - estimators.magic_box(previous)) * adv * mask, axis=-1)
    return jnp.mean(latent_term + action_term)


def sample_latents(latent: DiagGaussian, key: jax.Array, num_episodes: int) -> jax.Array:
    """z_e = μ + σ ε_e, ε_e ~ N(0, I) drawn once per episode: [E, d]."""
    noise = jax.random.normal(key, (num_episodes, latent.mean.shape[-1]))
    return latent.mean + jnp.exp(latent.log_std) * noise


def prior_kl(latent: DiagGaussian) -> jax.Array:
    """KL(N(μ, σ²) ‖ N(0, I)) per task (objective (3)'s second term)."""
    return standard_normal_kl(latent.mean, latent.log_std)


class MAESN(Algorithm):
    name = "maesn"
    Config = Config

    def setup(self) -> None:
        cfg = self.config
        parallel.check_divisible(cfg.meta_batch_size, self.mesh, "meta_batch_size")
        self.policy = common.make_policy(self.family, cfg, latent_size=cfg.latent_size)
        self.optimizer = common.make_optimizer(cfg)
        # The fixed training tasks τ_1..τ_M that the rows of the latent tables belong to.
        self.train_tasks = self.family.task_set("train", cfg.num_train_tasks)
        # Static: with α = 0 and nothing learned the inner step is the identity (LatentSpace).
        self.adapts = cfg.learn_step_sizes or cfg.fast_lr > 0.0 or cfg.adapt_policy

    def init(self, key: jax.Array) -> TrainState:
        cfg = self.config
        policy_key, mean_key, rng = jax.random.split(key, 3)
        params = {
            "policy": self.policy.init(policy_key),
            # Per-task variational parameters: μ_i ~ N(0, 1), log σ_i = 0.
            "latent_mean": jax.random.normal(mean_key, (cfg.num_train_tasks, cfg.latent_size)),
            "latent_log_std": jnp.zeros((cfg.num_train_tasks, cfg.latent_size)),
        }
        if cfg.learn_step_sizes:
            params["step_size"] = self._constant_step_sizes(cfg.fast_lr)._asdict()
        params = self.shard_latent_tables(params)
        return new_train_state(params, self.optimizer.init(params), rng)

    def shard_latent_tables(self, params: Any) -> Any:
        """Rows (μ_i, log σ_i) live with their tasks: split over the task mesh when it divides M."""
        if self.config.num_train_tasks % self.mesh.devices.size:
            return params
        tables = self.shard({"latent_mean": params["latent_mean"], "latent_log_std": params["latent_log_std"]})
        return {**params, **tables}

    # -- the model -------------------------------------------------------------------------

    def _constant_step_sizes(self, value: float) -> DiagGaussian:
        full = jnp.full((self.config.latent_size,), value, float_dtype())
        return DiagGaussian(mean=full, log_std=full)

    def step_sizes(self, params: Any) -> DiagGaussian:
        """Per-dimension α_μ, α_σ (learned, or the constant fast_lr)."""
        if self.config.learn_step_sizes:
            return DiagGaussian(**params["step_size"])
        return self._constant_step_sizes(self.config.fast_lr)

    def task_latent(self, params: Any, task_index: jax.Array) -> DiagGaussian:
        """q_i = N(μ_i, σ_i²): row i of the latent tables."""
        return DiagGaussian(params["latent_mean"][task_index], params["latent_log_std"][task_index])

    # -- inner loop ------------------------------------------------------------------------

    def inner_objective(self, latent: DiagGaussian, policy_params: Any, trajectories: Trajectory,
                        adv: jax.Array, realized: bool = False) -> jax.Array:
        """Eqs. (4)-(6): the DiCE surrogate of E_{z~q, a~π}[Σ_t R] on the pre-update batch.

        ``realized``: the surrogate of the step actually taken at any parameters, as a plain function:
        the magic boxes evaluate to 1, so it is REINFORCE with the samples held fixed,
        mean_e [log q(z_e) A_{e,0} + Σ_t log π(a_t|s_t, z_e) A_{e,t}]. TRPO's Fisher and line search use
        it, so that its quadratic KL model and the KL it measures are one function (MAML's
        ``inner_objective`` explains why).
        """
        action_log_probs, _ = score(self.policy, policy_params, trajectories)
        latent_log_probs = latent.log_prob(trajectories.latents)
        if realized:
            return jnp.mean(latent_log_probs * adv[..., 0] + jnp.sum(action_log_probs * adv * trajectories.mask, -1))
        return latent_surrogate(latent_log_probs, action_log_probs, adv, trajectories.mask)

    def inner_step(self, params: Any, task_index: jax.Array, trajectories: Trajectory,
                   adv: jax.Array, realized: bool = False) -> tuple[Any, DiagGaussian]:
        """(θ', q'_i): μ' = μ + α_μ ∘ ĝ_μ, log σ' = log σ + α_σ ∘ ĝ_logσ (and θ' = θ + α_θ ĝ_θ if adapt_policy)."""
        cfg = self.config
        latent = self.task_latent(params, task_index)
        if not self.adapts:
            return params["policy"], latent
        argnums = (0, 1) if cfg.adapt_policy else 0
        grads = jax.grad(self.inner_objective, argnums=argnums)(latent, params["policy"], trajectories, adv, realized)
        latent_grad, policy_grad = grads if cfg.adapt_policy else (grads, None)
        alpha = self.step_sizes(params)
        adapted_latent = jax.tree.map(lambda p, a, g: p + a * g, latent, alpha, latent_grad)
        adapted_policy = params["policy"]
        if cfg.adapt_policy:
            adapted_policy = jax.tree.map(lambda p, g: p + cfg.policy_fast_lr * g, adapted_policy, policy_grad)
        return adapted_policy, adapted_latent

    def sample_adaptation(self, params: Any, task_index: jax.Array, task: Any, key: jax.Array):
        """Steps 5-6 for one task, then the post-update batch D'_i with z' ~ q'_i and θ'.

        Returns (pre batch, post batch, q'_i at sampling time), all without gradient.
        """
        pre_key, post_key = jax.random.split(key)
        pre = self._sample(params["policy"], self.task_latent(params, task_index), task, pre_key)
        adapted_policy, adapted_latent = self.inner_step(params, task_index, *pre)
        post = self._sample(adapted_policy, adapted_latent, task, post_key) if self.adapts else pre
        return jax.lax.stop_gradient((pre, post, adapted_latent))

    def _sample(self, policy_params: Any, latent: DiagGaussian, task: Any, key: jax.Array):
        cfg = self.config
        latent_key, rollout_key = jax.random.split(key)
        latents = sample_latents(latent, latent_key, cfg.episodes_per_task)
        trajectories = rollout(self.family, self.policy, policy_params, task, rollout_key, cfg.episodes_per_task,
                               latents=latents)
        return trajectories, common.task_advantages(trajectories, cfg, cfg.train_reward)

    # -- outer loop ------------------------------------------------------------------------

    def meta_objective(self, params: Any, task_indices: jax.Array, pre_batches, post_batches,
                       sampled_latents: DiagGaussian, realized: bool = False) -> PolicyObjective:
        """Objective (3) over the meta-batch as a TRPO objective (see the module docstring); ``realized``:
        with the realized inner step (``inner_objective``), for TRPO's line search and Fisher."""
        cfg = self.config

        def one_task(task_index, pre_batch, post_batch, old_latent):
            adapted_policy, adapted_latent = self.inner_step(params, task_index, *pre_batch, realized)
            post, post_adv = post_batch
            if cfg.outer_latent_gradient == "reparameterized":
                # z' = μ'(φ) + σ'(φ) ε with the sampled ε = (z' − μ'_old) / σ'_old.
                noise = (post.latents - old_latent.mean) * jnp.exp(-old_latent.log_std)
                post = post._replace(latents=adapted_latent.mean + jnp.exp(adapted_latent.log_std) * noise)
                latent_log_ratio = jnp.zeros(post.latents.shape[:-1])
                latent_kl = jnp.zeros(())
            else:
                latent_log_ratio = adapted_latent.log_prob(post.latents) - old_latent.log_prob(post.latents)
                latent_kl = old_latent.kl(adapted_latent)
            log_probs, dist = score(self.policy, adapted_policy, post)
            # ρ_{e,0} carries q'(z'_e)/q'_old(z'_e): z' is drawn together with a_0.
            log_ratio = (log_probs - post.log_probs).at[..., 0].add(latent_log_ratio)
            action_kl = estimators.masked_mean(post.dist.kl(dist), post.mask)
            penalty = prior_kl(self.task_latent(params, task_index))
            return PolicyObjective(log_ratio, post_adv, post.mask, action_kl + latent_kl, penalty)

        per_task = jax.vmap(one_task)(task_indices, pre_batches, post_batches, sampled_latents)
        return per_task._replace(kl=jnp.mean(per_task.kl), penalty=cfg.kl_weight * jnp.mean(per_task.penalty))

    def collect(self, params: Any, key: jax.Array):
        """Steps 3-6 for the whole meta-batch: (task indices, pre batches, post batches, sampled q'_i)."""
        cfg = self.config
        index_key, sample_key = jax.random.split(key)
        task_indices = jax.random.choice(index_key, cfg.num_train_tasks, (cfg.meta_batch_size,), replace=False)
        tasks = jax.tree.map(lambda x: x[task_indices], self.train_tasks)
        task_indices, tasks = self.shard((task_indices, tasks))
        sample_keys = self.shard(jax.random.split(sample_key, cfg.meta_batch_size))
        pre, post, sampled_latents = jax.vmap(self.sample_adaptation, in_axes=(None, 0, 0, 0))(
            params, task_indices, tasks, sample_keys)
        return task_indices, pre, post, sampled_latents

    def _train_step(self, ts: TrainState):
        cfg = self.config
        ts, (key,) = split_rng(ts, 1)
        task_indices, pre_batches, post_batches, sampled_latents = self.collect(ts.params, key)
        batch = (task_indices, pre_batches, post_batches, sampled_latents)
        # CG's Fisher products on a task subsample (cg_subsample < 1; the line search sees every task).
        fisher_batch = common.subsample(batch, cfg.cg_subsample)
        params, opt_state, info = self.optimizer.update(
            lambda p: self.meta_objective(p, *batch), ts.params, ts.opt_state,
            None if cfg.cg_subsample == 1.0 else lambda p: self.meta_objective(p, *fisher_batch, realized=True),
            realized_objective_fn=(lambda p: self.meta_objective(p, *batch, realized=True)) if self.adapts else None)
        params = self.shard_latent_tables(params)

        pre, _ = pre_batches
        post, _ = post_batches
        pre_latents = self.task_latent(ts.params, task_indices)
        alpha = self.step_sizes(ts.params)
        ts = ts.replace(params=params, opt_state=opt_state, step=ts.step + 1,
                        nonfinite_updates=ts.nonfinite_updates + info["nonfinite"])
        rollouts_per_iteration = 2 if self.adapts else 1
        steps_per_iteration = (cfg.meta_batch_size * cfg.episodes_per_task * self.family.episode_length
                               * rollouts_per_iteration)
        metrics = {
            **common.return_metrics("train/pre_", pre),
            **common.return_metrics("train/post_", post),
            **common.optimizer_metrics(info),
            "train/nonfinite_updates": ts.nonfinite_updates.astype(jnp.float32),
            "train/policy_std": jnp.mean(jnp.exp(post.dist.log_std)),
            "train/kl_to_prior": jnp.mean(prior_kl(pre_latents)),
            "train/latent_mean_norm": jnp.mean(jnp.linalg.norm(params["latent_mean"], axis=-1)),
            "train/latent_std": jnp.mean(jnp.exp(params["latent_log_std"])),
            "adapt/step_size_mean": jnp.mean(alpha.mean),
            "adapt/step_size_log_std": jnp.mean(alpha.log_std),
            "adapt/latent_mean_shift": jnp.mean(jnp.linalg.norm(sampled_latents.mean - pre_latents.mean, axis=-1)),
            "adapt/latent_std_ratio": jnp.mean(jnp.exp(sampled_latents.log_std - pre_latents.log_std)),
            "time/env_steps": ts.step.astype(jnp.float32) * steps_per_iteration,
        }
        return ts, metrics

    # -- meta-test ---------------------------------------------------------------------------

    def eval_step_sizes(self, params: Any) -> DiagGaussian:
        """Base per-dimension test step sizes: eval_lr, else the learned α (fast_lr if not learned)."""
        if self.config.eval_lr is not None:
            return self._constant_step_sizes(self.config.eval_lr)
        return self.step_sizes(params)

    def meta_test_trace(self, params: Any, tasks: Any, key: jax.Array, fixed_latent: bool = False,
                        keep: Any = lambda batch: ()) -> AdaptationTrace:
        """Sec. 4.4: from the prior N(0, I), VPG on (μ, log σ) only with the eval reward, scheduled steps.

        ``states`` are the latent distributions q_k. ``fixed_latent`` is the structured-noise
        ablation (Fig. 9): every episode uses z = μ, so only the action noise explores (and the
        latent score-function gradient vanishes).
        """
        cfg = self.config
        policy_params = params["policy"]
        base_step = self.eval_step_sizes(params)
        schedule = SCHEDULES[cfg.eval_schedule](1.0, cfg.eval_adaptation_steps)
        prior = DiagGaussian(jnp.zeros((cfg.latent_size,)), jnp.zeros((cfg.latent_size,)))

        def sample(latent, task, key):
            latent_key, rollout_key = jax.random.split(key)
            if fixed_latent:
                latents = jnp.broadcast_to(latent.mean, (cfg.eval_episodes_per_task, cfg.latent_size))
            else:
                latents = sample_latents(latent, latent_key, cfg.eval_episodes_per_task)
            trajectories = rollout(self.family, self.policy, policy_params, task, rollout_key,
                                   cfg.eval_episodes_per_task, latents=latents)
            return trajectories, jnp.mean(trajectories.episode_returns(cfg.eval_reward))

        def update(latent, task, trajectories, factor):
            adv = common.task_advantages(trajectories, cfg, cfg.eval_reward)
            grad = jax.grad(self.inner_objective)(latent, policy_params, trajectories, adv)
            return jax.tree.map(lambda p, a, g: p + factor * a * g, latent, base_step, grad)

        return adaptation_trace(sample, update, prior, self.shard(tasks), key, schedule, keep)

    def _evaluate(self, ts: TrainState, tasks: Any, key: jax.Array) -> AdaptationCurve:
        return AdaptationCurve(self.meta_test_trace(ts.params, tasks, key).returns)

    def _record_stages(self, ts: TrainState, tasks: Any, key: jax.Array):
        trace = self.meta_test_trace(ts.params, tasks, key, keep=common.first_episode_qpos)
        return trace.returns, trace.kept


class LatentSpace(MAESN):
    """MAESN's LSBaseline: θ and per-task latents trained by TRPO without an inner step; test as MAESN."""

    name = "latent_space"
    Config = LatentSpaceConfig
