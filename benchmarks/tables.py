"""Markdown tables from the benchmark records, spliced into RESULTS.md between markers.

Each generated block sits between ``<!-- BEGIN GENERATED: name -->`` and
``<!-- END GENERATED: name -->``; everything outside the markers is hand-written and
left untouched. A block whose markers are missing is appended at the end of the file.
Every block starts with a header line naming the device, the versions, the date and
the exact command that produced it.
"""

from __future__ import annotations

import math
from typing import Any

from metarl_jax.io import markdown
from metarl_jax.io.markdown import begin_marker, end_marker  # noqa: F401  (re-exported for the tests)

SECTIONS = ("summary", "physics", "model_batching", "training", "budget", "seeds", "peer_ppo", "multi_device",
            "offpolicy", "pearl", "peer_sac")
TITLES = {
    "summary": "Run",
    "physics": "Physics throughput",
    "model_batching": "A physics model per task against one shared model",
    "training": "Training throughput and the ratio to physics",
    "budget": "Projected wall clock of the papers' budgets",
    "seeds": "Independent seeds in one program",
    "peer_ppo": "Peer comparison: PPO",
    "multi_device": "Multi-device scaling",
    "offpolicy": "Off-policy learners: env and gradient steps/s",
    "pearl": "PEARL: meta-iterations, env and gradient steps/s, buffers",
    "peer_sac": "Peer comparison: SAC",
}


def _num(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, (int, float)):
        if digits == 0:
            return f"{value:,.0f}"
        return f"{value:,.{digits}f}"
    return str(value)


def _sig(value: Any) -> str:
    """Three significant digits (ratios, seconds)."""
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return "–"
    if value == 0:
        return "0"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def _mb(value: Any) -> str:
    return "–" if not isinstance(value, (int, float)) else f"{value / 2**20:,.1f}"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def header(environment: dict[str, Any], command: str) -> str:
    cache = environment.get("compilation_cache")
    cache_note = (f"; persistent compilation cache `{cache}` on, so compile times may be cache hits"
                  if cache else "; no persistent compilation cache (compile times are cold)")
    return (f"Device `{environment['device']}` ({environment.get('cpu', '')}), Python {environment.get('python')}, "
            f"jax {environment['jax']}, jaxlib {environment['jaxlib']}, mujoco {environment['mujoco']}, "
            f"mujoco-mjx {environment['mujoco-mjx']}, brax {environment.get('brax')}, {environment['date']}; "
            f"command `{command}`{cache_note}.")


def _table(columns: list[str], rows: list[list[str]], align: str | None = None) -> str:
    align = align or "".join("l" if i == 0 else "r" for i in range(len(columns)))
    rule = "|" + "|".join("---" if a == "l" else "---:" for a in align) + "|"
    lines = ["| " + " | ".join(columns) + " |", rule]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def summary_table(data: dict[str, Any]) -> str:
    env = data["environment"]
    counts: dict[str, int] = {}
    for r in data["results"]:
        counts[r["benchmark"]] = counts.get(r["benchmark"], 0) + 1
    rows = [["mode", data["mode"]], ["records", ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))],
            ["devices", f"{env['device_count']} × {env['platform']}"],
            ["wall time of the run", _duration(data.get("wall_s", 0.0))]]
    return _table(["", ""], rows, "ll")


def physics_table(records: list[dict]) -> str:
    rows = []
    for r in sorted(records, key=lambda r: (r["family"], r["num_envs"], r.get("model", "shared"))):
        low, high = r["steps_per_second_spread"]
        rows.append([r["family"], r.get("model", "shared"), str(r["num_envs"]), str(r["num_steps"]),
                     _num(r["steps_per_second"]), f"{_num(low)}–{_num(high)}", _num(r["physics_steps_per_second"]),
                     _sig(r["compile_s"]), _mb(r.get("program_bytes"))])
    return _table(["family", "models", "envs", "steps", "env steps/s (median)", "spread (min–max)",
                   "physics steps/s", "compile (s)", "program MiB"], rows, "llrrrrrrr")


def model_batching_table(records: list[dict]) -> str:
    from benchmarks.physics import model_batching_rows

    rows = [[r["family"], str(r["num_envs"]), str(r["num_steps"]), _num(r["per_task_steps_per_second"]),
             _num(r["shared_steps_per_second"]), f"**{_sig(r['slowdown'])}**", _sig(r["per_task_compile_s"]),
             _sig(r["shared_compile_s"])] for r in model_batching_rows(records)]
    if not rows:
        rows.append(["–", "–", "–", "no family measured both ways in this run", "–", "–", "–", "–"])
    return _table(["family", "envs", "steps", "per-task models: env steps/s", "one shared model: env steps/s",
                   "shared / per task", "compile per-task (s)", "compile shared (s)"], rows)


def training_table(records: list[dict]) -> str:
    rows = []
    for r in records:
        low, high = r["seconds_per_iteration_spread"]
        rows.append([
            r["algo"], r["env"], f"{r['tasks']}×{r['episodes']}×{r['horizon']}", str(r["parallel_envs"]),
            f"{r['optimizer']} {'x'.join(str(h) for h in r['hidden'])}"
            + (f" GRU {r['recurrent_units']}" if r.get("recurrent_units") else ""),
            _sig(r["seconds_per_iteration"]) + f" ({_sig(low)}–{_sig(high)})",
            _sig(r["meta_iterations_per_s"]), _num(r["train_env_steps_per_s"]),
            _num(r.get("physics_env_steps_per_s")), f"**{_sig(r.get('ratio_train_to_physics'))}**",
            _sig(r["compile_s"]), _mb(r.get("program_bytes")), _mb(r.get("peak_bytes")),
        ])
    return _table(["algo", "env", "tasks×episodes×T", "parallel envs", "outer opt, net",
                   "s / iteration (min–max)", "its/s", "train env steps/s", "physics env steps/s",
                   "ratio train/physics", "compile (s)", "program MiB", "peak MiB"], rows)


def budget_table(records: list[dict]) -> str:
    rows = []
    for r in records:
        if "projected_budget_s" not in r:
            continue
        rows.append([
            r["algo"], r["env"], r["paper_budget"],
            f"{r['tasks']}×{r['episodes']}×{r['horizon']}" + (" (paper size)" if r["paper_size_measured"] else ""),
            _num(r["paper_env_steps_per_iteration"]), _num(r["train_env_steps_per_s"]),
            _sig(r["compile_s"]), f"**{_duration(r['projected_budget_s'])}**",
        ])
    if not rows:
        rows.append(["–", "–", "no record with a paper budget in this run", "–", "–", "–", "–", "–"])
    return _table(["algo", "env", "paper budget", "measured at", "env steps / paper iteration",
                   "measured env steps/s", "compile (s)", "projected wall clock"], rows)


def seeds_table(records: list[dict]) -> str:
    rows = []
    for r in records:
        low, high = r["train_env_steps_per_s_spread"]
        rows.append([f"{r['algo']} {r['env']} {r['tasks']}×{r['episodes']}×{r['horizon']}", str(r["num_seeds"]),
                     _num(r["train_env_steps_per_s"]), f"{_num(low)}–{_num(high)}", _sig(r["speedup_vs_1"]),
                     _sig(r["first_call_s"])])
    return _table(["run", "seeds N", "env steps/s (all seeds)", "spread (min–max)", "speed-up vs N = 1",
                   "first call incl. compile (s)"], rows)


def peer_table(records: list[dict]) -> str:
    rows = []
    for r in records:
        status = r.get("status", "ok")
        if status not in ("ok", "measured") and "exception_type" in r:
            status = f"{status}: `{r['exception_type']}: {r.get('exception_message', '')}`"
            if r.get("where"):
                status += f" at `{r['where']}`"
        returns = (f"{_sig(r['first_return'])} → {_sig(r['final_return'])}" if "final_return" in r else "–")
        rows.append([r["learner"], r["env"], str(r["parallel_envs"]), str(r["horizon"]),
                     _num(r.get("train_env_steps_per_s")), _num(r.get("physics_env_steps_per_s")),
                     _sig(r.get("ratio_train_to_physics")), _num(r.get("budget_env_steps")), returns, status])
    return _table(["learner", "env", "parallel envs", "unroll", "train env steps/s", "physics env steps/s",
                   "ratio to physics", "env-step budget", "return first → final", "status"], rows,
                  "lllrrrrrll")


def multi_device_table(records: list[dict]) -> str:
    rows = []
    for r in records:
        rows.append([r["status"], "yes" if r.get("forced_host_devices") else "no", str(r["num_devices"]),
                     f"{r['algo']} {r['env']} {r['tasks']}×{r['episodes']}×{r['horizon']}" if "algo" in r else "–",
                     _num(r.get("train_env_steps_per_s")), _sig(r.get("speedup_vs_1")), _sig(r.get("compile_s"))])
    return _table(["status", "forced host devices", "devices", "run", "env steps/s", "speed-up vs 1",
                   "compile (s)"], rows, "lllrrrr")


def offpolicy_table(records: list[dict]) -> str:
    rows = []
    for r in records:
        low, high = r["seconds_per_iteration_spread"]
        rows.append([
            r["algo"], r["env"], str(r["num_envs"]),
            f"{r['epoch_cycles']}×({r['rollout_steps']}, {r['train_steps']})", str(r["batch_size"]),
            "x".join(str(h) for h in r["hidden"]), _num(r["env_steps_per_iteration"]),
            _num(r["gradient_steps_per_iteration"]), _sig(r["seconds_per_iteration"]) + f" ({_sig(low)}–{_sig(high)})",
            _num(r["train_env_steps_per_s"]), _num(r["gradient_steps_per_s"]), _num(r.get("physics_env_steps_per_s")),
            f"**{_sig(r.get('ratio_train_to_physics'))}**", _sig(r["compile_s"]),
        ])
    return _table(["algo", "env", "envs", "cycles×(env, grad steps)", "batch", "net", "env steps / it",
                   "grad steps / it", "s / iteration (min–max)", "train env steps/s", "grad steps/s",
                   "physics env steps/s", "ratio train/physics", "compile (s)"], rows)


def pearl_table(records: list[dict]) -> str:
    rows = []
    for r in records:
        low, high = r["seconds_per_iteration_spread"]
        projected, lower = r.get("projected_budget_s"), r.get("projected_budget_s_lower")
        rows.append([
            r["env"], str(r["preset"]), f"{r['num_train_tasks']} ({r['num_tasks_sample']} sampled)",
            f"{r['meta_batch']}×{r['batch_size']} (+{r['embedding_batch_size']})",
            "x".join(str(h) for h in r["hidden"]), _num(r["env_steps_per_iteration"]),
            _num(r["gradient_steps_per_iteration"]), _sig(r["seconds_per_iteration"]) + f" ({_sig(low)}–{_sig(high)})",
            _sig(r["meta_iterations_per_s"]), _num(r["train_env_steps_per_s"]), _sig(r["gradient_steps_per_s"]),
            _sig(r["compile_s"]),
            f"{r['replay_capacity_per_task']:,} / {r['encoder_capacity_per_task']:,}",
            f"{_sig(r['replay_bytes'] / 2**20)} / {_sig(r['encoder_buffer_bytes'] / 2**20)}",
            _sig(r["peak_bytes"] / 2**20) if r.get("peak_bytes") else "–",
            (f"{_num(r['budget_env_steps'])} steps, {_num(r['budget_gradient_steps'])} grad: "
             + (f"**{_sig(projected / 3600)} h**" if projected else f"≥ {_sig(lower / 3600)} h (fit noisy)"))
            if projected or lower else "–",
        ])
    return _table(["env", "preset", "train tasks", "meta-batch×batch (+context)", "net", "env steps / it",
                   "grad steps / it", "s / iteration (min–max)", "meta-it/s", "env steps/s", "grad steps/s",
                   "compile (s)", "buffer capacity / task (replay / encoder)", "buffers MiB (replay / encoder)",
                   "peak MiB", "projected paper budget"], rows)


def peer_sac_table(records: list[dict]) -> str:
    rows = []
    for r in records:
        status = r.get("status", "ok")
        if status not in ("ok", "measured") and "exception_type" in r:
            status = f"{status}: `{r['exception_type']}: {r.get('exception_message', '')}`"
            if r.get("where"):
                status += f" at `{r['where']}`"
        returns = (f"{_sig(r['first_return'])} → {_sig(r['final_return'])}" if "final_return" in r else "–")
        rows.append([r["learner"], r["env"], str(r["parallel_envs"]), str(r["episode_length"]),
                     _num(r.get("train_env_steps_per_s")), _num(r.get("gradient_steps_per_s")),
                     _sig(r.get("ratio_to_ours")), _num(r.get("budget_env_steps")),
                     _sig(r.get("budget_wall_s")), returns, status])
    return _table(["learner", "env", "parallel envs", "episode length", "train env steps/s", "grad steps/s",
                   "ratio to ours", "env-step budget", "budget wall (s)", "deterministic return first → final",
                   "status"], rows, "lllrrrrrrll")


# The measurement each section is rendered from.
SECTION_SOURCES = {"summary": None, "physics": "physics", "model_batching": "physics", "training": "training",
                   "budget": "training", "seeds": "seeds", "peer_ppo": "peer_ppo", "multi_device": "multi_device",
                   "offpolicy": "offpolicy", "pearl": "pearl", "peer_sac": "peer_sac"}


def render(data: dict[str, Any]) -> dict[str, str]:
    """Every section's generated block (header line + table)."""
    by_kind: dict[str, list[dict]] = {}
    for r in data["results"]:
        by_kind.setdefault(r["benchmark"], []).append(r)
    head = header(data["environment"], data["command"])
    bodies = {
        "summary": summary_table(data),
        "physics": physics_table(by_kind.get("physics", [])),
        "model_batching": model_batching_table(by_kind.get("physics", [])),
        "training": training_table(by_kind.get("training", [])),
        "budget": budget_table(by_kind.get("training", [])),
        "seeds": seeds_table(by_kind.get("seeds", [])),
        "peer_ppo": peer_table(by_kind.get("peer_ppo", [])),
        "multi_device": multi_device_table(by_kind.get("multi_device", [])),
        "offpolicy": offpolicy_table(by_kind.get("offpolicy", [])),
        "pearl": pearl_table(by_kind.get("pearl", [])),
        "peer_sac": peer_sac_table(by_kind.get("peer_sac", [])),
    }
    # A partial run (``--only``) renders the sections it measured and leaves the others, and the summary
    # of the last full run, as they are.
    measured = set(by_kind)
    if data.get("only"):
        wanted = [name for name in SECTIONS if name != "summary" and SECTION_SOURCES[name] in measured]
    else:
        wanted = list(SECTIONS)
    return {name: f"{head}\n\n{bodies[name]}" for name in wanted}


def splice(text: str, blocks: dict[str, str]) -> str:
    """Replaces each block between its markers; appends blocks whose markers are missing."""
    return markdown.splice(text, blocks, TITLES)


def update_results_md(path: str, data: dict[str, Any]) -> None:
    markdown.update_file(path, render(data), TITLES)


# ----------------------------------------------------------------------------- the GPU run-book's blocks

RUNBOOK_TITLES = {
    "gpu_summary": "GPU run-book: sections",
    "gpu_training": "GPU run-book: the papers' batches",
    "gpu_seeds": "GPU run-book: N seeds in one program",
    "gpu_peer_ppo": "GPU run-book: PPO against brax's",
    "gpu_peer_sac": "GPU run-book: SAC against brax's",
    "gpu_compile": "GPU run-book: every algorithm's compile time",
}


def runbook_sections_table(records: list[dict]) -> str:
    rows = [[r["section"], r["status"], _sig(r.get("box_s")), _sig(r.get("wall_s")), str(r.get("records", 0)),
             (r.get("message") or "").replace("|", "/")[:160]] for r in records]
    return _table(["section", "status", "box (s)", "wall (s)", "records", "last output"], rows, "llrrrl")


def compile_table(records: list[dict]) -> str:
    rows = []
    for r in sorted(records, key=lambda r: r["algo"]):
        status = r["status"] if r["status"] == "ok" else f"{r['status']}: `{r.get('exception_type', '')}: " \
                                                            f"{r.get('exception_message', '')}`"
        rows.append([r["algo"], r["env"], r["preset"], "x".join(str(h) for h in r.get("hidden", [])) or "–",
                     _sig(r.get("lower_s")), _sig(r.get("compile_s")), status])
    return _table(["algo", "env", "preset", "hidden", "trace + lower (s)", "XLA compile (s)", "status"], rows,
                  "llllrrl")


def with_physics(training: list[dict], physics: list[dict]) -> list[dict]:
    """Training records joined with the physics record of the same family, environments and horizon."""
    by_size = {(p["family"], p["num_envs"], p["num_steps"]): p for p in physics}
    joined = []
    for r in training:
        p = by_size.get((r["env"], r["parallel_envs"], r["horizon"]))
        if p is not None and "physics_env_steps_per_s" not in r:
            r = {**r, "physics_env_steps_per_s": p["steps_per_second"],
                 "ratio_train_to_physics": r["train_env_steps_per_s"] / p["steps_per_second"]}
        joined.append(r)
    return joined


def render_runbook(data: dict[str, Any]) -> dict[str, str]:
    """The run-book's blocks (``gpu_*``): they never replace the CPU tables."""
    by_kind: dict[str, list[dict]] = {}
    for r in data["results"]:
        by_kind.setdefault(r["benchmark"], []).append(r)
    head = header(data["environment"], data["command"])
    head += f" Budget {data.get('budget_s', 0):.0f} s, wall {data.get('wall_s', 0):.0f} s."
    training = with_physics(by_kind.get("training", []), by_kind.get("physics", []))
    bodies = {
        "gpu_summary": runbook_sections_table(by_kind.get("section", [])),
        "gpu_training": training_table(training),
        "gpu_seeds": seeds_table(by_kind.get("seeds", [])),
        "gpu_peer_ppo": peer_table(by_kind.get("peer_ppo", [])),
        "gpu_peer_sac": peer_sac_table(by_kind.get("peer_sac", [])),
        "gpu_compile": compile_table(by_kind.get("compile", [])),
    }
    return {name: f"{head}\n\n{body}" for name, body in bodies.items()}


def update_runbook_md(path: str, data: dict[str, Any]) -> None:
    markdown.update_file(path, render_runbook(data), RUNBOOK_TITLES)
