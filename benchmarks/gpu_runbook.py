r"""The GPU run-book: the rows that decide the performance goals, in under 8 minutes on one GPU.

    make gpu-wheels                       # here, once: the wheels the GPU machine lacks, into .whl/
    make bench-gpu                        # there: installs .whl/ with --no-index, then runs this
    python -m benchmarks.gpu_runbook --dry_run --out /tmp/rb --results_md /tmp/RESULTS.md   # tiny, CPU

Sections, each a subprocess with its own time box (``SECTIONS[name]["box_s"]``), run in this order:

* ``maml_cheetah_vel``  MAML-TRPO on cheetah_vel at the paper's batch, 40 tasks × 20 episodes × 200 steps;
* ``maesn_wheeled``     MAESN on the wheeled robot at the paper's batch, 20 × 50 × 200;
* ``peer_ppo``          our PPO (brax preset) against brax's PPO on inverted_pendulum, 2048 environments;
* ``peer_sac``          our SAC against brax's SAC on inverted_pendulum;
* ``seeds``             N = 1, 4, 16 independent seeds of MAML (point, 40 × 20 × 100) as one program each;
* ``compile``           every registered algorithm's train-step compile time (its ``paper`` preset, point_corner).

A section appends each record to its own JSON-lines file as soon as it is measured, and stops starting
new measurements once its box is spent; a section still running at box + grace is killed, and what it
had written stays. The boxes shrink to what is left of the whole run's ``--budget_s`` (default 450 s).
Writes ``benchmarks/results/<gpu>-<date>.json`` (``run.result_name``) and regenerates the run-book's
own blocks of RESULTS.md (``gpu_*``; the CPU tables are left as they are).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Any

from benchmarks.records import clean

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# Sizes per section on a GPU. Boxes add up to 440 s of the 450 s budget; the rest is process start-up.
SECTIONS: dict[str, dict[str, Any]] = {
    "maml_cheetah_vel": dict(box_s=75, kind="training", runs=[
        dict(algo="maml", env="cheetah_vel", tasks=40, episodes=20, horizon=200, iterations=2, repeats=2)]),
    "maesn_wheeled": dict(box_s=75, kind="training", runs=[
        dict(algo="maesn", env="wheeled", tasks=20, episodes=50, horizon=200, preset="wheeled", iterations=2,
             repeats=2)]),
    "peer_ppo": dict(box_s=95, kind="peer_ppo", spec=dict(
        env="inverted_pendulum", num_envs=2048, unroll=100, iterations=10, epochs=4, minibatches=32, repeats=3,
        try_shim=True)),
    "peer_sac": dict(box_s=80, kind="peer_sac", spec=dict(
        env="inverted_pendulum", num_envs=64, episode_length=1000, env_steps=32_000, epochs=2, repeats=2,
        try_shim=True)),
    "seeds": dict(box_s=60, kind="seeds", spec=dict(
        algo="maml", env="point_corner", tasks=40, episodes=20, horizon=100, seed_counts=(1, 4, 16), iterations=2,
        repeats=2)),
    "compile": dict(box_s=55, kind="compile", spec=dict(env="point_corner", horizon=100, preset="paper")),
}

# --dry_run: the same sections at tiny sizes on point families (CPU, a pipeline check, not figures).
DRY_RUN: dict[str, dict[str, Any]] = {
    "maml_cheetah_vel": dict(box_s=60, kind="training", runs=[
        dict(algo="maml", env="point_corner", tasks=2, episodes=2, horizon=5, hidden=(8,), iterations=1,
             repeats=1)]),
    "maesn_wheeled": dict(box_s=60, kind="training", runs=[
        dict(algo="maesn", env="point_corner", tasks=2, episodes=2, horizon=5, hidden=(8,), iterations=1,
             repeats=1)]),
    # The quick benchmark's "ours" (benchmarks.run QUICK): the same compiled program when run in-process.
    "peer_ppo": dict(box_s=60, kind="peer_ppo", spec=dict(
        env="point_corner", num_envs=4, unroll=10, iterations=2, epochs=2, minibatches=2, eval_episodes=4,
        repeats=2, try_shim=False, skip_brax=True)),
    "peer_sac": dict(box_s=60, kind="peer_sac", spec=dict(
        env="point_corner", num_envs=2, episode_length=10, env_steps=8, epochs=2, repeats=2, hidden=(8,),
        batch_size=8, try_shim=False, skip_brax=True)),
    "seeds": dict(box_s=60, kind="seeds", spec=dict(
        algo="vpg", env="point_corner", tasks=1, episodes=2, horizon=10, hidden=(8,), seed_counts=(1, 4, 16),
        iterations=1, repeats=1)),
    # The quick benchmark's PPO program again (a persistent-cache hit in the test suite).
    "compile": dict(box_s=60, kind="compile", spec=dict(
        env="point_corner", horizon=10, preset="brax", hidden=(64, 64), algos=("ppo",),
        overrides={"tasks_per_iteration": 1, "episodes_per_task": 4, "ppo_epochs": 2, "ppo_minibatches": 2,
                   "value_hidden_sizes": (64, 64)})),
}
GRACE_S = 20.0  # after its box a section may finish the measurement in flight, then it is killed


# ----------------------------------------------------------------------------- inside a section


class Section:
    """A running section: its records go to ``path`` one JSON line each; ``expired`` after ``box_s``."""

    def __init__(self, path: str, box_s: float):
        self.path, self.deadline = path, time.perf_counter() + box_s

    @property
    def left_s(self) -> float:
        return self.deadline - time.perf_counter()

    @property
    def expired(self) -> bool:
        return self.left_s <= 0

    def write(self, records: list[dict]) -> None:
        with open(self.path, "a") as f:
            for record in records:
                f.write(json.dumps(clean(record)) + "\n")


def run_section(name: str, config: dict[str, Any], section: Section) -> None:
    """Measures one section, writing each record as soon as it exists."""
    kind = config["kind"]
    if kind == "training":
        from benchmarks import physics, training

        for run in config["runs"]:
            run = dict(run)
            if section.expired:
                break
            if run.get("hidden") is not None:
                run["hidden"] = tuple(run["hidden"])  # JSON made it a list
            algo, env, tasks, episodes, horizon = (run.pop(k) for k in ("algo", "env", "tasks", "episodes", "horizon"))
            measure_physics = run.pop("physics_ratio", True)
            # The training record first, the physics at the same size after it (joined in the table): a section
            # cut short by its box keeps the training figures.
            record = training.measure_training(algo, env, tasks, episodes, horizon, physics_ratio=False, **run)
            section.write([record])
            if measure_physics and not section.expired:
                section.write([physics.measure_physics_once(env, record["parallel_envs"], horizon,
                                                            run.get("repeats", 3))])
    elif kind == "peer_ppo":
        from benchmarks import peer_ppo

        spec = dict(config["spec"])
        skip_brax = spec.pop("skip_brax", False)
        # brax gets what is left of the box once ours is measured (its own subprocess timeout).
        attempts = [] if skip_brax else None
        records = peer_ppo.compare(**spec, attempts=attempts, brax_timeout_s=max(10.0, section.left_s - 30.0))
        section.write(records)
    elif kind == "peer_sac":
        from benchmarks import peer_sac

        spec = dict(config["spec"])
        skip_brax = spec.pop("skip_brax", False)
        records = peer_sac.compare(**spec, attempts=[] if skip_brax else None,
                                   brax_timeout_s=max(10.0, section.left_s - 30.0))
        section.write(records)
    elif kind == "seeds":
        from benchmarks import seeds

        spec = dict(config["spec"])
        if spec.get("hidden") is not None:
            spec["hidden"] = tuple(spec["hidden"])
        base_sps = None
        for n in spec.pop("seed_counts"):  # one N at a time, so that a cut-short section keeps the smaller N
            if section.expired:
                break
            [record] = seeds.measure_seeds(**spec, seed_counts=(n,))
            base_sps = base_sps or record["train_env_steps_per_s"]
            record["speedup_vs_1"] = record["train_env_steps_per_s"] / base_sps
            section.write([record])
    elif kind == "compile":
        from metarl_jax import algos

        spec = config["spec"]
        for algo in spec.get("algos") or algos.names():
            if section.expired:
                break
            section.write([measure_compile(algo, spec["env"], spec["horizon"], spec["preset"], spec.get("hidden"),
                                           spec.get("overrides"))])
    elif kind == "_selftest_overrun":  # the time-box test: one record, then more work than the box allows
        section.write([{"benchmark": "selftest", "index": 0}])
        time.sleep(600)
    else:
        raise ValueError(f"unknown section kind {kind!r} of section {name!r}")


def measure_compile(algo_name: str, env_name: str, horizon: int, preset: str, hidden=None,
                    overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Trace + lower and XLA compile time of one algorithm's train step (or the exception)."""
    import jax

    from benchmarks.timing import compile_program, environment
    from metarl_jax import algos, envs

    record: dict[str, Any] = {"benchmark": "compile", "algo": algo_name, "env": env_name, "horizon": horizon,
                              "preset": preset, "device": environment()["device"]}
    try:
        family = envs.make(env_name, episode_length=horizon)
        config = algos.preset(algo_name, preset if preset in algos.presets(algo_name) else "paper")
        if hidden is not None and hasattr(config, "hidden_sizes"):
            config = config.replace(hidden_sizes=tuple(hidden))
        if overrides:  # JSON turned tuples into lists
            config = config.replace(**{k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()})
        algo = algos.make(algo_name, family, config)
        ts = algo.init(jax.random.key(0))
        _, times = compile_program(lambda: algo.lower_train_step(ts))
        record.update(times, status="ok", hidden=list(getattr(config, "hidden_sizes", ())))
    except Exception as error:  # noqa: BLE001 - one algorithm's failure is a record, not the end of the section
        record.update(status="error", exception_type=type(error).__name__,
                      exception_message=(str(error).splitlines() or [""])[0][:300])
    return record


# ----------------------------------------------------------------------------- the driver


def launch(name: str, config: dict[str, Any], box_s: float, records_path: str,
           compilation_cache: str | None = None, grace_s: float = GRACE_S) -> dict[str, Any]:
    """Runs one section in a subprocess, killed at ``box_s`` + ``grace_s``; returns its status record."""
    command = [sys.executable, "-m", "benchmarks.gpu_runbook", "--section", name, "--box_s", str(box_s),
               "--records", records_path, "--section_config", json.dumps(config)]
    if compilation_cache:
        command += ["--compilation_cache", compilation_cache]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), PYTHONUNBUFFERED="1")
    start = time.perf_counter()
    try:
        proc = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=box_s + grace_s)
        status = "ok" if proc.returncode == 0 else "error"
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
    except subprocess.TimeoutExpired:
        status, tail = "overran", [f"killed after {box_s + grace_s:.0f} s (box {box_s:.0f} s + grace)"]
    return {"benchmark": "section", "section": name, "status": status, "box_s": box_s,
            "wall_s": time.perf_counter() - start, "message": " | ".join(tail)[-500:]}


def read_records(path: str) -> list[dict]:
    """The records a section wrote (a line cut short by a kill is dropped)."""
    if not os.path.exists(path):
        return []
    records = []
    with open(path) as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return records


def run_book(sections: dict[str, dict[str, Any]], budget_s: float, in_process: bool = False,
             only: tuple[str, ...] | None = None, compilation_cache: str | None = None,
             grace_s: float = GRACE_S) -> list[dict]:
    """Every section in order, each boxed, the boxes shrunk to the budget left; all their records."""
    start = time.perf_counter()
    results: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, config in sections.items():
            if only and name not in only:
                continue
            left = budget_s - (time.perf_counter() - start)
            box_s = min(float(config["box_s"]), left - grace_s)
            path = os.path.join(tmp, f"{name}.jsonl")
            if box_s < min(5.0, float(config["box_s"])):  # too little left to start a process
                results.append({"benchmark": "section", "section": name, "status": "skipped", "box_s": 0.0,
                                "wall_s": 0.0, "message": f"{left:.0f} s of the {budget_s:.0f} s budget left"})
                continue
            print(f"[runbook] {name}: box {box_s:.0f} s", flush=True)
            if in_process:  # soft box only (tests, --dry_run --in_process): shares this process's compiles
                section_start = time.perf_counter()
                try:
                    run_section(name, config, Section(path, box_s))
                    status, message = "ok", ""
                except Exception as error:  # noqa: BLE001 - recorded
                    traceback.print_exc()
                    status, message = "error", f"{type(error).__name__}: {error}"[:500]
                status_record = {"benchmark": "section", "section": name, "status": status, "box_s": box_s,
                                 "wall_s": time.perf_counter() - section_start, "message": message}
            else:
                status_record = launch(name, config, box_s, path, compilation_cache, grace_s)
            records = read_records(path)
            status_record["records"] = len(records)
            print(f"[runbook] {name}: {status_record['status']}, {len(records)} record(s) in "
                  f"{status_record['wall_s']:.0f} s", flush=True)
            results.extend([*records, status_record])
    return results


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry_run", action="store_true", help="tiny sizes on point families (CPU)")
    parser.add_argument("--in_process", action="store_true",
                        help="run the sections in this process (soft time boxes only; for the test suite)")
    parser.add_argument("--budget_s", type=float, default=450.0, help="the whole run's wall-clock budget")
    parser.add_argument("--only", default=None, help="comma-separated sections: " + ", ".join(SECTIONS))
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    parser.add_argument("--results_md", default=None,
                        help="RESULTS.md to regenerate (default benchmarks/RESULTS.md; --dry_run: none)")
    parser.add_argument("--compilation_cache", default=None)
    parser.add_argument("--allow_cpu", action="store_true", help="run the GPU sizes without a GPU (very slow)")
    parser.add_argument("--section", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--section_config", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--box_s", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--records", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.compilation_cache:
        import jax

        jax.config.update("jax_compilation_cache_dir", args.compilation_cache)
    if args.section:  # inside a section's subprocess
        run_section(args.section, json.loads(args.section_config), Section(args.records, args.box_s))
        return None

    from benchmarks import run, tables
    from benchmarks.timing import compilation_cache_dir, environment

    only = tuple(s for s in args.only.split(",") if s) if args.only else None
    if only and set(only) - set(SECTIONS):
        parser.error(f"--only: unknown {sorted(set(only) - set(SECTIONS))}; valid: {list(SECTIONS)}")
    start = time.perf_counter()
    env = environment()
    if env["platform"] == "cpu" and not (args.dry_run or args.allow_cpu):
        parser.error("no GPU: jax sees only the CPU (check JAX_PLATFORMS and the CUDA plugin); "
                     "--dry_run runs tiny sizes on CPU, --allow_cpu the GPU sizes anyway")
    results = run_book(DRY_RUN if args.dry_run else SECTIONS, args.budget_s, args.in_process, only,
                       args.compilation_cache or compilation_cache_dir())
    # Each training record with the physics measured after it at the same size (when its section got that far).
    physics = [r for r in results if r["benchmark"] == "physics"]
    results = [tables.with_physics([r], physics)[0] if r["benchmark"] == "training" else r for r in results]
    data = {"environment": env, "mode": "gpu_runbook" + ("_dry_run" if args.dry_run else ""),
            "command": " ".join(["python -m benchmarks.gpu_runbook", *argv]), "wall_s": time.perf_counter() - start,
            "budget_s": args.budget_s, "only": list(only) if only else None, "results": results}
    os.makedirs(args.out, exist_ok=True)
    name = run.result_name(env, "dry_run" if args.dry_run else "default")
    path = os.path.join(args.out, name)
    with open(path, "w") as f:
        json.dump(data, f, indent=2)
    results_md = args.results_md or (None if args.dry_run else os.path.join(HERE, "RESULTS.md"))
    if results_md:
        tables.update_runbook_md(results_md, data)
    for block in tables.render_runbook(data).values():
        print(block, end="\n\n")
    print(f"wrote {path}" + (f" and the run-book tables of {results_md}" if results_md else "")
          + f" in {data['wall_s']:.0f} s", flush=True)
    return data


if __name__ == "__main__":
    main()
