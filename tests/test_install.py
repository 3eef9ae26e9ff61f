"""A non-editable install (``pip install .``) works from any folder: the robot, the configs, the target sequences and
the shipped experts come from the installed packages, not from a checkout (README, "Install without a checkout")."""

import glob
import os
import shutil
import subprocess
import sys

import torch
from helpers import REPO_ROOT, SMALL

NOT_SHIPPED = (
    ".git",
    ".venv",
    "logs",
    "outputs",
    "build",
    "*.egg-info",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    "tests",
    "MUJOCO_LOG.TXT",
)
"""Left out of the source copy the install is built from (the build writes build/ and *.egg-info into it)."""


def install(tmp_path) -> str:
    """Build and install a copy of the checkout as a wheel would be installed (no network, no build isolation) into
    ``tmp_path/site``; returns that folder. The build runs in a copy, so nothing lands in the repository."""
    source, site = tmp_path / "source", tmp_path / "site"
    shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(*NOT_SHIPPED))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "--target",
            str(site),
            str(source),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return str(site)


def test_installed_copy_trains_from_any_folder_with_the_shipped_files(tmp_path):
    site = install(tmp_path)
    work = tmp_path / "work"  # not the repository: no config/, resources/ or data/ here
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": site, "OMP_NUM_THREADS": "1"}

    check = (
        "import go2_piper_moe, legged_gym, rsl_rl_moe\n"
        "from legged_gym import resolve_path\n"
        "print(go2_piper_moe.__file__, legged_gym.__file__, rsl_rl_moe.__file__, resolve_path('data/tossing.pkl'),"
        " resolve_path('resources/robots/go2_piper/scene.xml'))"
    )
    found = subprocess.run(
        [sys.executable, "-c", check], cwd=work, env=env, capture_output=True, text=True, timeout=120
    )
    assert found.returncode == 0, found.stderr[-3000:]
    paths = found.stdout.split()
    assert len(paths) == 5 and all(path.startswith(site + os.sep) and os.path.isfile(path) for path in paths), paths

    train = os.path.join(site, "bin", "go2-piper-train")  # the console command the install wrote
    result = subprocess.run(
        [
            train,
            "--config-name=train_moe_example",
            *SMALL,
            "runner.max_iterations=1",
            "env.episode_length_s=0.1",
            "env.tasks.reaching.sequence_sampler.file_path=data/tossing.pkl",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "it     1/1" in result.stdout
    (run_dir,) = glob.glob(str(work / "logs" / "*" / "*"))  # the run folder, under the folder we ran from
    assert glob.glob(os.path.join(run_dir, "events.out.tfevents.*")) and os.path.isfile(
        os.path.join(run_dir, "config.yaml")
    )
    ckpt = torch.load(os.path.join(run_dir, "model_0.pt"), weights_only=True)
    experts = ckpt["infos"]["model"]["actor"]["expert_sources"]["experts"]  # as train_moe_example names them
    shipped = os.path.join(site, "go2_piper_moe", "resources", "checkpoints")
    assert experts == {"base": os.path.join(shipped, "base_expert.pt"), "arm": os.path.join(shipped, "arm_expert.pt")}
