"""Videos of the meta-test: each adaptation stage of a task side by side, one MP4 (or GIF) per task.

    paths = render_videos(family.mj_model, [VideoJob("task0.mp4", qpos, labels, goal, radius)])

``qpos`` is [S, T, nq]: one recorded episode per stage (``Algorithm.record_adaptation``), replayed
into ``mujoco.MjData`` with ``mj_forward`` and drawn with ``mujoco.Renderer``; stage s is panel s,
labelled ``labels[s]``; the goal is a red marker. Rendering runs headless in a child process, trying
the OpenGL backends in turn (``MUJOCO_GL`` if set, else EGL, then OSMesa), because MuJoCo and PyOpenGL
fix the backend of a process when they are first imported. The writer is imageio with the ffmpeg
binary of the ``imageio-ffmpeg`` wheel (H.264 MP4; ``pip install 'metarl-jax[video]'``); without
imageio-ffmpeg it writes a GIF (Pillow) instead.

    python -m metarl_jax.io.video JOBS.npz     # the child: renders the jobs of a file render_videos wrote
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

BACKENDS = ("egl", "osmesa")
MACRO_BLOCK = 16  # H.264 (yuv420p) frame sizes: multiples of 16 need no rescaling
LABEL_HEIGHT = 22


class VideoJob(NamedTuple):
    """One video: ``qpos`` [S, T, nq] (a panel per stage), the stage ``labels``, the goal (xyz or None)."""

    path: str
    qpos: np.ndarray
    labels: list[str]
    goal: np.ndarray | None = None
    goal_radius: float | None = None


def check_writer() -> str:
    """The container the writer will produce, "mp4" or "gif"; ValueError if imageio is missing."""
    try:
        import imageio  # noqa: F401
    except ImportError:
        raise ValueError("videos need imageio and imageio-ffmpeg: pip install 'metarl-jax[video]'") from None
    try:
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()
        return "mp4"
    except (ImportError, RuntimeError):
        return "gif"


def label_band(text: str, width: int) -> np.ndarray:
    """The label drawn above a panel: dark text on white, [LABEL_HEIGHT, width, 3]."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (width, LABEL_HEIGHT), (255, 255, 255))
    try:
        font = ImageFont.load_default(size=14)
    except TypeError:  # Pillow < 10.1: the bitmap font only
        font = ImageFont.load_default()
    ImageDraw.Draw(image).text((6, 3), text, fill=(20, 20, 20), font=font)
    return np.asarray(image)


def compose(panels: np.ndarray, labels: list[str]) -> np.ndarray:
    """Panels [S, T, H, W, 3] side by side (2-pixel gaps), each under its label, padded with white to
    multiples of 16: [T, LABEL_HEIGHT + H (padded), S·W + 2(S − 1) (padded), 3]."""
    num_stages, num_frames, height, width, _ = panels.shape
    columns = []
    for s in range(num_stages):
        band = np.broadcast_to(label_band(labels[s], width), (num_frames, LABEL_HEIGHT, width, 3))
        columns.append(np.concatenate([band, panels[s]], axis=1))
        if s < num_stages - 1:
            columns.append(np.full((num_frames, LABEL_HEIGHT + height, 2, 3), 255, np.uint8))
    frames = np.concatenate(columns, axis=2)
    pad_h, pad_w = (-frames.shape[1]) % MACRO_BLOCK, (-frames.shape[2]) % MACRO_BLOCK
    return np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), constant_values=255)


def write_video(frames: np.ndarray, path: str | Path, fps: float, container: str | None = None) -> Path:
    """Writes uint8 frames [T, H, W, 3] as an H.264 MP4 (or, without imageio-ffmpeg, a GIF); returns the path
    written (the suffix follows the container). A GIF holds identical consecutive frames once, for their
    total duration (Pillow)."""
    import imageio.v2 as imageio

    container = container or check_writer()
    path = Path(path).with_suffix("." + container)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = np.asarray(frames, np.uint8)
    if container == "mp4":
        with imageio.get_writer(path, format="FFMPEG", fps=fps, codec="libx264", quality=8,
                                pixelformat="yuv420p", macro_block_size=MACRO_BLOCK) as writer:
            for frame in frames:
                writer.append_data(frame)
    else:
        import imageio.v3 as iio

        iio.imwrite(path, frames, extension=".gif", duration=1000.0 / fps, loop=0)
    return path


def render_video(mj_model: Any, job: VideoJob, width: int = 320, height: int = 240, fps: float = 20.0,
                 container: str | None = None) -> Path:
    """Renders ``job`` in this process (its OpenGL backend: ``MUJOCO_GL``) and writes it; returns the path."""
    from metarl_jax.io.render import fit_view, render_frames

    qpos = np.asarray(job.qpos, np.float64)
    if qpos.ndim != 3 or len(job.labels) != qpos.shape[0]:
        raise ValueError(f"VideoJob: qpos must be [stages, T, nq] with a label per stage, got {qpos.shape} "
                         f"and {len(job.labels)} labels")
    view = fit_view(mj_model, qpos, job.goal)
    panels = np.stack([render_frames(mj_model, stage, width, height, view=view, goal=job.goal,
                                     goal_radius=job.goal_radius) for stage in qpos])
    return write_video(compose(panels, list(job.labels)), job.path, fps, container)


def render_videos(mj_model: Any, jobs: list[VideoJob], width: int = 320, height: int = 240, fps: float = 20.0,
                  backends: tuple[str, ...] | None = None, container: str | None = None) -> list[Path]:
    """Renders every job headless in a child process, trying the OpenGL ``backends`` in turn (default:
    ``MUJOCO_GL`` if set, else EGL then OSMesa); returns the paths written. Raises RuntimeError naming
    each backend's failure when none works."""
    import mujoco

    container = container or check_writer()
    if backends is None:
        backends = (os.environ["MUJOCO_GL"],) if os.environ.get("MUJOCO_GL") else BACKENDS
    with tempfile.TemporaryDirectory(prefix="metarl_video_") as scratch:
        model_path = os.path.join(scratch, "model.mjb")
        mujoco.mj_saveModel(mj_model, model_path, None)
        arrays = {f"qpos_{i}": np.asarray(job.qpos) for i, job in enumerate(jobs)}
        arrays.update({f"goal_{i}": np.asarray(job.goal, np.float64) for i, job in enumerate(jobs)
                       if job.goal is not None})
        meta = {"model": model_path, "width": width, "height": height, "fps": fps, "container": container,
                "jobs": [{"path": str(job.path), "labels": list(job.labels), "goal_radius": job.goal_radius,
                          "has_goal": job.goal is not None} for job in jobs]}
        jobs_path = os.path.join(scratch, "jobs.npz")
        np.savez(jobs_path, meta=np.asarray(json.dumps(meta)), **arrays)
        failures = []
        for backend in backends:
            env = dict(os.environ, MUJOCO_GL=backend)
            env.pop("PYOPENGL_PLATFORM", None)
            env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                                 env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
            result = subprocess.run([sys.executable, "-m", "metarl_jax.io.video", jobs_path], env=env,
                                    capture_output=True, text=True, timeout=1800)
            if result.returncode == 0:
                return [Path(p) for p in json.loads(result.stdout.strip().splitlines()[-1])]
            tail = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
            failures.append(f"MUJOCO_GL={backend}: {tail}")
    raise RuntimeError("no headless OpenGL backend could render (" + "; ".join(failures) + "); install Mesa's "
                       "EGL (e.g. apt-get install libegl1 libgl1-mesa-dri) or OSMesa (libosmesa6)")


def _main(jobs_path: str) -> None:
    import mujoco

    with np.load(jobs_path) as data:
        meta = json.loads(str(data["meta"]))
        model = mujoco.MjModel.from_binary_path(meta["model"])
        paths = []
        for i, job in enumerate(meta["jobs"]):
            goal = data[f"goal_{i}"] if job["has_goal"] else None
            video = VideoJob(job["path"], data[f"qpos_{i}"], job["labels"], goal, job["goal_radius"])
            paths.append(str(render_video(model, video, meta["width"], meta["height"], meta["fps"],
                                          meta["container"])))
    print(json.dumps(paths))


if __name__ == "__main__":
    _main(sys.argv[1])
