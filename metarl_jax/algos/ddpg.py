"""DDPG (Lillicrap et al. 2016, Algorithm 1) with the settings Xu et al. (2018) used.

    Initialise critic Q(s, a | θ^Q), actor μ(s | θ^μ), targets θ^Q̄ ← θ^Q, θ^μ̄ ← θ^μ, replay buffer R
    for each cycle (``epoch_cycles`` per iteration):
        for t = 1 .. rollout_steps:                            (``num_envs`` environments in parallel)
            a_t = clip(μ(s_t) + N_t, −1, 1)                   (Gaussian or Ornstein-Uhlenbeck noise N)
            store (s_t, a_t, r_t, s_{t+1}, termination, truncation) in R   (the environment resets itself)
        for each of train_steps:
            sample a minibatch of N transitions from R
            y_i = r_i + γ (1 − termination_i) Q̄(s′_i, μ̄(s′_i))        (truncation still bootstraps)
            critic: minimise (1/N) Σ (y_i − Q(s_i, a_i))² + λ ½ ‖W_hidden‖²
            actor:  ascend (1/N) Σ Q(s_i, μ(s_i))   (∇_a Q ∇_θ μ, both gradients at the same parameters)
            targets: θ̄ ← (1 − τ) θ̄ + τ θ

Settings (Xu et al. Sec. 5.1, OpenAI baselines' DDPG that they build on): actor and critic MLP
64-64 ReLU with layer norm, the action joining the critic after its first layer; Adam actor 1e-4,
critic 1e-3 with L2 1e-2; τ 0.01, batch 64, γ 0.99; observations normalised by running moments
and clipped to ±5; 20 cycles × (200 rollout steps, 50 train steps) per epoch (Table 1).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from metarl_jax import normalization
from metarl_jax.algos import offpolicy
from metarl_jax.algos.base import Algorithm, TrainState, new_train_state, split_rng
from metarl_jax.algos.config import non_negative, one_of, positive
from metarl_jax.collector import Transition
from metarl_jax.networks import float_dtype, make_deterministic_actor, make_q_function

NOISE_TYPES = ("gaussian", "ou", "none")


@dataclasses.dataclass(frozen=True)
class Config(offpolicy.OffPolicyConfig):
    """Xu et al.'s DDPG (OpenAI baselines' defaults where the paper is silent)."""

    actor_lr: float = positive(1e-4)
    critic_lr: float = positive(1e-3)
    critic_l2: float = non_negative(1e-2)
    critic_action_layer: int = non_negative(1)
    # Exploration noise, in the [−1, 1] action space: N(0, σ²) or OU(θ, σ, dt) (baselines' "normal_0.2"/"ou_0.2").
    action_noise: str = one_of("gaussian", NOISE_TYPES)
    noise_std: float = non_negative(0.2)
    ou_theta: float = positive(0.15)
    ou_dt: float = positive(1e-2)


PRESETS: dict[str, Config] = {
    "paper": Config(),
    **offpolicy.control_suite_presets(Config()),
    "smoke": Config(hidden_sizes=(16, 16), epoch_cycles=2, rollout_steps=20, train_steps=4, batch_size=16,
                    buffer_size=1000, eval_num_tasks=2),
}


class Student(NamedTuple):
    """DDPG's learner state: online parameters, their optimiser states, target parameters."""

    params: Any  # {"actor", "critic"}
    opt_state: Any  # {"actor", "critic"}
    target: Any  # {"actor", "critic"}


class DDPGUpdater:
    """DDPG's networks and gradient step as pure functions; used by ``DDPG`` and Xu et al.'s teacher."""

    def __init__(self, family: Any, config: Config, normalize):
        self.config = config
        self.normalize = normalize
        obs_size, action_size = family.observation_size, family.action_size
        self.actor = make_deterministic_actor(obs_size, action_size, config.hidden_sizes, config.activation,
                                              config.layer_norm)
        self.critic = make_q_function(obs_size, action_size, config.hidden_sizes, config.activation,
                                      config.layer_norm, num_critics=1, action_layer=config.critic_action_layer)
        self.actor_tx = optax.adam(config.actor_lr)
        self.critic_tx = optax.adam(config.critic_lr)

    def init(self, key: jax.Array) -> Student:
        actor_key, critic_key = jax.random.split(key)
        params = {"actor": self.actor.init(actor_key), "critic": self.critic.init(critic_key)}
        opt_state = {"actor": self.actor_tx.init(params["actor"]), "critic": self.critic_tx.init(params["critic"])}
        return Student(params, opt_state, target=params)

    def q(self, critic_params: Any, obs: jax.Array, action: jax.Array) -> jax.Array:
        return self.critic.apply(critic_params, obs, action)[..., 0]

    def critic_target(self, target: Any, batch: Transition, stats: normalization.RunningStatistics) -> jax.Array:
        """y = r + γ (1 − termination) Q̄(s′, μ̄(s′)): a time-limit truncation bootstraps, a termination does not."""
        next_obs = self.normalize(stats, batch.next_obs)
        next_q = self.q(target["critic"], next_obs, self.actor.apply(target["actor"], next_obs))
        return jax.lax.stop_gradient(batch.reward + self.config.discount * (1.0 - batch.termination) * next_q)

    def critic_loss(self, critic_params: Any, obs: jax.Array, batch: Transition, y: jax.Array):
        q = self.q(critic_params, obs, batch.action)
        td_loss = jnp.mean((q - y) ** 2)
        return td_loss + self.config.critic_l2 * offpolicy.hidden_kernel_l2(critic_params), jnp.mean(q)

    def actor_loss(self, actor_params: Any, critic_params: Any, obs: jax.Array):
        return -jnp.mean(self.q(critic_params, obs, self.actor.apply(actor_params, obs))), ()

    def gradient_step(self, student: Student, batch: Transition, stats: normalization.RunningStatistics):
        """One DDPG update of actor, critic (gradients at the same parameters) and targets: (student, info)."""
        params, opt_state = student.params, student.opt_state
        obs = self.normalize(stats, batch.obs)
        y = self.critic_target(student.target, batch, stats)
        critic, critic_opt, critic_loss, q_mean, critic_norm, critic_ok = offpolicy.adam_step(
            self.critic_tx, self.critic_loss, params["critic"], opt_state["critic"], obs, batch, y)
        actor, actor_opt, actor_loss, _, actor_norm, actor_ok = offpolicy.adam_step(
            self.actor_tx, self.actor_loss, params["actor"], opt_state["actor"], params["critic"], obs)
        new_params = {"actor": actor, "critic": critic}
        student = Student(new_params, {"actor": actor_opt, "critic": critic_opt},
                          offpolicy.soft_update(student.target, new_params, self.config.tau))
        info = {"train/critic_loss": critic_loss, "train/actor_loss": actor_loss, "train/q_mean": q_mean,
                "train/critic_grad_norm": critic_norm, "train/actor_grad_norm": actor_norm,
                "nonfinite": (2 - critic_ok.astype(jnp.int32) - actor_ok.astype(jnp.int32))}
        return student, info

    def train(self, student: Student, sample, stats: normalization.RunningStatistics, key: jax.Array,
              num_steps: int):
        """``num_steps`` gradient steps on minibatches ``sample(key)``: (student, info averaged over steps)."""

        def body(student, step_key):
            return self.gradient_step(student, sample(step_key), stats)

        student, infos = jax.lax.scan(body, student, jax.random.split(key, num_steps))
        nonfinite = jnp.sum(infos.pop("nonfinite"))
        return student, {**jax.tree.map(jnp.mean, infos), "nonfinite": nonfinite}

    def policy(self, actor_params: Any, stats: normalization.RunningStatistics):
        """The deterministic μ(s) on raw observations."""
        return lambda obs: self.actor.apply(actor_params, self.normalize(stats, obs))


class DDPG(offpolicy.OffPolicyBase, Algorithm):
    name = "ddpg"
    Config = Config

    def setup(self) -> None:
        self.setup_experience()
        self.ddpg = DDPGUpdater(self.family, self.config, self.normalize)

    def init(self, key: jax.Array) -> TrainState:
        net_key, env_key, rng = jax.random.split(key, 3)
        student = self.ddpg.init(net_key)
        experience = self.init_experience(env_key, self.initial_noise())
        return new_train_state(student.params, student.opt_state, rng,
                               extras={"target": student.target, "experience": experience})

    # -- exploration ---------------------------------------------------------------------------

    def initial_noise(self) -> jax.Array:
        """Per-environment OU state x (zeros; unused by Gaussian noise)."""
        return jnp.zeros((self.config.num_envs, self.family.action_size), float_dtype())

    def exploration_actor(self, actor_params: Any, stats: normalization.RunningStatistics):
        """a = clip(μ(s) + N, −1, 1); OU: x ← x − θ x dt + σ √dt ε, N = x (baselines' OrnsteinUhlenbeckActionNoise)."""
        cfg = self.config
        mu = self.ddpg.policy(actor_params, stats)

        def act(noise, obs, key):
            eps = jax.random.normal(key, noise.shape, noise.dtype)
            if cfg.action_noise == "ou":
                noise = noise - cfg.ou_theta * noise * cfg.ou_dt + cfg.noise_std * jnp.sqrt(cfg.ou_dt) * eps
                perturbation = noise
            elif cfg.action_noise == "gaussian":
                perturbation = cfg.noise_std * eps
            else:
                perturbation = jnp.zeros_like(eps)
            return jnp.clip(mu(obs) + perturbation, -1.0, 1.0), noise, {}

        return act

    # -- one epoch -----------------------------------------------------------------------------

    def _train_step(self, ts: TrainState):
        cfg = self.config
        ts, (key,) = split_rng(ts, 1)

        def cycle(carry, cycle_key):
            student, experience = carry
            collect_key, train_key = jax.random.split(cycle_key)
            act = self.exploration_actor(student.params["actor"], experience.obs_stats)
            collector, transitions, episodes = self.collector.collect(
                experience.collector, act, collect_key, self.steps_per_env, self.to_env)
            experience = self.store(experience._replace(collector=collector), transitions, episodes)
            student, info = self.ddpg.train(student, lambda k: self.sample_batch(experience, k),
                                            experience.obs_stats, train_key, cfg.train_steps)
            return (student, experience), {**info, **self.episode_info(episodes)}

        student = Student(ts.params, ts.opt_state, ts.extras["target"])
        (student, experience), infos = jax.lax.scan(cycle, (student, ts.extras["experience"]),
                                                    jax.random.split(key, cfg.epoch_cycles))
        ts = ts.replace(params=student.params, opt_state=student.opt_state, step=ts.step + 1,
                        nonfinite_updates=ts.nonfinite_updates + jnp.sum(infos.pop("nonfinite")).astype(jnp.int32),
                        extras={"target": student.target, "experience": experience})
        return ts, self.epoch_metrics(ts, experience, infos)

    def epoch_metrics(self, ts: TrainState, experience, infos: dict) -> dict[str, jax.Array]:
        cfg = self.config
        experience_metrics = self.experience_metrics(experience, infos)
        return {
            **{k: jnp.mean(v).astype(jnp.float32) for k, v in infos.items()},
            **experience_metrics,
            "train/nonfinite_updates": ts.nonfinite_updates.astype(jnp.float32),
            "time/gradient_steps": (ts.step * cfg.epoch_cycles * cfg.train_steps).astype(jnp.float32),
        }

    def eval_policy(self, ts: TrainState):
        mu = self.ddpg.policy(ts.params["actor"], ts.extras["experience"].obs_stats)
        return lambda obs, _: mu(obs)
