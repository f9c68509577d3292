"""Headless rendering of MJX rollouts: recorded qpos replayed into ``mujoco.MjData`` and drawn.

MuJoCo chooses its OpenGL backend from ``MUJOCO_GL`` when ``mujoco`` is first
imported (and PyOpenGL fixes its platform on first use), so one process renders
with one backend: ``io.video.render_videos`` starts a renderer process per backend it
tries (EGL, then OSMesa). In a process of your own, set ``MUJOCO_GL=egl`` (or
``osmesa``) before importing anything; on CPU-only machines Mesa's EGL works.

    frames = render_frames(family.mj_model, qpos_trajectory)   # [T, H, W, 3] uint8
    paths = save_png_frames(frames, "out/frames")
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import mujoco
import numpy as np

GOAL_RGBA = (0.95, 0.15, 0.15, 1.0)
GOAL_REGION_RGBA = (0.95, 0.15, 0.15, 0.25)


class CameraView(NamedTuple):
    """A free camera: ``lookat`` (None: follow ``track_body`` each frame), distance, elevation, azimuth (degrees)."""

    lookat: np.ndarray | None
    distance: float
    elevation: float = -45.0
    azimuth: float = 90.0
    track_body: int | None = None


def body_positions(mj_model: mujoco.MjModel, qpos: np.ndarray, body: int = 1) -> np.ndarray:
    """World position of ``body`` (default: the first body below the world) at each row of ``qpos``: [T, 3]."""
    data = mujoco.MjData(mj_model)
    out = np.empty((len(qpos), 3))
    for index, configuration in enumerate(np.asarray(qpos, dtype=np.float64)):
        data.qpos[:] = configuration
        mujoco.mj_kinematics(mj_model, data)
        out[index] = data.xpos[body]
    return out


def fit_view(mj_model: mujoco.MjModel, qpos: np.ndarray, goal: np.ndarray | None = None) -> CameraView:
    """One camera for every panel of a video: with a goal, a fixed view from above over the root body's
    path and the goal; without one (locomotion), a side view following the root body."""
    if goal is None:
        return CameraView(None, 1.5 * float(mj_model.stat.extent), elevation=-20.0, azimuth=90.0, track_body=1)
    path = body_positions(mj_model, np.reshape(qpos, (-1, mj_model.nq))[::4])
    points = np.concatenate([path[:, :2], np.asarray(goal, float)[None, :2], np.zeros((1, 2))])
    low, high = points.min(axis=0), points.max(axis=0)
    lookat = np.array([*(low + high) / 2, 0.0])
    span = float(np.max(high - low))
    return CameraView(lookat, max(2.2 * span + 0.8, 0.8 * float(mj_model.stat.extent)), elevation=-60.0)


def _add_goal(scene: mujoco.MjvScene, goal: np.ndarray, radius: float | None) -> None:
    """A red sphere at the goal and, with ``radius``, a translucent disk of the rewarded region."""
    markers = [(mujoco.mjtGeom.mjGEOM_SPHERE, [0.05, 0.0, 0.0], GOAL_RGBA, goal + np.array([0.0, 0.0, 0.05]))]
    if radius is not None:
        markers.append((mujoco.mjtGeom.mjGEOM_CYLINDER, [radius, 0.003, 0.0], GOAL_REGION_RGBA,
                        goal + np.array([0.0, 0.0, 0.004])))
    for geom_type, size, rgba, position in markers:
        if scene.ngeom >= scene.maxgeom:
            return
        geom = scene.geoms[scene.ngeom]
        mujoco.mjv_initGeom(geom, geom_type, np.asarray(size, np.float64), np.asarray(position, np.float64),
                            np.eye(3).flatten(), np.asarray(rgba, np.float32))
        geom.emission = 0.6  # lit from inside: no shadow-map artefacts on the flat disk
        geom.castshadow = False
        scene.ngeom += 1


def render_frames(
    mj_model: mujoco.MjModel,
    qpos: np.ndarray,
    width: int = 320,
    height: int = 240,
    track_body: int | None = None,
    distance_scale: float = 1.5,
    view: CameraView | None = None,
    goal: np.ndarray | None = None,
    goal_radius: float | None = None,
) -> np.ndarray:
    """Renders one frame per row of ``qpos`` ([T, nq]); returns uint8 RGB frames [T, H, W, 3].

    Each row is written into ``MjData.qpos`` and ``mj_forward`` computes the poses. The camera is
    ``view``, else a free camera looking down at 45° from ``distance_scale`` × the model extent, at
    the model centre or, with ``track_body``, at that body's position in each frame. ``goal`` (world
    xyz) is drawn as a red marker, ``goal_radius`` as a translucent disk around it.
    """
    qpos = np.asarray(qpos, dtype=np.float64)
    if qpos.ndim != 2 or qpos.shape[1] != mj_model.nq:
        raise ValueError(f"render_frames: qpos must have shape [T, {mj_model.nq}], got {qpos.shape}")
    if view is None:
        view = CameraView(None if track_body is not None else np.asarray(mj_model.stat.center),
                          distance_scale * float(mj_model.stat.extent), track_body=track_body)
    data = mujoco.MjData(mj_model)
    camera = mujoco.MjvCamera()
    camera.type = mujoco.mjtCamera.mjCAMERA_FREE
    camera.distance, camera.elevation, camera.azimuth = view.distance, view.elevation, view.azimuth
    goal = None if goal is None else np.asarray(goal, dtype=np.float64)
    frames = np.empty((len(qpos), height, width, 3), dtype=np.uint8)
    with mujoco.Renderer(mj_model, height=height, width=width) as renderer:
        for index, configuration in enumerate(qpos):
            data.qpos[:] = configuration
            mujoco.mj_forward(mj_model, data)
            camera.lookat[:] = data.xpos[view.track_body] if view.lookat is None else view.lookat
            renderer.update_scene(data, camera)
            if goal is not None:
                _add_goal(renderer.scene, goal, goal_radius)
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
