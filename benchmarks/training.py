r"""Training throughput of any registered algorithm on any task family, at any size.

    python -m benchmarks.training --algo maesn --env wheeled --preset wheeled \
        --tasks 20 --episodes 50 --horizon 200 --iterations 2

One record per (algorithm, family, sizes):

* ``compile_s``: XLA compile of one meta-iteration alone (``algo.lower_train_step(ts)``
  then ``.compile()``); tracing + lowering is ``lower_s``.
* training env steps/s: env steps of one iteration (``time/env_steps`` of the first
  step: pre- and post-update rollouts for the meta-learners) × iterations over the
  median wall time of ``iterations`` consecutive train steps of the compiled program.
* ``physics_env_steps_per_s`` and THE RATIO ``ratio_train_to_physics``: the same family
  under ``benchmarks.physics`` (random actions, no policy) with the same number of
  parallel environments (tasks × episodes) and the same horizon. A ratio of 1 would
  mean that training costs no more than simulating its episodes.
* ``policy_rollout_env_steps_per_s`` (optional): the algorithm's own policy rolled out
  for the same tasks × episodes alone under ``jit``: physics + the policy's forward pass.
* meta-iterations/s, memory (XLA's estimate for the program and the process / device
  peak), and the projected wall clock of the paper's budget for (algo, family).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import jax
import jax.numpy as jnp

from benchmarks.physics import measure_physics_once
from benchmarks.timing import compile_program, environment, peak_memory, program_memory, time_call, time_iterations
from metarl_jax import algos, envs
from metarl_jax.rollout import rollout_tasks

# The papers' full budgets: batch sizes and meta-iterations (reference/hyperparameters.md).
PAPER_BUDGETS: dict[tuple[str, str], dict[str, Any]] = {
    ("maesn", "wheeled"): {"tasks": 20, "episodes": 50, "horizon": 200, "iterations": 500,
                           "source": "MAESN: 20 tasks x 50 episodes x 200 steps, 500 iterations"},
    ("latent_space", "wheeled"): {"tasks": 20, "episodes": 50, "horizon": 200, "iterations": 500,
                                  "source": "MAESN LatentSpace baseline, same batch as MAESN"},
    ("maml", "cheetah_vel"): {"tasks": 40, "episodes": 20, "horizon": 200, "iterations": 800,
                              "source": "MAML-TRPO: 40 tasks x 20 episodes x 200 steps, 800 iterations"},
    ("maml", "point_corner"): {"tasks": 40, "episodes": 20, "horizon": 100, "iterations": 100,
                               "source": "MAML-TRPO point: 40 tasks x 20 episodes x 100 steps, 100 iterations"},
    ("metasgd", "point_corner"): {"tasks": 40, "episodes": 20, "horizon": 100, "iterations": 100,
                                  "source": "MAML point budget applied to Meta-SGD"},
    ("mame", "point_corner"): {"tasks": 40, "episodes": 20, "horizon": 100, "iterations": 1001,
                               "source": "MAME Fig. 3: 40 tasks x 20 episodes x 100 steps, 1001 iterations (ProMP's)"},
    ("mame", "cheetah_vel"): {"tasks": 40, "episodes": 20, "horizon": 200, "iterations": 1001,
                              "source": "MAME Fig. 2: 40 tasks x 20 episodes x 200 steps, 1001 iterations (ProMP's)"},
    # TESP (llan-ml/tesp): 20 tasks x 25 episodes x 200 steps per batch (warm-up, 3 fast updates, post),
    # the learning curves of Fig. 4 run to about 600 meta-updates.
    ("tesp", "reacher2"): {"tasks": 20, "episodes": 25, "horizon": 200, "iterations": 600,
                           "source": "TESP: 20 tasks x 25 episodes x 200 steps x 5 batches, ~600 meta-updates"},
    ("adapt_sv", "reacher2"): {"tasks": 20, "episodes": 25, "horizon": 200, "iterations": 600,
                               "source": "TESP's AdaptSV baseline, TESP's batches (4 batches, no warm-up)"},
}


_COMPILED: dict[tuple, tuple] = {}


def _size_fields(algo_name: str) -> tuple[str, str]:
    """Config fields holding (tasks per iteration, episodes per task)."""
    if algo_name in ("vpg", "trpo", "ppo"):
        return "tasks_per_iteration", "episodes_per_task"
    if algo_name in SEQUENTIAL_EPISODES:
        return "meta_batch_size", "episodes_per_trial"
    return "meta_batch_size", "episodes_per_task"


# Learners whose episodes of a task run one after another (RL²'s trials): ``tasks`` environments in
# parallel, each for episodes × horizon steps; the physics comparison uses the same layout.
SEQUENTIAL_EPISODES = ("rl2",)


def build(algo_name: str, env_name: str, tasks: int, episodes: int, horizon: int, preset: str | None = None,
          hidden: tuple[int, ...] | None = None, overrides: dict[str, Any] | None = None, mesh: Any = None):
    """(family, algorithm) at the given sizes; ``preset`` defaults to the family's preset if one exists."""
    family = envs.make(env_name, episode_length=horizon)
    presets = algos.presets(algo_name)
    name = preset if preset is not None else (env_name if env_name in presets else "paper")
    config = algos.preset(algo_name, name)
    task_field, episode_field = _size_fields(algo_name)
    changes: dict[str, Any] = {task_field: tasks, episode_field: episodes, **(overrides or {})}
    if hidden is not None:
        changes["hidden_sizes"] = tuple(hidden)
    if hasattr(config, "num_train_tasks") and config.num_train_tasks < tasks:
        changes.setdefault("num_train_tasks", tasks)
    config = config.replace(**changes)
    return family, algos.make(algo_name, family, config, mesh=mesh), name


def measure_training(algo_name: str, env_name: str, tasks: int, episodes: int, horizon: int,
                     iterations: int = 2, repeats: int = 3, preset: str | None = None,
                     hidden: tuple[int, ...] | None = None, overrides: dict[str, Any] | None = None,
                     physics_ratio: bool = True, policy_rollout: bool = False,
                     return_after: int | None = None, eval_episodes: int | None = None) -> dict[str, Any]:
    """Training throughput, compile time, memory and the ratio to physics (module docstring).

    ``return_after``: also train a fresh state for that many iterations with the same
    compiled program and record the first and final training returns; with ``eval_episodes``
    (single-task learners) also the mean return of that many fresh episodes of the initial and
    of the final policy (``eval_first_return``, ``eval_final_return``), as brax evaluates.
    """
    key = (algo_name, env_name, tasks, episodes, horizon, preset, hidden, tuple(sorted((overrides or {}).items())))
    if key not in _COMPILED:  # one compile per configuration and process (the peer comparison reuses it)
        family, algo, preset_name = build(algo_name, env_name, tasks, episodes, horizon, preset, hidden, overrides)
        ts = algo.init(jax.random.key(0))
        compiled, compile_times = compile_program(lambda: algo.lower_train_step(ts))
        _COMPILED[key] = (family, algo, preset_name, ts, compiled, compile_times)
    family, algo, preset_name, ts, compiled, compile_times = _COMPILED[key]
    traces_after_compile = algo.trace_count

    first_ts, first_metrics = compiled(ts)  # warm-up; step 0 -> 1, so time/env_steps = steps of one iteration
    steps_per_iteration = float(first_metrics["time/env_steps"])
    sequential = algo_name in SEQUENTIAL_EPISODES
    parallel_envs, physics_steps = (tasks, episodes * horizon) if sequential else (tasks * episodes, horizon)

    timing, seconds_per_iteration = time_iterations(compiled, first_ts, iterations, repeats)
    train_sps = steps_per_iteration / seconds_per_iteration
    cfg = algo.config
    record: dict[str, Any] = {
        "benchmark": "training",
        "algo": algo_name,
        "env": env_name,
        "preset": preset_name,
        "tasks": tasks,
        "episodes": episodes,
        "horizon": horizon,
        "parallel_envs": parallel_envs,
        "hidden": list(getattr(cfg, "hidden_sizes", ())),
        # GRU units of RL²'s policy or TESP's encoder (their networks carry a ``gru``).
        "recurrent_units": getattr(getattr(getattr(algo, "encoder", algo.policy), "gru", None), "hidden_size", None),
        "optimizer": getattr(cfg, "optimizer", "ppo"),
        "iterations_timed": iterations,
        "repeats": repeats,
        "env_steps_per_iteration": steps_per_iteration,
        "lower_s": compile_times["lower_s"],
        "compile_s": compile_times["compile_s"],
        "seconds_per_iteration": seconds_per_iteration,
        "seconds_per_iteration_spread": [timing["min_s"] / iterations, timing["max_s"] / iterations],
        "seconds_per_iteration_iqr": [timing["q1_s"] / iterations, timing["q3_s"] / iterations],
        "meta_iterations_per_s": 1.0 / seconds_per_iteration,
        "train_env_steps_per_s": train_sps,
        "train_env_steps_per_s_spread": [steps_per_iteration * iterations / timing["max_s"],
                                         steps_per_iteration * iterations / timing["min_s"]],
        "program_bytes": program_memory(compiled),
        **peak_memory(),
        "retraced": algo.trace_count != traces_after_compile,
        "device": environment()["device"],
    }
    if physics_ratio:
        physics = measure_physics_once(env_name, parallel_envs, physics_steps, repeats)
        record["physics_env_steps_per_s"] = physics["steps_per_second"]
        record["physics_compile_s"] = physics["compile_s"]
        record["ratio_train_to_physics"] = train_sps / physics["steps_per_second"]
    if policy_rollout and not sequential:
        task_batch = family.sample_tasks(jax.random.key(1), tasks)
        latent_size = getattr(cfg, "latent_size", 0)
        if latent_size:
            policy_params = ts.params["policy"]
        elif hasattr(algo, "policy_params"):
            policy_params = algo.policy_params(ts.params)
        else:
            policy_params = ts.params
        latents = jnp.zeros((tasks, episodes, latent_size)) if latent_size else None

        def policy_rollout_fn(params, key):
            return rollout_tasks(family, algo.policy, params, task_batch, key, episodes, latents=latents).rewards

        rollout_fn = jax.jit(policy_rollout_fn)
        raw = time_call(lambda: rollout_fn(policy_params, jax.random.key(2)), repeats=repeats)
        raw_sps = parallel_envs * horizon / raw["median_s"]
        record["policy_rollout_env_steps_per_s"] = raw_sps
        record["ratio_train_to_policy_rollout"] = train_sps / raw_sps
    if return_after:
        key = "train/return" if "train/return" in first_metrics else "train/post_return"
        state = algo.init(jax.random.key(0))
        start = time.perf_counter()
        returns = []
        for _ in range(return_after):
            state, metrics = compiled(state)
            returns.append(metrics[key])
        returns = [float(r) for r in jax.block_until_ready(returns)]
        budget_wall_s = time.perf_counter() - start
        if eval_episodes:
            initial = algo.init(jax.random.key(0))
            record["eval_episodes"] = eval_episodes
            record["eval_first_return"] = policy_return(family, algo, initial, eval_episodes)
            record["eval_final_return"] = policy_return(family, algo, state, eval_episodes)
        record.update({
            "return_metric": key,
            "budget_iterations": return_after,
            "budget_env_steps": steps_per_iteration * return_after,
            "budget_wall_s": budget_wall_s,
            "first_return": returns[0],
            "final_return": returns[-1],
        })
    budget = PAPER_BUDGETS.get((algo_name, env_name))
    if budget is not None:
        rollouts_per_iteration = steps_per_iteration / (tasks * episodes * horizon)
        paper_steps = budget["tasks"] * budget["episodes"] * budget["horizon"] * rollouts_per_iteration
        paper_seconds_per_iteration = paper_steps / train_sps
        record.update({
            "paper_budget": budget["source"],
            "paper_iterations": budget["iterations"],
            "paper_env_steps_per_iteration": paper_steps,
            "paper_size_measured": (tasks, episodes, horizon) == (budget["tasks"], budget["episodes"],
                                                                  budget["horizon"]),
            "projected_budget_s": budget["iterations"] * paper_seconds_per_iteration + compile_times["compile_s"],
        })
    return record


_EVALUATORS: dict[tuple[int, int], Any] = {}


def policy_return(family: Any, algo: Any, ts: Any, episodes: int, seed: int = 123) -> float:
    """Mean return of ``episodes`` fresh episodes of one task under the state's (stochastic) policy."""
    if (id(algo), episodes) not in _EVALUATORS:  # one compile per algorithm and size (the state is an argument)
        def episode_returns(ts, tasks, key):
            policy = algo.acting_policy(ts) if hasattr(algo, "acting_policy") else algo.policy
            return jnp.mean(rollout_tasks(family, policy, ts.params, tasks, key, episodes).episode_returns())

        _EVALUATORS[(id(algo), episodes)] = jax.jit(episode_returns)
    tasks = family.sample_tasks(jax.random.key(seed), 1)
    return float(_EVALUATORS[(id(algo), episodes)](ts, tasks, jax.random.key(seed + 1)))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", default="maml", help=f"one of {algos.names()}")
    parser.add_argument("--env", default="point_corner")
    parser.add_argument("--preset", default=None, help="algorithm preset (default: the family's, else 'paper')")
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--horizon", type=int, default=100)
    parser.add_argument("--hidden", default=None, help="comma-separated hidden sizes (default: the preset's)")
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--policy_rollout", action="store_true", help="also time the policy's rollouts alone")
    args = parser.parse_args(argv)
    hidden = tuple(int(h) for h in args.hidden.split(",")) if args.hidden else None
    record = measure_training(args.algo, args.env, args.tasks, args.episodes, args.horizon, args.iterations,
                              args.repeats, args.preset, hidden, policy_rollout=args.policy_rollout)
    print(json.dumps({"environment": environment(), **record}, indent=2))
    return record


if __name__ == "__main__":
    main()
