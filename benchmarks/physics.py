"""Raw physics throughput of the task families: environment steps per second.

Random actions under ``jit(vmap(scan(step)))``: ``num_envs`` parallel episodes of
``num_steps`` control steps each (every control step is ``frame_skip`` MJX physics
steps). Timings are medians of ``repeats`` runs after one warm-up, each blocked
until ready. This is the physics limit the training benchmarks are compared with.

    python -m benchmarks.physics --families wheeled,ant_goal --num_envs 1,16,128
    python -m benchmarks.physics --families hopper_rand_params --num_envs 16,128 --compare_shared_model

Dynamics-varying families (``envs/rand_params.py``) simulate every environment with its own
task's model, so the vmap runs over physics models (record ``"model": "per task"``);
``shared_model=True`` (``--compare_shared_model`` adds it) steps the same tasks with the one
nominal model instead, which is what the per-task models cost against.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

from benchmarks.timing import compile_program, environment, peak_memory, program_memory, time_call
from metarl_jax import envs

MJX_FAMILY_NAMES = (
    "wheeled",
    "reacher2",
    "reacher4",
    "ant_goal",
    "block_push",
    "cheetah_vel",
    "cheetah_dir",
    "ant_vel",
    "ant_dir",
    "pendulum",
    "inverted_pendulum",
    "inverted_double_pendulum",
    "hopper",
    "half_cheetah",
    "reacher",
    "walker2d_dir",
    "hopper_rand_params",
    "walker2d_rand_params",
)


def _action_bounds(family):
    high = getattr(family, "ctrl_high", None)
    if high is None:
        return -jnp.ones(family.action_size), jnp.ones(family.action_size)
    high = jnp.where(jnp.isfinite(high), high, 1.0)
    low = jnp.where(jnp.isfinite(family.ctrl_low), family.ctrl_low, -1.0)
    return low, high


def make_random_rollout(family, num_steps: int):
    """jit(vmap(scan)) of ``num_steps`` random-action steps; returns the final states and return."""
    low, high = _action_bounds(family)

    def episode(state, key):
        def body(carry, step_key):
            state, total = carry
            action = jax.random.uniform(step_key, (family.action_size,), minval=low, maxval=high)
            state = family.step(state, action)
            return (state, total + state.reward), None

        (state, total), _ = jax.lax.scan(body, (state, jnp.zeros(())), jax.random.split(key, num_steps))
        return state, total

    return jax.jit(jax.vmap(episode))


def models_per_task(family) -> bool:
    """True when the family simulates each task with its own physics model (``physics_model`` overridden)."""
    if not hasattr(family, "mjx_model"):
        return False
    return type(family).physics_model is not envs.MjxFamily.physics_model


def measure_physics(family_name: str, num_envs: int, num_steps: int = 100, repeats: int = 3,
                    shared_model: bool = False) -> dict:
    """Steps per second of ``family_name`` with ``num_envs`` parallel environments.

    Returns a record with the family, sizes, ``steps_per_second`` (control steps ×
    environments per second, median), its spread, ``physics_steps_per_second``
    (× frame skip where known), ``median_s`` of one rollout, ``compile_s`` (XLA
    compile alone, ``lower(...).compile()``), memory figures and ``model``: "per task"
    (a vmap over physics models) or "shared" (one model; ``shared_model`` forces it).
    """
    family = envs.make(family_name, episode_length=10 * num_steps)
    per_task = models_per_task(family) and not shared_model
    if shared_model:  # the same tasks (rewards, resets), every one simulated by the nominal model
        family.physics_model = lambda task: family.mjx_model
    key_tasks, key_reset, key_actions = jax.random.split(jax.random.key(0), 3)
    tasks = family.sample_tasks(key_tasks, num_envs)
    states = jax.jit(jax.vmap(family.reset))(jax.random.split(key_reset, num_envs), tasks)
    rollout = make_random_rollout(family, num_steps)
    action_keys = jax.random.split(key_actions, num_envs)
    compiled, compile_times = compile_program(lambda: rollout.lower(states, action_keys))
    timing = time_call(lambda: compiled(states, action_keys), repeats=repeats, warmup=1)
    steps = num_envs * num_steps
    frame_skip = getattr(family, "frame_skip", None) or getattr(getattr(family, "env", None), "_n_frames", 1)
    return {
        "benchmark": "physics",
        "family": family_name,
        "num_envs": num_envs,
        "num_steps": num_steps,
        "steps_per_second": steps / timing["median_s"],
        "steps_per_second_spread": [steps / timing["max_s"], steps / timing["min_s"]],
        "physics_steps_per_second": steps * frame_skip / timing["median_s"],
        "frame_skip": int(frame_skip),
        "median_s": timing["median_s"],
        "spread_s": [timing["min_s"], timing["max_s"]],
        "iqr_s": [timing["q1_s"], timing["q3_s"]],
        "repeats": repeats,
        "compile_s": compile_times["compile_s"],
        "lower_s": compile_times["lower_s"],
        "program_bytes": program_memory(compiled),
        **peak_memory(),
        "model": "per task" if per_task else "shared",
        "device": environment()["device"],
    }


_MEASURED: dict[tuple[str, int, int, bool], dict] = {}


def measure_physics_once(family_name: str, num_envs: int, num_steps: int = 100, repeats: int = 3,
                         shared_model: bool = False) -> dict:
    """``measure_physics`` memoised per (family, envs, steps, shared) within one process (one compile each)."""
    key = (family_name, num_envs, num_steps, shared_model)
    if key not in _MEASURED:
        _MEASURED[key] = measure_physics(family_name, num_envs, num_steps, repeats, shared_model)
    return _MEASURED[key]


def measured_records() -> list[dict]:
    """Every physics record measured so far in this process."""
    return list(_MEASURED.values())


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| family | models | envs | env steps/s | physics steps/s | rollout (s) | compile (s) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['family']} | {row.get('model', 'shared')} | {row['num_envs']} | {row['steps_per_second']:,.0f} | "
            f"{row['physics_steps_per_second']:,.0f} | {row['median_s']:.3f} | {row['compile_s']:.1f} |"
        )
    return "\n".join(lines)


def model_batching_rows(records: list[dict]) -> list[dict]:
    """Per (family, envs, steps) measured both ways: per-task and shared-model steps/s and their ratio."""
    by_size: dict[tuple, dict[str, dict]] = {}
    for r in records:
        by_size.setdefault((r["family"], r["num_envs"], r["num_steps"]), {})[r.get("model", "shared")] = r
    rows = []
    for (family, num_envs, num_steps), pair in sorted(by_size.items()):
        if {"per task", "shared"} <= set(pair):
            per_task, shared = pair["per task"]["steps_per_second"], pair["shared"]["steps_per_second"]
            rows.append({"family": family, "num_envs": num_envs, "num_steps": num_steps,
                         "per_task_steps_per_second": per_task, "shared_steps_per_second": shared,
                         "slowdown": shared / per_task, "per_task_compile_s": pair["per task"]["compile_s"],
                         "shared_compile_s": pair["shared"]["compile_s"]})
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", default=",".join(MJX_FAMILY_NAMES), help="comma-separated family names")
    parser.add_argument("--num_envs", default="1,16,128", help="comma-separated numbers of parallel envs (1..8192)")
    parser.add_argument("--num_steps", type=int, default=100, help="control steps per rollout")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after warm-up (median reported)")
    parser.add_argument("--compare_shared_model", action="store_true",
                        help="for families with a model per task, also time the same tasks on one shared model")
    args = parser.parse_args(argv)
    families = [name for name in args.families.split(",") if name]
    unknown = sorted(set(families) - set(envs.names()))
    if unknown:
        parser.error(f"unknown families {unknown}; valid ones are {envs.names()}")
    sizes = [int(n) for n in args.num_envs.split(",") if n]
    if any(n < 1 for n in sizes) or args.num_steps < 1 or args.repeats < 1:
        parser.error("--num_envs, --num_steps and --repeats must be positive")
    rows = []
    for name in families:
        for num_envs in sizes:
            rows.append(measure_physics(name, num_envs, args.num_steps, args.repeats))
            print(markdown_table(rows[-1:]).splitlines()[-1], flush=True)
            if args.compare_shared_model and rows[-1]["model"] == "per task":
                rows.append(measure_physics(name, num_envs, args.num_steps, args.repeats, shared_model=True))
                print(markdown_table(rows[-1:]).splitlines()[-1], flush=True)
    info = environment()
    print(f"\ndevice {info['device']} ({info['cpu']}), jax {info['jax']}, mujoco {info['mujoco']}, "
          f"mujoco-mjx {info['mujoco-mjx']}, {info['date']}")
    print(markdown_table(rows))
    for row in model_batching_rows(rows):
        print(f"{row['family']} x{row['num_envs']}: per-task models {row['per_task_steps_per_second']:,.0f} "
              f"env steps/s, one shared model {row['shared_steps_per_second']:,.0f} "
              f"(shared / per task = {row['slowdown']:.3g})")
    return rows


if __name__ == "__main__":
    main()
