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

TINY = [
    "--algo=maml", "--env=point_corner", "--preset=smoke", "--seed=3", "--log_every=4", "--checkpoint_every=4",
    "--override=hidden_sizes=8", "--override=meta_batch_size=2", "--override=episodes_per_task=2",
    "--override=eval_num_tasks=2", "--override=eval_episodes_per_task=2", "--override=eval_adaptation_steps=1",
    "--env_kwarg=episode_length=10", "--progress=false",
]


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
    """The train launcher's guarded entry point, in this process (no interpreter start-up)."""
    from absl import flags

    from experiments import common, train

    stderr = io.StringIO()
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["train", *args])
    try:
        with contextlib.redirect_stderr(stderr):
            code = common.run_guarded(train.run, flags.FLAGS)
    finally:
        flags.FLAGS.unparse_flags()
    return code, stderr.getvalue()


@pytest.fixture
def train_in_process():
    return train_main


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
    """Seeds 3, 4, 5 as one program (4 steps, then resumed to 8) and seed 5 alone (8 steps)."""
    base = tmp_path_factory.mktemp("seed_runs")
    seeds, single = base / "seeds", base / "single"
    for steps in (4, 8):
        code, stderr = train_main([*TINY, "--num_seeds=3", f"--num_steps={steps}", f"--logdir={seeds}"])
        assert code == 0, stderr
    args = [a if a != "--seed=3" else "--seed=5" for a in TINY]
    code, stderr = train_main([*args, "--num_steps=8", f"--logdir={single}"])
    assert code == 0, stderr
    return seeds, single


def test_num_seeds_each_seed_equals_its_single_seed_run(seed_runs):
    import jax

    seeds, single = seed_runs
    assert json.loads((seeds / "config.json").read_text())["num_seeds"] == 3
    assert sorted(os.listdir(seeds / "seeds")) == ["seed_3", "seed_4", "seed_5"]
    alone, third = last_record(single), last_record(seeds / "seeds" / "seed_5")
    assert alone.keys() == third.keys()
    for key in alone:
        np.testing.assert_allclose(third[key], alone[key], rtol=1e-3, atol=1e-4, err_msg=key)
    # The top-level log is the mean over seeds, with the meta-test's 95% interval.
    per_seed = [last_record(seeds / "seeds" / f"seed_{s}") for s in (3, 4, 5)]
    top = last_record(seeds)
    np.testing.assert_allclose(top["train/post_return"], np.mean([r["train/post_return"] for r in per_seed]),
                               rtol=1e-5)
    assert top["eval/return_step1_ci95_low"] <= top["eval/return_step1"] <= top["eval/return_step1_ci95_high"]
    # One checkpoint holds all seeds on a leading axis; seed 5 is row 2.
    stacked, one = restore_params(seeds), restore_params(single)
    assert np.asarray(stacked.step).tolist() == [8, 8, 8]
    for x, y in zip(jax.tree.leaves(stacked.params), jax.tree.leaves(one.params)):
        np.testing.assert_allclose(np.asarray(x)[2], np.asarray(y), rtol=1e-3, atol=1e-5)


def test_num_seeds_evaluate_reports_mean_and_interval(seed_runs, subprocess_env, repo_root):
    seeds, _ = seed_runs
    result = run_cli("experiments.evaluate", [f"--logdir={seeds}"], subprocess_env, repo_root)
    assert result.returncode == 0, result.stderr
    curve = json.loads((seeds / "eval" / "adaptation_curve.json").read_text())
    assert curve["num_seeds"] == 3 and np.shape(curve["per_seed"]) == (3, 2)
    np.testing.assert_allclose(curve["mean"], np.mean(curve["per_seed"], axis=0), rtol=1e-6)
    assert np.all(np.asarray(curve["ci95_low"]) < curve["mean"]) and np.all(curve["mean"] < np.asarray(
        curve["ci95_high"]))
    assert "mean over 3 seeds" in result.stdout and "95% interval" in result.stdout


def test_num_seeds_resume_with_another_count_is_refused(seed_runs, train_in_process):
    seeds, _ = seed_runs
    before = snapshot(seeds)
    code, stderr = train_in_process([*TINY, "--num_seeds=2", "--num_steps=9", f"--logdir={seeds}"])
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
]


@pytest.mark.parametrize("args,message", BAD_INPUTS)
def test_bad_input_is_one_clear_line(args, message, tmp_path, train_in_process):
    logdir = tmp_path / "run"
    code, stderr = train_in_process([*TINY, *args, "--num_steps=1", f"--logdir={logdir}"])
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
    assert snapshot(copy) == before


MULTI_DEVICE_SCRIPT = textwrap.dedent("""
    import jax, numpy as np
    from metarl_jax import algos, envs, parallel
    assert len(jax.devices()) == 4, jax.devices()
    family = envs.make("point_corner", episode_length=10)
    # A batch large enough for a well-conditioned Fisher: float32 CG on a near-singular one
    # amplifies rounding differences (reduction order differs across shardings).
    tiny = dict(hidden_sizes=(8,), meta_batch_size=4, episodes_per_task=16, eval_num_tasks=4,
                eval_episodes_per_task=4)
    runs = {"maml": algos.preset("maml", "smoke").replace(**tiny),
            # MAESN: the per-task latent tables are split over the 4 devices too. Adam outer step: MAESN's
            # Fisher (latent rows, step sizes) is near-singular, so float32 CG turns the different
            # reduction order into percent-level step differences (TRPO sharding is checked on MAML).
            "maesn": algos.preset("maesn", "smoke").replace(num_train_tasks=8, optimizer="vpg", **tiny)}
    for name, config in runs.items():
        results = []
        for n in (1, 4):
            algo = algos.make(name, family, config, mesh=parallel.task_mesh(num_devices=n))
            ts, metrics = algo.train(algo.init(jax.random.key(0)), 2)
            # The meta-test's sharding is the same code for every algorithm: checked on MAML only.
            curve = algo.evaluate(ts, family.task_set("val", 4), jax.random.key(1)) if name == "maml" else None
            results.append((ts.params, metrics, None if curve is None else curve.returns))
        if name == "maesn":
            assert len(ts.params["latent_mean"].sharding.device_set) == 4, ts.params["latent_mean"].sharding
        (p1, m1, c1), (p4, m4, c4) = results
        for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p4)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=5e-3, atol=5e-4, err_msg=name)
        for k in m1:
            np.testing.assert_allclose(np.asarray(m1[k]), np.asarray(m4[k]), rtol=1e-3, atol=1e-4,
                                       err_msg=name + " " + k)
        if c1 is not None:
            np.testing.assert_allclose(np.asarray(c1), np.asarray(c4), rtol=1e-3, atol=1e-3, err_msg=name)
    print("MULTI_DEVICE_OK")
""")


def test_sharded_task_axis_matches_single_device(subprocess_env, repo_root):
    env = dict(subprocess_env)
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


def test_multi_host_entry_point_on_one_host(tmp_path, subprocess_env, repo_root):
    """Two processes joined by jax.distributed (flags for one, environment variables for the other).

    The task mesh spans both processes' CPU devices; the run must equal one process on one device.
    """
    args = [*[a for a in TINY if "episodes_per_task" not in a], "--override=episodes_per_task=16",
            "--num_steps=2"]
    code, stderr = train_main([*args, f"--logdir={tmp_path / 'single'}"])
    assert code == 0, stderr
    address, logdir = f"localhost:{free_port()}", tmp_path / "multi"
    env0 = dict(subprocess_env, METARL_COORDINATOR=address, METARL_NUM_PROCESSES="2", METARL_PROCESS_ID="0")
    process0 = subprocess.Popen([sys.executable, "-m", "experiments.train", *args, f"--logdir={logdir}"],
                                env=env0, cwd=repo_root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process1 = run_cli("experiments.train", [*args, f"--logdir={logdir}", f"--coordinator_address={address}",
                                             "--num_processes=2", "--process_id=1"], subprocess_env, repo_root)
    _, stderr0 = process0.communicate(timeout=600)
    assert process0.returncode == 0, stderr0[-3000:]
    assert process1.returncode == 0, process1.stderr[-3000:]
    with open(logdir / "metrics.jsonl") as f:
        assert [json.loads(line)["step"] for line in f] == [1, 2]  # written once, by process 0
    assert sorted(os.listdir(logdir / "checkpoints")) == ["2"]
    single, multi = last_record(tmp_path / "single"), last_record(logdir)
    for key in single:  # TRPO's float32 CG amplifies the all-reduce's different summation order
        np.testing.assert_allclose(multi[key], single[key], rtol=1e-2, atol=1e-4, err_msg=key)
