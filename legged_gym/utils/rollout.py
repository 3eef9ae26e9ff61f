"""Record a rollout of a LeggedRobot and reduce it to task metrics."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class RolloutRecord:
    """Per-step arrays, (T, N, ...) once :meth:`stack` has run.

    Fields: ``velocity_cmd`` (vx, vy, yaw rate) and ``velocity`` (measured, base frame) [m/s, rad/s];
    ``ee_target`` and ``ee_pos`` [m] base-yaw frame; ``base_xy`` [m] world; ``base_height`` [m];
    ``foot_contact`` (4 feet, bool); ``foot_speed`` (4 feet, horizontal speed [m/s]); ``task_ids``
    (task of the state shown: a reset env's new task); ``step_task_ids`` (task during the step, to
    which the step's reward and ``terminated`` belong); ``terminated`` (bool, a fall or other
    non-time-out reset at that step).
    """

    dt: float
    steps: dict[str, list] = field(default_factory=dict)

    def add(self, env, dones: torch.Tensor, time_outs: torch.Tensor) -> None:
        """Append the state after ``env.step`` (values before any auto-reset are not available: the
        reset envs' rows show their fresh state, and ``terminated`` marks them)."""
        row = {
            "velocity_cmd": env.commands.velocity,
            "velocity": torch.cat([env.base_lin_vel_b[:, :2], env.base_ang_vel_b[:, 2:3]], dim=1),
            "ee_target": env.commands.ee_target_b,
            "ee_pos": env.ee_pos_b,
            "base_xy": env.base_pos[:, :2],
            "base_height": env.base_height,
            "foot_contact": env.foot_contact,
            "foot_speed": env.foot_vel_w[:, :, :2].norm(dim=-1),
            "task_ids": env.commands.task_ids,
            "step_task_ids": env.step_task_ids,
            "terminated": dones & ~time_outs,
        }
        for key, value in row.items():
            self.steps.setdefault(key, []).append(value.detach().cpu().numpy().copy())

    def stack(self) -> dict[str, np.ndarray]:
        return {k: np.stack(v) for k, v in self.steps.items()}


def task_metrics(arrays: dict[str, np.ndarray], task_names: list[str]) -> dict[str, dict[str, float]]:
    """Per task: RMS planar-velocity error [m/s], RMS yaw-rate error [rad/s], mean / median
    end-effector error [cm], number of falls (non-time-out resets), env-steps counted."""
    out = {}
    for task_id, task in enumerate(task_names):
        mask = arrays["task_ids"] == task_id
        if not mask.any():
            continue
        vel_err = arrays["velocity"] - arrays["velocity_cmd"]
        ee_err = np.linalg.norm(arrays["ee_pos"] - arrays["ee_target"], axis=-1)[mask]
        out[task] = {
            "lin_vel_rms": float(np.sqrt((vel_err[..., :2] ** 2).sum(-1)[mask].mean())),
            "yaw_rate_rms": float(np.sqrt((vel_err[..., 2] ** 2)[mask].mean())),
            "ee_error_mean_cm": float(100 * ee_err.mean()),
            "ee_error_median_cm": float(100 * np.median(ee_err)),
            "falls": int(arrays["terminated"][arrays["step_task_ids"] == task_id].sum()),
            "env_steps": int(mask.sum()),
        }
    return out
