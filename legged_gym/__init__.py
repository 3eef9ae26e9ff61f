"""Go2+Piper environments on batched MuJoCo (our own code; the name follows the original tooling)."""

import os

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))

LEGGED_GYM_ROOT_DIR = (
    _PACKAGE_DIR if os.path.isdir(os.path.join(_PACKAGE_DIR, "resources")) else os.path.dirname(_PACKAGE_DIR)
)
"""Where the files legged_gym ships lie: ``resources/robots/go2_piper/*.xml`` (the robot) and ``data/*.pkl``
(target sequences). The repository root in a checkout; the package folder in an installed copy (``pip install .``:
``setup.py`` installs them there as package data)."""


def resolve_path(path: str, root: str = LEGGED_GYM_ROOT_DIR) -> str:
    """The file to open for a configured ``path``: ``path`` itself when it is absolute or exists from the current
    folder; else ``root/path`` when that exists (the shipped copy, e.g. ``data/tossing.pkl`` from any folder);
    else ``path`` unchanged, so that a missing file is reported as it was typed."""
    if not path or os.path.isabs(path) or os.path.exists(path):
        return path
    shipped = os.path.join(root, path)
    return shipped if os.path.exists(shipped) else path
