"""Reward terms: small functions of the env state, each returning (N,) per policy step.

The env multiplies each term by its scale from ``env.rewards.scales`` (terms with scale 0 are not
computed) and by the policy period ``dt``, as legged_gym does. Penalties return positive values and
get negative scales. Every term reads state the env refreshed after the physics step:
``base_lin_vel_b``, ``base_ang_vel_b``, ``projected_gravity``, ``base_height``, ``joint_pos``,
``joint_pos_rel``, ``joint_vel``, ``actions``, ``last_actions``, ``foot_contact``, ``foot_vel_w``, ``first_contact``,
``touchdown_air_time``, ``foot_pos_w``, ``stand_anchor_xy``, ``stand_anchor_feet_xy``, the tracking errors
``lin_vel_error``, ``yaw_rate_error`` and ``ee_error`` (command minus state, derived with the state: after editing
commands by hand, call the env's ``_refresh_state()``) and the commands.

The terms run every policy step on arrays of a few hundred rows, where the cost is per op, not per element:
keep them to a few ops, and take norms with ``torch.linalg.vector_norm`` (``Tensor.norm`` adds a Python
wrapper that costs more than the kernel).
"""

from __future__ import annotations

import torch

STAND_COMMAND_THRESHOLD = 0.1
"""Velocity commands with a smaller norm (m/s and rad/s together) count as "stand still"."""

STAND_ANCHOR_READERS = frozenset({"base_drift", "stand_feet_anchor", "stand_lean"})
"""The terms that read the env's stand anchors (the env keeps the anchors up to date only while one is weighted)."""


def tracking_lin_vel(env) -> torch.Tensor:
    """exp(-|v_xy - v_cmd|^2 / sigma): base linear velocity tracking, base frame."""
    return torch.exp(env.lin_vel_error.square().sum(dim=1) / -env.reward_cfg["tracking_sigma"])


def tracking_ang_vel(env) -> torch.Tensor:
    """exp(-(w_z - w_cmd)^2 / sigma): yaw-rate tracking."""
    return torch.exp(env.yaw_rate_error.square() / -env.reward_cfg["tracking_sigma"])


def tracking_ee_pos(env) -> torch.Tensor:
    """exp(-|p_ee - p_target|^2 / sigma_ee): end-effector position tracking (coarse)."""
    return torch.exp(env.ee_error.square().sum(dim=1) / -env.reward_cfg["ee_sigma"])


def tracking_ee_pos_fine(env) -> torch.Tensor:
    """exp(-|p_ee - p_target|^2 / sigma_fine): end-effector tracking, sharp near the target."""
    return torch.exp(env.ee_error.square().sum(dim=1) / -env.reward_cfg["ee_sigma_fine"])


def lin_vel_z(env) -> torch.Tensor:
    """Vertical base velocity squared [m^2/s^2]."""
    return env.base_lin_vel_b[:, 2].square()


def ang_vel_xy(env) -> torch.Tensor:
    """Roll and pitch rates squared [rad^2/s^2]."""
    return env.base_ang_vel_b[:, :2].square().sum(dim=1)


def orientation(env) -> torch.Tensor:
    """Tilt: squared horizontal part of the gravity direction in the base frame."""
    return env.projected_gravity[:, :2].square().sum(dim=1)


def base_height(env) -> torch.Tensor:
    """Squared deviation of the trunk height from ``base_height_target`` [m^2]."""
    return (env.base_height - env.reward_cfg["base_height_target"]).square()


def torques(env) -> torch.Tensor:
    """Squared servo torques [N^2 m^2], estimated from the PD law and the torque limits."""
    return env.estimated_torques.square().sum(dim=1)


def joint_acc(env) -> torch.Tensor:
    """Squared joint accelerations [rad^2/s^4], by finite difference over one policy step."""
    return ((env.joint_vel - env.last_joint_vel) / env.dt).square().sum(dim=1)


def action_rate(env) -> torch.Tensor:
    """Squared change of the action between policy steps."""
    return (env.actions - env.last_actions).square().sum(dim=1)


def joint_pos_limits(env) -> torch.Tensor:
    """How far [rad] joints are beyond their soft limits."""
    return (env.joint_pos - env.joint_pos.clamp(env.soft_joint_low, env.soft_joint_high)).abs().sum(dim=1)


def feet_air_time(env) -> torch.Tensor:
    """Sum over feet of (air time - target) [s] at each touchdown; only while base motion is commanded."""
    reward = ((env.touchdown_air_time - env.reward_cfg["air_time_target"]) * env.first_contact).sum(dim=1)
    return reward * (torch.linalg.vector_norm(env.commands.velocity[:, :2], dim=1) > 0.1)


def feet_slip(env) -> torch.Tensor:
    """Squared horizontal speed [m^2/s^2] of feet in contact: a sliding stance foot is penalised."""
    return (env.foot_vel_w[:, :, :2].square().sum(dim=2) * env.foot_contact).sum(dim=1)


def stand_still(env) -> torch.Tensor:
    """Leg joint deviation from the default pose [rad] while no base motion is commanded."""
    deviation = env.joint_pos_rel[:, :12].abs().sum(dim=1)
    return deviation * (torch.linalg.vector_norm(env.commands.velocity, dim=1) < STAND_COMMAND_THRESHOLD)


def stand_feet_speed(env) -> torch.Tensor:
    """Squared horizontal speeds [m^2/s^2] of all four feet, summed, while no base motion is commanded: stepping
    and shuffling in place (how a standing robot drifts) cost, which ``feet_slip`` (stance feet only) misses."""
    speed = env.foot_vel_w[:, :, :2].square().sum(dim=(1, 2))
    return speed * (torch.linalg.vector_norm(env.commands.velocity, dim=1) < STAND_COMMAND_THRESHOLD)


def stand_feet_anchor(env) -> torch.Tensor:
    """Horizontal distances [m] of the four feet from where they were when the base was last told to stand
    (``stand_anchor_feet_xy``, kept by the env), summed, while no base motion is commanded: the creep of stance feet
    and the steps that never come back, which add up to base drift over an episode. The trunk may still lean over
    planted feet. Linear, not squared, so that creep of a centimetre still costs."""
    distance = torch.linalg.vector_norm(env.foot_pos_w[:, :, :2] - env.stand_anchor_feet_xy, dim=2).sum(dim=1)
    return distance * (torch.linalg.vector_norm(env.commands.velocity, dim=1) < STAND_COMMAND_THRESHOLD)


def stand_lean(env) -> torch.Tensor:
    """Horizontal distance [m] the base has moved relative to the centroid of its feet since it was last told to stand
    (both from the env's stand anchors), while no base motion is commanded: the trunk leaning over planted feet, the
    part of base drift that ``stand_feet_anchor`` leaves free. Linear, like the feet anchor."""
    offset = env.base_pos[:, :2] - env.foot_pos_w[:, :, :2].mean(dim=1)  # (N, 2) [m] base from the feet's centroid
    anchored = env.stand_anchor_xy - env.stand_anchor_feet_xy.mean(dim=1)
    lean = torch.linalg.vector_norm(offset - anchored, dim=1)
    return lean * (torch.linalg.vector_norm(env.commands.velocity, dim=1) < STAND_COMMAND_THRESHOLD)


def base_drift(env) -> torch.Tensor:
    """Squared horizontal distance [m^2] of the base from where it was last told to stand (``stand_anchor_xy``,
    kept by the env): slow drift, which velocity tracking barely sees, while no base motion is commanded."""
    drift = (env.base_pos[:, :2] - env.stand_anchor_xy).square().sum(dim=1)
    return drift * (torch.linalg.vector_norm(env.commands.velocity, dim=1) < STAND_COMMAND_THRESHOLD)


def arm_joint_deviation(env) -> torch.Tensor:
    """Squared arm joint deviation from home [rad^2]; small weight, regularises redundant arm poses."""
    return env.joint_pos_rel[:, 12:].square().sum(dim=1)


def termination(env) -> torch.Tensor:
    """1 on a terminal (non-time-out) reset."""
    return (env.reset_buf & ~env.time_out_buf).float()
