"""Headless rendering of MJX rollouts to PNG frames (videos of exploration behaviour).

MuJoCo chooses its OpenGL backend from ``MUJOCO_GL`` when ``mujoco`` is first
imported, so set ``MUJOCO_GL=egl`` (or ``osmesa``) in the environment of the
process before importing anything; on CPU-only machines Mesa's EGL works.

    frames = render_frames(family.mj_model, qpos_trajectory)   # [T, H, W, 3] uint8
    paths = save_png_frames(frames, "out/frames")
"""

from __future__ import annotations

from pathlib import Path

import mujoco
import numpy as np


def render_frames(
    mj_model: mujoco.MjModel,
    qpos: np.ndarray,
    width: int = 320,
    height: int = 240,
    track_body: int | None = None,
    distance_scale: float = 1.5,
) -> np.ndarray:
    """Renders one frame per row of ``qpos`` ([T, nq]); returns uint8 RGB frames [T, H, W, 3].

    The free camera looks down at 45° from ``distance_scale`` × the model extent, at the
    model centre or, with ``track_body``, at that body's position in each frame.
    """
    qpos = np.asarray(qpos, dtype=np.float64)
    if qpos.ndim != 2 or qpos.shape[1] != mj_model.nq:
        raise ValueError(f"render_frames: qpos must have shape [T, {mj_model.nq}], got {qpos.shape}")
    data = mujoco.MjData(mj_model)
    camera = mujoco.MjvCamera()
    camera.type = mujoco.mjtCamera.mjCAMERA_FREE
    camera.distance = distance_scale * float(mj_model.stat.extent)
    camera.elevation = -45.0
    camera.azimuth = 90.0
    frames = np.empty((len(qpos), height, width, 3), dtype=np.uint8)
    with mujoco.Renderer(mj_model, height=height, width=width) as renderer:
        for index, configuration in enumerate(qpos):
            data.qpos[:] = configuration
            mujoco.mj_forward(mj_model, data)
            camera.lookat[:] = data.xpos[track_body] if track_body is not None else mj_model.stat.center
            renderer.update_scene(data, camera)
            frames[index] = renderer.render()
    return frames


def save_png_frames(frames: np.ndarray, directory: str | Path, prefix: str = "frame") -> list[Path]:
    """Writes frames [T, H, W, 3] as ``prefix_00000.png`` … into ``directory``; returns the paths."""
    from PIL import Image

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, frame in enumerate(np.asarray(frames, dtype=np.uint8)):
        path = directory / f"{prefix}_{index:05d}.png"
        Image.fromarray(frame).save(path)
        paths.append(path)
    return paths
