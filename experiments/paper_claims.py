"""The registered paper claims (``experiments.claims``), one entry per paper figure or table.

Each entry states, per scale, what runs and what was scaled down. ``smoke`` exercises the pipeline
in seconds (tests) on the cheapest family and says nothing about the paper; ``cpu`` is the cheapest
setting in which the paper's effect can show within about 30 minutes on 2 CPU cores; ``paper`` uses
the papers' settings (``../shared/reference/hyperparameters.md``), for a GPU.
"""

from __future__ import annotations

from experiments.claims import Claim, Exceeds, Improves, Panel, Protocol, Run, Scaled, register

# Tiny runs for the smoke scale (pipeline only): 2-task meta-batches of 2 episodes on a short horizon.
SMOKE = ("hidden_sizes=8", "meta_batch_size=2", "episodes_per_task=2", "eval_num_tasks=2",
         "eval_episodes_per_task=2", "eval_adaptation_steps=1", "optimizer=vpg")
SMOKE_POINT = ("episode_length=5",)


# ---- MAESN (Gupta et al. 2018), Fig. 6: structured exploration adapts faster on sparse rewards ------

def _maesn_runs(env: str, num_steps: int, overrides: tuple[str, ...] = (), env_kwargs: tuple[str, ...] = (),
                preset: str | None = None, latent_overrides: tuple[str, ...] = (),
                maml_overrides: tuple[str, ...] = ()) -> tuple[Run, ...]:
    """MAESN, MAML and LatentSpace with shared overrides (``latent_overrides``: the latent-space models')."""
    return (
        Run("MAESN", "maesn", env, num_steps, preset, overrides + latent_overrides, env_kwargs),
        Run("MAML", "maml", env, num_steps, preset, overrides + maml_overrides, env_kwargs),
        Run("LatentSpace", "latent_space", env, num_steps, preset, overrides + latent_overrides, env_kwargs),
    )


MAESN_STATISTICS = (Exceeds("MAESN", ("MAML",), what="sparse return"),
                    Exceeds("MAESN", ("LatentSpace",), what="sparse return"))

# CPU scale: PEARL's sparse point robot geometry (goals on the upper unit semicircle, reward only within
# 0.2 of the goal, horizon 20, steps of at most 0.1): random actions reach a goal in 2 % of episodes, so
# adapting from the sparse reward needs exploration that covers the semicircle.
MAESN_CPU_ENV = ("episode_length=20", "max_action=0.1", "radius=1.0", "goal_radius=0.2")
MAESN_CPU = ("hidden_sizes=64,64", "meta_batch_size=10", "episodes_per_task=20", "eval_num_tasks=20",
             "eval_episodes_per_task=50", "eval_adaptation_steps=20",
             "eval_reward=sparse", "eval_schedule=halving")

register(Claim(
    name="maesn_fig6",
    paper="MAESN (Gupta et al. 2018)",
    figure="Fig. 6",
    description="MAESN adapts faster than MAML and LatentSpace from sparse rewards on held-out goals",
    scales={
        "smoke": Scaled((Panel("point_semicircle (smoke)", _maesn_runs(
            "point_semicircle", 2, SMOKE + ("eval_reward=sparse",), SMOKE_POINT,
            latent_overrides=("num_train_tasks=4",)),
            MAESN_STATISTICS, Protocol(reward="sparse")),), seeds=2, notes="Pipeline check only."),
        "cpu": Scaled((Panel("point_semicircle, sparse reward", _maesn_runs(
            "point_semicircle", 200, MAESN_CPU, MAESN_CPU_ENV, latent_overrides=("num_train_tasks=40",),
            maml_overrides=("fast_lr=0.5",)),
            MAESN_STATISTICS, Protocol(reward="sparse")),),
            notes=("Scaled down from the paper's wheeled / ant / block-push robots (200-step episodes, "
                   "20 tasks x 50 episodes, 500 iterations, meta-test 30 goals x 100 iterations of 10 000 "
                   "steps) to the 2-D point on PEARL's sparse semicircle (20-step episodes, 10 tasks x 20 "
                   "episodes, 200 iterations, 40 training tasks; meta-test 20 goals x 20 iterations of 50 "
                   "episodes, step sizes halved every iteration as in the paper). Random actions reach a goal "
                   "region in 2 % of episodes there (a straight line in a random direction: 13 %), so the sparse "
                   "reward rewards exploration that covers the semicircle.")),
        # make demo: the cpu panel without LatentSpace, 3 seeds, 150 iterations, 10 meta-test steps.
        "demo": Scaled((Panel("point_semicircle, sparse reward", _maesn_runs(
            "point_semicircle", 150, MAESN_CPU + ("eval_adaptation_steps=10",), MAESN_CPU_ENV,
            latent_overrides=("num_train_tasks=40",), maml_overrides=("fast_lr=0.5",))[:2],
            MAESN_STATISTICS[:1], Protocol(reward="sparse")),), seeds=3,
            notes="The cpu scale's panel, MAESN against MAML only, 3 seeds, 150 iterations, 10 meta-test steps."),
        "paper": Scaled(tuple(
            Panel(family, _maesn_runs(family, 500, preset=family), MAESN_STATISTICS, Protocol(reward="sparse"))
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

def _mame_runs(num_steps: int, overrides: tuple[str, ...], env_kwargs: tuple[str, ...] = ()) -> tuple[Run, ...]:
    sparse = ("train_reward=sparse", "eval_reward=sparse")
    return (
        Run("MAML-TRPO", "maml", "point_corner", num_steps, None, overrides + sparse + ("optimizer=trpo",),
            env_kwargs),
        Run("MAML-VPG", "maml", "point_corner", num_steps, None, overrides + sparse + ("optimizer=vpg",),
            env_kwargs),
        Run("E-MAML", "emaml", "point_corner", num_steps, None, overrides + sparse, env_kwargs),
        Run("ProMP", "promp", "point_corner", num_steps, None, overrides + sparse, env_kwargs),
    )


# MAME joins with its own run when it lands; until then its statistic reports "cannot be decided".
MAME_STATISTICS = (Exceeds("ProMP", ("MAML-TRPO", "MAML-VPG"), step=1, what="sparse post-update return"),
                   Exceeds("MAME", ("ProMP", "MAML-TRPO", "MAML-VPG", "E-MAML"), step=1,
                           what="sparse post-update return"))
MAME_CPU = ("meta_batch_size=20", "episodes_per_task=10", "eval_num_tasks=20", "eval_episodes_per_task=20",
            "eval_adaptation_steps=1")

register(Claim(
    name="mame_fig3",
    paper="MAME (Gurumurthy et al. 2019)",
    figure="Fig. 3",
    description="on sparse point_corner, ProMP (and MAME) adapt where MAML-TRPO and MAML-VPG struggle",
    scales={
        "smoke": Scaled((Panel("point_corner (smoke)", _mame_runs(2, SMOKE), MAME_STATISTICS,
                               Protocol(reward="sparse")),), seeds=2, notes="Pipeline check only."),
        "cpu": Scaled((Panel("point_corner, sparse reward", _mame_runs(100, MAME_CPU), MAME_STATISTICS,
                             Protocol(reward="sparse")),),
                      notes=("ProMP's corner task with its 100-step horizon, 20 tasks x 10 episodes per "
                             "meta-batch (paper: 40 x 20), 100 iterations (paper: 1001); one adaptation step, "
                             "as in the paper; meta-test on 20 goals x 20 episodes.")),
        "paper": Scaled((Panel("point_corner, sparse reward", _mame_runs(1001, ()), MAME_STATISTICS,
                               Protocol(reward="sparse")),), notes="ProMP's settings (40 x 20, 1001 iterations)."),
    },
))
