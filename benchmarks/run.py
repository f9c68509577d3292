r"""``make bench``: every benchmark in one command.

    python -m benchmarks.run            # CPU sizes (a few minutes on 2 cores)
    python -m benchmarks.run --full     # the papers' sizes (use a GPU)
    python -m benchmarks.run --quick --out /tmp/b --results_md /tmp/RESULTS.md   # tiny: the test suite

Writes ``<out>/<device>-<date>[-quick|-full].json`` (default out: ``benchmarks/results``)
and regenerates the tables of ``benchmarks/RESULTS.md`` between its
``<!-- BEGIN/END GENERATED: ... -->`` markers (``--results_md`` picks another file;
``--quick`` updates a RESULTS.md only when one is named). One module per measurement:

* ``physics``       raw env steps/s against the number of parallel environments (and, for the
                    dynamics-varying families, a physics model per task against one shared model);
* ``training``      any algorithm × family × sizes: env steps/s, the ratio to physics at
                    the same parallel envs, meta-iterations/s, compile time, memory and the
                    projected wall clock of the paper's budget;
* ``seeds``         N independent seeds in one program;
* ``offpolicy``     DDPG, SAC, Xu et al.'s teacher: env and gradient steps/s, compile, ratio to physics;
* ``pearl``         PEARL's meta-iterations/s, env and gradient steps/s, compile, buffer sizes and memory,
                    and the projected wall clock of oyster's cheetah-vel budget (≈ 2.7M env steps);
* ``peer_ppo``      our PPO against brax's PPO (or the physics limit when brax fails);
* ``peer_sac``      our SAC against brax's SAC on the same MJX environment;
* ``multi_device``  scaling over devices (or "only one device present").

The persistent compilation cache is off unless ``--compilation_cache DIR`` is given
(or the calling process already configured one, as the test suite does), so that
compile times are cold; the header of every table says which.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import jax

from benchmarks import multi_device, offpolicy, pearl, peer_ppo, peer_sac, physics, seeds, tables, training
from benchmarks.records import clean as _clean
from benchmarks.timing import environment

HERE = os.path.dirname(os.path.abspath(__file__))

# Sizes per mode. Training entries: algo, env, tasks, episodes, horizon (+ hidden, iterations, ...).
QUICK: dict[str, Any] = {
    "physics": [("point_corner", (16,), 10)],
    "model_batching": [],  # MJX compiles: not in the quick run
    # The same configuration as the peer comparison's "ours": compiled once, used twice.
    "training": [
        dict(algo="ppo", env="point_corner", tasks=1, episodes=4, horizon=10, hidden=(64, 64), preset="brax",
             overrides=peer_ppo.our_overrides(4, 2, 2), iterations=2, repeats=2),
    ],
    "seeds": dict(algo="vpg", env="point_corner", tasks=1, episodes=2, horizon=10, hidden=(8,), seed_counts=(1, 2),
                  iterations=1, repeats=2),
    "peer_ppo": dict(env="point_corner", brax_env="inverted_pendulum", num_envs=4, unroll=10, iterations=2, epochs=2,
                     minibatches=2, eval_episodes=4, repeats=2, try_shim=False, brax_timeout_s=150),
    "multi_device": dict(algo="vpg", env="point_corner", tasks=2, episodes=2, horizon=10, hidden=(8,), iterations=1,
                         repeats=2, timeout_s=150),
    # The same configuration as the SAC peer comparison's "ours": compiled once, used twice.
    "offpolicy": [dict(algo="sac", env="point_corner", overrides=peer_sac.our_overrides(2, 10, 8, 2, (8,), 8),
                       iterations=1, repeats=2, physics_steps=10)],
    "peer_sac": dict(env="point_corner", brax_env="inverted_pendulum", num_envs=2, episode_length=10, env_steps=8,
                     epochs=2, repeats=2, hidden=(8,), batch_size=8, try_shim=False, brax_timeout_s=150),
    # The smoke preset (the tests' configuration): the schema only.
    "pearl": [dict(env="point_semicircle", preset="smoke", iterations=1, repeats=2)],
}

DEFAULT: dict[str, Any] = {
    "physics": [("point_corner", (1, 16, 128), 100), ("wheeled", (16, 128), 100), ("inverted_pendulum", (16,), 100),
                ("walker2d_dir", (16,), 100)],
    # Families with a physics model per task, timed per task and with one shared model.
    "model_batching": [("hopper_rand_params", (16, 128), 100), ("walker2d_rand_params", (16,), 100)],
    "training": [
        # Point navigation: the paper networks at a CPU-sized meta-batch (MAML: 40 x 20 x 100 under --full).
        dict(algo="maml", env="point_corner", tasks=8, episodes=10, horizon=100, policy_rollout=True),
        dict(algo="vpg", env="point_corner", tasks=8, episodes=10, horizon=100),
        dict(algo="trpo", env="point_corner", tasks=8, episodes=10, horizon=100),
        # MAME: explorer and exploitation rollouts, the inner step on z, PPO 5 epochs (paper networks).
        dict(algo="mame", env="point_corner", tasks=8, episodes=10, horizon=100),
        # MAESN on the wheeled robot (MJX), reduced from the paper's 20 x 50 x 200.
        dict(algo="maesn", env="wheeled", tasks=4, episodes=10, horizon=50, preset="wheeled", iterations=1),
        # The recurrent learners: RL² (garage: 10 trials of 4 episodes, GRU 64) on point navigation; TESP and
        # AdaptSV on the 2-link reacher (MJX) with the supplement's networks, reduced from 20 x 25 x 200.
        dict(algo="rl2", env="point_semicircle", tasks=10, episodes=4, horizon=20),
        dict(algo="tesp", env="reacher2", tasks=4, episodes=8, horizon=50, preset="reacher2", iterations=1),
        dict(algo="adapt_sv", env="reacher2", tasks=4, episodes=8, horizon=50, preset="reacher2", iterations=1),
    ],
    "seeds": dict(algo="trpo", env="point_corner", tasks=4, episodes=10, horizon=50, seed_counts=(1, 2, 4, 8),
                  iterations=2, repeats=3),
    "peer_ppo": dict(env="inverted_pendulum", num_envs=64, unroll=100, iterations=8, epochs=4, minibatches=16,
                     repeats=3, try_shim=True, brax_timeout_s=480),
    "multi_device": dict(algo="trpo", env="point_corner", tasks=8, episodes=10, horizon=50, iterations=2,
                         repeats=3, timeout_s=400),
    # The paper's loops on pendulum: DDPG and the teacher at Xu et al.'s sizes (one environment), SAC with 16.
    "offpolicy": [dict(algo="ddpg", env="pendulum", iterations=1),
                  dict(algo="teacher_ddpg", env="pendulum", iterations=1),
                  dict(algo="sac", env="pendulum", iterations=2, overrides=dict(
                      num_envs=16, rollout_steps=16, train_steps=16, epoch_cycles=50, hidden_sizes=(64, 64)))],
    "peer_sac": dict(env="inverted_pendulum", num_envs=16, episode_length=1000, env_steps=16_000, epochs=3, repeats=2,
                     try_shim=True, brax_timeout_s=1500),
    # PEARL: the sparse point robot at the claim's cpu sizes, and cheetah-vel with oyster's networks, tasks and
    # collection but 20 (and 40) gradient steps per iteration, whose difference projects the paper's 2000.
    "pearl": [dict(env="point_semicircle", overrides=dict(
                  hidden_sizes=(64, 64, 64), encoder_hidden_sizes=(64, 64, 64), num_tasks_sample=5,
                  num_steps_prior=100, num_steps_posterior=400, num_train_steps_per_itr=200, meta_batch=8,
                  batch_size=128, embedding_batch_size=256, buffer_size=20000), project=True),
              dict(env="cheetah_vel", overrides=dict(num_train_steps_per_itr=20, buffer_size=30000), iterations=1,
                   repeats=2, project=True)],
}

FULL: dict[str, Any] = {
    "physics": [(family, (1, 128, 1024, 8192), 100)
                for family in ("point_corner", "wheeled", "ant_goal", "cheetah_vel", "half_cheetah",
                               "inverted_pendulum", "walker2d_dir")],
    "model_batching": [(family, (128, 1024, 8192), 100) for family in ("hopper_rand_params", "walker2d_rand_params")],
    "training": [
        dict(algo="mame", env="point_corner", tasks=40, episodes=20, horizon=100),
        dict(algo="mame", env="cheetah_vel", tasks=40, episodes=20, horizon=200),
        dict(algo="maesn", env="wheeled", tasks=20, episodes=50, horizon=200, preset="wheeled", policy_rollout=True),
        dict(algo="latent_space", env="wheeled", tasks=20, episodes=50, horizon=200, preset="wheeled"),
        dict(algo="maml", env="cheetah_vel", tasks=40, episodes=20, horizon=200),
        dict(algo="maml", env="point_corner", tasks=40, episodes=20, horizon=100, policy_rollout=True),
        dict(algo="metasgd", env="point_corner", tasks=40, episodes=20, horizon=100),
        dict(algo="maesn", env="point_corner", tasks=20, episodes=50, horizon=100),
        dict(algo="trpo", env="point_corner", tasks=40, episodes=20, horizon=100),
        dict(algo="tesp", env="reacher2", tasks=20, episodes=25, horizon=200, preset="reacher2"),
        dict(algo="adapt_sv", env="reacher2", tasks=20, episodes=25, horizon=200, preset="reacher2"),
        dict(algo="rl2", env="cheetah_vel", tasks=10, episodes=4, horizon=200),
    ],
    "seeds": dict(algo="maml", env="point_corner", tasks=40, episodes=20, horizon=100,
                  seed_counts=(1, 2, 4, 8, 16), iterations=3, repeats=5),
    "peer_ppo": dict(env="inverted_pendulum", num_envs=2048, unroll=100, iterations=20, epochs=4, minibatches=32,
                     repeats=5, try_shim=True, brax_timeout_s=600),
    "multi_device": dict(algo="maml", env="point_corner", tasks=40, episodes=20, horizon=100, iterations=3,
                         repeats=5, timeout_s=600),
    "offpolicy": [dict(algo=algo, env=env, iterations=2, overrides=dict(num_envs=256, rollout_steps=256 * 4))
                  for algo in ("ddpg", "sac") for env in ("pendulum", "half_cheetah")]
    + [dict(algo="teacher_ddpg", env="pendulum", iterations=1)],
    "peer_sac": dict(env="inverted_pendulum", num_envs=128, episode_length=1000, env_steps=1_000_000, epochs=5,
                     repeats=3, hidden=(256, 256), try_shim=True, brax_timeout_s=600),
    # oyster's settings: cheetah-vel (the projection measures 2000 and 4000 gradient steps), sparse point robot.
    "pearl": [dict(env="cheetah_vel", overrides=dict(buffer_size=30000), iterations=2, project=True),
              dict(env="point_semicircle", overrides=dict(buffer_size=70000), iterations=2)],
}
MODES = {"quick": QUICK, "default": DEFAULT, "full": FULL}

# Keys every record of a kind carries (the test suite checks them).
REQUIRED_KEYS: dict[str, tuple[str, ...]] = {
    "physics": ("family", "num_envs", "num_steps", "steps_per_second", "steps_per_second_spread", "median_s",
                "spread_s", "compile_s", "peak_bytes", "device"),
    "training": ("algo", "env", "tasks", "episodes", "horizon", "parallel_envs", "env_steps_per_iteration",
                 "compile_s", "seconds_per_iteration", "seconds_per_iteration_spread", "meta_iterations_per_s",
                 "train_env_steps_per_s", "physics_env_steps_per_s", "ratio_train_to_physics", "peak_bytes",
                 "device"),
    "seeds": ("algo", "env", "num_seeds", "train_env_steps_per_s", "train_env_steps_per_s_spread", "speedup_vs_1",
              "first_call_s", "device"),
    "peer_ppo": ("learner", "env", "parallel_envs", "horizon", "status", "device"),
    "multi_device": ("status", "num_devices", "device"),
    "offpolicy": ("algo", "env", "num_envs", "env_steps_per_iteration", "gradient_steps_per_iteration", "compile_s",
                  "seconds_per_iteration", "train_env_steps_per_s", "gradient_steps_per_s", "physics_env_steps_per_s",
                  "ratio_train_to_physics", "device"),
    "peer_sac": ("learner", "env", "parallel_envs", "episode_length", "status", "device"),
    "pearl": ("algo", "env", "num_train_tasks", "env_steps_per_iteration", "gradient_steps_per_iteration",
              "compile_s", "seconds_per_iteration", "meta_iterations_per_s", "train_env_steps_per_s",
              "gradient_steps_per_s", "replay_bytes", "encoder_buffer_bytes", "device"),
}
# Figures that must be finite and > 0 wherever they appear.
POSITIVE_FIGURES = ("steps_per_second", "physics_steps_per_second", "median_s", "compile_s", "lower_s",
                    "seconds_per_iteration", "meta_iterations_per_s", "train_env_steps_per_s",
                    "physics_env_steps_per_s", "ratio_train_to_physics", "policy_rollout_env_steps_per_s",
                    "ratio_train_to_policy_rollout", "peak_bytes", "program_bytes", "projected_budget_s",
                    "speedup_vs_1", "first_call_s", "seconds_per_call", "env_steps_per_iteration",
                    "budget_env_steps", "budget_wall_s", "ratio_to_ours", "physics_compile_s", "gradient_steps_per_s",
                    "replay_bytes", "encoder_buffer_bytes")


def _guard(what: str, fn: Callable[[], list[dict]], results: list[dict]) -> None:
    """Runs one measurement; a failure becomes an ``error`` record instead of ending the run."""
    start = time.perf_counter()
    print(f"[bench] {what} ...", flush=True)
    try:
        records = fn()
    except Exception as error:  # noqa: BLE001 - recorded, the other benchmarks still run
        traceback.print_exc()
        records = [{"benchmark": "error", "what": what, "exception_type": type(error).__name__,
                    "exception_message": str(error).splitlines()[0][:500] if str(error) else ""}]
    for record in records:
        results.append(_clean(record))
    print(f"[bench] {what}: {len(records)} record(s) in {time.perf_counter() - start:.1f} s", flush=True)


def run(mode: str, sizes: dict[str, Any] | None = None, only: tuple[str, ...] | None = None) -> list[dict]:
    """All measurements of ``mode``; ``only`` limits them to some kinds.

    In --quick mode the two subprocess measurements (brax's PPO attempt and the forced
    host devices) start first and run beside the in-process ones: quick figures are
    for the schema, not for reading. Other modes run everything one after the other.
    """
    sizes = sizes or MODES[mode]
    wanted = set(only or ("training", "physics", "seeds", "peer_ppo", "multi_device", "offpolicy", "peer_sac",
                          "pearl"))
    results: list[dict] = []
    peer_spec = dict(sizes["peer_ppo"])
    sac_spec = dict(sizes["peer_sac"])
    device_spec = dict(sizes["multi_device"])
    background: dict[str, Future] = {}
    pool = ThreadPoolExecutor(max_workers=2) if mode == "quick" else None
    if pool is not None:
        if "peer_ppo" in wanted:
            background["brax"] = pool.submit(
                peer_ppo.brax_attempts, peer_spec.get("brax_env") or peer_spec["env"], peer_spec["num_envs"],
                peer_spec["unroll"], peer_spec["iterations"], peer_spec["epochs"], peer_spec["brax_timeout_s"],
                peer_spec["try_shim"], peer_spec.get("minibatches", 16))
        if "multi_device" in wanted:
            background["multi_device"] = pool.submit(multi_device.measure_scaling, **device_spec)
        if "peer_sac" in wanted:
            background["brax_sac"] = pool.submit(
                peer_sac.brax_attempts, sac_spec.get("brax_env") or sac_spec["env"], sac_spec["num_envs"],
                sac_spec["episode_length"], sac_spec["env_steps"], sac_spec["epochs"], sac_spec["brax_timeout_s"],
                sac_spec["try_shim"])
    if "training" in wanted:
        for entry in sizes["training"]:
            entry = dict(entry)
            label = f"training {entry['algo']} {entry['env']} {entry['tasks']}x{entry['episodes']}x{entry['horizon']}"
            args = {k: entry.pop(k) for k in ("algo", "env", "tasks", "episodes", "horizon")}
            _guard(label, lambda a=args, e=entry: [training.measure_training(
                a["algo"], a["env"], a["tasks"], a["episodes"], a["horizon"], **e)], results)
    if "offpolicy" in wanted:
        for entry in sizes["offpolicy"]:
            entry = dict(entry)
            label = f"offpolicy {entry['algo']} {entry['env']}"
            algo, env = entry.pop("algo"), entry.pop("env")
            _guard(label, lambda a=algo, v=env, e=entry: [offpolicy.measure_offpolicy(a, v, **e)], results)
    if "pearl" in wanted:
        for entry in sizes.get("pearl", []):
            entry = dict(entry)
            env = entry.pop("env")
            _guard(f"pearl {env}", lambda v=env, e=entry: [pearl.measure_pearl(v, **e)], results)
    if "peer_sac" in wanted:
        _guard(f"peer_sac {sac_spec['env']}", lambda: peer_sac.compare(
            **sac_spec, attempts=background["brax_sac"].result() if "brax_sac" in background else None), results)
    if "seeds" in wanted:
        spec = dict(sizes["seeds"])
        _guard(f"seeds {spec['algo']} {spec['env']} N={spec['seed_counts']}",
               lambda: seeds.measure_seeds(**spec), results)
    if "peer_ppo" in wanted:
        _guard(f"peer_ppo {peer_spec['env']}", lambda: peer_ppo.compare(
            **peer_spec, attempts=background["brax"].result() if "brax" in background else None), results)
    if "multi_device" in wanted:
        _guard("multi_device", lambda: (background["multi_device"].result() if "multi_device" in background
                                        else multi_device.measure_scaling(**device_spec)), results)
    if pool is not None:
        pool.shutdown()
    if "physics" in wanted:
        for family, env_counts, num_steps in sizes["physics"]:
            for num_envs in env_counts:
                def measure(f=family, n=num_envs, s=num_steps) -> list[dict]:
                    physics.measure_physics_once(f, n, s)
                    return []  # collected below with the training sizes

                _guard(f"physics {family} x{num_envs}", measure, results)
        for family, env_counts, num_steps in sizes.get("model_batching", []):
            for num_envs in env_counts:
                for shared in (False, True):
                    def measure_models(f=family, n=num_envs, s=num_steps, shared=shared) -> list[dict]:
                        physics.measure_physics_once(f, n, s, shared_model=shared)
                        return []

                    _guard(f"physics {family} x{num_envs} ({'shared model' if shared else 'model per task'})",
                           measure_models, results)
        # Every physics record of this process: the table's sizes and the training sizes.
        results.extend(_clean(r) for r in physics.measured_records())
    return results


def result_name(env: dict[str, Any], mode: str) -> str:
    device = env["platform"]
    kind = env["device"].split(":", 1)[1].rsplit(" x", 1)[0] if ":" in env["device"] else ""
    if device != "cpu" and kind:
        device += "-" + re.sub(r"[^a-z0-9]+", "-", kind.lower()).strip("-")
    suffix = "" if mode == "default" else f"-{mode}"
    return f"{device}-{env['date']}{suffix}.json"


def check_figures(results: list[dict]) -> list[str]:
    """Problems: error records, missing keys, and non-finite or non-positive figures."""
    problems = []
    for i, record in enumerate(results):
        kind = record.get("benchmark")
        if kind not in REQUIRED_KEYS:
            problems.append(f"record {i}: {kind!r}: {record.get('exception_type', '')} "
                            f"{record.get('exception_message', '')}")
            continue
        missing = [k for k in REQUIRED_KEYS[kind] if k not in record]
        if missing:
            problems.append(f"record {i} ({kind}): missing {missing}")
        for key, value in record.items():
            values = value if isinstance(value, list) else [value]
            for v in values:
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    continue
                if not math.isfinite(v):
                    problems.append(f"record {i} ({kind}): {key} = {v} is not finite")
                elif key in POSITIVE_FIGURES and v <= 0:
                    problems.append(f"record {i} ({kind}): {key} = {v} is not positive")
    return problems


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--full", action="store_true", help="the papers' sizes (use a GPU)")
    size.add_argument("--quick", action="store_true", help="tiny sizes for the test suite (< 60 s on CPU)")
    parser.add_argument("--out", default=os.path.join(HERE, "results"), help="folder of the JSON results")
    parser.add_argument("--results_md", default=None,
                        help="markdown file whose generated tables are regenerated (default: benchmarks/RESULTS.md; "
                             "--quick updates none unless this is given)")
    parser.add_argument("--only", default=None, help="comma-separated subset of: " + ", ".join(REQUIRED_KEYS))
    parser.add_argument("--compilation_cache", default=None,
                        help="persistent XLA cache folder (compile times are then cache hits when warm)")
    args = parser.parse_args(argv)
    if args.compilation_cache:
        jax.config.update("jax_compilation_cache_dir", args.compilation_cache)
    mode = "full" if args.full else "quick" if args.quick else "default"
    only = tuple(s for s in args.only.split(",") if s) if args.only else None
    if only and set(only) - set(REQUIRED_KEYS):
        parser.error(f"--only: unknown {sorted(set(only) - set(REQUIRED_KEYS))}; valid: {list(REQUIRED_KEYS)}")
    results_md = args.results_md or (None if args.quick else os.path.join(HERE, "RESULTS.md"))

    start = time.perf_counter()
    env = environment()
    results = run(mode, only=only)
    data = {
        "environment": env,
        "mode": mode,
        "command": " ".join(["python -m benchmarks.run", *argv]),
        "wall_s": time.perf_counter() - start,
        "only": list(only) if only else None,
        "results": results,
    }
    os.makedirs(args.out, exist_ok=True)
    name = result_name(env, mode)
    if only:  # a partial run never overwrites a full run's file of the same day
        name = name.replace(".json", "-" + "-".join(sorted(only)) + ".json")
    path = os.path.join(args.out, name)
    with open(path, "w") as f:
        json.dump(data, f, indent=2)
    if results_md:
        tables.update_results_md(results_md, data)
    for block in tables.render(data).values():
        print(block, end="\n\n")
    problems = check_figures(results)
    for problem in problems:
        print(f"[bench] problem: {problem}", flush=True)
    print(f"wrote {path}" + (f" and the tables of {results_md}" if results_md else ""))
    return data


if __name__ == "__main__":
    main()
