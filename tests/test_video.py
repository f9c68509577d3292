"""Videos: headless rendering of recorded qpos into an MP4 (or GIF), and the algorithms' recorded meta-tests."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from metarl_jax.envs.mjx_base import ASSET_DIR, load_mj_model
from metarl_jax.io.video import LABEL_HEIGHT

WIDTH, HEIGHT, FRAMES = 96, 64, 6
GOAL = np.array([1.0, 0.8, 0.0])


def synthetic_stages(model) -> np.ndarray:
    """Two stages of the wheeled robot driving: stage 0 stays near the start, stage 1 drives to the goal."""
    qpos = np.tile(model.qpos0, (2, FRAMES, 1))
    qpos[0, :, 0] = np.linspace(0.0, 0.2, FRAMES)
    qpos[1, :, :2] = np.linspace([0.0, 0.0], GOAL[:2], FRAMES)
    return qpos


def render_or_skip(model, jobs, **kwargs):
    from metarl_jax.io.video import render_videos

    try:
        return render_videos(model, jobs, WIDTH, HEIGHT, fps=10, **kwargs)
    except RuntimeError as error:
        if "no headless OpenGL backend" not in str(error):
            raise
        warnings.warn(f"NO OPENGL BACKEND: the video tests are skipped ({error})", stacklevel=2)
        pytest.skip(f"no headless OpenGL backend on this machine: {error}")


@pytest.fixture(scope="module")
def wheeled():
    return load_mj_model(ASSET_DIR / "wheeled.xml")


def test_mp4_has_the_frames_panels_and_goal_marker(wheeled, tmp_path):
    pytest.importorskip("imageio_ffmpeg", reason="the video extra is not installed (pip install 'metarl-jax[video]')")
    import imageio.v2 as imageio
    import imageio_ffmpeg

    from metarl_jax.io.video import VideoJob

    (path,) = render_or_skip(wheeled, [VideoJob(str(tmp_path / "task0.mp4"), synthetic_stages(wheeled),
                                                ["before adaptation", "after 1 step"], GOAL, 0.3)])
    assert path.suffix == ".mp4" and path.read_bytes()[4:8] == b"ftyp"  # an ISO media file
    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
    assert frames == FRAMES
    reader = imageio.get_reader(str(path))
    last = reader.get_data(FRAMES - 1)
    reader.close()
    # Two panels of 96 x 64 under their labels (22 rows), a 2-pixel gap, padded to multiples of 16 (H.264).
    assert last.shape == (96, 208, 3)
    scene = np.asarray(last[LABEL_HEIGHT:LABEL_HEIGHT + HEIGHT]).astype(int)
    red = scene[..., 0] - np.maximum(scene[..., 1], scene[..., 2]) > 40  # the goal marker and its region
    assert red[:, :WIDTH].sum() > 10 and red[:, WIDTH + 2:2 * WIDTH + 2].sum() > 10  # in both panels
    left, right = scene[:, :WIDTH].astype(float), scene[:, WIDTH + 2:2 * WIDTH + 2].astype(float)
    assert np.abs(left - right).mean() > 1.0  # the robot is elsewhere in the second stage


def test_gif_when_there_is_no_ffmpeg(tmp_path):
    """The writer's fallback container, on composed panels (the rendering is the MP4 test's)."""
    pytest.importorskip("imageio", reason="the video extra is not installed (pip install 'metarl-jax[video]')")
    import imageio.v3 as iio
    from PIL import Image, ImageSequence

    from metarl_jax.io.video import compose, write_video

    rng = np.random.default_rng(0)
    panels = rng.integers(0, 255, (2, FRAMES, HEIGHT, WIDTH, 3), dtype=np.uint8)
    path = write_video(compose(panels, ["before adaptation", "after 1 step"]), tmp_path / "task0.mp4", fps=10,
                       container="gif")
    assert path.suffix == ".gif" and path.read_bytes()[:6] == b"GIF89a"
    frames = iio.imread(path, index=None)
    assert frames.shape == (FRAMES, 96, 208, 3)
    with Image.open(path) as gif:  # 6 frames at 10 fps
        assert sum(frame.info["duration"] for frame in ImageSequence.Iterator(gif)) == FRAMES * 100


def test_bad_video_jobs_name_the_problem(wheeled, tmp_path):
    from metarl_jax.io.video import VideoJob, render_video

    with pytest.raises(ValueError, match=r"qpos must be \[stages, T, nq\] with a label per stage"):
        render_video(wheeled, VideoJob(str(tmp_path / "x.mp4"), synthetic_stages(wheeled), ["one label"]))


# ---- recorded meta-tests (slow: every algorithm compiles its meta-test on an MJX family) ----------

SLOW_ALGOS = {"maml": "meta_batch_size", "vpg": "tasks_per_iteration", "maesn": "meta_batch_size",
              "mame": "meta_batch_size", "rl2": "meta_batch_size", "tesp": "meta_batch_size", "ddpg": None,
              "pearl": None}
# PEARL's collection phases are whole episodes of the family's horizon (8 here).
PEARL_STEPS = {"num_initial_steps": 16, "num_steps_prior": 16, "num_steps_posterior": 16,
               "num_extra_rl_steps_posterior": 16}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SLOW_ALGOS))
def test_recorded_meta_test_is_the_evaluated_one(name, repo_root):
    """record_adaptation runs the same meta-test as evaluate (same key: the same returns) and keeps one
    episode's qpos per stage, a trajectory of the physics (the puck moves, each step within its speed)."""
    import jax

    from metarl_jax import algos, envs

    family = envs.make(f"{repo_root / 'examples' / 'mjcf_family' / 'goal_slider.py'}:GoalSlider", episode_length=8)
    network = {"rl2": {"gru_size": 8}, "ddpg": {"hidden_sizes": (8, 8)}, "pearl": PEARL_STEPS}.get(
        name, {"hidden_sizes": (8,)})
    overrides = {**network, "eval_num_tasks": 2, **({SLOW_ALGOS[name]: 2} if SLOW_ALGOS[name] else {})}
    config = algos.preset(name, "smoke").replace(**overrides)
    algo = algos.make(name, family, config)
    ts = algo.init(jax.random.key(0))
    tasks, key = family.task_set("val", 2), jax.random.key(5)
    recording = algo.record_adaptation(ts, tasks, key)
    curve = algo.evaluate(ts, tasks, key)
    np.testing.assert_allclose(recording.returns, np.asarray(curve.returns), rtol=1e-5, atol=1e-5)
    num_stages = len(algo.stage_labels())
    assert recording.qpos.shape == (2, num_stages, 8, family.mj_model.nq)
    assert recording.labels[0] in ("before adaptation", "episode 1 of the trial", "policy",
                                   "trajectory 1 (z ~ prior)")
    steps = np.linalg.norm(np.diff(recording.qpos, axis=2), axis=-1)
    assert np.all(steps > 0) and np.all(steps < 0.5)
