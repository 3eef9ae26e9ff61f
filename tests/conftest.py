"""Test-session set-up that must happen before MuJoCo is imported anywhere."""

import os

if not os.environ.get("DISPLAY"):
    os.environ.setdefault("MUJOCO_GL", "egl")  # offscreen rendering for the video test; read at `import mujoco`
