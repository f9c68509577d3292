"""The reproduction harness: the registry, the statistics against scipy, and every claim at smoke scale."""

from __future__ import annotations

import contextlib
import io
import json
import os

import numpy as np
import pytest

from experiments import claims, reproduce


def reproduce_main(*args: str) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = reproduce.cli(["reproduce", *args])
    return code, stdout.getvalue(), stderr.getvalue()


def test_every_claim_resolves_at_every_scale():
    """Every run of every panel builds its launcher spec: algo, family, preset, overrides, kwargs."""
    assert {"maesn_fig6", "maml_icml", "mame_fig3"} <= set(claims.names())
    for name in claims.names():
        claim = claims.get(name)
        assert "smoke" in claim.scales and "cpu" in claim.scales and "paper" in claim.scales, name
        for scale, scaled in claim.scales.items():
            assert scaled.panels and (scale == "smoke" or scaled.notes), (name, scale)
            assert scaled.seeds >= (5 if scale in ("cpu", "paper") else 2), (name, scale)
            for panel in scaled.panels:
                assert len({run.label for run in panel.runs}) == len(panel.runs)
                for run in panel.runs:
                    spec = run.spec(num_seeds=2)
                    assert spec.algo == run.algo and spec.env == run.env, (name, scale, run.label)
                for label, values in panel.paper.items():
                    assert len(values) == len(panel.paper_steps), (name, panel.title, label)


def test_list_describes_every_claim():
    code, out, _ = reproduce_main("--list")
    assert code == 0
    for name in claims.names():
        assert any(line.startswith(name) and claims.get(name).paper in line for line in out.splitlines()), out


@pytest.mark.parametrize("args,message", [
    (["--claim=nope"], "unknown claim 'nope'; registered claims are"),
    ([], "--claim is required"),
    (["--claim=maesn_fig6", "--seeds=1"], "--seeds must be >= 2"),
    (["--claim=maesn_fig6", "--scale=huge"], "flag --scale=huge"),
])
def test_bad_input_is_one_error_line(args, message, tmp_path):
    code, _, stderr = reproduce_main(*args, f"--out={tmp_path}")
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and message in errors[0], stderr


def test_welch_and_paired_intervals_match_scipy():
    from scipy import stats

    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 1.0, 5), rng.normal(0.0, 2.0, 7)
    difference, low, high = claims.welch_interval(a, b)
    va, vb = a.var(ddof=1) / 5, b.var(ddof=1) / 7
    dof = (va + vb) ** 2 / (va**2 / 4 + vb**2 / 6)
    half = stats.t.ppf(0.975, int(dof)) * np.sqrt(va + vb)  # degrees of freedom floored: conservative
    np.testing.assert_allclose([difference, low, high], [a.mean() - b.mean(), a.mean() - b.mean() - half,
                                                         a.mean() - b.mean() + half], rtol=1e-4)
    mean, low, high = claims.paired_interval(a - 1.0)
    ref = stats.t.interval(0.95, 4, loc=np.mean(a - 1.0), scale=stats.sem(a - 1.0))
    np.testing.assert_allclose([low, high], ref, rtol=1e-4)


def test_statistics_decide_against_the_best_rival_and_say_when_they_cannot():
    curves = {"A": np.array([[0.0, 5.0], [0.0, 6.0], [0.0, 5.5]]),
              "B": np.array([[0.0, 1.0], [0.0, 2.0], [0.0, 1.5]]),
              "C": np.array([[0.0, 3.0], [0.0, 4.0], [0.0, 3.5]])}
    verdict = claims.Exceeds("A", ("B", "C")).decide(curves)
    assert verdict.holds and verdict.difference == pytest.approx(2.0) and "best other method's (C)" in verdict.statement
    assert not claims.Exceeds("B", ("A",)).decide(curves).holds
    missing = claims.Exceeds("MAME", ("A",)).decide(curves)
    assert missing.holds is None and "no runs of MAME" in missing.line("cpu")
    improves = claims.Improves("B").decide(curves)
    assert improves.holds and improves.difference == pytest.approx(1.5) and improves.num_seeds == 3
    line = improves.line("cpu")
    assert line.startswith("B's return after 1 test step exceeds its pre-update return: difference 1.5, 95 % CI [")
    assert line.endswith("3 seeds; the claim holds at cpu scale")


def test_fewer_env_steps_is_a_log_ratio_interval_with_censoring():
    """PEARL's sample-efficiency statistic on synthetic learning curves with known crossing points."""
    steps = np.arange(1, 11) * 1000.0

    def curve(crossing: float, final: float = 2.0):  # returns ramp from 0 to `final`, reaching 1 at `crossing`
        returns = np.clip(steps / crossing, 0.0, final)[:, None]
        return claims.LearningCurve(steps, np.concatenate([0.0 * returns, returns], axis=1))

    fast = [curve(c) for c in (1000.0, 2000.0, 1000.0)]
    slow = [curve(c, final=1.0) for c in (8000.0, 9000.0, 10000.0)]  # final return 1: the threshold
    verdict = claims.FewerEnvSteps("A", ("B",)).decide_learning({"A": fast, "B": slow})
    expected = np.exp(np.mean(np.log([8000, 9000, 10000])) - np.mean(np.log([1000, 2000, 1000])))
    assert verdict.holds and verdict.num_seeds == 3
    np.testing.assert_allclose(verdict.difference, expected, rtol=1e-12)
    assert verdict.ci95[0] > 1.0 and "of 1 (B's final)" in verdict.statement
    assert claims.steps_to_threshold(slow[0], 1.0) == (8000.0, True)
    # A rival that never reaches a fixed threshold is censored at its last evaluation: a lower bound, said so.
    censored = claims.FewerEnvSteps("A", ("B",), threshold=1.5).decide_learning({"A": fast, "B": slow})
    assert "never reached it (ratio is a lower bound)" in censored.reason and censored.holds is not None
    # The method itself censored: undecided. A rival that learned nothing: the floor is the threshold.
    assert claims.FewerEnvSteps("B", ("A",), threshold=1.5).decide_learning({"A": fast, "B": slow}).holds is None
    flat = [claims.LearningCurve(steps, np.zeros((10, 2))) for _ in range(3)]
    floored = claims.FewerEnvSteps("A", ("B",), min_threshold=0.5).decide_learning({"A": fast, "B": flat})
    assert "of 0.5 (the floor" in floored.statement and "lower bound" in floored.reason
    assert floored.holds and floored.ci95[0] >= 5.0  # B never reaches it in 10 000 steps: at least 5-10x
    assert claims.FewerEnvSteps("A", ("B",)).decide_learning({"A": fast}).holds is None  # no rival


def test_pearl_claim_reads_per_seed_learning_curves_and_draws_the_posterior_figure(smoke_results):
    _, first, _, _ = smoke_results
    panel = first["pearl_sample_efficiency"]["panels"][0]
    pearl = next(r for r in panel["runs"] if r["label"] == "PEARL")
    learning = reproduce.learning_curves(pearl["logdir"])
    assert len(learning) == 2 and learning[0].returns.shape[1] == 2  # 2 seeds; trajectories k = 0, 1
    assert learning[0].env_steps[-1] == pearl["env_steps"]
    assert "env steps to a sparse meta-test return" in panel["verdict_lines"][0]
    assert [os.path.basename(p) for p in panel["figures"]] == ["compare.png", "posterior.png"]
    assert pearl["curve"]["x_label"] == "trajectories of context"
def test_smaller_gap_compares_each_seeds_drop_between_splits():
    """Gaps per seed (same parameters on both splits): A drops 1 from train to ood, B 3 and C 4; the
    difference is the best rival's (B's) mean gap minus A's."""
    curves = {"A@train": np.array([[0.0, 5.0], [0.0, 6.0], [0.0, 5.5]]),
              "A@ood": np.array([[0.0, 4.0], [0.0, 5.2], [0.0, 4.3]]),
              "B@train": np.array([[0.0, 9.0], [0.0, 8.0], [0.0, 8.5]]),
              "B@ood": np.array([[0.0, 6.0], [0.0, 5.0], [0.0, 5.5]]),
              "C@train": np.array([[0.0, 9.0], [0.0, 9.0], [0.0, 9.0]]),
              "C@ood": np.array([[0.0, 5.0], [0.0, 5.0], [0.0, 5.0]])}
    verdict = claims.SmallerGap("A", ("B", "C")).decide(curves)
    a_gaps, b_gaps = np.array([1.0, 0.8, 1.2]), np.array([3.0, 3.0, 3.0])
    difference, low, high = claims.welch_interval(b_gaps, a_gaps)
    assert verdict.holds and verdict.difference == pytest.approx(2.0) and (low, high) == pytest.approx(verdict.ci95)
    assert "train – ood gap in return is smaller than the smallest other gap (B's)" in verdict.statement
    assert not claims.SmallerGap("C", ("A",)).decide(curves).holds
    assert claims.SmallerGap("A", ("D",)).decide(curves).holds is None


def test_a_split_panel_meta_tests_each_split_once_and_keys_the_curves_by_split():
    run = claims.Run("A", "maml", "reacher2", 1)
    panel = claims.Panel("p", (run,), (), claims.Protocol(split="val"), splits=("train", "val", "ood"))
    protocols = panel.protocols()
    assert protocols["@val"] is protocols[""]  # the protocol's own split: one meta-test, two keys
    assert protocols["@ood"].split == "ood" and protocols["@ood"].curve_name == "adaptation_curve_ood"
    assert "--curve_name=adaptation_curve_train" in protocols["@train"].evaluate_args()
    stems = [stem for _, stem, _, _ in reproduce._figure_commands(claims.Claim("c", "p", "f", "d", {}, (
        ("learning", ()), ("trajectories", ()))), panel)]
    assert stems == ["compare", "compare_train", "compare_ood", "learning", "learning_train", "learning_ood",
                     "trajectories"]


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory):
    """Every registered claim at smoke scale (two seeds, two iterations), twice: the second call must skip."""
    out = tmp_path_factory.mktemp("repro")
    first, second = {}, {}
    for name in claims.names():
        first[name] = reproduce.reproduce(claims.get(name), "smoke", None, str(out), quiet=True)
    drawn = {path: os.path.getmtime(path) for result in first.values() for panel in result["panels"]
             for path in panel["figures"]}
    for name in claims.names():
        second[name] = reproduce.reproduce(claims.get(name), "smoke", None, str(out), quiet=True)
    redrawn = [path for path, mtime in drawn.items() if os.path.getmtime(path) != mtime]
    return out, first, second, redrawn


@pytest.mark.parametrize("name", claims.names())
def test_every_claim_at_smoke_scale_writes_runs_figures_json_table_and_verdicts(smoke_results, name):
    out, first, second, redrawn = smoke_results
    result = first[name]
    root = out / name / "smoke"
    saved = json.loads((root / "result.json").read_text())
    assert saved["claim"] == name and saved["seeds"] == 2 and saved["wall_seconds"] > 0
    table = (root / "table.md").read_text()
    for panel, scaled_panel in zip(result["panels"], claims.get(name).scale("smoke").panels):
        assert len(panel["verdict_lines"]) == len(scaled_panel.statistics)
        for line in panel["verdict_lines"]:
            assert "at smoke scale" in line and line in table
        for record, run in zip(panel["runs"], scaled_panel.runs):
            logdir = record["logdir"]
            assert json.loads(open(os.path.join(logdir, "config.json")).read())["num_seeds"] == 2
            assert os.listdir(os.path.join(logdir, "checkpoints")) == [str(run.num_steps)]
            curve = record["curve"]
            assert np.shape(curve["per_seed"])[0] == 2 and curve["reward"] == (panel["protocol"]["reward"]
                                                                              or curve["reward"])
            assert record["status"] == ["trained"] + ["evaluated"] * len(set(scaled_panel.protocols().values()))
            rows = [f"{record['label']} ({split})" for split in scaled_panel.splits] or [record["label"]]
            assert all(f"| {row} |" in table for row in rows), rows
        for path in panel["figures"]:
            assert open(path, "rb").read()[:4] == b"\x89PNG", path
        assert os.path.basename(panel["figures"][0]) == "compare.png"
    for panel in second[name]["panels"]:  # a re-run skips what is finished, figures included
        assert all(set(r["status"]) == {"trained earlier", "evaluated earlier"} for r in panel["runs"])
        assert not [path for path in panel["figures"] if path in redrawn]
    assert second[name]["panels"][0]["verdict_lines"] == result["panels"][0]["verdict_lines"]


def test_publish_splices_the_claim_block_and_keeps_hand_written_text(smoke_results, tmp_path, monkeypatch):
    _, first, _, _ = smoke_results
    doc = tmp_path / "reproductions.md"
    doc.write_text("# Reproductions\n\nHand-written investigation.\n")
    monkeypatch.setattr(reproduce, "DOC", str(doc))
    monkeypatch.setattr(reproduce, "DOC_IMAGES", str(tmp_path / "images"))
    result = first["maesn_fig6"]
    reproduce.publish(result)
    reproduce.publish(result)  # idempotent: one block
    text = doc.read_text()
    assert "Hand-written investigation." in text and text.count("BEGIN GENERATED: maesn_fig6:smoke") == 1
    assert result["panels"][0]["verdict_lines"][0] in text
    assert any(name.endswith("compare.png") for name in os.listdir(tmp_path / "images"))


def test_sample_efficiency_panels_are_decided_only_at_equal_env_steps(smoke_results):
    """Xu et al.'s panel counts every env step of both learners; unequal counts decide nothing."""
    _, first, _, _ = smoke_results
    panel = first["xu_table2"]["panels"][0]
    assert [r["env_steps"] for r in panel["runs"]] == [80.0, 80.0]  # DDPG 2 x 2 x 20; the teacher 2 x (10 + 2 x 15)
    assert "env steps" in panel["table"].splitlines()[0]
    assert panel["verdicts"][0]["holds"] is not None  # Meta against DDPG: decided (either way)
    assert os.path.basename(panel["figures"][1]) == "learning.png"
    scaled = claims.get("xu_table2").scale("smoke").panels[0]
    records = [dict(r) for r in panel["runs"]]
    records[1]["env_steps"] = 120.0
    verdicts = reproduce.decide(scaled, records)
    assert all(v.holds is None for v in verdicts)
    assert "different numbers of env steps: DDPG 80, Meta 120" in verdicts[0].line("smoke")


def test_xu_budgets_are_whole_epochs_of_the_learners_presets():
    """The claim's env-step accounting is the presets' (DDPG: cycles x rollout; the teacher per cycle: D0,
    then the student's and each π′'s evaluation rollout), so the cpu and paper runs end at equal steps."""
    from experiments import paper_claims
    from metarl_jax import algos

    for scale in ("cpu", "paper"):
        for panel in claims.get("xu_table2").scale(scale).panels:
            ddpg_run, meta_run, variance_run = panel.runs
            ddpg = algos.preset("ddpg", ddpg_run.preset)
            teacher = algos.preset("teacher_ddpg", meta_run.preset)
            assert ddpg.epoch_cycles * ddpg.rollout_steps == paper_claims.XU_DDPG_EPOCH, panel.title
            per_cycle = teacher.exploration_steps + (1 + teacher.teacher_copies) * teacher.rollout_steps
            assert per_cycle == paper_claims.XU_TEACHER_CYCLE.get(ddpg_run.env, 500), panel.title
            cycles = int(dict(o.split("=") for o in meta_run.overrides)["epoch_cycles"])
            budget = ddpg_run.num_steps * ddpg.epoch_cycles * ddpg.rollout_steps
            assert meta_run.num_steps * cycles * per_cycle == budget, panel.title
            assert variance_run.overrides == (*meta_run.overrides, "teacher=variance")


def test_evaluate_of_a_single_task_learner_refuses_meta_test_flags(smoke_results):
    """DDPG's config has no eval_reward / eval_adaptation_steps: a clear error, before anything is built."""
    from experiments import evaluate

    _, first, _, _ = smoke_results
    ddpg = first["xu_table2"]["panels"][0]["runs"][0]
    assert ddpg["curve"]["adaptation_steps"] == 0 and ddpg["curve"]["reward"] == "dense"
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        code = evaluate.cli(["evaluate", f"--logdir={ddpg['logdir']}", "--reward=sparse"])
    assert code == 2 and "--reward: ddpg's config has no field 'eval_reward'" in stderr.getvalue()


def test_split_panels_meta_test_and_draw_every_split(smoke_results):
    """TESP's panel: each run meta-tested on D and D′ (its own files), the figures per split, and the
    learning curves read from the launcher's eval/<split>/ metrics after the last adaptation step."""
    from metarl_jax.io.metrics import read_metrics

    out, first, _, _ = smoke_results
    panel = first["tesp_fig4"]["panels"][0]
    names = {os.path.basename(p) for p in panel["figures"]}
    assert {"compare.png", "compare_train.png", "learning.png", "learning_train.png"} <= names
    for record in panel["runs"]:
        train_curve = record["split_curves"]["@train"]
        assert train_curve["split"] == "train" and record["curve"]["split"] == "val"
        assert record["split_curves"]["@val"] == record["curve"]
        saved = json.loads(open(os.path.join(record["logdir"], "eval", "adaptation_curve_train.json")).read())
        assert saved["per_seed"] == train_curve["per_seed"]
    learning = json.loads((out / "tesp_fig4" / "smoke" / panel["slug"] / "learning_train.json").read_text())
    assert learning["split"] == "train"
    for curve, record in zip(learning["curves"], panel["runs"]):
        rows = [r for r in read_metrics(record["logdir"]) if "eval/train/return_step1" in r]
        assert curve["adaptation_steps"] == 1 and curve["mean"] == [r["eval/train/return_step1"] for r in rows]
