"""Learning is checked, not assumed: short real trainings through the user's command, several episodes long.

The episodes are shortened (``env.episode_length_s``) so that a run of a minute or less spans several of them:
a bug that only shows after the first episode (the stale episode counter: every env timing out at every step
after ``max_episode_length`` steps) fails these tests. Read from the run's TensorBoard file.
"""

from __future__ import annotations

import statistics

import pytest
from helpers import read_events, run_script

pytestmark = pytest.mark.slow


def series(events, tag: str) -> list[float]:
    return [event.value for event in events.Scalars(tag)]


def head_and_tail(values: list[float], k: int = 5) -> tuple[float, float]:
    return statistics.mean(values[:k]), statistics.mean(values[-k:])


@pytest.fixture(scope="module")
def gate_run(tmp_path_factory):
    """The main job (gate over the shipped experts), 128 envs, 5 s episodes, 30 iterations = 720 steps per env."""
    run_dir = str(tmp_path_factory.mktemp("gate"))
    result = run_script(
        "train.py",
        [
            "--config-name=train_moe_example",
            "env.num_envs=128",
            "env.episode_length_s=5",
            "runner.max_iterations=30",
            "runner.diagnostics.enabled=false",
            f"hydra.run.dir={run_dir}",
        ],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return read_events(run_dir)


def test_the_gate_learns_longer_episodes_and_more_reward(gate_run):
    lengths = series(gate_run, "Train/mean_episode_length")
    rewards = series(gate_run, "Train/mean_reward")
    max_length = 250  # 5 s at 50 Hz
    first, last = head_and_tail(lengths)
    assert last > 0.4 * max_length and last > 2 * first, lengths  # measured: 16 -> 160; stale counter: 1
    first, last = head_and_tail(rewards)
    assert last > 1.3 * first, rewards


def test_the_gate_routes_each_task_to_its_expert(gate_run):
    """From 50/50 at the start to the expert that solves the task."""
    for task, expert in (("locomotion", "base"), ("reaching", "arm")):
        weights = series(gate_run, f"moe/{task}/weight/{expert}")
        first, last = head_and_tail(weights, 3)
        assert abs(first - 0.5) < 0.1 and last > 0.62, (task, weights)  # measured: 0.74 (base), 0.95 (arm)


@pytest.fixture(scope="module", params=["numpy", "torch"])
def locomotion_run(request, tmp_path_factory):
    """PPO from scratch on locomotion, 128 envs, 4 s episodes, 40 iterations = 960 steps per env; the env's step math
    on each array backend (the torch one is the GPU path's, here on the CPU)."""
    run_dir = str(tmp_path_factory.mktemp("locomotion"))
    result = run_script(
        "train.py",
        [
            "--config-name=train",
            "env=combo_go2Piper_locomotion",
            "env.num_envs=128",
            "env.episode_length_s=4",
            "runner.max_iterations=40",
            f"env.array_backend={request.param}",
            f"hydra.run.dir={run_dir}",
        ],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return read_events(run_dir)


def test_ppo_from_scratch_learns_longer_episodes_and_more_reward(locomotion_run):
    lengths = series(locomotion_run, "Train/mean_episode_length")
    rewards = series(locomotion_run, "Train/mean_reward")
    first, last = head_and_tail(lengths)
    assert last > 1.5 * first, lengths
    first, last = head_and_tail(rewards)
    assert last > 1.5 * first, rewards
