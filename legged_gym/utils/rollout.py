"""Run a policy in a LeggedRobot and record the rollout.

The one loop that runs a policy in an env: play, evaluation, the MoE comparison (and the expert curves, through
evaluation) step through it and keep their own bookkeeping.

    for step in policy_steps(env, policy, num_policy_steps(duration_s, env.dt)):
        ...  # step.obs, step.actions, step.rewards, step.dones, step.extras; env holds the state after the step

    arrays = record_rollout(env, policy, num_steps)  # RolloutRecord arrays, (T, N, ...)

The loop (:func:`policy_steps`) knows the env only as an rsl_rl VecEnv (``get_observations``, ``step``) and the
policy only as a callable (observations -> actions): an rsl_rl inference policy, a MoE actor, an expert's actor, a
fixed blend.
:class:`RolloutRecord` reads a LeggedRobot's state after each step for the evaluation metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch


@dataclass
class RolloutRecord:
    """Per-step arrays, (T, N, ...) once :meth:`stack` has run.

    Fields: ``velocity_cmd`` (vx, vy, yaw rate) and ``velocity`` (measured, base frame) [m/s, rad/s];
    ``ee_target`` and ``ee_pos`` [m] base-yaw frame; ``base_xy`` [m] world; ``feet_xy`` (4 feet, [m] world);
    ``base_height`` [m]; ``foot_contact`` (4 feet, bool); ``foot_speed`` (4 feet, horizontal speed [m/s]); ``task_ids``
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
            "feet_xy": env.foot_pos_w[:, :, :2],
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


class PolicyStep(NamedTuple):
    """One policy step: the observation the policy acted on, its actions, and what ``env.step`` returned for
    them (rewards (N,), dones (N,), extras with ``time_outs``). The env's next observation is
    ``env.get_observations()``."""

    obs: Any
    actions: torch.Tensor
    rewards: torch.Tensor
    dones: torch.Tensor
    extras: dict


def num_policy_steps(duration_s: float, dt: float) -> int:
    """Policy steps in ``duration_s`` seconds of policy period ``dt``."""
    return int(round(duration_s / dt))


def policy_steps(env, policy: Callable[[Any], torch.Tensor], num_steps: int) -> Iterator[PolicyStep]:
    """Step ``policy`` in ``env`` ``num_steps`` times from the env's current observation, yielding each step.

    The policy and ``env.step`` run under ``torch.inference_mode`` (as in rsl_rl's rollouts); the code of the
    loop body does not (inference mode is left before each yield). While a step is yielded the env holds the
    state after it (reset envs already show their new episode), e.g. for :meth:`RolloutRecord.add`, a video
    frame or a plot. Something to record from the policy's forward (e.g. a MoE actor's gate weights, with
    the commands of the observation they were computed from) belongs in a wrapper of ``policy``: it runs
    before ``env.step``.
    """
    obs = env.get_observations()
    for _ in range(num_steps):
        with torch.inference_mode():
            actions = policy(obs)
            next_obs, rewards, dones, extras = env.step(actions)
        yield PolicyStep(obs, actions, rewards, dones, extras)
        obs = next_obs


def record_rollout(
    env,
    policy: Callable[[Any], torch.Tensor],
    num_steps: int,
    each_step: Callable[[int, PolicyStep], None] | None = None,
) -> dict[str, np.ndarray]:
    """:func:`policy_steps` with a :class:`RolloutRecord` of every step; returns its stacked arrays (T, N, ...).

    ``each_step(index, step)`` (optional) runs after each step is recorded: the caller's own bookkeeping.
    """
    record = RolloutRecord(dt=env.dt)
    for index, step in enumerate(policy_steps(env, policy, num_steps)):
        record.add(env, step.dones, step.extras["time_outs"])
        if each_step is not None:
            each_step(index, step)
    return record.stack()
