r"""Scaling over devices: the task axis sharded over a mesh of 1, 2, 4, ... devices.

    python -m benchmarks.multi_device --algo maml --env point_corner --tasks 8 --device_counts 1,2,4,8

With more than one device present, the same meta-batch runs on meshes of each size
(``parallel.task_mesh(num_devices=k)``) and env steps/s is reported against k.

With one device, the record says "only one device present". On CPU, ``measure_scaling``
can also re-run itself in a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=4``: those forced host devices share
the same CPU cores, so that figure checks that the sharded program compiles and runs
(and what the partitioning costs), it is NOT a scaling measurement; its records carry
``forced_host_devices: true``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from typing import Any

import jax

from benchmarks.timing import compilation_cache_dir, compile_program, environment, time_call
from benchmarks.training import build
from metarl_jax import parallel

FORCED_HOST_DEVICES = 4


def measure_devices(algo: str, env: str, tasks: int, episodes: int, horizon: int,
                    device_counts: tuple[int, ...], iterations: int = 2, repeats: int = 3,
                    hidden: tuple[int, ...] | None = None, overrides: dict[str, Any] | None = None,
                    forced: bool = False) -> list[dict]:
    """Env steps/s of one meta-iteration on meshes of ``device_counts`` devices (this process's devices)."""
    records = []
    base = None
    for k in device_counts:
        if k > jax.device_count():
            continue
        mesh = parallel.task_mesh(num_devices=k)
        _, learner, preset = build(algo, env, tasks, episodes, horizon, hidden=hidden, overrides=overrides,
                                   mesh=mesh)
        ts = parallel.replicate(learner.init(jax.random.key(0)), mesh)
        compiled, compile_times = compile_program(lambda learner=learner, ts=ts: learner.lower_train_step(ts))
        ts, metrics = compiled(ts)
        steps = float(metrics["time/env_steps"])

        def run(compiled=compiled, ts=ts):
            state = ts
            for _ in range(iterations):
                state, _ = compiled(state)
            return state

        timing = time_call(run, repeats=repeats, warmup=0)
        sps = steps * iterations / timing["median_s"]
        base = sps if base is None else base
        records.append({
            "benchmark": "multi_device",
            "status": "measured",
            "forced_host_devices": forced,
            "algo": algo,
            "env": env,
            "preset": preset,
            "tasks": tasks,
            "episodes": episodes,
            "horizon": horizon,
            "num_devices": k,
            "compile_s": compile_times["compile_s"],
            "seconds_per_iteration": timing["median_s"] / iterations,
            "seconds_per_iteration_spread": [timing["min_s"] / iterations, timing["max_s"] / iterations],
            "train_env_steps_per_s": sps,
            "speedup_vs_1": sps / base,
            "device": environment()["device"],
        })
    return records


def measure_scaling(algo: str, env: str, tasks: int, episodes: int, horizon: int,
                    iterations: int = 2, repeats: int = 3, hidden: tuple[int, ...] | None = None,
                    force_host_devices: bool = True, timeout_s: float = 600) -> list[dict]:
    """Scaling over the devices present; with one CPU device, the forced-host-devices subprocess instead."""
    count = jax.device_count()
    if count > 1:
        counts = tuple(k for k in (1, 2, 4, 8, 16, 32, 64) if k <= count and tasks % k == 0)
        return measure_devices(algo, env, tasks, episodes, horizon, counts, iterations, repeats, hidden)
    records: list[dict] = [{
        "benchmark": "multi_device",
        "status": "only one device present",
        "num_devices": 1,
        "device": environment()["device"],
    }]
    if force_host_devices and jax.devices()[0].platform == "cpu":
        records.extend(_forced_host_subprocess(algo, env, tasks, episodes, horizon, iterations, repeats,
                                               hidden, timeout_s))
    return records


def _forced_host_subprocess(algo_name, env_name, tasks, episodes, horizon, iterations, repeats, hidden,
                            timeout_s) -> list[dict]:
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={FORCED_HOST_DEVICES}")
    env["JAX_PLATFORMS"] = "cpu"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    counts = ",".join(str(k) for k in (1, 2, 4) if k <= FORCED_HOST_DEVICES and tasks % k == 0)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "records.json")
        command = [sys.executable, "-m", "benchmarks.multi_device", "--algo", algo_name, "--env", env_name,
                   "--tasks", str(tasks), "--episodes", str(episodes), "--horizon", str(horizon),
                   "--device_counts", counts, "--iterations", str(iterations), "--repeats", str(repeats),
                   "--forced", "--json_out", out]
        if hidden:
            command += ["--hidden", ",".join(str(h) for h in hidden)]
        if compilation_cache_dir():
            command += ["--compilation_cache", compilation_cache_dir()]
        try:
            proc = subprocess.run(command, env=env, cwd=root, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return [{"benchmark": "multi_device", "status": f"forced host devices: timed out after {timeout_s:.0f} s",
                     "forced_host_devices": True, "num_devices": FORCED_HOST_DEVICES, "device": "cpu (forced)"}]
        if proc.returncode != 0 or not os.path.exists(out):
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            return [{"benchmark": "multi_device", "status": f"forced host devices failed: {tail[0][:300]}",
                     "forced_host_devices": True, "num_devices": FORCED_HOST_DEVICES, "device": "cpu (forced)"}]
        with open(out) as f:
            return json.load(f)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", default="maml")
    parser.add_argument("--env", default="point_corner")
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--horizon", type=int, default=100)
    parser.add_argument("--hidden", default=None)
    parser.add_argument("--device_counts", default=None, help="default: 1, 2, 4, ... up to the devices present")
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--forced", action="store_true", help="label records as forced host devices")
    parser.add_argument("--compilation_cache", default=None)
    parser.add_argument("--json_out", default=None)
    args = parser.parse_args(argv)
    if args.compilation_cache:
        jax.config.update("jax_compilation_cache_dir", args.compilation_cache)
    hidden = tuple(int(h) for h in args.hidden.split(",")) if args.hidden else None
    if args.device_counts:
        counts = tuple(int(k) for k in args.device_counts.split(",") if k)
        records = measure_devices(args.algo, args.env, args.tasks, args.episodes, args.horizon, counts,
                                  args.iterations, args.repeats, hidden, forced=args.forced)
    else:
        records = measure_scaling(args.algo, args.env, args.tasks, args.episodes, args.horizon, args.iterations,
                                  args.repeats, hidden)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(records, f)
    else:
        print(json.dumps({"environment": environment(), "results": records}, indent=2))
    return records


if __name__ == "__main__":
    main()
