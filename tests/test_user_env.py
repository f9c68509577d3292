"""A user's own task family from the launcher: ``--env=path/to/file.py:factory`` / ``package.module:factory``.

The families here are written into temporary directories outside the package; the README's MJX
example (``examples/mjcf_family``) is built, stepped, and (slow) trained and evaluated through the launcher.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest

from metarl_jax import envs
from tests.test_launcher import TINY as LAUNCHER_TINY

ROOT = Path(__file__).resolve().parents[1]
# test_launcher's tiny MAML run without its --env: with episode_length=10 and 4-step chunks the family below
# (a PointCorner) compiles to the same programs, which the persistent compilation cache then shares.
TINY = [a for a in LAUNCHER_TINY if not a.startswith(("--env=", "--env_kwarg="))]

FAMILY_SOURCE = textwrap.dedent('''
    """A family outside metarl_jax: the corner-goal point task with its own name and a scale kwarg."""
    from metarl_jax.envs import PointCorner


    class Corners(PointCorner):
        name = "my_corners"


    def corners(episode_length: int = 20, max_action: float = 0.1):
        return Corners(episode_length=episode_length, max_action=max_action)


    class NoStep:  # observation sizes, but neither reset nor step
        observation_size, action_size, episode_length = 2, 2, 10

        def sample_tasks(self, key, n):
            return None

        def task_set(self, split, n=100):
            return None


    NOT_A_FACTORY = 3
''')


def cli(module, args: list[str]) -> tuple[int, str]:
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        code = module.cli([module.__name__, *args])
    return code, stderr.getvalue()


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    directory = tmp_path / "outside"
    directory.mkdir()
    (directory / "my_family.py").write_text(FAMILY_SOURCE)
    monkeypatch.chdir(tmp_path)
    return directory


def test_file_family_trains_resumes_and_evaluates(user_dir, tmp_path):
    from experiments import evaluate, train

    logdir = tmp_path / "run"
    env = ["--env=outside/my_family.py:corners", "--env_kwarg=episode_length=10"]
    code, stderr = cli(train, [*TINY, *env, "--num_steps=4", f"--logdir={logdir}"])
    assert code == 0, stderr
    saved = json.loads((logdir / "config.json").read_text())
    # The file path is recorded absolute, so that a resume or evaluate from anywhere finds it.
    assert saved["env"] == f"{user_dir / 'my_family.py'}:corners"
    assert saved["env_kwargs"] == {"episode_length": 10}

    os.chdir(user_dir)  # resume from another directory, with the path as it is now relative to it
    code, stderr = cli(train, [*TINY, "--env=my_family.py:corners", "--env_kwarg=episode_length=10",
                               "--num_steps=4", f"--logdir={logdir}"])
    assert code == 0, stderr  # the logdir's config matches and its checkpoint restores: nothing left to do
    assert "resuming" in stderr and "already at step 4" in stderr, stderr
    code, stderr = cli(train, [*TINY, "--env=my_family.py:corners", "--env_kwarg=episode_length=11",
                               "--num_steps=8", f"--logdir={logdir}"])
    assert code == 2 and "episode_length" in stderr, stderr  # another family's kwargs: not this run

    code, stderr = cli(evaluate, [f"--logdir={logdir}", "--video"])  # reads the family from config.json
    assert code == 0, stderr
    assert "has no MuJoCo model to render; its trajectory figures serve instead" in stderr, stderr
    curve = json.loads((logdir / "eval" / "adaptation_curve.json").read_text())
    assert curve["env"] == saved["env"] and curve["step"] == 4 and np.isfinite(curve["mean"]).all()

    family = envs.make(saved["env"], **saved["env_kwargs"], max_action=0.2)
    assert family.name == "my_corners" and family.episode_length == 10 and family.max_action == 0.2


def test_module_family_by_import_path(user_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(user_dir))
    family = envs.make("my_family:corners", episode_length=7)
    assert type(family).__name__ == "Corners" and family.episode_length == 7
    assert envs.normalize("my_family:corners") == "my_family:corners"  # module paths are recorded as given


@pytest.mark.parametrize("env, message", [
    ("outside/my_family.py:NoStep", r"missing the protocol methods \['reset', 'step'\]"),
    ("outside/my_family.py:nope", r"has no attribute 'nope'; its callables are \[.*'corners'"),
    ("outside/my_family.py:NOT_A_FACTORY", "is a int, not a callable"),
    ("outside/missing.py:corners", "no Python file .*missing.py"),
    ("no_such_module_xyz:corners", "cannot import module 'no_such_module_xyz'"),
    ("not_registered", "or a family of your own as --env=package.module:factory"),
])
def test_bad_import_paths_fail_before_anything_is_written(user_dir, tmp_path, env, message):
    from experiments import train

    logdir = tmp_path / "never"
    code, stderr = cli(train, [*TINY, f"--env={env}", "--num_steps=1", f"--logdir={logdir}"])
    assert code == 2
    assert stderr.startswith("error: ") and len(stderr.strip().splitlines()) == 1, stderr


    assert re.search(message, stderr), stderr
    assert not logdir.exists()


def test_unknown_env_kwarg_names_the_valid_ones(user_dir, tmp_path):
    from experiments import train

    code, stderr = cli(train, [*TINY, "--env=outside/my_family.py:corners", "--env_kwarg=speed=3",
                               "--num_steps=1", f"--logdir={tmp_path / 'never'}"])
    assert code == 2 and "unknown keyword argument(s) ['speed']; valid ones are ['episode_length', 'max_action']" \
        in stderr, stderr


# ---- the README's MJX example: a family from your own MJCF ---------------------------------------

EXAMPLE = ROOT / "examples" / "mjcf_family"


@pytest.fixture
def example_copy(tmp_path):
    """The example copied outside the repository (as a user would have it)."""
    target = tmp_path / "mjcf_family"
    shutil.copytree(EXAMPLE, target)
    return target


def test_mjx_example_family_steps_like_its_mjcf(example_copy):
    import jax
    import jax.numpy as jnp
    import mujoco

    from metarl_jax.envs.recording import RecordQpos

    family = envs.make(f"{example_copy / 'goal_slider.py'}:GoalSlider", episode_length=5)
    envs.validate_family(family)
    assert (family.observation_size, family.action_size, family.episode_length) == (4, 2, 5)
    assert family.xml_path == str(example_copy / "slider.xml")
    task = family.task_set("val", 3)[0]
    assert abs(float(jnp.linalg.norm(task)) - 1.0) < 1e-6

    recorded = RecordQpos(family)  # what the videos record: info["qpos"] of every state
    assert recorded.observation_size == 4 and recorded.mj_model is family.mj_model

    @jax.jit
    def run(key):
        state = recorded.reset(key, task)
        return state, jax.lax.scan(lambda s, _: (recorded.step(s, jnp.array([1.0, -0.5])),) * 2, state, None,
                                   length=3)[1]

    start, states = run(jax.random.key(0))
    qpos = np.asarray(states.env_state.qpos)
    np.testing.assert_array_equal(np.asarray(states.info["qpos"]), qpos)
    # The C engine from the same start state and controls (no contacts: the engines agree closely).
    model = family.mj_model
    data = mujoco.MjData(model)
    data.qpos[:], data.qvel[:] = np.asarray(start.env_state.qpos), np.asarray(start.env_state.qvel)
    for t in range(3):
        data.ctrl[:] = [1.0, -0.5]
        for _ in range(family.frame_skip):
            mujoco.mj_step(model, data)
        np.testing.assert_allclose(qpos[t], data.qpos, atol=1e-5)
    distance = np.linalg.norm(qpos[-1] - np.asarray(task))
    np.testing.assert_allclose(float(states.reward[-1]), -distance - 0.01 * 1.25, rtol=1e-5)
    assert float(states.info["sparse_reward"][-1]) == pytest.approx(-1.0 - 0.0125, rel=1e-5)  # far from the goal
    np.testing.assert_allclose(family.goal_marker(task), [*np.asarray(task), 0.0])


@pytest.mark.slow
def test_mjx_example_trains_through_the_launcher(example_copy, tmp_path):
    """The README command: one meta-iteration of the smoke preset, resumed, evaluated from config.json."""
    from experiments import evaluate, train

    logdir = tmp_path / "slider"
    env = [f"--env={example_copy / 'goal_slider.py'}:GoalSlider", "--env_kwarg=episode_length=10"]
    code, stderr = cli(train, [*TINY, *env, "--num_steps=1", f"--logdir={logdir}"])
    assert code == 0, stderr
    records = [json.loads(line) for line in (logdir / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 1 and np.isfinite(records[-1]["train/post_return"])
    code, stderr = cli(evaluate, [f"--logdir={logdir}", "--video", "--video_tasks=2", "--video_width=160",
                                  "--video_height=112"])
    assert code == 0, stderr
    import imageio_ffmpeg

    videos = sorted((logdir / "eval" / "videos").glob("val_task*.mp4"))
    assert [v.name for v in videos] == ["val_task0.mp4", "val_task1.mp4"]
    # 10 frames (one per control step: dt = 0.04 s, 25 fps), 2 stages (before, after 1 step) side by side.
    assert imageio_ffmpeg.count_frames_and_secs(str(videos[0]))[0] == 10
    import imageio.v2 as imageio

    with imageio.get_reader(str(videos[0])) as reader:
        assert reader.get_data(0).shape == (144, 336, 3)  # 22 + 112 rows, 2 * 160 + 2 columns, padded to 16
