"""scripts/compare_moe.py on the shipped experts: fixed blends and the privileged task-switch reference."""

import json
import os

import pytest

from helpers import run_script


@pytest.mark.parametrize("task, same_as", [("locomotion", "base_expert_alone"), ("reaching", "arm_expert_alone")])
def test_task_switch_reference_routes_each_task_to_its_expert(tmp_path, task, same_as):
    out = os.path.join(tmp_path, "compare.json")
    probabilities = {name: float(name == task) for name in ("locomotion", "reaching", "loco_reach")}
    result = run_script("compare_moe.py", [
        "--config-name=train_moe_example", "evaluate.num_envs=4", "evaluate.duration_s=0.4",
        "env.tasks.probabilities={" + ",".join(f"{k}:{v}" for k, v in probabilities.items()) + "}",
        f"+compare.out={out}",
    ])
    assert result.returncode == 0, result.stderr[-2000:]
    results = json.load(open(out))["results"]
    assert set(results) == {"base_expert_alone", "arm_expert_alone", "fixed_50_50", "task_switch_reference"}
    reference = results["task_switch_reference"]["return_per_s"][task]
    assert reference == pytest.approx(results[same_as]["return_per_s"][task], rel=1e-6)
    other = "arm_expert_alone" if same_as == "base_expert_alone" else "base_expert_alone"
    assert reference != pytest.approx(results[other]["return_per_s"][task], rel=1e-6)
