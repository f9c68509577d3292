"""The registered paper claims (``experiments.claims``), one entry per paper figure or table.

Each entry states, per scale, what runs and what was scaled down. ``smoke`` exercises the pipeline
in seconds (tests) on the cheapest family and says nothing about the paper; ``cpu`` is the cheapest
setting in which the paper's effect can show within about 30 minutes on 2 CPU cores; ``paper`` uses
the papers' settings (``../shared/reference/hyperparameters.md``), for a GPU.
"""

from __future__ import annotations

from experiments.claims import (
    Claim,
    Exceeds,
    FewerEnvSteps,
    Improves,
    Panel,
    Protocol,
    Run,
    Scaled,
    SmallerGap,
    register,
)

# Tiny runs for the smoke scale (pipeline only): 2-task meta-batches of 2 episodes on a short horizon.
SMOKE = ("hidden_sizes=8", "meta_batch_size=2", "episodes_per_task=2", "eval_num_tasks=2",
         "eval_episodes_per_task=2", "eval_adaptation_steps=1", "optimizer=vpg")
SMOKE_POINT = ("episode_length=5",)


# ---- MAESN (Gupta et al. 2018), Fig. 6: structured exploration adapts faster on sparse rewards ------

def _maesn_runs(env: str, num_steps: int, overrides: tuple[str, ...] = (), env_kwargs: tuple[str, ...] = (),
                preset: str | None = None, latent_overrides: tuple[str, ...] = (),
                maml_overrides: tuple[str, ...] = (), rl2_overrides: tuple[str, ...] | None = None) -> tuple[Run, ...]:
    """MAESN, MAML and LatentSpace with shared overrides (``latent_overrides``: the latent-space models'),
    and RL² with its own (``rl2_overrides``; None: no RL² run)."""
    runs = (
        Run("MAESN", "maesn", env, num_steps, preset, overrides + latent_overrides, env_kwargs),
        Run("MAML", "maml", env, num_steps, preset, overrides + maml_overrides, env_kwargs),
        Run("LatentSpace", "latent_space", env, num_steps, preset, overrides + latent_overrides, env_kwargs),
    )
    if rl2_overrides is not None:
        runs += (Run("RL2", "rl2", env, num_steps, preset, rl2_overrides, env_kwargs),)
    return runs


MAESN_STATISTICS = (Exceeds("MAESN", ("MAML",), what="sparse return"),
                    Exceeds("MAESN", ("LatentSpace",), what="sparse return"),
                    Exceeds("MAESN", ("RL2",), what="sparse return"))

# CPU scale: PEARL's sparse point robot geometry (goals on the upper unit semicircle, reward only within
# 0.2 of the goal, horizon 20, steps of at most 0.1): random actions reach a goal in 2 % of episodes, so
# adapting from the sparse reward needs exploration that covers the semicircle.
MAESN_CPU_ENV = ("episode_length=20", "max_action=0.1", "radius=1.0", "goal_radius=0.2")
MAESN_CPU = ("hidden_sizes=64,64", "meta_batch_size=10", "episodes_per_task=20", "eval_num_tasks=20",
             "eval_episodes_per_task=50", "eval_adaptation_steps=20",
             "eval_reward=sparse", "eval_schedule=halving")
# RL² with the same env steps per iteration (50 trials of 4 episodes = 10 tasks x 20 episodes), garage's
# settings otherwise; its meta-test is one trial of 4 episodes per goal, observing the sparse reward.
MAESN_CPU_RL2 = ("meta_batch_size=50", "minibatch_size=10", "eval_num_tasks=20", "eval_reward=sparse")

register(Claim(
    name="maesn_fig6",
    paper="MAESN (Gupta et al. 2018)",
    figure="Fig. 6",
    description="MAESN adapts faster than MAML and LatentSpace from sparse rewards on held-out goals",
    scales={
        "smoke": Scaled((Panel("point_semicircle (smoke)", _maesn_runs(
            "point_semicircle", 2, SMOKE + ("eval_reward=sparse",), SMOKE_POINT,
            latent_overrides=("num_train_tasks=4",), rl2_overrides=(
                "gru_size=8", "meta_batch_size=2", "ppo_epochs=1", "eval_num_tasks=2", "eval_reward=sparse")),
            MAESN_STATISTICS, Protocol(reward="sparse")),), seeds=2, notes="Pipeline check only."),
        "cpu": Scaled((Panel("point_semicircle, sparse reward", _maesn_runs(
            "point_semicircle", 200, MAESN_CPU, MAESN_CPU_ENV, latent_overrides=("num_train_tasks=40",),
            maml_overrides=("fast_lr=0.5",), rl2_overrides=MAESN_CPU_RL2),
            MAESN_STATISTICS, Protocol(reward="sparse")),),
            notes=("Scaled down from the paper's wheeled / ant / block-push robots (200-step episodes, "
                   "20 tasks x 50 episodes, 500 iterations, meta-test 30 goals x 100 iterations of 10 000 "
                   "steps) to the 2-D point on PEARL's sparse semicircle (20-step episodes, 10 tasks x 20 "
                   "episodes, 200 iterations, 40 training tasks; meta-test 20 goals x 20 iterations of 50 "
                   "episodes, step sizes halved every iteration as in the paper). Random actions reach a goal "
                   "region in 2 % of episodes there (a straight line in a random direction: 13 %), so the sparse "
                   "reward rewards exploration that covers the semicircle. RL² takes the same env steps per "
                   "iteration (50 trials of 4 episodes, garage's settings otherwise); its meta-test is one "
                   "trial of 4 episodes per goal, observing the sparse reward, so its step k is episode k + 1 "
                   "of the trial, not a gradient step.")),
        # make demo: the cpu panel without LatentSpace, 3 seeds, 150 iterations, 10 meta-test steps.
        "demo": Scaled((Panel("point_semicircle, sparse reward", _maesn_runs(
            "point_semicircle", 150, MAESN_CPU + ("eval_adaptation_steps=10",), MAESN_CPU_ENV,
            latent_overrides=("num_train_tasks=40",), maml_overrides=("fast_lr=0.5",))[:2],
            MAESN_STATISTICS[:1], Protocol(reward="sparse")),), seeds=3,
            notes="The cpu scale's panel, MAESN against MAML only, 3 seeds, 150 iterations, 10 meta-test steps."),
        "paper": Scaled(tuple(
            Panel(family, _maesn_runs(family, 500, preset=family, rl2_overrides=()), MAESN_STATISTICS,
                  Protocol(reward="sparse"))
            for family in ("wheeled", "ant_goal", "block_push")),
            notes="The paper's settings (maesn_suite presets; every method uses MAESN's batches and protocol)."),
    },
    figures=(("trajectories", ("MAESN", "MAML")), ("latents", ("MAESN",))),
))


# ---- MAML (Finn et al. 2017), ICML data: returns after 0-3 gradient steps on the locomotion tasks ---

MAML_ICML = {  # mean test return over 40 tasks after 0, 1, 2, 3 steps (hyperparameters.md)
    "cheetah_vel": (-129.5, -78.6, -66.6, -60.8),
    "cheetah_dir": (-50.7, 293.2, 313.5, 315.7),
    "ant_vel": (30.6, 96.7, 100.1, 101.4),
    "ant_dir": (8.7, 499.2, 500.7, 499.1),
}
MAML_STATISTICS = (Improves("MAML", step=1), Improves("MAML", step=-1))

register(Claim(
    name="maml_icml",
    paper="MAML (Finn et al. 2017)",
    figure="ICML data files (Fig. 5 locomotion)",
    description="MAML's meta-test return rises after 1-3 gradient steps on cheetah/ant velocity and direction",
    scales={
        "smoke": Scaled((Panel("point_corner (smoke)", (Run("MAML", "maml", "point_corner", 2, "smoke",
                                                            SMOKE, SMOKE_POINT),),
                               MAML_STATISTICS, Protocol(reward="dense")),), seeds=2, notes="Pipeline check only."),
        "cpu": Scaled((Panel("cheetah_vel", (Run("MAML", "maml", "cheetah_vel", 40, None, (
            "meta_batch_size=8", "episodes_per_task=5", "eval_num_tasks=10", "eval_episodes_per_task=5"),
            ("episode_length=100",)),), MAML_STATISTICS, Protocol(reward="dense"),
            paper={"MAML": MAML_ICML["cheetah_vel"]}, paper_steps=(0, 1, 2, 3)),),
            notes=("Cheetah velocity with 100-step episodes (paper: 200), 8 tasks x 5 episodes per "
                   "meta-batch (paper: 40 x 20), 40 iterations (paper: 800; 3.2 M env steps for the 5 seeds "
                   "against the paper's 256 M for one), meta-test on 10 tasks x 5 episodes (paper: 40 x 20). "
                   "MJX physics dominates on CPU (about 5 000 cheetah steps/s). Returns are per 100 steps, "
                   "so about half the paper's scale.")),
        "paper": Scaled(tuple(
            Panel(family, (Run("MAML", "maml", family, 800),), MAML_STATISTICS, Protocol(reward="dense"),
                  paper={"MAML": values}, paper_steps=(0, 1, 2, 3))
            for family, values in MAML_ICML.items()), notes="maml_rl's settings (MAML-TRPO, 40 x 20, 800 iterations)."),
    },
))


# ---- MAME (Gurumurthy et al. 2019), Fig. 3: sparse 2-D point navigation (ProMP's corner task) --------

def _mame_runs(num_steps: int, overrides: tuple[str, ...], env_kwargs: tuple[str, ...] = (),
               mame_overrides: tuple[str, ...] = ()) -> tuple[Run, ...]:
    sparse = ("train_reward=sparse", "eval_reward=sparse")
    return (
        Run("MAML-TRPO", "maml", "point_corner", num_steps, None, overrides + sparse + ("optimizer=trpo",),
            env_kwargs),
        Run("MAML-VPG", "maml", "point_corner", num_steps, None, overrides + sparse + ("optimizer=vpg",),
            env_kwargs),
        Run("E-MAML", "emaml", "point_corner", num_steps, None, overrides + sparse, env_kwargs),
        Run("ProMP", "promp", "point_corner", num_steps, None, overrides + sparse, env_kwargs),
        Run("MAME", "mame", "point_corner", num_steps, None, overrides + sparse + mame_overrides, env_kwargs),
    )


# MAME's smoke runs: a 4-dimensional z (the paper's 32 needs no test).
MAME_SMOKE = ("latent_size=4",)
MAME_STATISTICS = (Exceeds("ProMP", ("MAML-TRPO", "MAML-VPG"), step=1, what="sparse post-update return"),
                   Exceeds("MAME", ("ProMP", "MAML-TRPO", "MAML-VPG", "E-MAML"), step=1,
                           what="sparse post-update return"))
MAME_CPU = ("meta_batch_size=10", "episodes_per_task=10", "eval_num_tasks=20", "eval_episodes_per_task=20",
            "eval_adaptation_steps=1")

register(Claim(
    name="mame_fig3",
    paper="MAME (Gurumurthy et al. 2019)",
    figure="Fig. 3",
    description="on sparse point_corner, ProMP (and MAME) adapt where MAML-TRPO and MAML-VPG struggle",
    scales={
        # Pipeline check only: MAML-TRPO, ProMP and MAME (MAML-VPG and E-MAML run the same code paths).
        "smoke": Scaled((Panel("point_corner (smoke)", tuple(
            run for run in _mame_runs(2, SMOKE, SMOKE_POINT, MAME_SMOKE)
            if run.label in ("MAML-TRPO", "ProMP", "MAME")),
            MAME_STATISTICS, Protocol(reward="sparse")),), seeds=2, notes="Pipeline check only."),
        "cpu": Scaled((Panel("point_corner, sparse reward", _mame_runs(60, MAME_CPU), MAME_STATISTICS,
                             Protocol(reward="sparse")),),
                      notes=("ProMP's corner task with its 100-step horizon, 10 tasks x 10 episodes per "
                             "meta-batch (paper: 40 x 20), 60 iterations (paper: 1001); one adaptation step, "
                             "as in the paper; meta-test on 20 goals x 20 episodes. MAME with the paper's "
                             "settings otherwise (z of size 32, N = 15, PPO 5 x Adam 7e-4).")),
        "paper": Scaled((Panel("point_corner, sparse reward", _mame_runs(1001, ()), MAME_STATISTICS,
                               Protocol(reward="sparse")),), notes="ProMP's settings (40 x 20, 1001 iterations)."),
    },
))


# ---- MAME (Gurumurthy et al. 2019), Fig. 4: ablations on sparse point navigation -------------------------

MAME_ABLATIONS = (
    ("MAME", ()),
    ("VPG-Inner", ("inner_loss=vpg_inner",)),  # a policy-gradient inner step on the explorer's episodes
    ("Reward", ("target=reward",)),  # reward self-supervision instead of the N-step return
    ("Vanilla DiCE", ("explorer_gradient=vanilla_dice",)),  # φ by the full DiCE gradient
    ("E-MAML based", ("explorer_gradient=emaml_explorer",)),  # φ by E-MAML's post-update returns
)


def _mame_ablation_runs(num_steps: int, overrides: tuple[str, ...], env_kwargs: tuple[str, ...] = ()
                        ) -> tuple[Run, ...]:
    sparse = ("train_reward=sparse", "eval_reward=sparse")
    return tuple(Run(label, "mame", "point_corner", num_steps, None, overrides + sparse + changes, env_kwargs)
                 for label, changes in MAME_ABLATIONS)


# Sec. 5.2.1: VPG-Inner "performs poorly", Reward "struggles to reach peak performance", Vanilla DiCE is
# unstable; E-MAML based "manages to reach good performance" (no claim about its final return).
MAME_ABLATION_STATISTICS = tuple(Exceeds("MAME", (other,), step=1, what="sparse post-update return")
                                 for other in ("VPG-Inner", "Reward", "Vanilla DiCE"))

register(Claim(
    name="mame_fig4",
    paper="MAME (Gurumurthy et al. 2019)",
    figure="Fig. 4",
    description="on sparse point_corner, MAME beats its VPG-inner, reward-supervision and vanilla-DiCE ablations",
    scales={
        # MAME only: Fig. 3's smoke run (the same program, compiled once); every ablation traces a train step
        # in tests/test_mame.py, so the smoke scale adds no compile per ablation.
        "smoke": Scaled((Panel("point_corner (smoke)", _mame_ablation_runs(2, SMOKE + MAME_SMOKE, SMOKE_POINT)[:1],
                               MAME_ABLATION_STATISTICS, Protocol(reward="sparse")),), seeds=2,
                        notes="Pipeline check only (MAME alone: the statistics cannot be decided)."),
        "cpu": Scaled((Panel("point_corner, sparse reward", _mame_ablation_runs(60, MAME_CPU),
                             MAME_ABLATION_STATISTICS, Protocol(reward="sparse")),),
                      notes=("The Fig. 3 cpu settings for MAME and each ablation: ProMP's corner task with its "
                             "100-step horizon, 10 tasks x 10 episodes per meta-batch (paper: 40 x 20), 60 "
                             "iterations (paper: 1001), one adaptation step; meta-test on 20 goals x 20 episodes. "
                             "The paper's stability claims (Vanilla DiCE and E-MAML based are unstable) are about "
                             "training curves; only the final post-update returns are compared here.")),
        "paper": Scaled((Panel("point_corner, sparse reward", _mame_ablation_runs(1001, ()),
                               MAME_ABLATION_STATISTICS, Protocol(reward="sparse")),),
                        notes="The paper's settings (40 x 20, 1001 iterations as for the Fig. 3 baselines)."),
    },
    figures=(("trajectories", ("MAME",)),),
))


# ---- MAME (Gurumurthy et al. 2019), Fig. 2: the meta-RL benchmarks against MAML, E-MAML and ProMP ----------

MAME_FIG2_REWARD_FAMILIES = ("cheetah_dir", "cheetah_vel", "ant_dir", "walker2d_dir")
MAME_FIG2_DYNAMICS_FAMILIES = ("hopper_rand_params", "walker2d_rand_params")
# The baselines as in ProMP's code (the paper borrows its curves): MAML-TRPO with ProMP's (64, 64) tanh policy.
PROMP_MAML = ("hidden_sizes=64,64", "activation=tanh")
# Horizons (Sec. 5.1, as ProMP): 100 for the two direction tasks, 200 for the others.
MAME_FIG2_HORIZONS = {"cheetah_dir": 100, "ant_dir": 100}


def _mame_fig2_runs(family: str, num_steps: int, overrides: tuple[str, ...] = (),
                    env_kwargs: tuple[str, ...] = ()) -> tuple[Run, ...]:
    if family in MAME_FIG2_HORIZONS and not env_kwargs:
        env_kwargs = (f"episode_length={MAME_FIG2_HORIZONS[family]}",)
    return (
        Run("MAME", "mame", family, num_steps, None, overrides, env_kwargs),
        Run("MAML", "maml", family, num_steps, None, overrides + PROMP_MAML, env_kwargs),
        Run("E-MAML", "emaml", family, num_steps, None, overrides, env_kwargs),
        Run("ProMP", "promp", family, num_steps, None, overrides, env_kwargs),
    )


# "Our algorithm performs particularly well in" the reward-varying tasks; on the rand-params tasks it
# "converges as well as the baselines" but "doesn't do much better in terms of peak performance" (no claim).
MAME_FIG2_STATISTICS = (Exceeds("MAME", ("MAML", "E-MAML"), step=1, what="post-update return"),)
# CPU scale: cheetah velocity with 100-step episodes, 5 tasks x 5 episodes, 40 iterations (see the notes).
MAME_FIG2_CPU = ("meta_batch_size=5", "episodes_per_task=5", "eval_num_tasks=10", "eval_episodes_per_task=5")

register(Claim(
    name="mame_fig2",
    paper="MAME (Gurumurthy et al. 2019)",
    figure="Fig. 2",
    description="on the reward-varying locomotion tasks MAME's post-update return exceeds MAML's and E-MAML's",
    scales={
        # On the cheapest family, with two of Fig. 3's smoke runs (the same programs: compiled once).
        "smoke": Scaled((Panel("point_corner (smoke)", tuple(
            run.replace(label="MAML") if run.label == "MAML-TRPO" else run
            for run in _mame_runs(2, SMOKE, SMOKE_POINT, MAME_SMOKE) if run.label in ("MAME", "MAML-TRPO")),
            MAME_FIG2_STATISTICS, Protocol(reward="sparse")),), seeds=2, notes="Pipeline check only."),
        "cpu": Scaled((Panel("cheetah_vel", _mame_fig2_runs("cheetah_vel", 40, MAME_FIG2_CPU, ("episode_length=100",)),
                             MAME_FIG2_STATISTICS, Protocol(reward="dense", adaptation_steps=1)),),
                      notes=("Half-cheetah velocity only, with 100-step episodes (paper: 200), 5 tasks x 5 "
                             "episodes per meta-batch (paper: 40 x 20), 40 iterations (paper: 1001), meta-test on "
                             "10 tasks x 5 episodes after one step: about 0.2 % of the paper's environment steps. "
                             "At this budget every method is far from its asymptote, which is what the paper "
                             "compares, so the verdict says what 40 iterations show, not the figure's claim.")),
        "paper": Scaled(tuple(
            Panel(family, _mame_fig2_runs(family, 1001),
                  MAME_FIG2_STATISTICS if family in MAME_FIG2_REWARD_FAMILIES else (),
                  Protocol(reward="dense", adaptation_steps=1))
            for family in (*MAME_FIG2_REWARD_FAMILIES, *MAME_FIG2_DYNAMICS_FAMILIES)),
            notes=("ProMP's settings for every method (40 tasks x 20 episodes, 1001 iterations, one adaptation "
                   "step; horizons 100 for the direction tasks of cheetah and ant, 200 otherwise), MAME's own "
                   "(App. 7.2). The rand-params panels have no statistic: the paper claims parity there.")),
    },
))


# ---- Xu et al. (2018), Table 2: a learned exploration teacher makes DDPG more sample-efficient ----------

# Environment steps per launcher step (epoch), every step counted (the teacher's exploration D0, the
# student's and π′'s evaluation rollouts): DDPG 20 cycles x 200; the teacher 20 x (100 + 2 x 200), or
# for the long tasks 20 x (1000 + 2 x 2000). `epoch_cycles` only sets how often the launcher logs.
XU_DDPG_EPOCH = 4_000
XU_TEACHER_CYCLE = {"pendulum": 500, "inverted_pendulum": 5_000, "half_cheetah": 5_000}
XU_PAPER = {"pendulum": (-123.0, -206.0), "inverted_pendulum": (745.0, 499.0),
            "inverted_double_pendulum": (7718.0, 2795.0), "hopper": (205.0, 135.0),
            "half_cheetah": (2011.0, 1594.0), "reacher": (-12.16, -11.67)}  # (Meta, DDPG), Table 2
# Sec. 5.1: the budgets at which the paper's curves converge.
XU_BUDGETS = {"pendulum": 900_000, "inverted_pendulum": 1_500_000, "inverted_double_pendulum": 1_500_000,
              "hopper": 1_000_000, "half_cheetah": 1_500_000, "reacher": 700_000}
XU_STATISTICS = (Exceeds("Meta", ("DDPG",), what="return at equal env steps"),
                 Exceeds("Meta (variance)", ("DDPG",), what="return at equal env steps"))


def _xu_runs(env: str, env_steps: int, evaluations: int, overrides: tuple[str, ...] = (),
             env_kwargs: tuple[str, ...] = (), preset: str | None = None) -> tuple[Run, ...]:
    """DDPG and both teacher forms for ``env_steps`` env steps, evaluated ``evaluations`` times on the way."""
    cycle = XU_TEACHER_CYCLE.get(env, 500)
    teacher_cycles = env_steps // evaluations // cycle  # one launcher step between evaluations
    ddpg_epochs = env_steps // XU_DDPG_EPOCH
    if teacher_cycles * cycle * evaluations != env_steps or ddpg_epochs * XU_DDPG_EPOCH != env_steps:
        raise ValueError(f"{env}: {env_steps} env steps do not split into {evaluations} evaluations of whole "
                         f"teacher cycles ({cycle}) and DDPG epochs ({XU_DDPG_EPOCH})")
    preset = preset or env
    teacher = overrides + (f"epoch_cycles={teacher_cycles}",)
    return (
        Run("DDPG", "ddpg", env, ddpg_epochs, preset, overrides, env_kwargs, log_every=1,
            eval_every=max(1, ddpg_epochs // evaluations)),
        Run("Meta", "teacher_ddpg", env, evaluations, preset, teacher, env_kwargs, log_every=1, eval_every=1),
        Run("Meta (variance)", "teacher_ddpg", env, evaluations, preset, teacher + ("teacher=variance",),
            env_kwargs, log_every=1, eval_every=1),
    )


def _xu_panel(env: str, env_steps: int, evaluations: int, overrides: tuple[str, ...] = ()) -> Panel:
    meta, ddpg = XU_PAPER[env]
    title = f"{env}, " + f"{env_steps:,} env steps".replace(",", " ")
    return Panel(title, _xu_runs(env, env_steps, evaluations, overrides), XU_STATISTICS,
                 paper={"Meta": (meta,), "DDPG": (ddpg,)}, paper_steps=(0,), equal_env_steps=True)


# Smoke (pipeline only): the smoke configs on the pure-JAX point (no MJX compile), 80 env steps each in 2
# epochs (DDPG: 2 cycles x 20; the teacher: 1 cycle of 10 exploration steps + 2 x 15 evaluation steps).
XU_SMOKE_DDPG = Run("DDPG", "ddpg", "point_corner", 2, "smoke", (), SMOKE_POINT, log_every=1, eval_every=1)
XU_SMOKE_META = Run("Meta", "teacher_ddpg", "point_corner", 2, "smoke", ("epoch_cycles=1", "rollout_steps=15"),
                    SMOKE_POINT, log_every=1, eval_every=1)

register(Claim(
    name="xu_table2",
    paper="Xu et al. 2018 (meta-policy gradient exploration for DDPG)",
    figure="Table 2 (curves: Fig. 3)",
    description="a learned exploration teacher (either form) gives DDPG a higher return at equal env steps",
    scales={
        "smoke": Scaled((Panel("point_corner (smoke)", (XU_SMOKE_DDPG, XU_SMOKE_META), XU_STATISTICS,
                               equal_env_steps=True),), seeds=2,
                        notes="Pipeline check only (DDPG and the independent teacher)."),
        "cpu": Scaled((_xu_panel("pendulum", 40_000, 10), _xu_panel("inverted_pendulum", 100_000, 5)),
                      notes=("Pendulum at 40 000 env steps (paper: 0.9 M) and InvertedPendulum at 100 000 (paper: "
                             "1.5 M), with evaluations every 4 000 / 20 000 steps on the way, so that the learning "
                             "curves show the early budgets where a faster learner would lead; the "
                             "paper's settings otherwise (Table 1 and Sec. 5.1: 20 cycles, 50 student steps per "
                             "cycle, teacher Adam 1e-4, 100 exploration / 200 evaluation steps, 1000 / 2000 for "
                             "InvertedPendulum). The return is the deterministic student's on 10 episodes after "
                             "the last step, the curves the same evaluation during training.")),
        "paper": Scaled(tuple(_xu_panel(env, budget, 10)
                              for env, budget in XU_BUDGETS.items()),
                        notes="Every Table 2 environment at the paper's budget (Sec. 5.1), 5 seeds (paper: 3)."),
    },
    figures=(("learning", ()),),
))


# ---- PEARL (Rakelly et al. 2019), Fig. 3: off-policy meta-training is 20-100x more sample efficient ----------

# The statistic: env steps each method's meta-test return needs to reach the best on-policy rival's final one
# (PEARL's protocol: PEARL's curve against the rivals' asymptotes), and PEARL's return after its trajectories of
# context over its first trajectory (z ~ prior). The floor 0.5: one step inside the goal region.
PEARL_STATISTICS = (FewerEnvSteps("PEARL", ("ProMP", "MAML"), what="sparse meta-test return", min_threshold=0.5),
                    Improves("PEARL", what="sparse return", units=("trajectory of context", "trajectories of context"),
                             before="first trajectory's (z ~ prior)"))
PEARL_SMOKE = ("hidden_sizes=8", "encoder_hidden_sizes=8", "num_train_steps_per_itr=2", "eval_num_tasks=2",
               "eval_adaptation_steps=1", "num_exp_traj_eval=1")
# CPU scale: networks 3 x 64 (paper 3 x 300), 5 tasks per iteration with 100 prior + 400 posterior steps (paper
# 10 x (100 + 900)), 200 gradient steps on meta-batches of 8 tasks x 128 (paper 1000 on 16 x 256), context 256.
PEARL_CPU = ("hidden_sizes=64,64,64", "encoder_hidden_sizes=64,64,64", "num_tasks_sample=5", "num_steps_prior=100",
             "num_steps_posterior=400", "num_train_steps_per_itr=200", "meta_batch=8", "batch_size=128",
             "embedding_batch_size=256", "buffer_size=20000")
PEARL_RIVALS_CPU = ("hidden_sizes=64,64", "meta_batch_size=10", "episodes_per_task=20", "eval_num_tasks=20",
                    "eval_episodes_per_task=10", "eval_adaptation_steps=1", "eval_reward=sparse")


def _pearl_runs(env: str, pearl_steps: int, rival_steps: int, pearl: tuple[str, ...] = (),
                rivals: tuple[str, ...] = (), env_kwargs: tuple[str, ...] = (), evaluations: int = 5,
                preset: str | None = None, pearl_evaluations: int | None = None) -> tuple[Run, ...]:
    """PEARL against ProMP and MAML, each evaluated ``evaluations`` times on the way (its learning curve; PEARL
    ``pearl_evaluations`` times, default the same)."""
    from metarl_jax import algos

    every = lambda steps: max(1, steps // evaluations)  # noqa: E731
    own = lambda algo: preset if preset in algos.presets(algo) else None  # noqa: E731  (else the paper defaults)
    return (
        Run("PEARL", "pearl", env, pearl_steps, preset or env, pearl, env_kwargs, log_every=1,
            eval_every=max(1, pearl_steps // (pearl_evaluations or evaluations))),
        Run("ProMP", "promp", env, rival_steps, own("promp"), rivals, env_kwargs, eval_every=every(rival_steps)),
        Run("MAML", "maml", env, rival_steps, own("maml"), rivals, env_kwargs, eval_every=every(rival_steps)),
    )


register(Claim(
    name="pearl_sample_efficiency",
    paper="PEARL (Rakelly et al. 2019)",
    figure="Fig. 3 (and Fig. 7, posterior sampling)",
    description="PEARL reaches the on-policy methods' meta-test return with 20-100x fewer env steps",
    scales={
        "smoke": Scaled((Panel("point_semicircle (smoke)", _pearl_runs(
            "point_semicircle", 2, 2, PEARL_SMOKE, SMOKE + ("eval_reward=sparse",), SMOKE_POINT, evaluations=1,
            preset="smoke")[::2], PEARL_STATISTICS, Protocol(reward="sparse")),), seeds=2,
            notes="Pipeline check only (PEARL against MAML)."),
        "cpu": Scaled((Panel("point_semicircle, sparse reward", _pearl_runs(
            "point_semicircle", 40, 100, PEARL_CPU, PEARL_RIVALS_CPU, preset="point_semicircle", pearl_evaluations=10),
            PEARL_STATISTICS,
            Protocol(reward="sparse")),),
            notes=("PEARL's sparse point robot (goals on the unit semicircle, reward within 0.2 of the goal, 20-step "
                   "episodes; dense reward for the SAC and the on-policy methods' training, sparse for PEARL's "
                   "context and every meta-test). PEARL: 40 iterations of oyster's sparse-point settings scaled "
                   "down (" + ", ".join(PEARL_CPU) + "); meta-test 20 goals x 20 trajectories, the first 5 with "
                   "z ~ prior. ProMP and MAML: 100 iterations of 10 tasks x 20 episodes (paper 40 x 20), "
                   "(64, 64) policies, one meta-test gradient step on 20 goals x 10 episodes. PEARL is "
                   "evaluated 10 times during training, the rivals 5 times; the threshold is the best rival's "
                   "final sparse return (at least 0.5).")),
        "paper": Scaled(tuple(Panel(family, _pearl_runs(family, 500, 1001, rivals=(f"eval_reward={reward}",),
                                                        preset=family, evaluations=20),
                                    PEARL_STATISTICS[:1], Protocol(reward=reward))
                              for family, reward in (("cheetah_vel", "dense"), ("ant_goal", "dense"),
                                                     ("point_semicircle", "sparse"))),
                        notes="oyster's settings per family (500 iterations) against ProMP and MAML at their "
                              "presets (1001 iterations); 20 evaluations on the way."),
    },
    figures=(("posterior", ("PEARL",)),),
))


# ---- TESP (Lan et al. 2019), Fig. 4: the return after 3 fast updates on D, D′ and D″ ------------------------

TESP_SPLITS = ("train", "val", "ood")  # D (the training tasks), D′ (held out, same disk), D″ (the annulus)


def _tesp_runs(family: str, num_steps: int, eval_every: int, overrides: tuple[str, ...] = (),
               env_kwargs: tuple[str, ...] = (), splits: tuple[str, ...] = TESP_SPLITS,
               tesp_overrides: tuple[str, ...] = ()) -> tuple[Run, ...]:
    """TESP, AdaptSV, MAML and Meta-SGD on ``family`` with TESP's protocol (the presets: supplement Table 1
    for TESP / AdaptSV, ``common.tesp_protocol`` for MAML / Meta-SGD), evaluated on every split every
    ``eval_every`` meta-updates (Fig. 4's curves); ``tesp_overrides`` go to TESP only (its GRU)."""
    runs = (("TESP", "tesp", family, overrides + tesp_overrides), ("AdaptSV", "adapt_sv", family, overrides),
            ("MAML", "maml", f"tesp_{family}", overrides), ("Meta-SGD", "metasgd", f"tesp_{family}", overrides))
    return tuple(Run(label, algo, family, num_steps, preset, run_overrides, env_kwargs, log_every=eval_every,
                     eval_every=eval_every, eval_splits=splits)
                 for label, algo, preset, run_overrides in runs)


def _tesp_statistics(far: str = "ood") -> tuple:
    baselines = ("AdaptSV", "MAML", "Meta-SGD")
    return (Exceeds(f"TESP@{far}", tuple(f"{b}@{far}" for b in baselines), what=f"{far} return"),
            SmallerGap("TESP", baselines, near="train", far=far))


# CPU scale: the 2-link reacher at a quarter of the horizon, half the tasks and episodes, networks of 64.
TESP_CPU_ENV = ("episode_length=50",)
TESP_CPU = ("hidden_sizes=64,64", "meta_batch_size=10", "episodes_per_task=10", "ppo_epochs=10",
            "eval_num_tasks=20", "eval_episodes_per_task=10")
TESP_CPU_RECURRENT = ("gru_size=64",)

register(Claim(
    name="tesp_fig4",
    paper="TESP (Lan et al. 2019)",
    figure="Fig. 4",
    description="TESP generalises to out-of-distribution tasks (D″) better than MAML, Meta-SGD and AdaptSV, "
                "with a smaller train – D″ gap",
    scales={
        # Pipeline check on the pure-JAX point (no MJX compile; it has no D″, so D′ stands in for it).
        "smoke": Scaled((Panel("point_semicircle (smoke)", tuple(
            Run(label, algo, "point_semicircle", 2, "smoke", overrides, SMOKE_POINT, log_every=1, eval_every=1,
                eval_splits=("train", "val"))
            for label, algo, overrides in (
                ("TESP", "tesp", ("meta_batch_size=2", "episodes_per_task=2", "num_inner_steps=1",
                                  "eval_num_tasks=2", "eval_episodes_per_task=2", "eval_adaptation_steps=1")),
                ("MAML", "maml", SMOKE))),
            _tesp_statistics(far="val"), splits=("train", "val")),), seeds=2,
            notes="Pipeline check only (TESP and MAML; D′ stands in for D″)."),
        "cpu": Scaled((Panel("reacher2, after 3 fast updates", _tesp_runs(
            "reacher2", 60, 15, TESP_CPU, TESP_CPU_ENV, tesp_overrides=TESP_CPU_RECURRENT),
            _tesp_statistics(), splits=TESP_SPLITS),),
            notes=("Scaled down from the paper's 2-link reacher (200-step episodes, 20 tasks x 25 episodes per "
                   "meta-update, 600 meta-updates, networks of 256, 100 tasks per split) to 50-step episodes, "
                   "10 tasks x 10 episodes, 60 meta-updates, MLPs (64, 64) and a GRU of 64, 10 PPO epochs, "
                   "and 20 tasks x 10 episodes per split at meta-test; the protocol is the paper's otherwise "
                   "(K = 3 first-order VPG fast updates, PPO clip 0.15, Adam 3e-4, the supplement's η). "
                   "Every split is meta-tested every 15 meta-updates (the learning curves) and at the end "
                   "(the table and verdicts).")),
        "paper": Scaled(tuple(Panel(family, _tesp_runs(family, 600, 25, env_kwargs=(
            ("task_distribution=tesp",) if family in ("wheeled", "ant_goal") else ())), _tesp_statistics(),
            splits=TESP_SPLITS) for family in ("wheeled", "ant_goal", "reacher2", "reacher4")),
            notes="The paper's settings (supplement Table 1, llan-ml/tesp), 5 seeds (paper: best 3 of 10)."),
    },
    figures=(("learning", ()),),
))
