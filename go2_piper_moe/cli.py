"""Console commands of the installed app: each runs one of the app's scripts as ``python scripts/<name>.py`` does in
a checkout (same arguments, hydra overrides, outputs under the current folder, exit code).

    go2-piper-train --config-name=train env=combo_go2Piper_locomotion
    go2-piper-play --config-name=train_moe_example ckpt_path=logs/<exp>/<run>/model_150.pt
    go2-piper-evaluate --config-name=train env=combo_go2Piper_reaching ckpt_path=...
    python -m go2_piper_moe <script> [args]          # any script: compare_moe, analyze, benchmark, ...
"""

from __future__ import annotations

import os
import runpy
import sys


def scripts_dir() -> str:
    """The app's ``scripts/``: ``go2_piper_moe/scripts`` when installed, the checkout's ``scripts/`` otherwise."""
    package = os.path.dirname(os.path.abspath(__file__))
    for root in (package, os.path.dirname(package)):
        if os.path.isfile(os.path.join(root, "scripts", "train.py")):
            return os.path.join(root, "scripts")
    raise FileNotFoundError(f"the app's scripts/ is neither in {package} nor next to it: reinstall go2-piper-moe")


def run_script(name: str, args: list[str]) -> None:
    """Run ``scripts/<name>.py`` with ``args`` as ``python scripts/<name>.py <args>`` would: as ``__main__``, with
    its folder first on ``sys.path`` (the scripts import each other: ``from common import ...``)."""
    path = os.path.join(scripts_dir(), f"{name}.py")
    if not os.path.isfile(path):
        names = sorted(f[:-3] for f in os.listdir(scripts_dir()) if f.endswith(".py") and f != "__init__.py")
        print(f"error: no script {name!r}; one of {', '.join(names)}", file=sys.stderr)
        raise SystemExit(2)
    sys.argv = [path, *args]
    sys.path.insert(0, os.path.dirname(path))
    runpy.run_path(path, run_name="__main__")


def train() -> None:
    """``go2-piper-train``: ``scripts/train.py``."""
    run_script("train", sys.argv[1:])


def play() -> None:
    """``go2-piper-play``: ``scripts/play.py``."""
    run_script("play", sys.argv[1:])


def evaluate() -> None:
    """``go2-piper-evaluate``: ``scripts/evaluate.py``."""
    run_script("evaluate", sys.argv[1:])


def main() -> None:
    """``python -m go2_piper_moe <script> [args]``: any script of ``scripts/`` by its name."""
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(
            "usage: python -m go2_piper_moe <script> [args], e.g. train --config-name=train_moe_example",
            file=sys.stderr,
        )
        raise SystemExit(2)
    run_script(sys.argv[1], sys.argv[2:])
