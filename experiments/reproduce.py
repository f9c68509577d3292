r"""Reproduce a paper's claim: one command per claim, every method's seeds in one XLA program.

    python -m experiments.reproduce --list
    python -m experiments.reproduce --claim=maesn_fig6 --scale=cpu [--seeds=5] [--out=repro] [--publish]

For every panel of the claim (``experiments/paper_claims.py``) each method is trained by
``experiments.train`` with ``--num_seeds`` (one vmapped program) and meta-tested by
``experiments.evaluate`` with the panel's protocol; the run directories land in
``--out/<claim>/<scale>/<panel>/<method>``, where ``experiments.evaluate`` and
``experiments.figures`` work on them as on any run. Then it writes, per claim and scale:

    result.json    every number: per run the per-seed curves, the mean with its 95 % interval,
                   wall-clock, the paper's numbers, and each panel's verdict
    table.md       the returns per adaptation step beside the paper's numbers, and the verdicts
    <panel>/compare.png (+ .json)   the figure: return vs adaptation step, 95 % interval over seeds
    <panel>/<figure>.png            the claim's extra figures (e.g. MAESN's trajectories, latents)

and prints the verdict lines ("... exceeds ...: difference d, 95 % CI [lo, hi], n seeds; the claim
holds / does not hold at cpu scale"). A re-run resumes: finished runs and evaluations are skipped,
unfinished runs continue from their checkpoints, and a figure is redrawn only when its command or one
of its runs changed (``<panel>/figures_drawn.json``; delete it to redraw after changing the figure
code). ``--publish`` copies the figures to
``docs/images/reproductions/`` and writes the claim's generated block into ``docs/reproductions.md``
(hand-written text outside the block is kept).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import shutil
import sys
import time
from typing import Any

from absl import flags

from experiments import claims
from experiments import common as launch

FLAGS = flags.FlagValues()
flags.DEFINE_string("claim", None, "Registered claim (--list shows them).", flag_values=FLAGS)
flags.DEFINE_enum("scale", "cpu", list(claims.SCALES), "smoke (tiny, tests), demo (make demo), cpu (<= ~30 min "
                  "on 2 cores) or paper (the papers' settings, for a GPU).", flag_values=FLAGS)
flags.DEFINE_integer("seeds", None, "Seeds per method (default: the scale's, 5 at cpu scale).", flag_values=FLAGS)
flags.DEFINE_string("out", "repro", "Output root.", flag_values=FLAGS)
flags.DEFINE_bool("list", False, "List the registered claims and exit.", flag_values=FLAGS)
flags.DEFINE_bool("publish", False, "Write the claim's block into docs/reproductions.md and its figures into "
                  "docs/images/reproductions/.", flag_values=FLAGS)
flags.DEFINE_bool("quiet", False, "Keep the launchers' own output out of the console.", flag_values=FLAGS)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(REPO_ROOT, "docs", "reproductions.md")
DOC_IMAGES = os.path.join(REPO_ROOT, "docs", "images", "reproductions")
TIMING_FILE = "reproduce_timing.json"


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in label)


def _launcher(cli, argv: list[str], quiet: bool) -> tuple[int, str]:
    stderr = io.StringIO()
    sink = io.StringIO() if quiet else sys.stdout
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(sink):
        code = cli(argv)
    if not quiet and code != 0:
        sys.stderr.write(stderr.getvalue())
    return code, stderr.getvalue()


def _read_json(path: str) -> dict[str, Any] | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _latest_step(logdir: str) -> int:
    directory = os.path.join(logdir, "checkpoints")
    steps = [int(n) for n in os.listdir(directory) if n.isdigit()] if os.path.isdir(directory) else []
    return max(steps, default=0)


def _curve_is_current(curve: dict[str, Any] | None, run: claims.Run, protocol: claims.Protocol) -> bool:
    if curve is None or curve.get("step") != run.num_steps or curve.get("split") != protocol.split:
        return False
    checks = (("reward", protocol.reward), ("num_tasks", protocol.num_tasks),
              ("adaptation_steps", protocol.adaptation_steps))
    return all(want is None or curve.get(key) == want for key, want in checks)


def run_method(run: claims.Run, protocols: dict[str, claims.Protocol], logdir: str, seeds: int,
               quiet: bool) -> dict[str, Any]:
    """Trains (or resumes, or skips) and meta-tests (or skips) one method under each of ``protocols``
    (``claims.Panel.protocols``); returns its record."""
    from experiments import evaluate, train

    timing = _read_json(os.path.join(logdir, TIMING_FILE)) or {"train_seconds": 0.0, "evaluate_seconds": 0.0}
    status = []
    if _latest_step(logdir) >= run.num_steps:
        status.append("trained earlier")
    else:
        t0 = time.perf_counter()
        argv = ["train", *run.train_args(), f"--num_seeds={seeds}", "--seed=0", f"--logdir={logdir}",
                "--progress=false", "--figures=false"]  # the harness draws its own figures
        code, stderr = _launcher(train.cli, argv, quiet)
        if code != 0:
            raise ValueError(f"{run.label}: experiments.train failed: {stderr.strip().splitlines()[-1:]}")
        timing["train_seconds"] += time.perf_counter() - t0
        status.append("trained")
    curves, evaluated = {}, {}
    for suffix, protocol in protocols.items():
        if protocol.curve_name not in evaluated:  # a protocol shared by two keys is run once
            curve_path = os.path.join(logdir, "eval", f"{protocol.curve_name}.json")
            if _curve_is_current(_read_json(curve_path), run, protocol):
                status.append("evaluated earlier")
            else:
                t0 = time.perf_counter()
                code, stderr = _launcher(evaluate.cli, ["evaluate", f"--logdir={logdir}", *protocol.evaluate_args()],
                                         quiet)
                if code != 0:
                    raise ValueError(f"{run.label}: experiments.evaluate ({protocol.split} split) failed: "
                                     f"{stderr.strip().splitlines()[-1:]}")
                timing["evaluate_seconds"] += time.perf_counter() - t0
                status.append("evaluated")
            evaluated[protocol.curve_name] = _read_json(curve_path)
        curves[suffix] = evaluated[protocol.curve_name]
    with open(os.path.join(logdir, TIMING_FILE), "w") as f:
        json.dump(timing, f)
    return {"label": run.label, "logdir": logdir, "run": dataclasses.asdict(run), "status": status,
            **timing, "curve": curves[""], "split_curves": {k: v for k, v in curves.items() if k},
            "env_steps": _final_env_steps(logdir)}


def _final_env_steps(logdir: str) -> float | None:
    """``time/env_steps`` of the run's last logged step (every environment step it took; None if unlogged)."""
    from metarl_jax.io.metrics import read_metrics

    rows = [r for r in read_metrics(os.path.join(logdir, "metrics.jsonl")) if "time/env_steps" in r]
    return float(rows[-1]["time/env_steps"]) if rows else None


def decide(panel: claims.Panel, records: list[dict[str, Any]]) -> list[claims.Verdict]:
    """The panel's verdicts; none is decided when a sample-efficiency panel's runs took different env steps."""
    curves = {r["label"] + suffix: seed_curves(curve) for r in records
              for suffix, curve in {"": r["curve"], **r.get("split_curves", {})}.items()}
    learning = {}
    if any(getattr(statistic, "uses_learning_curves", False) for statistic in panel.statistics):
        learning = {r["label"]: learning_curves(r["logdir"]) for r in records}
    verdicts = [statistic.decide_learning(learning) if getattr(statistic, "uses_learning_curves", False)
                else statistic.decide(curves) for statistic in panel.statistics]
    steps = {r["label"]: r["env_steps"] for r in records}
    if panel.equal_env_steps and len(set(steps.values())) > 1:
        reason = "the runs took different numbers of env steps: " + ", ".join(
            f"{label} {value:.0f}" if value is not None else f"{label} unknown" for label, value in steps.items())
        verdicts = [dataclasses.replace(v, holds=None, reason=reason) for v in verdicts]
    return verdicts


def _seed_number(name: str) -> tuple[int, str]:
    """Seed directories (``seed_<n>``) in numeric order: seed_2 before seed_10."""
    digits = name.rsplit("_", 1)[-1]
    return (int(digits) if digits.isdigit() else -1, name)


def learning_curves(logdir: str) -> list[claims.LearningCurve]:
    """Each seed's evaluations during training (``--eval_every``): env steps and the returns after 0..K steps."""
    import numpy as np

    from metarl_jax.io.metrics import read_metrics

    seed_root = os.path.join(logdir, "seeds")
    dirs = ([os.path.join(seed_root, d) for d in sorted(os.listdir(seed_root), key=_seed_number)]
            if os.path.isdir(seed_root) else [logdir])
    out = []
    for d in dirs:
        rows = [r for r in read_metrics(os.path.join(d, "metrics.jsonl")) if "eval/return_step0" in r]
        if not rows:
            continue
        num = 1 + max(int(k[len("eval/return_step"):]) for k in rows[0]
                      if k.startswith("eval/return_step") and k[len("eval/return_step"):].isdigit())
        out.append(claims.LearningCurve(np.asarray([r["time/env_steps"] for r in rows], float),
                                        np.asarray([[r[f"eval/return_step{k}"] for k in range(num)] for r in rows])))
    return out


def seed_curves(curve: dict[str, Any]):
    """[seeds, K + 1]: each seed's mean return after 0..K adaptation steps."""
    import numpy as np

    if "per_seed" in curve:
        return np.asarray(curve["per_seed"], float)
    return np.asarray(curve["mean"], float)[None]


def interval(values) -> tuple[float, float, float]:
    """(mean, 95 % t-interval) over seeds (the interval is the mean itself for one seed)."""
    import numpy as np

    values = np.asarray(values, float)
    if len(values) < 2:
        return float(values.mean()), float(values.mean()), float(values.mean())
    return claims.paired_interval(values)


def shown_steps(num_points: int) -> list[int]:
    if num_points <= 6:
        return list(range(num_points))
    return sorted({k for k in (0, 1, 2, 5, 10, 20, 50, num_points - 1) if k < num_points})


def table_rows(panel: claims.Panel, records: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any], dict]]:
    """(row label, record, curve) per table row: one per run, or per run and split of a split panel."""
    if not panel.splits:
        return [(r["label"], r, r["curve"]) for r in records]
    rows = []
    for record in records:
        if panel.protocol.split not in panel.splits:
            rows.append((f"{record['label']} ({panel.protocol.split})", record, record["curve"]))
        rows += [(f"{record['label']} ({split})", record, record["split_curves"][f"@{split}"])
                 for split in panel.splits]
    return rows


def panel_table(panel: claims.Panel, records: list[dict[str, Any]]) -> str:
    """Markdown: mean return [95 % interval] per adaptation step per method, and the paper's numbers."""
    rows = table_rows(panel, records)
    lengths = {seed_curves(curve).shape[1] for _, _, curve in rows}
    steps = sorted(set(shown_steps(max(lengths))) | {n - 1 for n in lengths})  # and every curve's last step
    header = ["method", *[f"step {k}" for k in steps]]
    if panel.equal_env_steps:
        header.append("env steps")
    if panel.paper:
        header.append("paper (" + ", ".join(f"step {k}" for k in panel.paper_steps) + ")")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, record, curve in rows:
        curves = seed_curves(curve)
        cells = [label]
        for k in steps:
            if k < curves.shape[1]:
                mean, low, high = interval(curves[:, k])
                cells.append(f"{mean:.3g} [{low:.3g}, {high:.3g}]")
            else:
                cells.append("–")
        if panel.equal_env_steps:
            cells.append("–" if record.get("env_steps") is None else f"{record['env_steps']:.0f}")
        if panel.paper:
            cells.append(", ".join(f"{v:g}" for v in panel.paper.get(label, ())) or "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


FIGURES_DRAWN = "figures_drawn.json"  # per panel: each figure's experiments.figures command


def _figure_is_current(path: str, argv: list[str], drawn: dict[str, Any], records: list[dict[str, Any]]) -> bool:
    """Drawn by the same command, after every run's meta-test files, and no run changed in this call."""
    name = os.path.splitext(os.path.basename(path))[0]
    if drawn.get(name) != argv or not os.path.exists(path):
        return False
    if any(s not in ("trained earlier", "evaluated earlier") for r in records for s in r["status"]):
        return False
    inputs = [os.path.join(r["logdir"], "eval", n) for r in records
              for n in os.listdir(os.path.join(r["logdir"], "eval")) if n.endswith(".json")]
    return os.path.getmtime(path) >= max(map(os.path.getmtime, inputs))


# Figures a split panel draws once per split (experiments.figures honours their --split / --curve_name).
PER_SPLIT_FIGURES = ("compare", "learning")


def _figure_commands(claim: claims.Claim, panel: claims.Panel) -> list[tuple[str, str, tuple[str, ...], list[str]]]:
    """(figure, output stem, labels drawn (empty: all), extra flags) of every figure of a panel."""
    commands = []
    for name, only in [("compare", ())] + list(claim.figures):
        variants = {"": panel.protocol}
        if name in PER_SPLIT_FIGURES:
            variants.update(panel.protocols())
        seen = set()
        for protocol in variants.values():
            if protocol.split in seen:
                continue
            seen.add(protocol.split)
            flags_ = [f"--split={protocol.split}"]
            if name == "compare":
                flags_.append(f"--curve_name={protocol.curve_name}")
                stem = "compare" + protocol.curve_name[len("adaptation_curve"):]
            elif name == "learning":
                stem = "learning" if protocol.split == "val" else f"learning_{protocol.split}"
            else:
                stem = name
            if name == "trajectories":
                flags_.append("--random")
            commands.append((name, stem, tuple(only), flags_))
    return commands


def draw_figures(claim: claims.Claim, panel: claims.Panel, records: list[dict[str, Any]], panel_dir: str,
                 quiet: bool) -> list[str]:
    """The comparison figure (experiments.figures compare; one per split of a split panel) and the
    claim's extra figures."""
    from experiments import figures

    paths = []
    drawn = _read_json(os.path.join(panel_dir, FIGURES_DRAWN)) or {}
    for name, stem, only, extra in _figure_commands(claim, panel):
        chosen = [r for r in records if not only or r["label"] in only]
        if not chosen:
            continue
        logdirs, labels = ",".join(r["logdir"] for r in chosen), ",".join(r["label"] for r in chosen)
        argv = ["figures", name, f"--logdirs={logdirs}", f"--labels={labels}", f"--out={panel_dir}", *extra]
        path = os.path.join(panel_dir, f"{stem}.png")
        if not _figure_is_current(path, argv, drawn, chosen):  # a re-run that changed nothing redraws nothing
            code, stderr = _launcher(figures.cli, argv, quiet)
            if code != 0:
                raise ValueError(f"figure {name} of {logdirs} ({labels}) failed: {stderr.strip().splitlines()[-1:]}")
            drawn[stem] = argv
            with open(os.path.join(panel_dir, FIGURES_DRAWN), "w") as f:
                json.dump(drawn, f, indent=1)
        paths.append(path)
    return paths


def reproduce(claim: claims.Claim, scale: str, seeds: int | None, out: str, quiet: bool = False) -> dict[str, Any]:
    """Runs every panel of ``claim`` at ``scale``; writes result.json and table.md; returns the result."""
    scaled = claim.scale(scale)
    seeds = scaled.seeds if seeds is None else seeds
    if seeds < 2:
        raise ValueError(f"--seeds must be >= 2 (the verdict is an interval over seeds), got {seeds}")
    root = os.path.join(out, claim.name, scale)
    for panel in scaled.panels:  # every run's config, family and preset, before anything runs
        for run in panel.runs:
            try:
                run.spec(seeds)
            except ValueError as e:
                raise ValueError(f"claim {claim.name!r}, {scale} scale, {panel.title}, {run.label}: {e}") from None
    panels = []
    for panel in scaled.panels:
        panel_dir = os.path.join(root, panel.slug)
        os.makedirs(panel_dir, exist_ok=True)
        records = []
        for run in panel.runs:
            print(f"[{claim.name}/{scale}] {panel.title}: {run.label} ({run.algo}, {seeds} seeds, "
                  f"{run.num_steps} iterations)", file=sys.stderr, flush=True)
            records.append(run_method(run, panel.protocols(), os.path.join(panel_dir, _slug(run.label)), seeds,
                                      quiet))
        verdicts = decide(panel, records)
        figure_paths = draw_figures(claim, panel, records, panel_dir, quiet)
        panels.append({"title": panel.title, "slug": panel.slug, "protocol": dataclasses.asdict(panel.protocol),
                       "splits": list(panel.splits),
                       "runs": records, "verdicts": [dataclasses.asdict(v) for v in verdicts],
                       "verdict_lines": [v.line(scale) for v in verdicts],
                       "table": panel_table(panel, records), "figures": figure_paths,
                       "paper": {k: list(v) for k, v in panel.paper.items()}, "paper_steps": list(panel.paper_steps)})
    result = {"claim": claim.name, "paper": claim.paper, "figure": claim.figure, "scale": scale, "seeds": seeds,
              "notes": scaled.notes, "panels": panels,
              "wall_seconds": sum(r["train_seconds"] + r["evaluate_seconds"] for p in panels for r in p["runs"]),
              "command": f"python -m experiments.reproduce --claim={claim.name} --scale={scale} --seeds={seeds}"}
    with open(os.path.join(root, "result.json"), "w") as f:
        json.dump(result, f, indent=1)
    with open(os.path.join(root, "table.md"), "w") as f:
        f.write(report_block(result, image_dir=None) + "\n")
    return result


def report_block(result: dict[str, Any], image_dir: str | None) -> str:
    """The claim's Markdown: command, scale, seeds, wall-clock, notes, and per panel figure, table, verdict."""
    lines = [f"**{result['paper']}, {result['figure']}** — `{result['command']}` "
             f"({result['scale']} scale, {result['seeds']} seeds per method, "
             f"{result['wall_seconds'] / 60:.1f} min of training and meta-testing in all)."]
    if result["notes"]:
        lines += ["", result["notes"]]
    for panel in result["panels"]:
        protocol = panel["protocol"]
        splits = ", ".join(panel.get("splits") or [protocol["split"]])
        lines += ["", f"*{panel['title']}* (meta-test: {protocol['reward'] or 'config'} reward, "
                      f"{splits} split{'s' if ',' in splits else ''}):", ""]
        if image_dir is not None:
            for path in panel["figures"]:
                name = f"{result['claim']}_{result['scale']}_{panel['slug']}_{os.path.basename(path)}"
                lines.append(f"![{panel['title']}: {os.path.basename(path)}]({image_dir}/{name})")
            lines.append("")
        lines += [panel["table"], ""] + [f"Verdict: {line}." for line in panel["verdict_lines"]]
    return "\n".join(lines)


def publish(result: dict[str, Any]) -> None:
    from metarl_jax.io import markdown

    os.makedirs(DOC_IMAGES, exist_ok=True)
    for panel in result["panels"]:
        for path in panel["figures"]:
            name = f"{result['claim']}_{result['scale']}_{panel['slug']}_{os.path.basename(path)}"
            shutil.copyfile(path, os.path.join(DOC_IMAGES, name))
    block = report_block(result, image_dir="images/reproductions")
    markdown.update_file(DOC, {f"{result['claim']}:{result['scale']}": block},
                         {f"{result['claim']}:{result['scale']}": f"{result['claim']} ({result['scale']} scale)"})


def run(f: Any) -> int:
    if f.list:
        for name in claims.names():
            claim = claims.get(name)
            print(f"{name:<20} {claim.paper}, {claim.figure}: {claim.description} "
                  f"(scales: {', '.join(s for s in claims.SCALES if s in claim.scales)})")
        return 0
    if not f.claim:
        raise ValueError(f"--claim is required; registered claims are {claims.names()} (--list describes them)")
    result = reproduce(claims.get(f.claim), f.scale, f.seeds, f.out, f.quiet)
    print()
    for panel in result["panels"]:
        print(f"{panel['title']}\n{panel['table']}\n")
    for panel in result["panels"]:
        for line in panel["verdict_lines"]:
            print(f"verdict ({panel['title']}): {line}")
    print(f"\nwrote {os.path.join(f.out, result['claim'], result['scale'])}/result.json and table.md")
    if f.publish:
        publish(result)
        print(f"updated {DOC}")
    return 0


def cli(argv: list[str]) -> int:
    return launch.cli(run, FLAGS, argv, __doc__, required=())


if __name__ == "__main__":
    sys.exit(cli(sys.argv))
