r"""Training throughput of the off-policy learners (DDPG, SAC, Xu et al.'s teacher).

    python -m benchmarks.offpolicy --algo sac --env pendulum --num_envs 16 --override rollout_steps=16 \
        --override train_steps=16 --override epoch_cycles=50 --iterations 2

One record per (algorithm, family, config):

* ``compile_s``: XLA compile of one iteration (an epoch of ``epoch_cycles`` cycles) alone.
* ``train_env_steps_per_s`` and ``gradient_steps_per_s``: the iteration's own counts
  (``time/env_steps``, every step the learner takes: for the teacher D0, D1 and the student's
  rollouts; ``time/gradient_steps``: the critic/actor updates, the exercise moves included)
  over the median wall time of ``iterations`` consecutive compiled iterations.
* ``physics_env_steps_per_s`` and ``ratio_train_to_physics``: ``benchmarks.physics`` (random
  actions, no policy) on the same family with the same number of parallel environments.
  An off-policy iteration interleaves few environment steps with many gradient steps, so this
  ratio is far below the on-policy learners'; the gradient steps/s say where the time goes.
* optionally the first and final ``train/return`` of a fresh run of ``return_after`` iterations.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import jax

from benchmarks.physics import measure_physics_once
from benchmarks.timing import compile_program, environment, peak_memory, program_memory, time_iterations
from metarl_jax import algos, envs

_COMPILED: dict[tuple, tuple] = {}


def build(algo_name: str, env_name: str, preset: str | None, overrides: dict[str, Any]):
    family = envs.make(env_name)
    presets = algos.presets(algo_name)
    name = preset if preset is not None else (env_name if env_name in presets else "paper")
    config = algos.preset(algo_name, name).replace(**overrides)
    return family, algos.make(algo_name, family, config), name


def measure_offpolicy(algo_name: str, env_name: str, overrides: dict[str, Any] | None = None,
                      preset: str | None = None, iterations: int = 2, repeats: int = 3, physics_steps: int = 100,
                      physics_ratio: bool = True, return_after: int | None = None) -> dict[str, Any]:
    """Throughput, compile time, memory and the ratio to physics (module docstring)."""
    overrides = dict(overrides or {})
    key = (algo_name, env_name, preset, tuple(sorted(overrides.items())))
    if key not in _COMPILED:  # one compile per configuration and process (the SAC peer comparison reuses it)
        family, algo, preset_name = build(algo_name, env_name, preset, overrides)
        ts = jax.jit(algo.init)(jax.random.key(0))  # committed arrays, as the outputs: one compiled program
        compiled, compile_times = compile_program(lambda: algo.lower_train_step(ts))
        _COMPILED[key] = (family, algo, preset_name, ts, compiled, compile_times)
    family, algo, preset_name, ts, compiled, compile_times = _COMPILED[key]
    cfg = algo.config

    first_ts, first = compiled(ts)  # warm-up; step 0 -> 1: the counters are those of one iteration
    env_steps = float(first["time/env_steps"]) - float(ts.extras["experience"].env_steps)
    gradient_steps = float(first["time/gradient_steps"])

    timing, seconds = time_iterations(compiled, first_ts, iterations, repeats)
    record: dict[str, Any] = {
        "benchmark": "offpolicy",
        "algo": algo_name,
        "env": env_name,
        "preset": preset_name,
        "num_envs": cfg.num_envs * getattr(cfg, "teacher_copies", 1),
        "epoch_cycles": cfg.epoch_cycles,
        "rollout_steps": cfg.rollout_steps,
        "train_steps": cfg.train_steps,
        "batch_size": cfg.batch_size,
        "hidden": list(cfg.hidden_sizes),
        "iterations_timed": iterations,
        "repeats": repeats,
        "env_steps_per_iteration": env_steps,
        "gradient_steps_per_iteration": gradient_steps,
        "lower_s": compile_times["lower_s"],
        "compile_s": compile_times["compile_s"],
        "seconds_per_iteration": seconds,
        "seconds_per_iteration_spread": [timing["min_s"] / iterations, timing["max_s"] / iterations],
        "train_env_steps_per_s": env_steps / seconds,
        "gradient_steps_per_s": gradient_steps / seconds,
        "program_bytes": program_memory(compiled),
        **peak_memory(),
        "device": environment()["device"],
    }
    if physics_ratio:
        physics = measure_physics_once(env_name, record["num_envs"], physics_steps, repeats)
        record["physics_env_steps_per_s"] = physics["steps_per_second"]
        record["ratio_train_to_physics"] = record["train_env_steps_per_s"] / physics["steps_per_second"]
    if return_after:
        state = jax.jit(algo.init)(jax.random.key(0))
        start = time.perf_counter()
        returns, steps = [], []
        for _ in range(return_after):
            state, metrics = compiled(state)
            returns.append(metrics["train/return"])
            steps.append(metrics["time/env_steps"])
        returns = [float(r) for r in jax.block_until_ready(returns)]
        record.update({"budget_iterations": return_after, "budget_env_steps": float(steps[-1]),
                       "budget_wall_s": time.perf_counter() - start, "first_return": returns[0],
                       "final_return": returns[-1]})
    return record


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", default="sac", help="ddpg, sac or teacher_ddpg")
    parser.add_argument("--env", default="pendulum")
    parser.add_argument("--preset", default=None)
    parser.add_argument("--override", action="append", default=[], help="config field=JSON value (repeatable)")
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    _, _, preset = build(args.algo, args.env, args.preset, {})
    config = algos.preset(args.algo, preset).with_overrides(args.override)
    overrides = {k: getattr(config, k) for k in (item.split("=", 1)[0].strip() for item in args.override)}
    record = measure_offpolicy(args.algo, args.env, overrides, args.preset, args.iterations, args.repeats)
    print(json.dumps({"environment": environment(), **record}, indent=2))
    return record


if __name__ == "__main__":
    main()
