"""Offscreen rendering of one env to an mp4 (MuJoCo's Renderer + imageio-ffmpeg).

Headless machines need an offscreen OpenGL: EGL (``MUJOCO_GL=egl``, e.g. Debian's libegl1 +
libgl1-mesa-dri for software rendering) or OSMesa (``MUJOCO_GL=osmesa``, libosmesa6).
MuJoCo reads ``MUJOCO_GL`` when it is first imported, so set it before (scripts/play.py does).
"""

from __future__ import annotations

import os

import imageio
import mujoco
import numpy as np


class VideoRecorder:
    """Renders one env's ``MjData`` (its simulator's ``mjdata(env_index)``, on either backend) with a camera
    tracking its trunk.

    Args:
        model: the MjModel.
        path: mp4 file to write.
        fps: frames per second (the policy rate gives real time).
        size: (height, width) [pixels].
    """

    def __init__(self, model: mujoco.MjModel, path: str, fps: float, size: tuple[int, int] = (480, 640)):
        try:
            self.renderer = mujoco.Renderer(model, *size)
        except Exception as exc:
            raise RuntimeError(
                "cannot open an offscreen OpenGL context for video "
                f"(MUJOCO_GL={os.environ.get('MUJOCO_GL')!r}): {exc}. "
                "Install EGL (libegl1, libgl1-mesa-dri) and set MUJOCO_GL=egl, or OSMesa with MUJOCO_GL=osmesa, "
                "or run without play.video=true."
            ) from exc
        self.camera = mujoco.MjvCamera()
        self.camera.type = mujoco.mjtCamera.mjCAMERA_TRACKING
        self.camera.trackbodyid = model.body("base").id
        self.camera.distance, self.camera.azimuth, self.camera.elevation = 1.8, 135.0, -20.0
        self.writer = imageio.get_writer(path, fps=fps, macro_block_size=1)
        self.path = path
        self.height, self.width = size

    def add_frame(self, data: mujoco.MjData, overlay: np.ndarray | None = None) -> None:
        """Render ``data`` (after mj_forward); ``overlay`` (height, W2, 3) uint8 is placed to the right of the frame."""
        self.renderer.update_scene(data, camera=self.camera)
        frame = self.renderer.render()
        if overlay is not None:
            frame = np.concatenate([frame, overlay], axis=1)
        self.writer.append_data(frame)

    def close(self) -> None:
        self.writer.close()
        self.renderer.close()
