"""PEARL: off-policy meta-RL with probabilistic context variables (Rakelly et al. 2019, Algorithms 1 and 2).

Meta-training (Algorithm 1), one ``train_step``:

    (init) for every training task T_i: collect num_initial_steps with z ~ N(0, I) into B_i and E_i
    sample num_tasks_sample tasks; for each (vmapped), with E_i cleared first:
        num_steps_prior steps with z ~ N(0, I)                  → B_i and E_i
        num_steps_posterior steps with z ~ q(z | c ~ E_i)        → B_i and E_i
        num_extra_rl_steps_posterior steps with z ~ q(z | c ~ E_i) → B_i only (never the encoder's data)
    num_train_steps_per_itr times (a lax.scan), on a meta-batch of tasks T_i:
        c^i ~ E_i (embedding_batch_size),  b^i ~ B_i (batch_size),  z^i ~ q_φ(z | c^i)  (reparameterised)
        L_critic = Σ_j E[(Q_j(s, a, z) − (scale·r + γ (1 − d) V̄(s′, z̄)))²]   + λ_KL Σ_i KL(q_φ(z|c^i) ‖ N(0, I))
        (φ, Q_1, Q_2) ← Adam ∇ L_critic                      the encoder learns through the critic and the KL
        ã ~ π(·|s, z̄):  L_V = E[(V(s, z̄) − (min_j Q_j(s, ã, z̄) − log π(ã|s, z̄)))²]   (the updated Q's)
        L_π = E[log π(ã|s, z̄) − min_j Q_j(s, ã, z̄)] + 10⁻³ (E[μ²] + E[log σ²])     z̄ = stop_gradient(z)
        V̄ ← τ V + (1 − τ) V̄

``critic_target="twin_q"`` replaces V and V̄ by target twin critics (SAC-v2): the target is
scale·r + γ (1 − d) (min_j Q̄_j(s′, ã′, z̄) − log π(ã′|s′, z̄)), ã′ ~ π(·|s′, z̄). The temperature is 1, as
in oyster: ``reward_scale`` sets the weight of the entropy. Targets follow the off-policy rules: a
terminal transition (d = 1) does not bootstrap, a truncated one bootstraps from its true s′.

Meta-test (Algorithm 2), ``evaluate``: on each held-out task the context c starts empty; trajectory k
(k = 0 … eval_adaptation_steps) is rolled out with the mean action and z ~ N(0, I) while
k < num_exp_traj_eval, else z ~ q(z | c); its transitions are then appended to c. The adaptation
curve is the return of trajectory k: x-axis "trajectories of context".

Context. The paper writes c = (s, a, r, s′); oyster's default (``use_next_obs_in_context=False``)
feeds (s, a, r), and s′ only for the rand-params families whose dynamics differ. This module uses
oyster's choice per family (the field of the same name). With ``context_reward="sparse"`` (the
sparse point robot) the encoder sees the sparse reward and the SAC trains on the dense one.

The sampled tasks' collections run in parallel (vmapped); this equals oyster's sequential loop in
distribution, since no collection reads the replay buffer and a task drawn twice keeps its last
collection's encoder data. Differences from oyster: z is resampled every ``episode_length`` steps
(one trajectory, unless an episode terminates early: then the next episode finishes that chunk with
the same z); the replay buffer holds ``buffer_size`` transitions per task (oyster 10⁶; no preset's
run fills the default 10⁵ per task); the policy's σ is softplus(ρ) + min_std (oyster clamps log σ
to [−20, 2]); hidden layers are LeCun-normal (oyster: fan-in uniform), last layers U(±3e-3) as oyster.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from metarl_jax import replay
from metarl_jax.algos import common, pearl_context, pearl_sac
from metarl_jax.algos.base import Algorithm, TrainState, new_train_state, split_rng
from metarl_jax.algos.config import AlgoConfig, non_negative, one_of, positive, unit_interval
from metarl_jax.algos.offpolicy import make_to_env
from metarl_jax.collector import Collector, Transition
from metarl_jax.envs.wrappers import with_episode_length
from metarl_jax.evaluation import AdaptationCurve
from metarl_jax.networks import ACTIVATIONS, float_dtype


@dataclasses.dataclass(frozen=True)
class Config(AlgoConfig):
    """oyster's ``configs/default.py``; the per-family presets apply its ``configs/*.json``."""

    # Networks: policy, Q1, Q2 and V are 3 × 300 (net_size); the encoder 3 × 200 → 2·latent.
    latent_size: int = positive(5)
    hidden_sizes: tuple[int, ...] = positive((300, 300, 300))
    encoder_hidden_sizes: tuple[int, ...] = positive((200, 200, 200))
    activation: str = one_of("relu", tuple(ACTIVATIONS))
    min_std: float = non_negative(1e-3)
    # Tasks and data collection per meta-iteration (steps per task).
    num_train_tasks: int = positive(2)
    num_initial_steps: int = positive(2000)
    num_tasks_sample: int = positive(5)
    num_steps_prior: int = non_negative(400)
    num_steps_posterior: int = non_negative(0)
    num_extra_rl_steps_posterior: int = non_negative(400)
    episode_length: int | None = positive(None)  # oyster's max_path_length (None: the family's own, 200)
    buffer_size: int = positive(100_000)  # per task
    # Gradient steps.
    num_train_steps_per_itr: int = positive(2000)
    meta_batch: int = positive(16)
    batch_size: int = positive(256)
    embedding_batch_size: int = positive(64)
    discount: float = unit_interval(0.99)
    tau: float = unit_interval(0.005)
    policy_lr: float = positive(3e-4)
    qf_lr: float = positive(3e-4)
    vf_lr: float = positive(3e-4)
    context_lr: float = positive(3e-4)
    reward_scale: float = positive(5.0)
    kl_lambda: float = non_negative(0.1)
    policy_mean_reg_weight: float = non_negative(1e-3)
    policy_std_reg_weight: float = non_negative(1e-3)
    critic_target: str = one_of("value", pearl_sac.CRITIC_TARGETS)
    # Context.
    information_bottleneck: bool = True
    use_next_obs_in_context: bool = False
    context_reward: str = one_of("dense", common.REWARD_KINDS)
    # Meta-test: eval_adaptation_steps + 1 trajectories per task (oyster: num_steps_per_eval / max_path_length).
    eval_num_tasks: int = positive(2)
    eval_adaptation_steps: int = non_negative(2)
    num_exp_traj_eval: int = positive(1)
    eval_reward: str = one_of("dense", common.REWARD_KINDS)
    eval_deterministic: bool = True

    def validate(self) -> None:
        if self.num_steps_prior + self.num_steps_posterior == 0:
            raise ValueError("config fields 'num_steps_prior' + 'num_steps_posterior' must be positive: they are the "
                             "encoder's data (the extra RL-only steps never reach it)")
        per_iteration = self.num_steps_prior + self.num_steps_posterior + self.num_extra_rl_steps_posterior
        for name, count in (("num_initial_steps", self.num_initial_steps), ("steps per iteration", per_iteration)):
            if count > self.buffer_size:
                raise ValueError(f"config field 'buffer_size' ({self.buffer_size}) must hold the {name} ({count}) "
                                 "of one task")


PRESETS: dict[str, Config] = {
    "default": Config(),
    # configs/cheetah-vel.json (the paper's headline budget, ≈ 2.7M env steps).
    "cheetah_vel": Config(num_train_tasks=100, eval_num_tasks=30, num_steps_prior=400, num_steps_posterior=0,
                          num_extra_rl_steps_posterior=600, embedding_batch_size=100, eval_adaptation_steps=2,
                          num_exp_traj_eval=2),
    "cheetah_dir": Config(num_train_tasks=2, eval_num_tasks=2, meta_batch=4, num_steps_prior=1000,
                          num_steps_posterior=0, num_extra_rl_steps_posterior=1000, embedding_batch_size=256,
                          num_exp_traj_eval=2),
    "ant_dir": Config(num_train_tasks=2, eval_num_tasks=2, meta_batch=4, num_steps_prior=400, num_steps_posterior=0,
                      num_extra_rl_steps_posterior=600, num_train_steps_per_itr=4000, embedding_batch_size=256,
                      num_exp_traj_eval=2),
    "ant_goal": Config(num_train_tasks=150, eval_num_tasks=30, meta_batch=10, num_steps_prior=400,
                       num_steps_posterior=0, num_extra_rl_steps_posterior=600, num_train_steps_per_itr=4000,
                       embedding_batch_size=256, kl_lambda=1.0, num_exp_traj_eval=2),
    # configs/sparse-point-robot.json: horizon 20, 400 eval steps = 20 trajectories.
    "point_semicircle": Config(num_train_tasks=80, eval_num_tasks=20, num_initial_steps=200, num_tasks_sample=10,
                               num_steps_prior=100, num_steps_posterior=900, num_extra_rl_steps_posterior=0,
                               num_train_steps_per_itr=1000, embedding_batch_size=1024, discount=0.9,
                               reward_scale=100.0, kl_lambda=1.0, context_reward="sparse", eval_reward="sparse",
                               eval_adaptation_steps=19, num_exp_traj_eval=5),
    **{family: Config(num_train_tasks=40, eval_num_tasks=10, meta_batch=10, use_next_obs_in_context=True,
                      num_steps_prior=400, num_steps_posterior=0, num_extra_rl_steps_posterior=600,
                      num_train_steps_per_itr=4000, embedding_batch_size=100, num_exp_traj_eval=2)
       for family in ("hopper_rand_params", "walker2d_rand_params")},  # configs/{hopper,walker}_rand_params.json
    # Small and fast on a 2-core CPU (tests): horizon-20 point, chunks of one episode.
    "smoke": Config(latent_size=2, hidden_sizes=(16, 16), encoder_hidden_sizes=(16,), num_train_tasks=6,
                    num_initial_steps=20, num_tasks_sample=3, num_steps_prior=20, num_steps_posterior=20,
                    num_extra_rl_steps_posterior=20, buffer_size=400, num_train_steps_per_itr=4, meta_batch=4,
                    batch_size=16, embedding_batch_size=16, eval_num_tasks=3, eval_adaptation_steps=2),
}
PRESETS["paper"] = PRESETS["cheetah_vel"]


class PEARL(pearl_sac.ContextualSAC, Algorithm):
    name = "pearl"
    Config = Config
    curve_x_label = "trajectories of context"

    def setup(self) -> None:
        cfg = self.config
        self.family = family = with_episode_length(self.family, cfg.episode_length)
        self.horizon = horizon = family.episode_length
        for name in ("num_initial_steps", "num_steps_prior", "num_steps_posterior", "num_extra_rl_steps_posterior"):
            if getattr(cfg, name) % horizon:
                raise ValueError(f"config field {name!r} ({getattr(cfg, name)}) must be a multiple of the episode "
                                 f"length {horizon}: z is resampled once per episode-length chunk")
        self.setup_networks(family.observation_size, family.action_size)
        self.train_tasks = family.task_set("train", cfg.num_train_tasks)
        self.replay = replay.make_replay_buffer(cfg.buffer_size, num_tasks=cfg.num_train_tasks)
        self.encoder_capacity = max(cfg.num_initial_steps, cfg.num_steps_prior + cfg.num_steps_posterior)
        self.encoder_buffer = replay.make_replay_buffer(self.encoder_capacity, num_tasks=cfg.num_train_tasks)
        self.to_env = make_to_env(family)
        self.collector = Collector(family, cfg.num_tasks_sample)
        self.initial_collector = Collector(family, cfg.num_train_tasks)
        self._jit_init = jax.jit(self._init)

    # -- state -----------------------------------------------------------------------------------

    def example_transition(self) -> Transition:
        dtype = float_dtype()
        obs, zero = jnp.zeros((self.family.observation_size,), dtype), jnp.zeros((), dtype)
        return Transition(obs, jnp.zeros((self.family.action_size,), dtype), zero, obs, zero, zero,
                          {"sparse_reward": zero})

    def init(self, key: jax.Array) -> TrainState:
        """Fresh networks and optimisers; both buffers hold num_initial_steps per training task (jitted)."""
        return self._jit_init(key)

    def _init(self, key: jax.Array) -> TrainState:
        cfg = self.config
        network_key, collect_key, rng = jax.random.split(key, 3)
        params, opt_state, target = self.init_networks(network_key)
        # Algorithm 1's first pass (oyster's it_ == 0): num_initial_steps per training task with z ~ N(0, I).
        phases = ((cfg.num_initial_steps // self.horizon, False, True),)
        transitions, encoder_items, episodes = self.collect(params, self.train_tasks, self.initial_collector,
                                                            phases, collect_key)
        example = self.example_transition()
        buffers = {"replay": self.replay.add(self.replay.init(example), transitions),
                   "encoder": self.encoder_buffer.add(self.encoder_buffer.init(example), encoder_items)}
        extras = {"target": target, "buffers": buffers,
                  "env_steps": jnp.asarray(cfg.num_train_tasks * cfg.num_initial_steps, jnp.int32),
                  "last_return": episodes.mean_return(0.0).astype(float_dtype())}
        return new_train_state(params, opt_state, rng, extras)

    # -- acting and collecting -------------------------------------------------------------------

    def actor(self, actor_params: Any, z: jax.Array, deterministic: bool = False):
        """The collector's actor: a ~ π(·| s ⧺ z) per environment (``z`` [E, latent])."""

        def act(actor_state, obs, key):
            dist = self.policy.apply(actor_params, jnp.concatenate([obs, z.astype(obs.dtype)], axis=-1))
            return (dist.mode() if deterministic else dist.sample_with_log_prob(key)[0]), actor_state, {}

        return act

    def context(self, transitions: Transition) -> jax.Array:
        reward = transitions.extras["sparse_reward"] if self.config.context_reward == "sparse" else transitions.reward
        return pearl_context.context_features(transitions.obs, transitions.action, reward, transitions.next_obs,
                                              self.config.use_next_obs_in_context)

    def collect(self, params: Any, tasks: Any, collector: Collector, phases: tuple, key: jax.Array):
        """Phases ``(chunks, posterior, to_encoder)`` of episode-length chunks on ``tasks`` (one environment each).

        A chunk starts fresh episodes with z ~ N(0, I), or, in a posterior phase after its first chunk (oyster's
        ``clear_z`` starts every phase at the prior), z ~ q(z | c) with c drawn from the encoder data collected
        so far. The chunks of every phase are one ``lax.scan`` (one body to compile), driven by per-chunk flags.
        Returns (every transition [E, n], the encoder's transitions [E, n_enc], episode stats [chunks, T, E]).
        """
        cfg, horizon = self.config, self.horizon
        num_envs = collector.num_envs
        posterior = [p and i > 0 for chunks, p, _ in phases for i in range(chunks)]
        to_encoder = [e for chunks, _, e in phases for _ in range(chunks)]
        example = self.example_transition()
        encoder_data = jax.tree.map(lambda x: jnp.zeros((num_envs, sum(to_encoder) * horizon, *x.shape), x.dtype),
                                    example)

        def chunk(carry, inputs):
            encoder_data, filled = carry
            chunk_key, use_posterior, store = inputs
            z_key, context_key, reset_key, step_key = jax.random.split(chunk_key, 4)
            z = jax.random.normal(z_key, (num_envs, cfg.latent_size), float_dtype())
            if any(posterior):
                at = jax.random.randint(context_key, (num_envs, cfg.embedding_batch_size), 0, jnp.maximum(filled, 1))
                context = jax.tree.map(lambda x: jax.vmap(lambda rows, i: rows[i])(x, at), encoder_data)
                q = self.encoder.posterior(params["encoder"], self.context(context))
                z = jnp.where(use_posterior, q.sample(z_key), z)
            state = collector.init(reset_key, tasks)
            _, transitions, episodes = collector.collect(state, self.actor(params["actor"], z), step_key, horizon,
                                                         self.to_env, info_keys=("sparse_reward",))
            transitions = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1).astype(float_dtype()), transitions)
            if any(to_encoder):
                written = jax.tree.map(lambda buf, x: jax.lax.dynamic_update_slice_in_dim(buf, x, filled, 1),
                                       encoder_data, transitions)
                encoder_data = jax.tree.map(lambda new, old: jnp.where(store, new, old), written, encoder_data)
                filled = filled + store.astype(jnp.int32) * horizon
            return (encoder_data, filled), (transitions, episodes)

        (encoder_data, _), (transitions, episodes) = jax.lax.scan(
            chunk, (encoder_data, jnp.zeros((), jnp.int32)),
            (jax.random.split(key, len(posterior)), jnp.asarray(posterior), jnp.asarray(to_encoder)))
        transitions = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1).reshape(num_envs, -1, *x.shape[3:]), transitions)
        return transitions, encoder_data, episodes

    # -- one meta-iteration ----------------------------------------------------------------------

    def _train_step(self, ts: TrainState):
        cfg = self.config
        ts, (task_key, collect_key, train_key) = split_rng(ts, 3)
        buffers = ts.extras["buffers"]
        # Data collection for num_tasks_sample tasks drawn with replacement (vmapped); E_i is cleared first. The
        # stores run in order, so a task drawn twice keeps its last collection in E_i, as in oyster's loop.
        indices = jax.random.randint(task_key, (cfg.num_tasks_sample,), 0, cfg.num_train_tasks)
        tasks = jax.tree.map(lambda x: x[indices], self.train_tasks)
        phases = ((cfg.num_steps_prior // self.horizon, False, True),
                  (cfg.num_steps_posterior // self.horizon, True, True),
                  (cfg.num_extra_rl_steps_posterior // self.horizon, True, False))
        transitions, encoder_items, episodes = self.collect(ts.params, tasks, self.collector, phases, collect_key)

        def store(buffers, item):
            task, rl, enc = item
            return {"replay": replay.add_to_task(self.replay, buffers["replay"], task, rl),
                    "encoder": replay.add_to_task(self.encoder_buffer, buffers["encoder"], task, enc, clear=True)}, ()

        buffers, _ = jax.lax.scan(store, buffers, (indices, transitions, encoder_items))

        def train(carry, step_key):
            params, opt_state, target = carry
            task_key, context_key, batch_key, step_key = jax.random.split(step_key, 4)
            meta_batch = jax.random.randint(task_key, (cfg.meta_batch,), 0, cfg.num_train_tasks)
            context = self.context(replay.sample_tasks(self.encoder_buffer, buffers["encoder"], meta_batch,
                                                       context_key, cfg.embedding_batch_size))
            batch = replay.sample_tasks(self.replay, buffers["replay"], meta_batch, batch_key, cfg.batch_size)
            params, opt_state, target, info = self.gradient_step(params, opt_state, target, context, batch, step_key)
            return (params, opt_state, target), info

        (params, opt_state, target), infos = jax.lax.scan(
            train, (ts.params, ts.opt_state, ts.extras["target"]),
            jax.random.split(train_key, cfg.num_train_steps_per_itr))
        nonfinite = ts.nonfinite_updates + jnp.sum(infos.pop("nonfinite")).astype(jnp.int32)
        env_steps = ts.extras["env_steps"] + transitions.reward.size
        last_return = episodes.mean_return(ts.extras["last_return"]).astype(float_dtype())
        ts = ts.replace(params=params, opt_state=opt_state, step=ts.step + 1, nonfinite_updates=nonfinite,
                        extras={"target": target, "buffers": buffers, "env_steps": env_steps,
                                "last_return": last_return})
        metrics = {
            **{k: jnp.mean(v).astype(jnp.float32) for k, v in infos.items()},
            "train/return": last_return.astype(jnp.float32),
            "train/buffer_size": jnp.mean(self.replay.size(buffers["replay"])).astype(jnp.float32),
            "train/nonfinite_updates": nonfinite.astype(jnp.float32),
            "time/env_steps": env_steps.astype(jnp.float32),
            "time/gradient_steps": (ts.step * cfg.num_train_steps_per_itr).astype(jnp.float32),
        }
        return ts, metrics

    # -- meta-test (Algorithm 2) -----------------------------------------------------------------

    def trajectory(self, actor_params: Any, task: Any, z: jax.Array, key: jax.Array):
        """One episode of at most ``horizon`` steps with a fixed z (frozen after it ends): (transitions [T],
        alive [T], return of ``eval_reward``)."""
        cfg = self.config
        reset_key, act_key = jax.random.split(key)
        state = self.family.reset(reset_key, task)
        act = self.actor(actor_params, z[None], cfg.eval_deterministic)

        def step(carry, step_key):
            state, alive = carry
            action = act((), state.obs[None], step_key)[0][0]
            stepped = self.family.step(state, self.to_env(action))
            truncation = stepped.info["truncation"]
            extras = {"sparse_reward": stepped.info["sparse_reward"]}
            if "position" in stepped.info:  # 2-D families: what the posterior-sampling figure draws
                extras.update(position=state.info["position"], next_position=stepped.info["position"])
            if "qpos" in stepped.info:  # envs.recording.RecordQpos: the physics state, for videos
                extras["qpos"] = stepped.info["qpos"]
            transition = Transition(state.obs, action, stepped.reward, stepped.obs,
                                    stepped.done * (1.0 - truncation), truncation, extras)
            state = jax.tree.map(lambda new, old: jnp.where(alive > 0, new, old), stepped, state)
            return (state, alive * (1.0 - stepped.done)), (transition, alive)

        alive = jnp.ones((), state.reward.dtype)
        _, (transitions, alive) = jax.lax.scan(step, (state, alive), jax.random.split(act_key, self.horizon))
        reward = transitions.extras["sparse_reward"] if cfg.eval_reward == "sparse" else transitions.reward
        return transitions, alive, jnp.sum(alive * reward)

    def meta_test(self, params: Any, tasks: Any, key: jax.Array):
        """Algorithm 2 on every task (vmapped): returns [N, K + 1], transitions [N, K + 1, T] and alive masks."""
        cfg = self.config
        num_trajectories = cfg.eval_adaptation_steps + 1
        num = jax.tree.leaves(tasks)[0].shape[0]
        features = pearl_context.context_size(self.family.observation_size, self.family.action_size,
                                              cfg.use_next_obs_in_context)

        def one_task(task, task_key):
            def body(carry, inputs):
                context, mask = carry
                k, trajectory_key = inputs
                z_key, rollout_key = jax.random.split(trajectory_key)
                posterior = self.encoder.posterior(params["encoder"], context, mask)
                prior_z = jax.random.normal(z_key, (cfg.latent_size,), float_dtype())
                z = jnp.where(k < cfg.num_exp_traj_eval, prior_z, posterior.sample(z_key))
                transitions, alive, total = self.trajectory(params["actor"], task, z, rollout_key)
                context = jax.lax.dynamic_update_slice_in_dim(context, self.context(transitions), k * self.horizon, 0)
                mask = jax.lax.dynamic_update_slice_in_dim(mask, alive, k * self.horizon, 0)
                return (context, mask), (total, transitions, alive)

            dtype = float_dtype()
            empty = (jnp.zeros((num_trajectories * self.horizon, features), dtype),
                     jnp.zeros((num_trajectories * self.horizon,), dtype))
            _, outputs = jax.lax.scan(body, empty, (jnp.arange(num_trajectories),
                                                    jax.random.split(task_key, num_trajectories)))
            return outputs

        return jax.vmap(one_task)(tasks, jax.random.split(key, num))

    def _evaluate(self, ts: TrainState, tasks: Any, key: jax.Array) -> AdaptationCurve:
        """Return of trajectory k = 0 … eval_adaptation_steps given the k trajectories of context before it."""
        returns, _, _ = self.meta_test(ts.params, tasks, key)
        return AdaptationCurve(returns)

    def _record_stages(self, ts: TrainState, tasks: Any, key: jax.Array):
        """Videos: stage k is trajectory k + 1 of Algorithm 2, given the k trajectories of context before it."""
        returns, transitions, _ = self.meta_test(ts.params, tasks, key)
        return returns, transitions.extras["qpos"]

    def stage_labels(self) -> list[str]:
        cfg = self.config
        return [f"trajectory {k + 1} ({'z ~ prior' if k < cfg.num_exp_traj_eval else f'{k} of context'})"
                for k in range(cfg.eval_adaptation_steps + 1)]
