"""The shipped experts load from their files alone, run in the env, and meet relaxed thresholds.

A broken env (changed observation layout, physics, action order) or a damaged checkpoint fails here.
Thresholds are loose on purpose (8 envs, a few seconds); the full figures are in
resources/checkpoints/README.md (scripts/evaluate.py).
"""

import os

import pytest
import torch

from helpers import REPO_ROOT, make_env
from legged_gym.utils.evaluation import locomotion_metrics, reaching_metrics
from legged_gym.utils.rollout import RolloutRecord
from rsl_rl_moe.checkpoint import is_self_describing, load_checkpoint
from rsl_rl_moe.modules.experts import load_expert

CHECKPOINTS = os.path.join(REPO_ROOT, "resources", "checkpoints")


def run_expert(name: str, env_name: str, seconds: float, overrides=()):
    env = make_env(8, [f"env={env_name}", "env.seed=7", *overrides], quiet=True)
    path = os.path.join(CHECKPOINTS, f"{name}.pt")
    expert = load_expert(name, path, env.get_observations(), env.num_actions, "test")
    record = RolloutRecord(dt=env.dt)
    obs = env.get_observations()
    for _ in range(int(seconds / env.dt)):
        with torch.inference_mode():
            obs, _, dones, extras = env.step(expert.actor(obs))
        record.add(env, dones, extras["time_outs"])
    return record.stack(), env


@pytest.mark.parametrize("name", ["base_expert", "arm_expert"])
def test_shipped_checkpoint_is_self_describing_and_small(name):
    path = os.path.join(CHECKPOINTS, f"{name}.pt")
    payload = load_checkpoint(path)
    assert is_self_describing(payload) and "optimizer_state_dict" not in payload
    assert payload["infos"]["model"]["num_actions"] == 18 and payload["infos"]["model"]["obs_group_dims"]["policy"] == 69
    assert os.path.getsize(path) < 2 * 1024**2


def test_arm_expert_reaches_sampled_targets():
    arrays, env = run_expert("arm_expert", "combo_go2Piper_reaching", 7.0)
    m = reaching_metrics(arrays, env.dt)
    assert m["falls"] == 0 and m["targets_scored"] >= 8
    assert m["ee_error_median_cm"] < 3.0 and m["reached_share"] > 0.8


def test_base_expert_stands_and_follows_turn_commands():
    arrays, env = run_expert("base_expert", "combo_go2Piper_locomotion", 6.0,
                             ["env.tasks.locomotion.resampling_time_s=3.0"])
    m = locomotion_metrics(arrays, env.dt, env.reward_cfg["base_height_target"])
    assert m["falls"] == 0 and m["trunk_height_error_cm"] < 3.0 and m["stance_slip_mps"] < 0.1
    assert m["yaw_rate_rms_radps"] < 0.6 and m["lin_vel_rms_mps"] < 0.8
