"""Learning to explore with meta-policy gradient (Xu et al. 2018, Algorithm 1): a teacher π_e for a DDPG student π.

    1: initialise π_e and π
    2: draw D1 from π to estimate the reward R̂π of π                      (done at line 7, see below)
    3: initialise the replay buffer B = D1
    4: for each iteration (``epoch_cycles`` per ``train_step``):
    5:     generate D0 by executing the teacher π_e                       (``exploration_steps``)
    6:     exercise move: π′ ← DDPG(π, D0), on D0 alone                   (``exercise_steps``)
    7:     generate D1 from π′, estimate R̂π′; meta reward R̂(D0) = R̂π′ − R̂π      (``rollout_steps``)
    8:     θ_πe ← θ_πe + η R̂(D0) Σ_t ∇ log π_e(a_t|s_t)                   (eq. 5; Adam, ``teacher_updates``)
    9:     B ← B ∪ D0 ∪ D1
    10:    π ← DDPG(π, B) and compute the new R̂π                          (``train_steps``; ``rollout_steps``)

Choices the paper leaves open, as config fields:

* ``student_update_from``: line 10 reads π ← DDPG(π, B), so by default ("pi") the exercise
  move only *measures* D0 and is then discarded; the meta reward is the improvement D0 alone
  buys the current student, and D0 reaches the student once, through B. "pi_prime" keeps the
  exercise updates instead (the student then also trains on D0 twice).
* R̂ is the mean undiscounted return of the episodes the deterministic student finishes in
  ``rollout_steps`` steps from fresh resets (the running return if none finishes). R̂π (lines
  2 and 10) is measured in the same vmapped rollout as R̂π′ (line 7), from the same start
  states: the meta reward R̂π′ − R̂π is a paired difference, and one compiled rollout serves
  lines 2, 7 and 10. This moves line 10's measurement of the new π to the next iteration's
  line 7, before π changes again, so every R̂π is still that of the student being improved.
  The rollouts of π go into B at line 9, as line 3 puts line 2's (``store_student_rollouts``).
* ``teacher_copies`` > 1 runs lines 5-7 for several copies in parallel (vmapped), each with its
  own D0, exercise move and meta reward; ``teacher_baseline`` subtracts their mean meta reward
  in eq. (5). The paper's preset is one copy without a baseline.

Teacher forms (Sec. 4): "independent" (ii) π_e = N(f(s), σ(s)²) with 64-64 mean and log-std MLPs
(layer norm, as the paper's two policy networks), the paper's choice for Table 2; "variance"
(i) π_e = N(μ(s; θ_π), σ²), only log σ learned, the mean following the student's actor.
Teacher actions are sampled in the [−1, 1] action space and clipped for the environment;
eq. (5) scores the unclipped sample. Every environment step (D0, D1 and the student's rollouts)
is counted in ``time/env_steps``.

Loop sizes (Sec. 5.1): 20 cycles, 200 rollout / evaluation steps, 50 train steps, 100 exploration
steps, 1 teacher update; Half-Cheetah and Inverted Pendulum 1000 exploration, 2000 evaluation,
500 train and 100 teacher steps. Adam: actor 1e-4, critic 1e-3, teacher 1e-4.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import optax

from metarl_jax.algos import ddpg, offpolicy
from metarl_jax.algos.base import Algorithm, TrainState, new_train_state, split_rng
from metarl_jax.algos.config import one_of, positive
from metarl_jax.collector import Collector, Transition
from metarl_jax.networks import DiagGaussian, float_dtype, make_adaptive_std_gaussian_policy

TEACHER_FORMS = ("independent", "variance")


@dataclasses.dataclass(frozen=True)
class Config(ddpg.Config):
    """Xu et al. (2018) Sec. 5.1; the student is ``ddpg.Config`` (its action noise is unused: the teacher explores)."""

    teacher: str = one_of("independent", TEACHER_FORMS)
    teacher_lr: float = positive(1e-4)
    teacher_hidden_sizes: tuple[int, ...] = positive((64, 64))
    # Initial σ of the teacher: None = 1 for "independent" (rllab's Gaussian MLP), `noise_std` for "variance".
    teacher_init_std: float | None = positive(None)
    exploration_steps: int = positive(100)
    exercise_steps: int = positive(50)
    teacher_updates: int = positive(1)
    teacher_copies: int = positive(1)
    teacher_baseline: bool = False
    student_update_from: str = one_of("pi", ("pi", "pi_prime"))
    store_student_rollouts: bool = True
    action_noise: str = one_of("none", ddpg.NOISE_TYPES)

    def validate(self) -> None:
        super().validate()
        if self.exploration_steps % self.num_envs:
            raise ValueError(f"config field 'exploration_steps' ({self.exploration_steps}) must be a multiple of "
                             f"'num_envs' ({self.num_envs})")
        if self.student_update_from == "pi_prime" and self.teacher_copies != 1:
            raise ValueError("config field 'student_update_from' = 'pi_prime' needs 'teacher_copies' = 1 "
                             f"(got {self.teacher_copies}): which copy's π′ would the student keep?")
        if self.warmup_steps:
            raise ValueError("config field 'warmup_steps' must be 0 for teacher_ddpg: B starts from D1 (line 3)")


_LONG_TASKS = dict(exploration_steps=1000, rollout_steps=2000, train_steps=500, exercise_steps=500, teacher_updates=100)

PRESETS: dict[str, Config] = {
    "paper": Config(),
    **offpolicy.control_suite_presets(Config(), half_cheetah=_LONG_TASKS, inverted_pendulum=_LONG_TASKS),
    "variance": Config(teacher="variance"),
    "smoke": Config(hidden_sizes=(16, 16), teacher_hidden_sizes=(16, 16), epoch_cycles=2, rollout_steps=20,
                    exploration_steps=10, train_steps=4, exercise_steps=2, batch_size=16, buffer_size=1000,
                    eval_num_tasks=2),
}


class TeacherDDPG(offpolicy.OffPolicyBase, Algorithm):
    name = "teacher_ddpg"
    Config = Config

    def setup(self) -> None:
        cfg = self.config
        # The continuing collector runs the teacher's environments (all copies); the student's rollouts
        # start from fresh resets on their own collector.
        self.setup_experience(num_envs=cfg.num_envs * cfg.teacher_copies)
        self.student_collector = Collector(self.family, cfg.num_envs)
        self.exploration_steps_per_env = cfg.exploration_steps // cfg.num_envs
        self.ddpg = ddpg.DDPGUpdater(self.family, cfg, self.normalize)
        init_std = cfg.teacher_init_std if cfg.teacher_init_std is not None else (
            1.0 if cfg.teacher == "independent" else max(cfg.noise_std, 1e-3))
        self.teacher_init_log_std = math.log(init_std)
        if cfg.teacher == "independent":
            self.teacher_net = make_adaptive_std_gaussian_policy(
                self.family.observation_size, self.family.action_size, cfg.teacher_hidden_sizes, cfg.activation,
                cfg.layer_norm, self.teacher_init_log_std)
        self.teacher_tx = optax.adam(cfg.teacher_lr)

    # -- the teacher π_e -----------------------------------------------------------------------

    def init_teacher(self, key: jax.Array) -> Any:
        if self.config.teacher == "independent":
            return self.teacher_net.init(key)
        return {"log_std": jnp.full((self.family.action_size,), self.teacher_init_log_std, float_dtype())}

    def teacher_dist(self, teacher: Any, actor: Any, obs: jax.Array) -> DiagGaussian:
        """π_e(·|s) on normalised observations: (ii) N(f(s), σ(s)²), or (i) N(μ(s; θ_π), σ²) with μ held fixed."""
        if self.config.teacher == "independent":
            return self.teacher_net.apply(teacher, obs)
        mean = jax.lax.stop_gradient(self.ddpg.actor.apply(actor, obs))
        return DiagGaussian(mean, jnp.broadcast_to(teacher["log_std"], mean.shape))

    def teacher_actor(self, teacher: Any, actor: Any, stats):
        def act(actor_state, obs, key):
            raw = self.teacher_dist(teacher, actor, self.normalize(stats, obs)).sample(key)
            return jnp.clip(raw, -1.0, 1.0), actor_state, {"raw_action": raw}

        return act

    def teacher_loss(self, teacher: Any, actor: Any, d0: Transition, advantages: jax.Array, stats):
        """−mean_k Â_k Σ_t log π_e(a^k_t|s^k_t): its negative gradient is eq. (5)'s ascent direction."""
        log_probs = self.teacher_dist(teacher, actor, self.normalize(stats, d0.obs)).log_prob(d0.extras["raw_action"])
        per_copy = jnp.sum(log_probs, axis=(1, 2))  # [copies]: Σ over time and environments
        return -jnp.mean(advantages * per_copy), ()

    # -- the student π -------------------------------------------------------------------------

    def student_rollout(self, actor: Any, stats, key: jax.Array):
        """``rollout_steps`` steps of the deterministic μ from fresh resets: (transitions, episodes, R̂)."""
        init_key, collect_key = jax.random.split(key)
        tasks = self.family.sample_tasks(init_key, self.config.num_envs)
        state = self.student_collector.init(init_key, tasks)
        mu = self.ddpg.policy(actor, stats)
        state, transitions, episodes = self.student_collector.collect(
            state, lambda s, obs, _: (mu(obs), s, {}), collect_key, self.steps_per_env, self.to_env)
        return transitions, episodes, episodes.mean_return(default=jnp.mean(state.episode_return))

    def init(self, key: jax.Array) -> TrainState:
        net_key, teacher_key, env_key, rng = jax.random.split(key, 4)
        student = self.ddpg.init(net_key)
        teacher = self.init_teacher(teacher_key)
        params = {**student.params, "teacher": teacher}
        opt_state = {**student.opt_state, "teacher": self.teacher_tx.init(teacher)}
        return new_train_state(params, opt_state, rng,
                               extras={"target": student.target, "experience": self.init_experience(env_key),
                                       "student_return": jnp.zeros((), float_dtype())})

    # -- one iteration of Algorithm 1 ----------------------------------------------------------

    def iteration(self, carry, key: jax.Array):
        cfg = self.config
        student, teacher, teacher_opt, experience = carry
        d0_key, exercise_key, rollout_key, train_key = jax.random.split(key, 4)
        stats = experience.obs_stats
        # 5: D0 from the teacher, every copy's environments at once: [T, copies·E] -> [copies, T, E].
        collector, d0, d0_episodes = self.collector.collect(
            experience.collector, self.teacher_actor(teacher, student.params["actor"], stats), d0_key,
            self.exploration_steps_per_env, self.to_env)
        d0 = jax.tree.map(lambda x: jnp.moveaxis(x.reshape(x.shape[0], cfg.teacher_copies, cfg.num_envs,
                                                           *x.shape[2:]), 1, 0), d0)

        # 6: π′_k = DDPG(π, D0_k), minibatches drawn uniformly from D0_k alone.
        def exercise(d0_copy, copy_key):
            flat = jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), d0_copy._replace(extras={}))
            size = flat.reward.shape[0]

            def sample(k):
                return jax.tree.map(lambda x: x[jax.random.randint(k, (cfg.batch_size,), 0, size)], flat)

            return self.ddpg.train(student, sample, stats, copy_key, cfg.exercise_steps)[0]

        students_prime = jax.vmap(exercise)(d0, jax.random.split(exercise_key, cfg.teacher_copies))
        # 7 (and 2, 10): D1 from each π′_k and the student's own rollout of π, side by side from the same
        # fresh starts: R̂π′_k and R̂π, and the meta reward R̂(D0_k) = R̂π′_k − R̂π as a paired difference.
        actors = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), student.params["actor"],
                              students_prime.params["actor"])
        rollouts, _, returns = jax.vmap(self.student_rollout, in_axes=(0, None, None))(actors, stats, rollout_key)
        student_return, prime_returns = returns[0], returns[1:]
        meta_rewards = prime_returns - student_return
        advantages = meta_rewards - (jnp.mean(meta_rewards) if cfg.teacher_baseline else 0.0)

        # 8: the teacher's meta-policy gradient step(s), eq. (5).
        def teacher_step(state, _):
            teacher, teacher_opt, _ = state
            teacher, teacher_opt, _, _, norm, ok = offpolicy.adam_step(
                self.teacher_tx, self.teacher_loss, teacher, teacher_opt, student.params["actor"], d0,
                jax.lax.stop_gradient(advantages), stats)
            return (teacher, teacher_opt, norm), 1 - ok.astype(jnp.int32)

        (teacher, teacher_opt, teacher_norm), teacher_skipped = jax.lax.scan(
            teacher_step, (teacher, teacher_opt, jnp.zeros((), float_dtype())), None, length=cfg.teacher_updates)

        # 9: B ← B ∪ D0 ∪ D1 (every copy's), and the student's rollout (as line 3 does with line 2's).
        merge = lambda x: x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])  # noqa: E731  [k, T, E] -> [k·T, E]
        experience = self.store(experience._replace(collector=collector), jax.tree.map(merge, d0))
        if cfg.store_student_rollouts:
            experience = self.store(experience, jax.tree.map(merge, rollouts))
        else:
            experience = self.store(experience, jax.tree.map(lambda x: merge(x[1:]), rollouts))
            experience = experience._replace(env_steps=experience.env_steps + rollouts.reward[0].size)
        experience = experience._replace(last_return=d0_episodes.mean_return(experience.last_return))

        # 10: π ← DDPG(π, B) (or from π′); its R̂π is measured at the next iteration's line 7.
        if cfg.student_update_from == "pi_prime":
            student = jax.tree.map(lambda x: x[0], students_prime)
        student, info = self.ddpg.train(student, lambda k: self.sample_batch(experience, k), experience.obs_stats,
                                        train_key, cfg.train_steps)
        teacher_std = jnp.exp(self.teacher_dist(teacher, student.params["actor"],
                                                self.normalize(stats, d0.obs)).log_std)
        info = {**info, "nonfinite": info["nonfinite"] + jnp.sum(teacher_skipped),
                "train/student_return": student_return, "train/meta_reward": jnp.mean(meta_rewards),
                "train/exercise_return": jnp.mean(prime_returns), "train/teacher_grad_norm": teacher_norm,
                "train/teacher_std": jnp.mean(teacher_std)}
        return (student, teacher, teacher_opt, experience), info

    def _train_step(self, ts: TrainState):
        cfg = self.config
        ts, (key,) = split_rng(ts, 1)
        params = dict(ts.params)
        opt_state = dict(ts.opt_state)
        teacher, teacher_opt = params.pop("teacher"), opt_state.pop("teacher")
        carry = (ddpg.Student(params, opt_state, ts.extras["target"]), teacher, teacher_opt, ts.extras["experience"])
        (student, teacher, teacher_opt, experience), infos = jax.lax.scan(
            self.iteration, carry, jax.random.split(key, cfg.epoch_cycles))
        student_return = infos["train/student_return"][-1]
        ts = ts.replace(params={**student.params, "teacher": teacher},
                        opt_state={**student.opt_state, "teacher": teacher_opt}, step=ts.step + 1,
                        nonfinite_updates=ts.nonfinite_updates + jnp.sum(infos.pop("nonfinite")).astype(jnp.int32),
                        extras={"target": student.target, "experience": experience, "student_return": student_return})
        metrics = {
            **{k: jnp.mean(v).astype(jnp.float32) for k, v in infos.items()},
            **self.experience_metrics(experience),
            "train/return": student_return.astype(jnp.float32),  # R̂π of the latest cycle's student
            "train/teacher_return": experience.last_return.astype(jnp.float32),
            "train/nonfinite_updates": ts.nonfinite_updates.astype(jnp.float32),
            "time/gradient_steps": (ts.step * cfg.epoch_cycles * (cfg.train_steps + cfg.teacher_copies
                                                                   * cfg.exercise_steps)).astype(jnp.float32),
        }
        return ts, metrics

    def eval_policy(self, ts: TrainState):
        mu = self.ddpg.policy(ts.params["actor"], ts.extras["experience"].obs_stats)
        return lambda obs, _: mu(obs)
