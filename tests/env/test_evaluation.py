"""Evaluation figures on constructed rollouts with known answers."""

import numpy as np
import pytest

from legged_gym.utils.evaluation import locomotion_metrics, reaching_metrics

DT = 0.02


def rollout(T=200, N=2):
    return {
        "velocity_cmd": np.zeros((T, N, 3)),
        "velocity": np.zeros((T, N, 3)),
        "ee_target": np.zeros((T, N, 3)),
        "ee_pos": np.zeros((T, N, 3)),
        "base_xy": np.zeros((T, N, 2)),
        "feet_xy": np.zeros((T, N, 4, 2)),
        "base_height": np.full((T, N), 0.27),
        "foot_contact": np.ones((T, N, 4), dtype=bool),
        "foot_speed": np.zeros((T, N, 4)),
        "terminated": np.zeros((T, N), dtype=bool),
    }


def test_locomotion_steady_state_excludes_the_second_after_a_command_change():
    a = rollout()
    a["velocity_cmd"][:, :, 0] = 1.0
    a["velocity_cmd"][100:, :, 0] = 0.6  # change at t = 2 s
    a["velocity"][:, :, 0] = a["velocity_cmd"][:, :, 0]
    a["velocity"][:50, :, 0] = 0.0  # slow start: 1 m/s error for the first second
    a["velocity"][100:150, :, 0] = 1.0  # lag after the change: 0.4 m/s error
    m = locomotion_metrics(a, DT, nominal_height=0.27)
    assert m["lin_vel_rms_steady_mps"] == pytest.approx(0.0)
    assert m["lin_vel_rms_mps"] == pytest.approx(np.sqrt((50 * 1.0 + 50 * 0.16) / 200))
    assert m["trunk_height_error_cm"] == pytest.approx(0.0)


def test_gait_figures():
    a = rollout()
    a["velocity_cmd"][:, :, 0] = 0.8
    a["foot_contact"][::2, :, 0] = False  # foot 0 airborne half the time
    a["foot_speed"][:, :, 1] = 0.2  # foot 1 slides at 0.2 m/s while in contact
    m = locomotion_metrics(a, DT, nominal_height=0.25)
    assert m["airborne_share_per_foot"] == [0.5, 0.0, 0.0, 0.0] and m["airborne_share_min"] == 0.0
    in_contact = 200 * 2 * 4 - 100 * 2
    assert m["stance_slip_mps"] == pytest.approx(0.2 * 200 * 2 / in_contact)
    assert m["trunk_height_error_cm"] == pytest.approx(2.0)


def test_reaching_error_one_second_after_each_target_change_and_drift():
    a = rollout(T=300, N=1)
    a["ee_target"][:150, 0] = [0.5, 0.0, 0.4]
    a["ee_target"][150:, 0] = [0.4, 0.2, 0.5]
    a["ee_pos"][:, 0] = [0.5, 0.0, 0.4]
    a["ee_pos"][150:, 0] = [0.4, 0.2, 0.5 - 0.08]  # second target missed by 8 cm
    a["base_xy"][:, 0, 0] = np.linspace(0.0, 0.03, 300)
    m = reaching_metrics(a, DT)
    assert m["targets_scored"] == 2
    assert m["reached_share"] == pytest.approx(0.5)
    assert m["ee_error_median_cm"] == pytest.approx(4.0)
    assert m["base_drift_m"] == pytest.approx(0.03)
    assert not m["continuous_targets"]


def test_base_drift_splits_into_the_drift_of_the_feet_and_the_lean_over_them():
    a = rollout(T=300, N=1)
    a["ee_target"][:, 0] = a["ee_pos"][:, 0] = [0.5, 0.0, 0.4]
    a["feet_xy"][150:, 0, :, 0] = 0.04  # all four feet stepped 4 cm forward half-way
    a["base_xy"][:, 0, 0] = 0.03 * np.sin(np.linspace(0.0, np.pi, 300))  # the trunk sways 3 cm forward and back
    m = reaching_metrics(a, DT)
    assert m["feet_drift_m"] == pytest.approx(0.04)
    assert m["base_drift_m"] == pytest.approx(0.03, abs=1e-4)
    assert m["lean_m"] == pytest.approx(0.04, abs=1e-4)  # at the end: the base back at 0.0, the feet at 0.04


def test_continuous_sequences_score_every_step_after_settling():
    a = rollout(T=100, N=1)
    a["ee_target"][:, 0, 0] = np.linspace(0.3, 0.6, 100)
    a["ee_pos"][:, 0, 0] = a["ee_target"][:, 0, 0] - 0.01
    m = reaching_metrics(a, DT)
    assert m["continuous_targets"] and m["targets_scored"] == 50
    assert m["ee_error_median_cm"] == pytest.approx(1.0)


def test_target_verdicts_compare_with_the_bounds_and_nan_misses():
    from legged_gym.utils.evaluation import target_verdicts

    met = target_verdicts(
        "locomotion",
        {
            "lin_vel_rms_steady_mps": 0.07,
            "yaw_rate_rms_steady_radps": float("nan"),
            "falls": 1,
            "airborne_share_min": 0.3,
            "other": 5.0,
        },
    )
    assert met == {
        "lin_vel_rms_steady_mps": True,
        "yaw_rate_rms_steady_radps": False,
        "falls": False,
        "airborne_share_min": True,
    }


def test_base_drift_is_judged_only_where_the_base_stands():
    from evaluate import evaluated_task_probabilities, verdicts
    from helpers import compose_cfg

    metrics = {"ee_error_median_cm": 1.0, "reached_share": 1.0, "base_drift_m": 0.2, "falls": 0}
    reaching = compose_cfg("train", ["env=combo_go2Piper_reaching"])
    assert evaluated_task_probabilities(reaching) == {"locomotion": 0.0, "reaching": 1.0, "loco_reach": 0.0}
    assert verdicts(reaching, "reaching_sampled", metrics)["base_drift_m"] is False
    walking = compose_cfg("train", ["env=combo_go2Piper_reaching", "evaluate.tasks=[loco_reach]"])
    assert "base_drift_m" not in verdicts(walking, "reaching_sampled", metrics)
    with pytest.raises(ValueError, match=r"evaluate.tasks=loco_reach: must be a list"):
        evaluated_task_probabilities(compose_cfg("train", ["evaluate.tasks=loco_reach"]))


def test_sections_follow_what_the_evaluated_tasks_move():
    """The locomotion section where some evaluated task moves the base, the reaching sections where some moves the
    arm (``legged_gym.envs.commands.TASKS_MOVING_BASE`` / ``TASKS_MOVING_ARM``)."""
    from evaluate import moves_arm, moves_base

    from legged_gym.envs.commands import TASKS_MOVING_ARM, TASKS_MOVING_BASE

    assert TASKS_MOVING_BASE == ("locomotion", "loco_reach") and TASKS_MOVING_ARM == ("reaching", "loco_reach")
    only = {
        task: {name: float(name == task) for name in ("locomotion", "reaching", "loco_reach")}
        for task in ("locomotion", "reaching", "loco_reach")
    }
    assert [moves_base(p) for p in only.values()] == [True, False, True]
    assert [moves_arm(p) for p in only.values()] == [False, True, True]
