"""Meta-test figures (MAESN Figs. 6-9): experiments.figures on tiny trained MAESN and MAML runs."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil

import numpy as np
import pytest

TINY = [
    "--env=point_corner", "--preset=smoke", "--seed=3", "--log_every=4", "--checkpoint_every=4", "--num_steps=4",
    "--override=hidden_sizes=8", "--override=meta_batch_size=2", "--override=episodes_per_task=2",
    "--override=eval_num_tasks=4", "--override=eval_episodes_per_task=4", "--override=eval_adaptation_steps=2",
    "--env_kwarg=episode_length=10", "--progress=false",
]
HORIZON, NUM_TASKS, EPISODES, STEPS = 10, 4, 4, 2
PRIOR_EPISODES = 256  # enough episodes to test that z ~ N(0, I)



def _guarded(module_run, argv: list[str]) -> tuple[int, str]:
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        code = module_run(argv)
    return code, stderr.getvalue()


def train_main(args: list[str]) -> tuple[int, str]:
    """The train launcher's command line, in this process."""
    from experiments import train

    return _guarded(train.cli, ["train", *args])


def evaluate_main(*args: str) -> tuple[int, str]:
    from experiments import evaluate

    return _guarded(evaluate.cli, ["evaluate", *args])


def figures_main(*args: str) -> tuple[int, str]:
    from experiments import figures

    return _guarded(figures.cli, ["figures", *args])


def load(path) -> dict:
    with open(path) as fh:
        return json.load(fh)


def assert_png(path) -> None:
    data = open(path, "rb").read()
    assert data[:4] == b"\x89PNG" and len(data) > 10_000, (path, len(data))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny MAESN and MAML runs on point_corner, trained in this process and meta-tested by experiments.evaluate."""
    base = tmp_path_factory.mktemp("figure_runs")
    maesn, maml = base / "maesn", base / "maml"
    code, stderr = train_main(["--algo=maesn", *TINY, "--override=num_train_tasks=4", f"--logdir={maesn}"])
    assert code == 0, stderr
    code, stderr = train_main(["--algo=maml", *TINY, f"--logdir={maml}"])
    assert code == 0, stderr
    for logdir in (maesn, maml):
        code, stderr = evaluate_main(f"--logdir={logdir}", "--reward=sparse")  # MAESN Fig. 6: sparse meta-test
        assert code == 0, stderr
    return maesn, maml


# ---- Fig. 6 -----------------------------------------------------------------------------------


def test_compare_draws_every_run_with_an_interval(runs, tmp_path):
    maesn, maml = runs
    code, stderr = figures_main("compare", f"--logdirs={maesn},{maml}", "--labels=MAESN,MAML", f"--out={tmp_path}")
    assert code == 0, stderr
    assert_png(tmp_path / "compare.png")
    data = load(tmp_path / "compare.json")
    assert [c["label"] for c in data["curves"]] == ["MAESN", "MAML"]
    for curve, logdir in zip(data["curves"], runs):
        saved = load(logdir / "eval" / "adaptation_curve.json")
        assert curve["logdir"] == str(logdir) and curve["algo"] == saved["algo"]
        np.testing.assert_allclose(curve["mean"], saved["mean"])
        assert len(curve["mean"]) == STEPS + 1
        expected = saved.get("ci95_high", np.asarray(saved["mean"]) + 1.96 * np.asarray(saved["stderr"]))
        np.testing.assert_allclose(curve["high"], expected)
        assert np.all(np.asarray(curve["low"]) <= np.asarray(curve["mean"]))


def test_compare_uses_ci95_pairs_and_per_seed_curves(tmp_path):
    a, b = tmp_path / "a" / "eval", tmp_path / "b" / "eval"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    (a / "adaptation_curve.json").write_text(json.dumps(
        {"algo": "maesn", "env": "point_corner", "reward": "sparse", "mean": [1.0, 2.0, 3.0],
         "stderr": [0.1, 0.1, 0.1], "ci95_low": [0.5, 1.5, 2.5], "ci95_high": [1.5, 2.5, 3.5]}))
    seeds = [[0.0, 1.0], [1.0, 2.0], [2.0, 6.0]]
    (b / "adaptation_curve.json").write_text(json.dumps(
        {"algo": "maml", "env": "point_corner", "reward": "sparse", "seeds": [{"mean": s} for s in seeds]}))
    out = tmp_path / "out"
    code, stderr = figures_main("compare", f"--logdirs={a.parent},{b.parent}", f"--out={out}")
    assert code == 0, stderr
    assert_png(out / "compare.png")
    first, second = load(out / "compare.json")["curves"]
    assert first["low"] == [0.5, 1.5, 2.5] and first["high"] == [1.5, 2.5, 3.5] and first["label"] == "maesn"
    np.testing.assert_allclose(second["mean"], [1.0, 3.0])
    half = 4.302652729911275 * np.std(seeds, axis=0, ddof=1) / np.sqrt(3)  # t_{0.975, 2}
    np.testing.assert_allclose(second["high"], np.asarray([1.0, 3.0]) + half)
    assert "3 seeds" in second["interval"]
    # A curve measured with another reward is refused unless asked for.
    c = tmp_path / "c" / "eval"
    c.mkdir(parents=True)
    (c / "adaptation_curve.json").write_text(json.dumps(
        {"algo": "trpo", "env": "point_corner", "reward": "dense", "mean": [0.0, 1.0], "stderr": [0.1, 0.1]}))
    code, stderr = figures_main("compare", f"--logdirs={a.parent},{c.parent}", f"--out={out}")
    assert code == 2 and "different rewards" in stderr and str(c.parent) in stderr, stderr
    code, stderr = figures_main("compare", f"--logdirs={a.parent},{c.parent}", "--allow_mixed", f"--out={out}")
    assert code == 0, stderr


def test_compare_without_eval_file_names_the_logdir(runs, tmp_path):
    maesn, _ = runs
    bare = tmp_path / "not_evaluated"
    bare.mkdir()
    shutil.copy(maesn / "config.json", bare / "config.json")
    code, stderr = figures_main("compare", f"--logdirs={maesn},{bare}", f"--out={tmp_path / 'out'}")
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1, stderr
    assert str(bare) in errors[0] and "experiments.evaluate" in errors[0]
    assert not (tmp_path / "out" / "compare.png").exists()


# ---- Fig. 7 -----------------------------------------------------------------------------------


def test_trajectories_from_the_prior_pre_update_and_random(runs, tmp_path):
    from experiments.figures import load_run

    maesn, maml = runs
    code, stderr = figures_main("trajectories", f"--logdirs={maesn},{maml}", "--random",
                                f"--num_episodes={PRIOR_EPISODES}", "--num_goals=50", f"--out={tmp_path}")
    assert code == 0, stderr
    assert_png(tmp_path / "trajectories.png")
    data = load(tmp_path / "trajectories.json")
    assert np.asarray(data["goals"]).shape == (50, 2)
    assert [p["policy"] for p in data["policies"]] == ["prior_latent", "pre_update", "random"]
    for policy in data["policies"]:
        positions = np.asarray(policy["positions"])
        assert positions.shape == (PRIOR_EPISODES, HORIZON, 2)
        assert np.all(np.isfinite(positions)) and np.ptp(positions) > 0.1
    # MAESN explores with z ~ N(0, I) per episode: the prior, not the learned per-task latents.
    latents = np.asarray(data["policies"][0]["latents"])
    assert latents.shape == (PRIOR_EPISODES, 2)
    assert np.all(np.abs(latents.mean(axis=0)) < 0.25), latents.mean(axis=0)
    assert np.all(np.abs(latents.std(axis=0) - 1.0) < 0.15), latents.std(axis=0)
    _, _, _, ts = load_run(str(maesn))
    table = np.asarray(ts.params["latent_mean"])
    assert not np.any(np.all(np.isclose(latents[:, None], table[None]), axis=-1))
    assert np.asarray(data["policies"][1]["latents"]).shape == (PRIOR_EPISODES, 0)
    # Random actions stay inside the point family's action box (±0.2 per step).
    random_steps = np.diff(np.asarray(data["policies"][2]["positions"]), axis=1)
    assert np.all(np.abs(random_steps) <= 0.2 + 1e-5) and random_steps.std() > 0.05


def test_exploration_policy_dispatch(runs):
    from experiments.figures import load_run
    from metarl_jax import analysis

    for logdir, latent_size in zip(runs, (2, 0)):
        _, _, algo, ts = load_run(str(logdir))
        explorer = analysis.exploration_policy(algo, ts.params)
        assert explorer.latent_size == latent_size and analysis.has_latent_space(algo) == (latent_size > 0)
        expected = ts.params["policy"] if latent_size else algo.policy_params(ts.params)
        assert explorer.params is expected


# ---- Fig. 8 -----------------------------------------------------------------------------------


def test_latent_ellipses_before_and_after_adaptation(runs, tmp_path):
    maesn, _ = runs
    code, stderr = figures_main("latents", f"--logdirs={maesn}", f"--out={tmp_path}")
    assert code == 0, stderr
    assert_png(tmp_path / "latents.png")
    data = load(tmp_path / "latents.json")
    assert data["algo"] == "maesn" and data["dims"] == [0, 1]
    train, val = data["train"], data["val"]
    for part in (train, val):
        for key in ("pre_mean", "pre_std", "post_mean", "post_std"):
            assert np.asarray(part[key]).shape == (NUM_TASKS, 2), key
        assert np.all(np.asarray(part["pre_std"]) > 0) and np.all(np.asarray(part["post_std"]) > 0)
    # Meta-test starts every task from the prior N(0, I) and moves it by the adaptation steps.
    np.testing.assert_array_equal(val["pre_mean"], np.zeros((NUM_TASKS, 2)))
    np.testing.assert_array_equal(val["pre_std"], np.ones((NUM_TASKS, 2)))
    assert np.asarray(val["mean_path"]).shape == (NUM_TASKS, STEPS + 1, 2)
    assert np.asarray(val["returns"]).shape == (NUM_TASKS, STEPS + 1)
    assert not np.allclose(val["post_mean"], 0.0)
    # Training tasks: pre-update are the learned rows of the latent table, post-update MAESN's inner step.
    from experiments.figures import load_run

    _, _, _, ts = load_run(str(maesn))
    np.testing.assert_allclose(train["pre_mean"], np.asarray(ts.params["latent_mean"])[train["task_index"]],
                               rtol=1e-6)
    assert not np.allclose(train["post_mean"], train["pre_mean"])


def test_latents_of_a_run_without_latent_space_is_a_clear_error(runs, tmp_path):
    _, maml = runs
    for figure in ("latents", "ablation"):
        code, stderr = figures_main(figure, f"--logdirs={maml}", f"--out={tmp_path}")
        errors = [line for line in stderr.splitlines() if line.startswith("error:")]
        assert code == 2 and len(errors) == 1, stderr
        assert str(maml) in errors[0] and "'maml'" in errors[0] and "no latent space" in errors[0]


# ---- Fig. 9 -----------------------------------------------------------------------------------


def test_structured_noise_ablation(runs, tmp_path):
    maesn, _ = runs
    code, stderr = figures_main("ablation", f"--logdirs={maesn}", "--num_episodes=6", f"--out={tmp_path}")
    assert code == 0, stderr
    assert_png(tmp_path / "ablation.png")
    data = load(tmp_path / "ablation.json")
    sampled, fixed = data["sampled"], data["fixed"]
    for mode in (sampled, fixed):
        assert len(mode["mean"]) == STEPS + 1 and np.asarray(mode["per_task"]).shape == (NUM_TASKS, STEPS + 1)
        assert np.asarray(mode["episode_latents"]).shape == (NUM_TASKS, EPISODES, 2)
        assert np.asarray(mode["positions"]).shape == (6, HORIZON, 2)
    # Sampled mode is the meta-test of experiments.evaluate (same seed, split and tasks), step for step.
    evaluated = load(maesn / "eval" / "adaptation_curve.json")
    np.testing.assert_allclose(sampled["per_task"], evaluated["per_task"], rtol=1e-5, atol=1e-6)
    # Fixed z: every episode of a batch has the same z (= μ = 0 at the prior), and μ cannot move.
    fixed_z = np.asarray(fixed["episode_latents"])
    np.testing.assert_array_equal(fixed_z, np.broadcast_to(fixed_z[:, :1], fixed_z.shape))
    np.testing.assert_array_equal(fixed_z, 0.0)
    np.testing.assert_allclose(fixed["latent_mean"], 0.0, atol=1e-7)
    assert np.asarray(sampled["episode_latents"]).std(axis=1).min() > 0.1


def test_unknown_figure_and_missing_flags(tmp_path):
    code, stderr = figures_main("nope", f"--out={tmp_path}")
    figures = "['ablation', 'compare', 'latents', 'learning', 'posterior', 'trajectories']"
    assert code == 2 and f"expected one figure of {figures}" in stderr
    code, stderr = figures_main("compare", f"--out={tmp_path}")
    assert code == 2 and "--logdirs is required" in stderr
    code, stderr = figures_main("compare", "--logdirs=a,b", "--labels=x", f"--out={tmp_path}")
    assert code == 2 and "--labels has 1 entries for 2 --logdirs" in stderr
    code, stderr = figures_main("latents", f"--logdirs={tmp_path / 'nothing'}", f"--out={tmp_path}")
    assert code == 2 and f"{tmp_path / 'nothing'} has no config.json" in stderr
    assert not os.path.exists(tmp_path / "latents.png")
    code, stderr = figures_main("learning", f"--logdirs={tmp_path / 'nothing'}", f"--out={tmp_path}")
    assert code == 2 and f"{tmp_path / 'nothing'} has no config.json" in stderr
