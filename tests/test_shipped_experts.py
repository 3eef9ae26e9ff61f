"""The shipped experts load from their files alone, run in the env, and meet relaxed thresholds.

A broken env (changed observation layout, physics, action order) or a damaged checkpoint fails here.
Thresholds are loose on purpose (8 envs, a few seconds); the full figures are in
resources/checkpoints/README.md (scripts/evaluate.py).
"""

import json
import os
import re
import shutil

import pytest
from helpers import REPO_ROOT, make_env, run_script

from legged_gym.utils.evaluation import locomotion_metrics, reaching_metrics
from legged_gym.utils.rollout import num_policy_steps, record_rollout
from rsl_rl_moe.checkpoint import is_self_describing, load_checkpoint
from rsl_rl_moe.modules.experts import load_expert

CHECKPOINTS = os.path.join(REPO_ROOT, "resources", "checkpoints")
LOCO_REACH_ONLY = [
    "env.tasks.probabilities.locomotion=0.0",
    "env.tasks.probabilities.reaching=0.0",
    "env.tasks.locomotion.resampling_time_s=3.0",
]


def run_expert(name: str, env_name: str, seconds: float, overrides=(), partner: tuple[str, str] | None = None):
    """Roll out the shipped expert ``name``; ``partner=(expert name, limbs)``: that expert writes those limbs."""
    env = make_env(8, [f"env={env_name}", "env.seed=7", *overrides], quiet=True)
    path = os.path.join(CHECKPOINTS, f"{name}.pt")
    expert = load_expert(name, path, env.get_observations(), env.num_actions, "test")
    if partner is not None:
        other = load_expert(
            partner[0], os.path.join(CHECKPOINTS, f"{partner[0]}.pt"), env.get_observations(), env.num_actions, "test"
        )
        env.set_partner(other.actor, partner[1], ["loco_reach"])
    return record_rollout(env, expert.actor, num_policy_steps(seconds, env.dt)), env


@pytest.mark.parametrize("name", ["base_expert", "arm_expert"])
def test_shipped_checkpoint_is_self_describing_and_small(name):
    path = os.path.join(CHECKPOINTS, f"{name}.pt")
    payload = load_checkpoint(path)
    assert is_self_describing(payload) and "optimizer_state_dict" not in payload
    assert (
        payload["infos"]["model"]["num_actions"] == 18 and payload["infos"]["model"]["obs_group_dims"]["policy"] == 69
    )
    assert os.path.getsize(path) < 2 * 1024**2


def test_arm_expert_reaches_sampled_targets():
    arrays, env = run_expert("arm_expert", "combo_go2Piper_reaching", 7.0, ["env.tasks.probabilities.loco_reach=0.0"])
    m = reaching_metrics(arrays, env.dt)
    assert m["falls"] == 0 and m["targets_scored"] >= 8
    assert m["ee_error_median_cm"] < 3.0 and m["reached_share"] > 0.8


def test_base_expert_walks_and_tracks_commands():
    arrays, env = run_expert(
        "base_expert", "combo_go2Piper_locomotion", 6.0, ["env.tasks.locomotion.resampling_time_s=3.0"]
    )
    m = locomotion_metrics(arrays, env.dt, env.reward_cfg["base_height_target"])
    assert m["falls"] <= 1  # the full evaluation sees 6 falls in 64 envs x 20 s (resources/checkpoints/README.md)
    assert m["lin_vel_rms_steady_mps"] < 0.2 and m["yaw_rate_rms_steady_radps"] < 0.25
    assert m["airborne_share_min"] > 0.2 and m["stance_slip_mps"] < 0.15 and m["trunk_height_error_cm"] < 5.0


@pytest.mark.xfail(
    strict=True,
    reason="the shipped experts were trained apart: 60 falls in 8 envs x 6 s; composable "
    "experts (env.partner recipes, resources/checkpoints/README.md) are not shipped yet (issue 12)",
)
def test_legs_from_base_and_arm_from_arm_walk_and_reach_together():
    """The per-limb composition on loco_reach: the base expert's legs walk under the arm expert's reaching arm."""
    arrays, env = run_expert(
        "base_expert", "combo_go2Piper_loco_reach", 6.0, LOCO_REACH_ONLY, partner=("arm_expert", "arm")
    )
    walking = locomotion_metrics(arrays, env.dt, env.reward_cfg["base_height_target"])
    reaching = reaching_metrics(arrays, env.dt)
    assert walking["falls"] == 0 and walking["lin_vel_rms_steady_mps"] < 0.25
    assert reaching["targets_scored"] >= 8 and reaching["ee_error_median_cm"] < 4.0


def test_evaluate_script_names_tasks_and_partner_in_its_results(tmp_path):
    """``evaluate.tasks`` and ``env.partner`` reach the evaluation; the file name tells the evaluations apart."""
    path = os.path.join(tmp_path, "base_expert.pt")
    shutil.copy(os.path.join(CHECKPOINTS, "base_expert.pt"), path)
    arm = os.path.join(CHECKPOINTS, "arm_expert.pt")
    result = run_script(
        "evaluate.py",
        [
            "--config-name=train",
            "env=combo_go2Piper_loco_reach",
            f"ckpt_path={path}",
            "evaluate.tasks=[loco_reach]",
            f"env.partner.ckpt_path={arm}",
            "evaluate.num_envs=2",
            "evaluate.duration_s=1.5",
            "evaluate.sequence_file=null",
        ],
    )
    assert result.returncode == 0, result.stderr[-2000:]
    saved = json.load(open(os.path.join(tmp_path, "eval", "combo_go2Piper_loco_reach_loco_reach_partner_arm.json")))
    assert saved["partner"]["ckpt_path"] == arm and saved["evaluate"]["tasks"] == ["loco_reach"]
    assert set(saved["results"]) == {"locomotion", "reaching_sampled"}


def test_evaluate_script_runs_on_a_shipped_expert_file(tmp_path):
    """Shipped files carry no optimizer state: evaluate.py (and play.py, via the same Runner.load) must load them."""
    path = os.path.join(tmp_path, "base_expert.pt")
    shutil.copy(os.path.join(CHECKPOINTS, "base_expert.pt"), path)
    result = run_script(
        "evaluate.py",
        [
            "--config-name=train",
            "env=combo_go2Piper_locomotion",
            f"ckpt_path={path}",
            "evaluate.num_envs=2",
            "evaluate.duration_s=0.5",
        ],
    )
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.load(open(os.path.join(tmp_path, "eval", "combo_go2Piper_locomotion.json")))["results"]["locomotion"]
    assert metrics["falls"] == 0
    assert re.search(r"falls +0  meets <= 0", result.stdout) and "lin_vel_rms_steady_mps" in result.stdout
