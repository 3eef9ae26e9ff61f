"""Evaluation protocol: reduce a recorded rollout (see :mod:`legged_gym.utils.rollout`) to the
figures an expert is judged by. Arrays are (T, N, ...) for T policy steps of N envs.

Locomotion (tracking numbers alone are gamed by a policy that shuffles its feet, so gait too):
RMS planar-velocity and yaw-rate errors over all steps and in steady state (excluding ``settle_s``
after each command change or reset), falls, per-foot airborne share while the commanded planar
speed is at least ``fast_speed``, mean stance-foot slip speed, and trunk height error.

Reaching: end-effector error ``settle_s`` after each target change (median, 90th percentile,
share within 5 cm), and base drift (largest horizontal distance from where the episode started), split into the
drift of the feet (their centroid: steps and creep of the stance) and the lean of the trunk over them (the base
relative to that centroid): base drift <= feet drift + lean.
For continuous target sequences (targets change every step) the error over all steps is reported.
"""

from __future__ import annotations

import operator

import numpy as np

LOCOMOTION_SECTION = "locomotion"
REACHING_SAMPLED_SECTION = "reaching_sampled"
REACHING_SEQUENCE_SECTION = "reaching_sequence"
"""The sections of an evaluation's results (``scripts/evaluate.py``): locomotion (where the evaluated tasks move the
base), end-effector tracking on sampled targets and on ``evaluate.sequence_file`` (where they move the arm)."""

TARGETS: dict[str, dict[str, tuple[str, float]]] = {
    LOCOMOTION_SECTION: {
        "lin_vel_rms_steady_mps": ("<=", 0.07),
        "yaw_rate_rms_steady_radps": ("<=", 0.05),
        "falls": ("<=", 0),
        "airborne_share_min": (">=", 0.25),
        "stance_slip_mps": ("<", 0.1),
        "trunk_height_error_cm": ("<", 3.0),
    },
    REACHING_SAMPLED_SECTION: {
        "ee_error_median_cm": ("<=", 2.0),
        "reached_share": (">=", 0.95),
        "base_drift_m": ("<", 0.05),
        "falls": ("<=", 0),
    },
}
"""The experts' targets: ``{result section: {metric: (comparison, bound)}}`` (section names as in the results of
``scripts/evaluate.py``). Gait figures are taken at ``|v_cmd| >= fast_speed``; base drift applies to a standing base
(the reaching task), not to loco_reach."""

PARTS: dict[str, tuple[str, ...]] = {"base_drift_m": ("feet_drift_m", "lean_m")}
"""Metrics that explain a target metric (shown under it by ``scripts/seed_spread.py``): base drift is at most the
drift of the feet plus the lean of the trunk over them."""

_COMPARE = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt}


def target_verdicts(section: str, metrics: dict) -> dict[str, bool]:
    """``{metric: met}`` for each target of ``section`` (:data:`TARGETS`) present in ``metrics``; NaN fails."""
    return {
        key: bool(_COMPARE[op](metrics[key], bound))
        for key, (op, bound) in TARGETS.get(section, {}).items()
        if key in metrics
    }


def _changed(values: np.ndarray, terminated: np.ndarray) -> np.ndarray:
    """(T, N) bool: the value changed at this step (or the env was reset before it)."""
    changed = np.zeros(values.shape[:2], dtype=bool)
    changed[0] = True
    changed[1:] = np.any(values[1:] != values[:-1], axis=-1) | terminated[:-1]
    return changed


def _steps_since(event: np.ndarray) -> np.ndarray:
    """(T, N) number of steps since the last True in ``event`` (0 at the event)."""
    since = np.zeros(event.shape, dtype=np.int64)
    count = np.zeros(event.shape[1], dtype=np.int64)
    for t in range(event.shape[0]):
        count = np.where(event[t], 0, count + 1)
        since[t] = count
    return since


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2))) if x.size else float("nan")


def locomotion_metrics(
    a: dict[str, np.ndarray], dt: float, nominal_height: float, settle_s: float = 1.0, fast_speed: float = 0.5
) -> dict[str, float]:
    """Figures for velocity tracking and gait quality (units in the key names)."""
    err = a["velocity"] - a["velocity_cmd"]
    planar, yaw = np.linalg.norm(err[..., :2], axis=-1), err[..., 2]
    steady = _steps_since(_changed(a["velocity_cmd"], a["terminated"])) * dt >= settle_s
    fast = np.linalg.norm(a["velocity_cmd"][..., :2], axis=-1) >= fast_speed
    contact = a["foot_contact"]
    stance_speed = a["foot_speed"][contact]
    airborne = (~contact[fast]).mean(axis=0) if fast.any() else np.full(contact.shape[-1], np.nan)
    return {
        "lin_vel_rms_mps": _rms(planar),
        "lin_vel_rms_steady_mps": _rms(planar[steady]),
        "yaw_rate_rms_radps": _rms(yaw),
        "yaw_rate_rms_steady_radps": _rms(yaw[steady]),
        "falls": int(a["terminated"].sum()),
        "airborne_share_min": float(np.min(airborne)),
        "airborne_share_per_foot": [round(float(x), 3) for x in airborne],
        "stance_slip_mps": float(stance_speed.mean()) if stance_speed.size else float("nan"),
        "trunk_height_error_cm": float(100 * np.abs(a["base_height"] - nominal_height).mean()),
        "fast_steps_share": float(fast.mean()),
    }


def reaching_metrics(
    a: dict[str, np.ndarray], dt: float, settle_s: float = 1.0, reached_m: float = 0.05
) -> dict[str, float]:
    """Figures for end-effector tracking and how still the base stays."""
    error = np.linalg.norm(a["ee_pos"] - a["ee_target"], axis=-1)
    changed = _changed(a["ee_target"], a["terminated"])
    settle_steps = int(round(settle_s / dt))
    continuous = changed[1:].mean() > 0.5  # a target sequence: a new target nearly every step
    if continuous:
        samples = error[settle_steps:]
    else:
        samples = error[_steps_since(changed) == settle_steps]
    base_xy, feet_xy = a["base_xy"], a["feet_xy"].mean(axis=2)  # (T, N, 2) [m] world: base, centroid of the feet
    episode_start = np.cumsum(a["terminated"], axis=0)  # episode index of each step, per env
    drift = {"base": [], "feet": [], "lean": []}
    for env in range(error.shape[1]):
        for episode in np.unique(episode_start[:, env]):
            steps = episode_start[:, env] == episode
            base, feet = base_xy[steps, env] - base_xy[steps, env][0], feet_xy[steps, env] - feet_xy[steps, env][0]
            for key, moved in (("base", base), ("feet", feet), ("lean", base - feet)):
                drift[key].append(np.linalg.norm(moved, axis=-1).max())
    return {
        "ee_error_median_cm": float(100 * np.median(samples)) if samples.size else float("nan"),
        "ee_error_p90_cm": float(100 * np.percentile(samples, 90)) if samples.size else float("nan"),
        "reached_share": float((samples < reached_m).mean()) if samples.size else float("nan"),
        "targets_scored": int(samples.size),
        "base_drift_m": float(np.mean(drift["base"])),
        "feet_drift_m": float(np.mean(drift["feet"])),
        "lean_m": float(np.mean(drift["lean"])),
        "falls": int(a["terminated"].sum()),
        "continuous_targets": bool(continuous),
    }
