"""Go2+Piper environments on batched MuJoCo (our own code; the name follows the original tooling)."""

import os

LEGGED_GYM_ROOT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
"""Repository root: resources/ and data/ are resolved relative to it."""
