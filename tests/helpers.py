"""Shared test helpers: compose the real hydra config and build real envs."""

from __future__ import annotations

import glob
import os
import subprocess
import sys

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(REPO_ROOT, "config")


def compose_cfg(config_name: str = "train", overrides: list[str] | None = None):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        return compose(config_name=config_name, overrides=overrides or [])


def env_cfg(overrides: list[str] | None = None, config_name: str = "train") -> dict:
    return OmegaConf.to_container(compose_cfg(config_name, overrides).env, resolve=True)


SMALL = [
    "env.num_envs=16",
    "runner.num_steps_per_env=8",
    "runner.alg.num_mini_batches=2",
    "runner.alg.num_learning_epochs=1",
]
"""Overrides for a training run of seconds (16 envs, 8 steps per env per iteration)."""

QUIET = [
    "env.observations.add_noise=false",
    "env.domain_rand.enabled=false",
    "env.init_state.joint_pos_noise=0.0",
    "env.init_state.base_vel_noise=0.0",
]


def make_env(num_envs: int = 8, overrides: list[str] | None = None, quiet: bool = False):
    from legged_gym.envs import LeggedRobot

    extra = QUIET if quiet else []
    return LeggedRobot(env_cfg([f"env.num_envs={num_envs}", *extra, *(overrides or [])]))


def run_script(script: str, args: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``scripts/<script>`` in a fresh interpreter from the repo root; returns the completed process."""
    return subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, "scripts", script), *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def read_events(run_dir: str) -> EventAccumulator:
    """The TensorBoard events of a run folder (its one event file), loaded."""
    (path,) = glob.glob(os.path.join(run_dir, "events.out.tfevents.*"))
    events = EventAccumulator(path)
    events.Reload()
    return events
