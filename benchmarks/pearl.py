r"""Training throughput of PEARL: one meta-iteration (collection for every sampled task, then the gradient steps).

    python -m benchmarks.pearl --env point_semicircle --override num_train_steps_per_itr=100 --iterations 2

One record per (family, config):

* ``compile_s``: XLA compile of one meta-iteration alone.
* ``meta_iterations_per_s``, ``train_env_steps_per_s`` and ``gradient_steps_per_s``: the iteration's own
  counts (``num_tasks_sample`` × (prior + posterior + extra steps); ``num_train_steps_per_itr``) over the
  median wall time of ``iterations`` consecutive compiled iterations.
* ``replay_bytes``, ``encoder_buffer_bytes`` (with ``replay_capacity_per_task`` × ``num_train_tasks``, the
  encoder buffer's capacity) and ``peak_bytes``: the buffers live on the device in the train state.
* with ``project``: the seconds of one gradient step and of the rest of an iteration, from a second
  measurement with twice the gradient steps (t = fixed + g · steps, ``projection``: only where the fit is
  positive, else a lower bound), and the projected wall clock of the paper's budget
  (``budget_iterations`` iterations of ``paper_train_steps`` gradient steps each, plus
  the initial collection): oyster's cheetah-vel is 500 × (5 × 1000) + 100 × 2000 ≈ 2.7M env steps,
  2000 gradient steps per iteration.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import jax
import numpy as np

from benchmarks.timing import compile_program, environment, peak_memory, program_memory, time_iterations
from metarl_jax import algos, envs


def _build(env_name: str, preset: str | None, overrides: dict[str, Any]):
    family = envs.make(env_name)
    name = preset if preset is not None else (env_name if env_name in algos.presets("pearl") else "paper")
    return algos.make("pearl", family, algos.preset("pearl", name).replace(**overrides)), name


def _time_iteration(algo, iterations: int, repeats: int) -> dict[str, Any]:
    start = time.perf_counter()
    ts = algo.init(jax.random.key(0))
    jax.block_until_ready(ts)
    init_s = time.perf_counter() - start
    compiled, compile_times = compile_program(lambda: algo.lower_train_step(ts))
    first_ts, _ = compiled(ts)  # warm-up
    timing, seconds = time_iterations(compiled, first_ts, iterations, repeats)
    return {"ts": ts, "compiled": compiled, "init_s": init_s, "seconds": seconds, "timing": timing, **compile_times}


def _nbytes(tree: Any) -> int:
    return int(sum(np.asarray(x).nbytes for x in jax.tree.leaves(tree)))


def measure_pearl(env_name: str, overrides: dict[str, Any] | None = None, preset: str | None = None,
                  iterations: int = 2, repeats: int = 3, project: bool = False,
                  budget_iterations: int = 500, paper_train_steps: int = 2000) -> dict[str, Any]:
    """Throughput, compile time, buffer sizes and memory (module docstring)."""
    overrides = dict(overrides or {})
    algo, preset_name = _build(env_name, preset, overrides)
    cfg = algo.config
    measured = _time_iteration(algo, iterations, repeats)
    seconds = measured["seconds"]
    env_steps = cfg.num_tasks_sample * (cfg.num_steps_prior + cfg.num_steps_posterior
                                        + cfg.num_extra_rl_steps_posterior)
    buffers = measured["ts"].extras["buffers"]
    low, high = measured["timing"]["min_s"] / iterations, measured["timing"]["max_s"] / iterations
    record: dict[str, Any] = {
        "benchmark": "pearl",
        "algo": "pearl",
        "env": env_name,
        "preset": preset_name,
        "num_train_tasks": cfg.num_train_tasks,
        "num_tasks_sample": cfg.num_tasks_sample,
        "meta_batch": cfg.meta_batch,
        "batch_size": cfg.batch_size,
        "embedding_batch_size": cfg.embedding_batch_size,
        "hidden": list(cfg.hidden_sizes),
        "iterations_timed": iterations,
        "repeats": repeats,
        "env_steps_per_iteration": float(env_steps),
        "gradient_steps_per_iteration": float(cfg.num_train_steps_per_itr),
        "initial_env_steps": float(cfg.num_train_tasks * cfg.num_initial_steps),
        "init_s": measured["init_s"],
        "lower_s": measured["lower_s"],
        "compile_s": measured["compile_s"],
        "seconds_per_iteration": seconds,
        "seconds_per_iteration_spread": [low, high],
        "meta_iterations_per_s": 1.0 / seconds,
        "train_env_steps_per_s": env_steps / seconds,
        "gradient_steps_per_s": cfg.num_train_steps_per_itr / seconds,
        "replay_capacity_per_task": cfg.buffer_size,
        "encoder_capacity_per_task": algo.encoder_capacity,
        "replay_bytes": _nbytes(buffers["replay"]),
        "encoder_buffer_bytes": _nbytes(buffers["encoder"]),
        "program_bytes": program_memory(measured["compiled"]),
        **peak_memory(),
        "device": environment()["device"],
    }
    if project:  # t(steps) = fixed + g · steps, from this iteration and one with twice the gradient steps
        doubled, _ = _build(env_name, preset, {**overrides,
                                               "num_train_steps_per_itr": 2 * cfg.num_train_steps_per_itr})
        record["seconds_per_iteration_doubled"] = _time_iteration(doubled, iterations, repeats)["seconds"]
        record.update(projection(record, budget_iterations, paper_train_steps))
    return record


def projection(record: dict[str, Any], budget_iterations: int = 500, paper_train_steps: int = 2000) -> dict:
    """The paper budget's wall clock from the two measurements of ``record``. The fit t = fixed + g · steps is
    used only where both parts come out positive; under timing noise larger than the doubled gradient steps'
    cost it is not, and then only a lower bound is given: the paper's iterations take at least the measured
    one (they have at least as many gradient steps)."""
    steps = record["gradient_steps_per_iteration"]
    seconds, doubled = record["seconds_per_iteration"], record["seconds_per_iteration_doubled"]
    per_step = (doubled - seconds) / steps
    fixed = seconds - per_step * steps
    env_steps = record["initial_env_steps"] + budget_iterations * record["env_steps_per_iteration"]
    out = {"budget_iterations": budget_iterations, "budget_env_steps": float(env_steps),
           "budget_gradient_steps": float(budget_iterations * paper_train_steps),
           "projected_budget_s_lower": record["init_s"] + budget_iterations * seconds}
    if per_step > 0 and fixed > 0:
        out.update({"seconds_per_gradient_step": per_step, "collection_seconds_per_iteration": fixed,
                    "projected_budget_s": record["init_s"]
                    + budget_iterations * (fixed + per_step * paper_train_steps)})
    return out


    return record


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="point_semicircle")
    parser.add_argument("--preset", default=None)
    parser.add_argument("--override", action="append", default=[], help="config field=JSON value (repeatable)")
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--project", action="store_true", help="also time twice the gradient steps and project")
    args = parser.parse_args(argv)
    _, preset = _build(args.env, args.preset, {})
    config = algos.preset("pearl", preset).with_overrides(args.override)
    overrides = {k: getattr(config, k) for k in (item.split("=", 1)[0].strip() for item in args.override)}
    record = measure_pearl(args.env, overrides, args.preset, args.iterations, args.repeats, args.project)
    print(json.dumps({"environment": environment(), **record}, indent=2))
    return record


if __name__ == "__main__":
    main()
