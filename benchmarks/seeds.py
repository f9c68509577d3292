r"""Independent seeds in one program: training env steps/s against the number of seeds N.

    python -m benchmarks.seeds --algo maml --env point_corner --seeds 1,2,4,8,16

``algo.init_seeds(keys)`` stacks N train states on a leading axis and
``algo.train_seeds(ts, iterations)`` runs them as ONE XLA program (vmap over seeds of
the scanned train step) on one device. Each N is a separate program: its first call
(compile + one run) is reported as ``first_call_s``, then the median of ``repeats``
timed calls. ``speedup_vs_1`` is (env steps/s at N) / (env steps/s at N = 1), measured
within the same run; N-fold would be perfect batching.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import jax

from benchmarks.timing import environment, peak_memory, time_call
from benchmarks.training import build


def measure_seeds(algo: str, env: str, tasks: int, episodes: int, horizon: int,
                  seed_counts: tuple[int, ...] = (1, 2, 4, 8, 16), iterations: int = 2, repeats: int = 3,
                  hidden: tuple[int, ...] | None = None, overrides: dict[str, Any] | None = None) -> list[dict]:
    _, learner, preset = build(algo, env, tasks, episodes, horizon, hidden=hidden, overrides=overrides)
    records = []
    base_sps = None
    for n in seed_counts:
        ts = learner.init_seeds(jax.random.split(jax.random.key(0), n))
        start = time.perf_counter()
        _, metrics = jax.block_until_ready(learner.train_seeds(ts, iterations))
        first_call_s = time.perf_counter() - start
        # metrics["time/env_steps"]: [seeds, iterations]; the last entry counts every iteration of one seed.
        steps_per_seed = float(metrics["time/env_steps"][0, -1])
        timing = time_call(lambda ts=ts: learner.train_seeds(ts, iterations), repeats=repeats, warmup=0)
        sps = n * steps_per_seed / timing["median_s"]
        base_sps = sps if base_sps is None else base_sps
        records.append({
            "benchmark": "seeds",
            "algo": algo,
            "env": env,
            "preset": preset,
            "tasks": tasks,
            "episodes": episodes,
            "horizon": horizon,
            "hidden": list(learner.config.hidden_sizes),
            "num_seeds": n,
            "iterations_per_call": iterations,
            "repeats": repeats,
            "first_call_s": first_call_s,
            "seconds_per_call": timing["median_s"],
            "seconds_per_call_spread": [timing["min_s"], timing["max_s"]],
            "train_env_steps_per_s": sps,
            "train_env_steps_per_s_spread": [n * steps_per_seed / timing["max_s"],
                                             n * steps_per_seed / timing["min_s"]],
            "speedup_vs_1": sps / base_sps,
            **peak_memory(),
            "device": environment()["device"],
        })
    return records


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", default="maml")
    parser.add_argument("--env", default="point_corner")
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--horizon", type=int, default=100)
    parser.add_argument("--seeds", default="1,2,4,8,16")
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    counts = tuple(int(n) for n in args.seeds.split(",") if n)
    records = measure_seeds(args.algo, args.env, args.tasks, args.episodes, args.horizon, counts, args.iterations,
                            args.repeats)
    print(json.dumps({"environment": environment(), "results": records}, indent=2))
    return records


if __name__ == "__main__":
    main()
