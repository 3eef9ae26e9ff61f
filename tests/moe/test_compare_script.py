"""scripts/compare_moe.py on the shipped experts: fixed blends and the privileged task-switch reference."""

import json
import os

import pytest
import torch
from helpers import run_script


@pytest.mark.parametrize("task, same_as", [("locomotion", "base_expert_alone"), ("reaching", "arm_expert_alone")])
def test_task_switch_reference_routes_each_task_to_its_expert(tmp_path, task, same_as):
    out = os.path.join(tmp_path, "compare.json")
    probabilities = {name: float(name == task) for name in ("locomotion", "reaching", "loco_reach")}
    result = run_script(
        "compare_moe.py",
        [
            "--config-name=train_moe_example",
            "evaluate.num_envs=4",
            "evaluate.duration_s=0.4",
            "env.tasks.probabilities={" + ",".join(f"{k}:{v}" for k, v in probabilities.items()) + "}",
            f"+compare.out={out}",
        ],
    )
    assert result.returncode == 0, result.stderr[-2000:]
    results = json.load(open(out))["results"]
    assert set(results) == {"base_expert_alone", "arm_expert_alone", "fixed_50_50", "task_switch_reference"}
    reference = results["task_switch_reference"]["return_per_s"][task]
    assert reference == pytest.approx(results[same_as]["return_per_s"][task], rel=1e-6)
    other = "arm_expert_alone" if same_as == "base_expert_alone" else "base_expert_alone"
    assert reference != pytest.approx(results[other]["return_per_s"][task], rel=1e-6)


def test_task_switch_reference_takes_legs_and_arm_by_what_the_task_moves():
    """Locomotion: all from the base expert; reaching: all from the arm expert; loco_reach: legs from the base
    expert, arm from the arm expert (the columns of ``LIMB_COLUMNS``); the mask is on the task ids' device (a GPU
    env's; ``meta`` stands in for it here)."""
    from compare_moe import from_base_expert

    from legged_gym.envs.commands import TASK_NAMES
    from legged_gym.envs.legged_robot import LIMB_COLUMNS
    from legged_gym.robots.go2_piper import NUM_ACTIONS

    task_ids = torch.tensor([TASK_NAMES.index(task) for task in ("locomotion", "reaching", "loco_reach")])
    mask = from_base_expert(task_ids, NUM_ACTIONS)
    legs, arm = LIMB_COLUMNS["legs"], LIMB_COLUMNS["arm"]
    assert mask.shape == (3, NUM_ACTIONS) and mask[0].all() and not mask[1].any()
    assert mask[2, legs].all() and not mask[2, arm].any() and mask[2].sum() == 12
    assert from_base_expert(task_ids.to("meta"), NUM_ACTIONS).device.type == "meta"
