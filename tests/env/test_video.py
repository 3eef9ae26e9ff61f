"""Offscreen video of a rollout (needs EGL or OSMesa; skipped, with the reason, where neither exists)."""

import imageio
import numpy as np
import pytest
import torch
from helpers import make_env


def test_video_recorder_writes_frames_with_an_overlay(tmp_path):
    from legged_gym.utils.video import VideoRecorder

    env = make_env(2, quiet=True)
    path = str(tmp_path / "video.mp4")
    try:
        recorder = VideoRecorder(env.robot.model, path, fps=50, size=(120, 160))
    except RuntimeError as exc:
        pytest.skip(f"no offscreen OpenGL here: {exc}")
    overlay = np.full((120, 80, 3), 255, dtype=np.uint8)
    for _ in range(5):
        env.step(torch.zeros(2, 18))
        recorder.add_frame(env.sim.mjdata(0), overlay)
    recorder.close()
    frames = imageio.mimread(path)
    assert len(frames) == 5 and frames[0].shape == (120, 240, 3)
    assert frames[0][:, :160].std() > 5  # the robot scene is not a blank image
    assert frames[0][:, 160:].mean() > 240  # the white overlay sits to the right
