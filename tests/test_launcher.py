"""The absl launchers: outputs, bit-identical resume, bad input, evaluation, multi-device."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests import equivalence as eq

TINY = [
    "--algo=maml", "--env=point_corner", "--preset=smoke", "--seed=3", "--log_every=4", "--checkpoint_every=4",
    "--override=hidden_sizes=8", "--override=meta_batch_size=2", "--override=episodes_per_task=2",
    "--override=eval_num_tasks=2", "--override=eval_episodes_per_task=2", "--override=eval_adaptation_steps=1",
    "--env_kwarg=episode_length=10", "--progress=false",
]


# The equivalence tests' run (tests/equivalence.py): 4 tasks x 16 episodes, one meta-iteration, float64.
EQUIVALENCE_ARGS = [*[a for a in TINY if not a.startswith("--override")],
                    *[f"--override={k}={','.join(map(str, v)) if isinstance(v, tuple) else v}"
                      for k, v in eq.TINY_OVERRIDES.items()]]


def initial_condition_number(logdir) -> float:
    """κ(F + λI) of the first meta-iteration of the run in ``logdir`` (same config, seed and keys)."""
    import jax

    from experiments.common import RunSpec

    spec = RunSpec.from_logdir(str(logdir))
    _, algo = spec.build()
    fisher = jax.jit(lambda ts: eq.outer_problem(algo, ts)[2])(spec.init_state(algo))
    return eq.condition_number(fisher, spec.config.cg_damping)


def run_cli(module: str, args: list[str], env: dict[str, str], cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=600)


def snapshot(directory) -> dict[str, bytes]:
    """Every file under ``directory`` with its bytes (to prove nothing was deleted or changed)."""
    out = {}
    for root, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, directory)] = f.read()
    return out


def last_record(logdir) -> dict:
    with open(os.path.join(logdir, "metrics.jsonl")) as f:
        record = json.loads(f.readlines()[-1])
    return {k: v for k, v in record.items() if not k.startswith("time/wall")}


def restore_params(logdir):

    from experiments.common import RunSpec
    from metarl_jax.io.checkpoints import Checkpointer

    spec = RunSpec.from_logdir(str(logdir))
    _, algo = spec.build()
    checkpointer = Checkpointer(str(logdir), spec.algo, spec.env)
    ts = checkpointer.restore(spec.init_state(algo))
    checkpointer.close()
    return ts


def train_main(args: list[str]) -> tuple[int, str]:
    """The train launcher's command line, in this process (no interpreter start-up): (status, stderr)."""
    from experiments import train

    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = train.cli(["train", *args])
    return code, stderr.getvalue()


@pytest.fixture
def train_in_process():
    return train_main


def keep_built_algorithms(monkeypatch) -> list:
    """Every algorithm the launchers build from now on, in order (to read their ``trace_count``)."""
    from experiments import common

    built = []
    build = common.RunSpec.build

    def keep(spec, *args, **kwargs):
        family, algo = build(spec, *args, **kwargs)
        built.append(algo)
        return family, algo

    monkeypatch.setattr(common.RunSpec, "build", keep)
    return built


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run A: 8 steps straight. Run B: 4 steps, then the same command resumed to 8."""
    base = tmp_path_factory.mktemp("runs")
    straight, resumed = base / "straight", base / "resumed"
    code, stderr = train_main([*TINY, "--num_steps=8", f"--logdir={straight}"])
    assert code == 0, stderr
    code, stderr = train_main([*TINY, "--num_steps=4", f"--logdir={resumed}"])
    assert code == 0, stderr
    code, stderr = train_main([*TINY, "--num_steps=8", f"--logdir={resumed}"])
    assert code == 0, stderr
    assert "resuming" in stderr
    return straight, resumed


def test_train_writes_config_metrics_events_and_checkpoints(runs):
    straight, _ = runs
    config = json.loads((straight / "config.json").read_text())
    assert config["algo"] == "maml" and config["env"] == "point_corner"
    assert config["config"]["meta_batch_size"] == 2
    with open(straight / "metrics.jsonl") as f:
        records = [json.loads(line) for line in f]
    assert [r["step"] for r in records] == list(range(1, 9))
    for r in records:
        assert all(k == "step" or k.split("/")[0] in ("train", "adapt", "eval", "time") for k in r)
    assert "eval/return_step0" in records[-1] and "eval/return_step1" in records[-1]
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(straight))
    assert sorted(os.listdir(straight / "checkpoints")) == ["4", "8"]


def test_eval_splits_log_every_split(tmp_path, train_in_process):
    code, stderr = train_in_process([*TINY, "--num_steps=4", "--eval_splits=val,train", f"--logdir={tmp_path / 'r'}"])
    assert code == 0, stderr
    record = last_record(tmp_path / "r")
    for key in ("eval/return_step0", "eval/return_step1", "eval/train/return_step0", "eval/train/adaptation_gain"):
        assert key in record, sorted(record)
    assert record["eval/train/return_step0"] != record["eval/return_step0"]  # other tasks, other returns


def test_resume_is_bit_identical(runs):
    straight, resumed = runs
    assert last_record(straight) == last_record(resumed)
    a, b = restore_params(straight), restore_params(resumed)
    import jax

    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert int(a.step) == 8


def test_evaluate_writes_curve_png_and_json(runs, subprocess_env, repo_root):
    straight, _ = runs
    result = run_cli("experiments.evaluate", [f"--logdir={straight}"], subprocess_env, repo_root)
    assert result.returncode == 0, result.stderr
    curve = json.loads((straight / "eval" / "adaptation_curve.json").read_text())
    assert len(curve["mean"]) == 2 and len(curve["per_task"]) == 2
    assert all(np.isfinite(curve["mean"]))
    for name in ("adaptation_curve.png", "training_curves.png"):
        assert (straight / "eval" / name).read_bytes()[:4] == b"\x89PNG"
    assert "adaptation step" in result.stdout


@pytest.fixture(scope="module")
def seed_runs(tmp_path_factory):
    """float64: seeds 3, 4, 5 as one program (4 steps, then resumed to 8) and seed 5 alone (8 steps)."""
    import jax

    base = tmp_path_factory.mktemp("seed_runs")
    seeds, single = base / "seeds", base / "single"
    with jax.enable_x64(True):
        for steps in (4, 8):
            code, stderr = train_main([*EQUIVALENCE_ARGS, "--num_seeds=3", f"--num_steps={steps}", f"--logdir={seeds}"])
            assert code == 0, stderr
        args = [a if a != "--seed=3" else "--seed=5" for a in EQUIVALENCE_ARGS]
        code, stderr = train_main([*args, "--num_steps=8", f"--logdir={single}"])
        assert code == 0, stderr
        kappa = initial_condition_number(single)
    return seeds, single, kappa


def records(logdir) -> list[dict]:
    from metarl_jax.io.metrics import read_metrics

    return read_metrics(str(logdir))


def test_num_seeds_each_seed_equals_its_single_seed_run(seed_runs):
    """Seed 5 of the 3-seed program equals the run with --seed=5: its first meta-iteration to the tolerances
    of tests/equivalence.py (later iterations compound TRPO's ill-conditioning and are not comparable)."""
    import jax

    seeds, single, kappa = seed_runs
    assert json.loads((seeds / "config.json").read_text())["num_seeds"] == 3
    assert sorted(os.listdir(seeds / "seeds")) == ["seed_3", "seed_4", "seed_5"]
    alone, third = records(single), records(seeds / "seeds" / "seed_5")
    assert [r["step"] for r in alone] == [r["step"] for r in third] == list(range(1, 9))
    eq.assert_train_step_metrics_close(alone[0], third[0], kappa, "seed 5, step 1")
    assert last_record(single).keys() == last_record(seeds / "seeds" / "seed_5").keys()
    # The top-level log is the mean over seeds, with the meta-test's 95% interval.
    per_seed = [records(seeds / "seeds" / f"seed_{s}")[-1] for s in (3, 4, 5)]
    top = records(seeds)[-1]
    np.testing.assert_allclose(top["train/post_return"], np.mean([r["train/post_return"] for r in per_seed]),
                               rtol=1e-12)
    assert top["eval/return_step1_ci95_low"] <= top["eval/return_step1"] <= top["eval/return_step1_ci95_high"]
    # One checkpoint holds all seeds on a leading axis, each its own seed's state.
    with jax.enable_x64(True):
        stacked, one = restore_params(seeds), restore_params(single)
    assert np.asarray(stacked.step).tolist() == [8, 8, 8]
    np.testing.assert_array_equal(np.asarray(stacked.rng)[2], np.asarray(one.rng))  # row 2: seed 5's key chain
    rows = [jax.tree.map(lambda x, k=k: np.asarray(x)[k], stacked.params) for k in range(3)]
    assert all(eq.relative_difference(rows[0], rows[k]) > 1e-3 for k in (1, 2))  # three different seeds


def test_num_seeds_evaluate_reports_mean_and_interval(seed_runs, subprocess_env, repo_root):
    seeds, _, _ = seed_runs
    result = run_cli("experiments.evaluate", [f"--logdir={seeds}"], dict(subprocess_env, JAX_ENABLE_X64="1"),
                     repo_root)
    assert result.returncode == 0, result.stderr
    curve = json.loads((seeds / "eval" / "adaptation_curve.json").read_text())
    assert curve["num_seeds"] == 3 and np.shape(curve["per_seed"]) == (3, 2)
    np.testing.assert_allclose(curve["mean"], np.mean(curve["per_seed"], axis=0), rtol=1e-6)
    assert np.all(np.asarray(curve["ci95_low"]) < curve["mean"]) and np.all(curve["mean"] < np.asarray(
        curve["ci95_high"]))
    assert "mean over 3 seeds" in result.stdout and "95% interval" in result.stdout


def test_num_seeds_resume_with_another_count_is_refused(seed_runs, train_in_process):
    seeds, _, _ = seed_runs
    before = snapshot(seeds)
    code, stderr = train_in_process([*EQUIVALENCE_ARGS, "--num_seeds=2", "--num_steps=9", f"--logdir={seeds}"])
    assert code == 2 and "num_seeds 3, not 2" in stderr, stderr
    assert snapshot(seeds) == before


BAD_INPUTS = [
    (["--algo=nope"], "unknown algo 'nope'; valid algos are"),
    (["--env=nope"], "unknown env 'nope'; valid envs are"),
    (["--preset=nope"], "unknown preset 'nope' for algo 'maml'; valid presets are"),
    (["--override=nope=1"], "unknown config field(s) ['nope']"),
    (["--override=meta_batch_size=two"], "config field 'meta_batch_size' expects int"),
    (["--override=discount=1.5"], "config field 'discount' = 1.5 is out of range; allowed [0.0, 1.0]"),
    (["--override=optimizer=sgd"], "config field 'optimizer' must be one of ['trpo', 'ppo', 'vpg']"),
    (["--override=fast_lr"], "override 'fast_lr' must have the form key=value"),
    (["--env_kwarg=nope=1"], "unknown keyword argument(s) ['nope']"),
    (["--env_kwarg=episode_length=0"], "episode_length must be a positive int"),
    (["--num_seeds=0"], "--num_seeds must be >= 1, got 0"),
    (["--num_steps=0"], "--num_steps must be >= 1, got 0"),
    (["--num_steps=-3"], "--num_steps must be >= 1, got -3"),
    (["--checkpoint_every=0"], "--checkpoint_every must be >= 1, got 0"),
    (["--checkpoint_every=-1"], "--checkpoint_every must be >= 1, got -1"),
    (["--eval_every=-1"], "--eval_every must be >= 0 (0: meta-test at the end only), got -1"),
    (["--log_every=0"], "--log_every must be >= 1, got 0"),
    (["--max_checkpoints=0"], "--max_checkpoints must be >= 1 or unset (keep all), got 0"),
    (["--resume_step=-1"], "--resume_step must be a checkpoint step >= 0, got -1"),
    (["--num_devices=3"], "num_devices must be in [1, 1], got 3"),
    (["--eval_splits=ood"], "unknown split 'ood' for family 'point_corner'"),
    (["--eval_splits=val,val"], "--eval_splits must name distinct splits"),
]


@pytest.mark.parametrize("args,message", BAD_INPUTS)
def test_bad_input_is_one_clear_line(args, message, tmp_path, train_in_process):
    logdir = tmp_path / "run"
    code, stderr = train_in_process([*TINY, "--num_steps=1", *args, f"--logdir={logdir}"])
    assert code == 2
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], stderr
    assert not logdir.exists()  # nothing was written for a rejected run


def test_bad_input_from_the_command_line_has_no_traceback(tmp_path, subprocess_env, repo_root):
    result = run_cli("experiments.train", [*TINY, "--algo=nope", "--num_steps=1", f"--logdir={tmp_path / 'x'}"],
                     subprocess_env, repo_root)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: unknown algo 'nope'")


def test_logdir_of_another_algorithm_is_refused_untouched(runs, train_in_process):
    straight, _ = runs
    before = snapshot(straight)
    args = [a for a in TINY if not a.startswith(("--algo", "--override"))]
    code, stderr = train_in_process([*args, "--algo=trpo", "--num_steps=9", f"--logdir={straight}"])
    assert code == 2 and "holds a run of algo 'maml', not 'trpo'" in stderr
    assert snapshot(straight) == before


def test_changed_config_on_resume_names_the_field(runs, train_in_process):
    straight, _ = runs
    before = snapshot(straight)
    code, stderr = train_in_process([*TINY, "--override=fast_lr=0.3", "--num_steps=9", f"--logdir={straight}"])
    assert code == 2 and "fast_lr: saved 0.5 vs requested 0.3" in stderr
    assert snapshot(straight) == before


def test_checkpoint_of_another_algorithm_without_config_json_is_refused(runs, tmp_path, train_in_process):
    straight, _ = runs
    copy = tmp_path / "ckpt_only"
    shutil.copytree(straight / "checkpoints", copy / "checkpoints")
    before = snapshot(copy)
    args = [a for a in TINY if not a.startswith(("--algo", "--override"))]
    code, stderr = train_in_process([*args, "--algo=ppo", "--num_steps=9", f"--logdir={copy}"])
    assert code == 2 and "written by algo 'maml', not 'ppo'" in stderr, stderr
    assert snapshot(copy) == before


def corrupt(path, offset: int = 64, size: int = 8) -> None:
    """Overwrites ``size`` bytes in the middle of a file (a bit-rot or partial-write stand-in)."""
    with open(path, "r+b") as f:
        f.seek(min(offset, max(os.path.getsize(path) - size, 0)))
        f.write(b"\xff" * size)


def data_files(checkpoint_dir) -> list[str]:
    """The array data files of a checkpoint's state item (the chunks in orbax's OCDBT ``d/`` folders)."""
    found = []
    for root, _, files in os.walk(checkpoint_dir / "state"):
        if os.path.basename(root) == "d":
            found += [os.path.join(root, n) for n in files]
    assert found, f"no data files under {checkpoint_dir}"
    return found


@pytest.mark.parametrize("args,message", [
    (["--max_checkpoints=0"], "--max_checkpoints must be >= 1"),
    (["--checkpoint_every=0"], "--checkpoint_every must be >= 1"),
    (["--num_steps=0"], "--num_steps must be >= 1"),
    (["--resume_step=5"], "--resume_step=5: "),
])
def test_bad_flags_on_an_existing_run_touch_nothing(runs, args, message, train_in_process):
    straight, _ = runs
    before = snapshot(straight)
    code, stderr = train_in_process([*TINY, "--num_steps=12", *args, f"--logdir={straight}"])
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and message in errors[0], stderr
    assert snapshot(straight) == before


def test_max_checkpoints_never_deletes_checkpoints_of_earlier_runs(runs, tmp_path, train_in_process):
    straight, _ = runs
    copy = tmp_path / "rotated"
    shutil.copytree(straight, copy)
    code, stderr = train_in_process([*TINY, "--num_steps=16", "--max_checkpoints=1", f"--logdir={copy}"])
    assert code == 0, stderr
    # 4 and 8 were written by the earlier run: kept; of this run's 12 and 16 only the latest is.
    assert sorted(os.listdir(copy / "checkpoints"), key=int) == ["4", "8", "16"]
    from metarl_jax.io.metrics import read_metrics

    assert [r["step"] for r in read_metrics(str(copy))] == list(range(1, 17))


@pytest.mark.parametrize("where", ["regular_file", "/sys/kernel/metarl_test_run", "/dev/null/run"])
def test_unusable_logdir_is_one_error_line(where, tmp_path, train_in_process):
    if where == "regular_file":
        where = tmp_path / "a_file"
        where.write_text("not a run")
    code, stderr = train_in_process([*TINY, "--num_steps=1", f"--logdir={where}"])
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and str(where) in errors[0], stderr
    assert "Traceback" not in stderr


def test_corrupted_checkpoint_is_reported_and_kept(runs, tmp_path, train_in_process):
    straight, _ = runs
    copy = tmp_path / "corrupted"
    shutil.copytree(straight, copy)
    state_dir = copy / "checkpoints" / "8" / "state"
    for root, _, files in os.walk(state_dir):
        for name in files:
            if name not in ("commit_success.txt",):
                with open(os.path.join(root, name), "wb") as f:
                    f.write(b"garbage")
    before = snapshot(copy)
    code, stderr = train_in_process([*TINY, "--num_steps=12", f"--logdir={copy}"])
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "corrupted" in errors[0], stderr
    assert "--resume_step=4" in errors[0], errors[0]
    assert snapshot(copy) == before


@pytest.fixture(scope="module")
def bit_rotted(runs, tmp_path_factory):
    """A copy of the straight run whose latest checkpoint (8) has 8 bytes overwritten in a data file."""
    straight, _ = runs
    copy = tmp_path_factory.mktemp("bitrot") / "run"
    shutil.copytree(straight, copy)
    for path in data_files(copy / "checkpoints" / "8"):
        corrupt(path)
    return copy


def test_silently_corrupted_checkpoint_is_refused_by_train_and_evaluate(bit_rotted, train_in_process,
                                                                      subprocess_env, repo_root):
    before = snapshot(bit_rotted)
    code, stderr = train_in_process([*TINY, "--num_steps=12", f"--logdir={bit_rotted}"])
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1, stderr
    assert "checkpoints/8 is corrupted" in errors[0] and "--resume_step=4" in errors[0], errors[0]
    result = run_cli("experiments.evaluate", [f"--logdir={bit_rotted}"], subprocess_env, repo_root)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1].startswith("error: checkpoint"), result.stderr[-2000:]
    assert snapshot(bit_rotted) == before


def test_array_digests_catch_corruption_the_file_digests_missed(runs, tmp_path, train_in_process):
    """Arrays that orbax reads without complaint but that are not the saved ones (here: step 4's state
    under step 8, with file digests rewritten to match, as if it happened before they were written):
    the array digests, computed from the train state when it was saved, refuse it."""
    from metarl_jax.io.checkpoints import FILE_DIGESTS, file_digests

    straight, _ = runs
    copy = tmp_path / "swapped"
    shutil.copytree(straight, copy)
    step_dir = copy / "checkpoints" / "8"
    shutil.rmtree(step_dir / "state")
    shutil.copytree(copy / "checkpoints" / "4" / "state", step_dir / "state")
    (step_dir / FILE_DIGESTS).write_text(json.dumps(file_digests(str(step_dir))))
    code, stderr = train_in_process([*TINY, "--num_steps=12", f"--logdir={copy}"])
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "checkpoints/8 is corrupted: " in errors[0], stderr
    assert "array(s) differ from the digests written with it" in errors[0], errors[0]


def test_resume_from_the_previous_good_checkpoint_is_bit_identical(runs, bit_rotted, tmp_path, train_in_process):
    straight, _ = runs
    copy = tmp_path / "resumed"
    shutil.copytree(bit_rotted, copy)
    code, stderr = train_in_process([*TINY, "--num_steps=8", "--resume_step=4", f"--logdir={copy}"])
    assert code == 0, stderr
    assert "moved checkpoints [8]" in stderr
    assert os.listdir(copy / "checkpoints_abandoned") == ["8"]  # kept, not deleted
    assert last_record(copy) == last_record(straight)
    for x, y in zip(jax_leaves(restore_params(copy)), jax_leaves(restore_params(straight)), strict=True):
        np.testing.assert_array_equal(x, y)


def test_truncated_checkpoint_is_one_error_line_without_tracebacks(runs, tmp_path, subprocess_env, repo_root):
    straight, _ = runs
    copy = tmp_path / "truncated"
    shutil.copytree(straight, copy)
    for path in data_files(copy / "checkpoints" / "8"):
        with open(path, "r+b") as f:
            f.truncate(0)
    result = run_cli("experiments.train", [*TINY, "--num_steps=12", f"--logdir={copy}"], subprocess_env, repo_root)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr and "Event loop is closed" not in result.stderr, result.stderr[-3000:]
    assert lines[-1].startswith("error: checkpoint") and "--resume_step=4" in lines[-1], lines[-1]


def jax_leaves(ts):
    import jax

    return [np.asarray(x) for x in jax.tree.leaves(ts)]


MULTI_DEVICE_SCRIPT = textwrap.dedent("""
    import jax, numpy as np
    from metarl_jax import algos, envs, parallel
    from tests import equivalence as eq
    assert len(jax.devices()) == 4 and eq.float64_enabled(), jax.devices()
    family = envs.make("point_corner", episode_length=10)
    # MAML-TRPO with rllab's damping; MAESN-TRPO with its latent tables split over the 4 devices.
    runs = {"maml": algos.preset("maml", "smoke").replace(**eq.TINY_OVERRIDES),
            "maesn": algos.preset("maesn", "smoke").replace(num_train_tasks=8, **eq.TINY_OVERRIDES)}
    for name, config in runs.items():
        results = []
        for n in (1, 4):
            algo = algos.make(name, family, config, mesh=parallel.task_mesh(num_devices=n))
            ts = algo.init(jax.random.key(0))
            problem = jax.jit(lambda ts: eq.outer_problem(algo, ts))(ts)
            if name == "maml":
                next_ts, metrics = algo.train_step(ts)
                curve = algo.evaluate(ts, family.task_set("val", 4), jax.random.key(1)).returns
                results.append((problem, next_ts.params, metrics, curve))
            else:
                assert len(ts.params["latent_mean"].sharding.device_set) == n, ts.params["latent_mean"].sharding
                results.append((problem,))
        # Everything before the optimiser's solve: rollouts (pre- and post-update), outer gradient, Fisher.
        (batch1, grad1, fisher1), (batch4, grad4, fisher4) = results[0][0], results[1][0]
        eq.assert_close(batch1, batch4, eq.INPUT_RTOL, name + " rollouts")
        eq.assert_close(grad1, grad4, eq.INPUT_RTOL, name + " outer gradient")
        eq.assert_close(fisher1, fisher4, eq.INPUT_RTOL, name + " Fisher")
        if name == "maml":
            (_, params1, metrics1, curve1), (_, params4, metrics4, curve4) = results
            eq.assert_close(curve1, curve4, eq.INPUT_RTOL, name + " meta-test")  # rollouts and VPG steps per task
            kappa = eq.condition_number(fisher1, config.cg_damping)
            assert 1e4 < kappa < 1e6, kappa  # measured 3.3e5: the premise of the bound, which is not vacuous
            eq.assert_close(params1, params4, eq.step_rtol(kappa), name + " parameters after one TRPO step")
            eq.assert_train_step_metrics_close(metrics1, metrics4, kappa, name)
        # MAESN-TRPO's step itself is not compared: its gradient has components in null(F) (docs/design_notes.md,
        # "TRPO's conditioning"), so the damped solve is ill-posed there; sharding must get its inputs right.
    print("MULTI_DEVICE_OK")
""")


def test_sharded_task_axis_matches_single_device(subprocess_env, repo_root):
    env = dict(subprocess_env, JAX_ENABLE_X64="1")  # float64: see tests/equivalence.py
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    result = subprocess.run([sys.executable, "-c", MULTI_DEVICE_SCRIPT], capture_output=True, text=True, env=env,
                            cwd=repo_root, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MULTI_DEVICE_OK" in result.stdout


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


@pytest.mark.slow  # three TRPO programs in three processes (~75 s cold); the sharded test above covers the mesh
def test_multi_host_entry_point_on_one_host(tmp_path, subprocess_env, repo_root):
    """Two processes joined by jax.distributed (flags for one, environment variables for the other).

    The task mesh spans both processes' CPU devices; one meta-iteration must equal one process on one
    device, in float64 and to the tolerances of ``tests/equivalence.py``.
    """
    import jax

    args = [*EQUIVALENCE_ARGS, "--num_steps=1"]
    with jax.enable_x64(True):
        code, stderr = train_main([*args, f"--logdir={tmp_path / 'single'}"])
        assert code == 0, stderr
        kappa = initial_condition_number(tmp_path / "single")
    x64_env = dict(subprocess_env, JAX_ENABLE_X64="1")
    address, logdir = f"localhost:{free_port()}", tmp_path / "multi"
    env0 = dict(x64_env, METARL_COORDINATOR=address, METARL_NUM_PROCESSES="2", METARL_PROCESS_ID="0")
    process0 = subprocess.Popen([sys.executable, "-m", "experiments.train", *args, f"--logdir={logdir}"],
                                env=env0, cwd=repo_root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process1 = run_cli("experiments.train", [*args, f"--logdir={logdir}", f"--coordinator_address={address}",
                                             "--num_processes=2", "--process_id=1"], x64_env, repo_root)
    _, stderr0 = process0.communicate(timeout=600)
    assert process0.returncode == 0, stderr0[-3000:]
    assert process1.returncode == 0, process1.stderr[-3000:]
    with open(logdir / "metrics.jsonl") as f:
        assert [json.loads(line)["step"] for line in f] == [1]  # written once, by process 0
    assert sorted(os.listdir(logdir / "checkpoints")) == ["1"]
    eq.assert_train_step_metrics_close(last_record(tmp_path / "single"), last_record(logdir), kappa, "2 processes")
    with jax.enable_x64(True):
        single, multi = restore_params(tmp_path / "single"), restore_params(logdir)
    eq.assert_close(single.params, multi.params, eq.step_rtol(kappa), "parameters after one TRPO step")
