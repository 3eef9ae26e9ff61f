"""MoERunner: per-task gate weights recorded during rollouts, logged each iteration, kept in checkpoints."""

from __future__ import annotations

import pytest
import torch
from helpers import read_events
from moe_helpers import LEGS_ARM, OBS_GROUPS, LinearEnv

from rsl_rl_moe.runners import MoERunner

TASKS = ["even", "odd"]  # LinearEnv's task_id: env index % 2


def runner_cfg(files: dict[str, str], action_groups=None, actor_class="rsl_rl_moe.modules:MoEActor") -> dict:
    """A frozen policy (learning rate 0), so the rollout's gate weights can be recomputed afterwards."""
    return {
        "num_steps_per_env": 4,
        "save_interval": 100,
        "obs_groups": dict(OBS_GROUPS),
        "gate_logging": {"windows": [10]},
        "algorithm": {
            "class_name": "rsl_rl_moe.algorithms:PPOMoE",
            "num_learning_epochs": 1,
            "num_mini_batches": 1,
            "learning_rate": 0.0,
            "schedule": "fixed",
        },  # fmt: skip
        "actor": {
            "class_name": actor_class,
            "expert_sources": {"experts": {"base": files["base"], "arm": files["arm"]}},
            "action_groups": action_groups,
            "obs_moe": {"hidden_dims": [16]},
        },  # fmt: skip
        "critic": {"class_name": "rsl_rl.models:MLPModel", "hidden_dims": [16]},
    }


@pytest.mark.parametrize("action_groups", [None, LEGS_ARM])
def test_logged_weights_are_the_rollout_means_per_task(tmp_path, expert_files, action_groups):
    runner = MoERunner(LinearEnv(), runner_cfg(expert_files, action_groups), log_dir=str(tmp_path),
                       env_description={"task_names": TASKS})  # fmt: skip
    runner.learn(1)
    actor = runner.alg.actor
    obs = runner.alg.storage.observations.flatten(0, 1)  # (steps * N, ...) the rollout's observations
    with torch.no_grad():
        weights = actor.get_moe_weights(obs)  # (steps * N, E) or (steps * N, G, E)
    weights = weights if weights.dim() == 3 else weights.unsqueeze(1)
    events = read_events(str(tmp_path))
    groups = list(action_groups or {"": None})
    for t, task in enumerate(TASKS):
        rows = obs["task_id"][:, 0] == t
        for g, group in enumerate(groups):
            for e, expert in enumerate(actor.expert_names):
                tag = f"moe/{task}/{group}/weight/{expert}" if group else f"moe/{task}/weight/{expert}"
                (scalar,) = events.Scalars(tag)
                assert scalar.value == pytest.approx(weights[rows, g, e].mean().item(), abs=1e-6)
    selection = "moe/selection/legs" if action_groups else "moe/selection"
    assert f"{selection}/even/w10/near_one_hot_share" in events.Tags()["scalars"]


def test_tracker_state_travels_with_the_checkpoint(tmp_path, expert_files):
    cfg = runner_cfg(expert_files)
    runner = MoERunner(LinearEnv(), cfg, log_dir=str(tmp_path), env_description={"task_names": TASKS})
    runner.learn(2)
    restored = MoERunner(LinearEnv(), cfg, log_dir=None, env_description={"task_names": TASKS})
    restored.load(str(tmp_path / "model_1.pt"))
    assert (
        restored.gate_tracker.lifetime_counts()
        == runner.gate_tracker.lifetime_counts()
        == {task: {"env_steps": 8, "rows": 32} for task in TASKS}
    )
    assert restored.gate_tracker.get_expert_selection_stats() == runner.gate_tracker.get_expert_selection_stats()


def test_env_without_task_group_is_one_task(expert_files):
    runner = MoERunner(LinearEnv(task_id=False), runner_cfg(expert_files), log_dir=None)
    runner.learn(1)
    assert runner.gate_tracker.lifetime_counts() == {"all": {"env_steps": 4, "rows": 32}}


def test_task_ids_without_names_and_plain_actors_are_refused(expert_files):
    with pytest.raises(ValueError, match="no task names are known"):
        MoERunner(LinearEnv(), runner_cfg(expert_files), log_dir=None)
    cfg = runner_cfg(expert_files)
    cfg["algorithm"]["class_name"] = "PPO"
    cfg["actor"] = {"class_name": "rsl_rl.models:MLPModel", "hidden_dims": [16],
                    "distribution_cfg": {"class_name": "GaussianDistribution"}}  # fmt: skip
    with pytest.raises(ValueError, match="rsl_rl_moe.runners:Runner"):
        MoERunner(LinearEnv(), cfg, log_dir=None, env_description={"task_names": TASKS})


def test_resume_continues_the_counters_and_windows_exactly(tmp_path, expert_files):
    """2 iterations, then 2 more from the checkpoint: the same selection counts and conflict window as 4 in one go
    (the saved iteration is not trained, nor counted, twice)."""
    cfg = runner_cfg(expert_files) | {
        "diagnostics": {"conflict_interval": 1, "noise_floor": False, "monitor_norm_freq": 0, "image_interval": 0}
    }
    straight = MoERunner(LinearEnv(), cfg, log_dir=None, env_description={"task_names": TASKS})
    straight.learn(4)
    first = MoERunner(LinearEnv(), cfg, log_dir=str(tmp_path / "a"), env_description={"task_names": TASKS})
    first.learn(2)
    resumed = MoERunner(LinearEnv(), cfg, log_dir=str(tmp_path / "b"), env_description={"task_names": TASKS})
    resumed.load(str(tmp_path / "a" / "model_1.pt"))
    assert resumed.current_learning_iteration == 2
    resumed.learn(2)
    assert (
        resumed.gate_tracker.lifetime_counts()
        == straight.gate_tracker.lifetime_counts()
        == {task: {"env_steps": 16, "rows": 64} for task in TASKS}
    )
    history = resumed.diagnostics.conflict.state_dict()
    assert {name: len(entries) for name, entries in history.items()} == {
        name: 4 for name in straight.diagnostics.conflict.state_dict()
    }
    assert [event.step for event in read_events(str(tmp_path / "b")).Scalars("Loss/surrogate")] == [2, 3]
