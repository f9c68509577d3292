r"""Meta-test figures of trained runs (MAESN, Gupta et al. 2018, Figs. 6-9).

    python -m experiments.figures compare --logdirs=runs/maesn,runs/maml [--labels=MAESN,MAML] --out=figs
    python -m experiments.figures trajectories --logdirs=runs/maesn,runs/maml [--random] --out=figs
    python -m experiments.figures latents --logdirs=runs/maesn --out=figs
    python -m experiments.figures ablation --logdirs=runs/maesn --out=figs
    python -m experiments.figures learning --logdirs=runs/ddpg,runs/teacher --out=figs
    python -m experiments.figures posterior --logdirs=runs/pearl --out=figs

``compare`` (Fig. 6) reads each run's ``eval/adaptation_curve.json`` (written by
``experiments.evaluate``) and draws return vs adaptation iteration with a 95%
interval: the curve file's ``ci95_low``/``ci95_high`` when it has them (over seeds
for a ``--num_seeds`` run, else over tasks), else a t interval over its per-seed
curves (``seeds`` / ``per_seed``), else ±1.96 s.e. over tasks. Runs trained with
``--num_seeds`` are drawn by the other figures with seed ``--seed_index``.

``trajectories`` (Fig. 7) restores each run and rolls out its pre-adaptation
exploration policy, one episode per task of the split: latent-space methods with
z ~ N(0, I) drawn per episode (the prior, not a training task's latent), the
others with their pre-update θ; MAME its explorer μ_φ next to the exploitation
policy π_{θ,z'} adapted on the explorer's episodes (MAME Figs. 5, 10); ``--random``
adds uniformly random actions. The 2-D positions are drawn over all of the split's goals.

``latents`` (Fig. 8, latent-space runs with ≥ 2 latent dims): per task, the
latent distributions as 1σ/2σ ellipses before and after adaptation: for training
tasks the learned q_i = N(μ_i, σ_i) and q'_i after MAESN's inner step, for the
split's tasks the prior N(0, I) and q after the K meta-test steps.

``ablation`` (Fig. 9): the meta-test adaptation curve with z ~ N(μ, σ) sampled per
episode vs z fixed at μ (σ → 0 in the rollouts), with the visitations of the
first batch of both.

``learning`` (Xu et al. Fig. 3): the return of the periodic evaluations during training
(``--eval_every``; mean over seeds with its 95 % interval from ``metrics.jsonl``) against the
environment steps taken (``time/env_steps``), so that learners are compared at equal samples.

``posterior`` (PEARL Fig. 7): on one held-out goal, the meta-test's successive trajectories, each
with z sampled given the trajectories before it, coloured by their index.

Every figure is a PNG with the JSON of the data it shows, written into ``--out``.
Bad input ends with a one-line ``error: ...`` and exit status 2.
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any

from absl import flags

from experiments import common as launch

# Own flag set: this launcher must be importable next to experiments.train / evaluate (same names there).
FLAGS = flags.FlagValues()
flags.DEFINE_list("logdirs", [], "Comma-separated run directories (written by experiments.train).", flag_values=FLAGS)
flags.DEFINE_list("labels", [], "Legend labels, one per logdir (default: the algo names).", flag_values=FLAGS)
flags.DEFINE_string("out", None, "Output directory for the PNGs and JSONs.", flag_values=FLAGS)
flags.DEFINE_string("split", "val", "Task split for rollouts, goals and meta-test.", flag_values=FLAGS)
flags.DEFINE_integer("num_episodes", 20, "trajectories: episodes per policy (one per task of the split); "
                     "ablation: episodes drawn in the visitation panels.", flag_values=FLAGS)
flags.DEFINE_integer("num_goals", 100, "trajectories/ablation: goals of the split drawn as markers.",
                     flag_values=FLAGS)
flags.DEFINE_bool("random", False, "trajectories: add a uniformly random-action policy.", flag_values=FLAGS)
flags.DEFINE_integer("num_tasks", None, "latents/ablation: tasks per split (default: config eval_num_tasks).",
                     flag_values=FLAGS)
flags.DEFINE_integer("adaptation_steps", None, "latents/ablation: meta-test steps K (default: config).",
                     flag_values=FLAGS)
flags.DEFINE_string("reward", None, "latents/ablation: 'dense' or 'sparse' (default: config eval_reward).",
                    flag_values=FLAGS)
flags.DEFINE_bool("allow_mixed", False, "compare: allow curves of different envs or reward kinds.",
                  flag_values=FLAGS)
flags.DEFINE_integer("seed", 0, "Seed of the figure rollouts.", flag_values=FLAGS)
flags.DEFINE_string("curve_name", "adaptation_curve", "compare: the meta-test files to draw (eval/<curve_name>.json, "
                    "as experiments.evaluate --curve_name wrote them); the figure is compare_<suffix> for "
                    "adaptation_curve_<suffix>.", flag_values=FLAGS)
flags.DEFINE_integer("seed_index", 0, "For runs trained with --num_seeds: which seed's parameters (0-based).",
                     flag_values=FLAGS)

CURVE_NAME = "adaptation_curve"
CURVE_FILE = os.path.join("eval", f"{CURVE_NAME}.json")


# ---- shared ------------------------------------------------------------------------------------


def _jsonable(x: Any) -> Any:
    import numpy as np

    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return np.asarray(x).tolist()
    return x


def _write(out: str, stem: str, data: dict[str, Any]) -> list[str]:
    path = os.path.join(out, f"{stem}.json")
    with open(path, "w") as fh:
        json.dump(_jsonable(data), fh)
    return [os.path.join(out, f"{stem}.png"), path]


def _labels(f: Any, names: list[str]) -> list[str]:
    """--labels, else the algo names (with the logdir's basename where two runs share an algo)."""
    if f.labels:
        return list(f.labels)
    return [name if names.count(name) == 1 else f"{name} ({os.path.basename(os.path.normpath(d))})"
            for name, d in zip(names, f.logdirs)]


def _stem(base: str, label: str, many: bool) -> str:
    return f"{base}_{re.sub(r'[^A-Za-z0-9_.-]+', '_', label).strip('_')}" if many else base


def _saved_algo(logdir: str) -> str:
    from metarl_jax.io.checkpoints import CheckpointError, read_run_config

    saved = read_run_config(logdir)
    if saved is None:
        raise CheckpointError(f"{logdir} has no config.json; is it a run directory?")
    return saved["algo"]


def load_run(logdir: str, f: Any = None):
    """(spec, family, algo, train state) of the latest checkpoint; eval settings from the flags."""
    import jax

    spec = launch.RunSpec.from_logdir(logdir)
    changes = {}
    if f is not None:
        for flag, field in (("reward", "eval_reward"), ("num_tasks", "eval_num_tasks"),
                            ("adaptation_steps", "eval_adaptation_steps")):
            if getattr(f, flag) is not None:
                changes[field] = getattr(f, flag)
    spec.config = spec.config.replace(**changes)
    family, algo = spec.build()
    num_seeds = spec.num_seeds
    seed_index = 0 if f is None else f.seed_index
    if not 0 <= seed_index < num_seeds:
        raise ValueError(f"--seed_index={seed_index}: {logdir} holds {num_seeds} seed(s)")
    ts = launch.load_checkpoint(logdir, spec, algo)
    if num_seeds > 1:  # a --num_seeds run: one seed's train state
        ts = jax.tree.map(lambda x: x[seed_index], ts)
    return spec, family, algo, ts


def task_goals(tasks: Any):
    """Goal positions [N, 2] of a task batch (goal arrays, or dicts with a "goal" entry), else None."""
    import numpy as np

    goals = tasks.get("goal") if isinstance(tasks, dict) else tasks
    if goals is None or not hasattr(goals, "shape"):
        return None
    goals = np.asarray(goals)
    return goals if goals.ndim == 2 and goals.shape[-1] == 2 else None


def goal_radius(family: Any) -> float | None:
    """Radius of the region that pays the sparse reward, where the family has one."""
    for name in ("goal_radius", "sparse_radius"):
        value = getattr(family, name, None)
        if isinstance(value, (int, float)):
            return float(value)
    return None


# ---- compare (Fig. 6) -----------------------------------------------------------------------------


def read_curve(logdir: str, curve_name: str = CURVE_NAME) -> dict[str, Any]:
    relative = os.path.join("eval", f"{curve_name}.json")
    path = os.path.join(logdir, relative)
    if not os.path.exists(path):
        option = "" if curve_name == CURVE_NAME else f" --curve_name={curve_name}"
        raise FileNotFoundError(f"{logdir} has no {relative}; run `python -m experiments.evaluate "
                                f"--logdir={logdir}{option}` first")
    with open(path) as fh:
        try:
            curve = json.load(fh)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON ({e})") from None
    if not any(k in curve for k in ("mean", "seeds", "per_seed")):
        raise ValueError(f"{path} has no 'mean' (nor per-seed curves); re-run experiments.evaluate on {logdir}")
    return curve


def curve_interval(curve: dict[str, Any]) -> tuple[Any, Any, Any, str]:
    """(mean, low, high, what the interval is) of one adaptation-curve file."""
    import numpy as np

    from metarl_jax.evaluation import t_quantile_975

    if curve.get("ci95_low") is not None and curve.get("ci95_high") is not None:
        mean = np.asarray(curve["mean"], float)
        num_seeds = int(curve.get("num_seeds", 1))
        what = f"95% t-interval over {num_seeds} seeds" if num_seeds > 1 else "95% t-interval over tasks"
        return mean, np.asarray(curve["ci95_low"], float), np.asarray(curve["ci95_high"], float), what
    seeds = curve.get("seeds", curve.get("per_seed"))
    if seeds:
        per_seed = np.asarray([s["mean"] if isinstance(s, dict) else s for s in seeds], float)
        mean = per_seed.mean(axis=0)
        if len(per_seed) < 2:
            return mean, None, None, "1 seed"
        half = t_quantile_975(len(per_seed) - 1) * per_seed.std(axis=0, ddof=1) / np.sqrt(len(per_seed))
        return mean, mean - half, mean + half, f"95% t-interval over {len(per_seed)} seeds"
    mean = np.asarray(curve["mean"], float)
    if curve.get("stderr") is None:
        return mean, None, None, "none"
    half = 1.96 * np.asarray(curve["stderr"], float)
    return mean, mean - half, mean + half, "95% normal interval over tasks (1.96 s.e.)"


def compare(f: Any) -> list[str]:
    from metarl_jax.io.plots import plot_method_comparison

    files = [read_curve(d, f.curve_name) for d in f.logdirs]  # every file is checked before anything is drawn
    labels = _labels(f, [c.get("algo", "run") for c in files])
    curves = []
    for logdir, label, data in zip(f.logdirs, labels, files):
        mean, low, high, interval = curve_interval(data)
        curves.append({"label": label, "logdir": logdir, "algo": data.get("algo"), "env": data.get("env"),
                       "split": data.get("split"), "reward": data.get("reward"), "step": data.get("step"),
                       "x_label": data.get("x_label", "adaptation iteration"), "mean": mean, "low": low,
                       "high": high, "interval": interval})
    envs = sorted({str(c["env"]) for c in curves})
    rewards = sorted({str(c["reward"]) for c in curves})
    for what, values in (("env", envs), ("reward", rewards)):
        if len(values) > 1 and not f.allow_mixed:
            runs = ", ".join(f"{c['logdir']}: {c[what]}" for c in curves)
            hint = " (re-run experiments.evaluate with the same --reward)" if what == "reward" else ""
            raise ValueError(f"compare: the curves have different {what}s ({runs}){hint}; "
                             "pass --allow_mixed to draw them anyway")
    suffix = f.curve_name[len(CURVE_NAME):] if f.curve_name.startswith(CURVE_NAME) else "_" + f.curve_name
    paths = _write(f.out, "compare" + suffix, {"curves": curves})
    splits = sorted({str(c["split"]) for c in curves})
    plot_method_comparison(curves, paths[0], title=f"meta-test on {', '.join(envs)} ({', '.join(splits)} tasks)",
                           ylabel=f"{' / '.join(rewards)} return")
    return paths


# ---- trajectories (Fig. 7) ------------------------------------------------------------------------


def trajectories(f: Any) -> list[str]:
    import jax
    import numpy as np

    from metarl_jax import analysis
    from metarl_jax.io.plots import plot_exploration_trajectories

    if f.num_episodes < 1:
        raise ValueError(f"--num_episodes must be >= 1, got {f.num_episodes}")
    runs = [load_run(d) for d in f.logdirs]
    first = runs[0][0]
    for logdir, (spec, *_rest) in zip(f.logdirs, runs):
        if (spec.env, spec.env_kwargs) != (first.env, first.env_kwargs):
            raise ValueError(f"trajectories: {logdir} is a run on env {spec.env!r} {spec.env_kwargs}, "
                             f"{f.logdirs[0]} on {first.env!r} {first.env_kwargs}; one figure needs one env")
    family = runs[0][1]
    analysis.check_positions(family)
    tasks = family.task_set(f.split, f.num_episodes)
    goals = task_goals(family.task_set(f.split, f.num_goals))
    labels = _labels(f, [spec.algo for spec, *_ in runs])
    key = jax.random.key(f.seed)
    policies = []
    for i, (logdir, label, (spec, _, algo, ts)) in enumerate(zip(f.logdirs, labels, runs)):
        if analysis.has_separate_explorer(algo):  # MAME: μ_φ's episodes next to π_{θ,z'} adapted on them
            explored, adapted = analysis.adapted_rollouts(algo, ts.params, tasks, jax.random.fold_in(key, i))
            for what, name, traj in (("explorer μ_φ", "explorer", explored), ("adapted π_{θ,z'}", "adapted", adapted)):
                policies.append({"label": f"{label}: {what}", "logdir": logdir, "algo": spec.algo, "policy": name,
                                 "positions": np.asarray(traj.positions), "latents": np.asarray(traj.latents),
                                 "step": int(ts.step), "seed_index": f.seed_index})
            continue
        latent = analysis.has_latent_space(algo)
        traj = analysis.prior_rollouts(algo, ts.params, tasks, jax.random.fold_in(key, i))
        policies.append({"label": f"{label}: " + ("z ~ N(0, I)" if latent else "pre-update θ"),
                         "logdir": logdir, "algo": spec.algo, "policy": "prior_latent" if latent else "pre_update",
                         "positions": np.asarray(traj.positions), "latents": np.asarray(traj.latents),
                         "step": int(ts.step), "seed_index": f.seed_index})
    if f.random:
        traj = analysis.random_rollouts(family, tasks, jax.random.fold_in(key, len(runs)))
        policies.append({"label": "random actions", "logdir": None, "algo": None, "policy": "random",
                         "positions": np.asarray(traj.positions), "latents": np.asarray(traj.latents), "step": None})
    radius = goal_radius(family)
    paths = _write(f.out, "trajectories", {"env": first.env, "split": f.split, "goals": goals,
                                           "goal_radius": radius, "policies": policies})
    plot_exploration_trajectories([(p["label"], p["positions"]) for p in policies], paths[0], goals=goals,
                                  goal_radius=radius,
                                  title=(f"exploration before adaptation on {first.env} ({f.split} goals)"
                                         if not any(p["policy"] == "adapted" for p in policies) else
                                         f"exploration and adapted policies on {first.env} ({f.split} goals)"))
    return paths


# ---- latents (Fig. 8) -----------------------------------------------------------------------------


def _latent_run(logdir: str, f: Any, figure: str):
    from metarl_jax import analysis

    spec, family, algo, ts = load_run(logdir, f)
    if not analysis.has_latent_space(algo):
        raise ValueError(f"{figure}: {logdir} holds a run of algo {spec.algo!r}, which has no latent space; "
                         "use a maesn or latent_space run")
    return spec, family, algo, ts


def latents(f: Any) -> list[str]:
    import jax
    import numpy as np

    from metarl_jax import analysis
    from metarl_jax.io.plots import plot_latent_ellipses

    labels = _labels(f, [_saved_algo(d) for d in f.logdirs])
    runs = [_latent_run(d, f, "latents") for d in f.logdirs]
    paths = []
    for logdir, label, (spec, family, algo, ts) in zip(f.logdirs, labels, runs):
        cfg = algo.config
        if cfg.latent_size < 2:
            raise ValueError(f"latents: {logdir} has latent_size {cfg.latent_size}; ellipses need >= 2 dims")
        key_train, key_test = jax.random.split(jax.random.key(f.seed))
        indices = np.arange(min(cfg.eval_num_tasks, cfg.num_train_tasks))
        pre, post = analysis.training_latents(algo, ts.params, indices, key_train)
        tasks = family.task_set(f.split, cfg.eval_num_tasks)
        test = analysis.meta_test_latents(algo, ts.params, tasks, key_test)
        dims = [0, 1]
        train_data = {"task_index": indices, "goals": task_goals(jax.tree.map(lambda x: x[indices], algo.train_tasks)),
                      "pre_mean": pre.mean, "pre_std": np.exp(pre.log_std),
                      "post_mean": post.mean, "post_std": np.exp(post.log_std)}
        test_data = {"goals": task_goals(tasks), "adaptation_steps": cfg.eval_adaptation_steps,
                     "reward": cfg.eval_reward, "pre_mean": test.latent_mean[:, 0],
                     "pre_std": np.exp(test.latent_log_std[:, 0]), "post_mean": test.latent_mean[:, -1],
                     "post_std": np.exp(test.latent_log_std[:, -1]), "mean_path": test.latent_mean,
                     "std_path": np.exp(test.latent_log_std), "returns": test.returns}
        stem = _stem("latents", label, len(f.logdirs) > 1)
        data = {"logdir": logdir, "algo": spec.algo, "env": spec.env, "step": int(ts.step),
                "seed_index": f.seed_index, "dims": dims,
                "train": train_data, f.split: test_data}
        run_paths = _write(f.out, stem, data)
        rows = [{"label": f"train tasks (inner step{'' if algo.adapts else ': none'})",
                 **{k: np.asarray(v)[:, dims] for k, v in train_data.items() if k.startswith(("pre_", "post_"))}},
                {"label": f"{f.split} tasks ({cfg.eval_adaptation_steps} test steps)",
                 **{k: np.asarray(test_data[k])[:, dims] for k in ("pre_mean", "pre_std", "post_mean", "post_std")}}]
        plot_latent_ellipses(rows, run_paths[0], title=f"{label} latent distributions on {spec.env} "
                             f"(step {int(ts.step)}; 1 σ filled, 2 σ dashed)")
        paths += run_paths
    return paths


# ---- structured-noise ablation (Fig. 9) -----------------------------------------------------------


def ablation(f: Any) -> list[str]:
    import jax
    import numpy as np

    from metarl_jax import analysis
    from metarl_jax.evaluation import AdaptationCurve
    from metarl_jax.io.plots import plot_noise_ablation

    labels = _labels(f, [_saved_algo(d) for d in f.logdirs])
    runs = [_latent_run(d, f, "ablation") for d in f.logdirs]
    paths = []
    for logdir, label, (spec, family, algo, ts) in zip(f.logdirs, labels, runs):
        cfg = algo.config
        tasks = family.task_set(f.split, cfg.eval_num_tasks)
        key = jax.random.key(f.seed)
        modes = {"sampled": ("z ~ N(μ, σ) per episode", False), "fixed": ("z fixed at μ", True)}
        data = {"logdir": logdir, "algo": spec.algo, "env": spec.env, "split": f.split, "reward": cfg.eval_reward,
                "step": int(ts.step), "seed_index": f.seed_index,
                "goals": task_goals(family.task_set(f.split, f.num_goals)),
                "goal_radius": goal_radius(family)}
        curves, panels = [], []
        for name, (what, fixed) in modes.items():
            result = analysis.meta_test_latents(algo, ts.params, tasks, key, fixed_latent=fixed)
            curve = AdaptationCurve(result.returns).to_dict()
            low, high = curve.get("ci95_low"), curve.get("ci95_high")
            if low is None or high is None:
                half = 1.96 * np.asarray(curve["stderr"])
                low, high = np.asarray(curve["mean"]) - half, np.asarray(curve["mean"]) + half
            # The first batch of every task (z from the prior, or z = 0), the first --num_episodes of them.
            positions = np.asarray(result.first_positions).reshape(-1, *result.first_positions.shape[-2:])
            positions = positions[:f.num_episodes]
            data[name] = {**curve, "label": what, "low": low, "high": high, "latent_mean": result.latent_mean,
                          "latent_std": np.exp(result.latent_log_std), "episode_latents": result.first_latents,
                          "positions": positions}
            curves.append({"label": what, "mean": curve["mean"], "low": data[name]["low"],
                           "high": data[name]["high"]})
            panels.append((f"first batch, {what}", positions))
        run_paths = _write(f.out, _stem("ablation", label, len(f.logdirs) > 1), data)
        plot_noise_ablation(curves, panels, run_paths[0], goals=data["goals"], goal_radius=data["goal_radius"],
                            title=f"{label} on {spec.env}: role of structured noise ({cfg.eval_reward} reward)",
                            ylabel=f"{cfg.eval_reward} return")
        paths += run_paths
    return paths


# ---- learning curves (Xu et al. Fig. 3) -----------------------------------------------------------------


def learning(f: Any) -> list[str]:
    """Return during training against env steps, on ``--split`` (logged by ``experiments.train
    --eval_every --eval_splits``), after the last adaptation step logged (TESP Fig. 4: the return after
    3 fast updates; a single-task learner's one point)."""
    from metarl_jax.io.metrics import read_metrics
    from metarl_jax.io.plots import plot_learning_curves

    prefix = "eval/" if f.split == "val" else f"eval/{f.split}/"
    curves, steps = [], set()
    for logdir, label in zip(f.logdirs, _labels(f, [_saved_algo(d) for d in f.logdirs])):
        rows = [r for r in read_metrics(logdir) if f"{prefix}return_step0" in r]
        if not rows:
            raise ValueError(f"learning: {logdir} has no evaluations on the {f.split} split in metrics.jsonl "
                             f"(train with --eval_every and --eval_splits={f.split})")
        if any("time/env_steps" not in r for r in rows):
            raise ValueError(f"learning: {logdir} logs no time/env_steps; its x axis would be undefined")
        k = max(int(key[len(prefix) + len("return_step"):]) for key in rows[0]
                if key.startswith(f"{prefix}return_step") and key[len(prefix) + len("return_step"):].isdigit())
        steps.add(k)
        key = f"{prefix}return_step{k}"
        band = all(f"{key}_ci95_low" in r for r in rows)  # one seed: no interval
        curves.append({"label": label, "logdir": logdir, "env_steps": [r["time/env_steps"] for r in rows],
                       "adaptation_steps": k, "mean": [r[key] for r in rows],
                       "low": [r[f"{key}_ci95_low"] for r in rows] if band else None,
                       "high": [r[f"{key}_ci95_high"] for r in rows] if band else None})
    from metarl_jax.io.checkpoints import read_run_config

    envs = sorted({read_run_config(c["logdir"])["env"] for c in curves})
    stem = "learning" if f.split == "val" else f"learning_{f.split}"
    paths = _write(f.out, stem, {"split": f.split, "curves": curves})
    after = "" if steps == {0} else " after " + "/".join(str(k) for k in sorted(steps)) + " adaptation steps"
    title = f"{', '.join(envs)}, {f.split} tasks: return{after} during training (95 % interval over seeds)"
    plot_learning_curves(curves, paths[0], title=title)
    return paths


def posterior(f: Any) -> list[str]:
    """PEARL's posterior sampling (Rakelly et al. 2019, Fig. 7): on one held-out goal, the meta-test's
    trajectories k = 0..K, each with z drawn given the k trajectories before it (z ~ N(0, I) while
    k < num_exp_traj_eval): exploration narrows onto the goal as the context grows."""
    import jax
    import numpy as np

    from metarl_jax import analysis
    from metarl_jax.io.plots import plot_exploration_trajectories

    panels, data = [], []
    labels = _labels(f, [_saved_algo(d) for d in f.logdirs])
    for i, (logdir, label) in enumerate(zip(f.logdirs, labels)):
        spec, family, algo, ts = load_run(logdir, f)
        if not hasattr(algo, "meta_test"):
            raise ValueError(f"posterior: {logdir} holds a run of algo {spec.algo!r}, which samples no posterior; "
                             "use a pearl run")
        analysis.check_positions(family)
        tasks = family.task_set(f.split, max(1, f.num_goals))
        goal = jax.tree.map(lambda x: x[:1], tasks)  # the split's first goal
        _, transitions, alive = jax.jit(algo.meta_test)(ts.params, goal, jax.random.fold_in(jax.random.key(f.seed), i))
        before = np.asarray(transitions.extras["position"][0])
        after = np.asarray(transitions.extras["next_position"][0])
        positions = np.concatenate([before, after[:, -1:]], axis=1)  # [K + 1, T + 1, 2]
        prior = int(algo.config.num_exp_traj_eval)
        panels.append((f"{label}: k = 0..{len(positions) - 1}, dark → light\n(k < {prior}: z ~ prior, then q(z | c))",
                       positions))
        data.append({"label": label, "logdir": logdir, "algo": spec.algo, "step": int(np.ravel(ts.step)[0]),
                     "positions": positions, "alive": np.asarray(alive[0]), "num_exp_traj_eval": prior,
                     "goal": task_goals(goal)})
    radius = goal_radius(family)
    goals = task_goals(goal)
    paths = _write(f.out, "posterior", {"env": spec.env, "split": f.split, "goal_radius": radius, "runs": data})
    plot_exploration_trajectories(panels, paths[0], goals=goals, goal_radius=radius,
                                  title=f"posterior sampling, one {f.split} goal\n({spec.env})")
    return paths


COMMANDS = {"compare": compare, "trajectories": trajectories, "latents": latents, "ablation": ablation,
            "learning": learning, "posterior": posterior}


def run(f: Any, command: str) -> int:
    if not f.logdirs:
        raise ValueError(f"{command}: --logdirs is required (comma-separated run directories)")
    if not f.out:
        raise ValueError(f"{command}: --out is required (output directory)")
    if f.labels and len(f.labels) != len(f.logdirs):
        raise ValueError(f"--labels has {len(f.labels)} entries for {len(f.logdirs)} --logdirs")
    os.makedirs(f.out, exist_ok=True)
    paths = COMMANDS[command](f)
    print("wrote " + ", ".join(paths))
    return 0


def cli(argv: list[str]) -> int:
    """``argv[1]`` is the figure; the rest are flags. Returns the exit status (2: bad input, one line)."""
    if any(a in ("-h", "--help", "--helpfull") for a in argv[1:]):
        print(__doc__)
        print(FLAGS.get_help())
        return 0
    FLAGS.unparse_flags()
    try:
        rest = FLAGS(list(argv))
    except flags.Error as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if len(rest) != 2 or rest[1] not in COMMANDS:
        given = rest[1:] or "nothing"
        print(f"error: expected one figure of {sorted(COMMANDS)}, got {given}", file=sys.stderr)
        return 2
    return launch.run_guarded(lambda f: run(f, rest[1]), FLAGS)


if __name__ == "__main__":
    sys.exit(cli(sys.argv))
