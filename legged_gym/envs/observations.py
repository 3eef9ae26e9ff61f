"""The observation layout, declared once: every term's name, source, width, scale, noise and mirror kind.

The env concatenates each group's terms in this order (``raw * scale``, plus uniform noise of half-width
``noise * scale * level`` on the policy terms when ``env.observations.add_noise``); the dims, the scale and noise
vectors (:func:`scale_vector`, :func:`noise_half_width`) and the mirror maps of :mod:`legged_gym.envs.symmetry`
are derived from these tables.

``policy`` (N, 69), noisy proprioception + commands; ``critic`` (N, 16), privileged, noise-free. Frames: "base" is
the trunk frame, "yaw" the base-yaw (heading) frame from the base origin.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from legged_gym.robots.go2_piper import LEG_NAMES, NUM_ACTIONS


@dataclass(frozen=True)
class ObsTerm:
    """One term of an observation group.

    Attributes:
        name: the term's name (also its segment name in the mirror maps).
        source: the env attribute holding its raw value, (N, width) (dotted for sub-objects: ``commands.velocity``).
        width: number of columns.
        scale: raw -> observation units, one factor or one per column.
        noise: key of its noise half-width in ``env.observations.noise`` (in raw units), or None (noise-free).
        mirror: how the left-right mirror acts on it (a kind of :mod:`legged_gym.envs.symmetry`).
    """

    name: str
    source: str
    width: int
    scale: float | tuple[float, ...] = 1.0
    noise: str | None = None
    mirror: str = "scalar"


POLICY_TERMS = (
    ObsTerm("base_ang_vel", "base_ang_vel_b", 3, 0.25, "ang_vel", "axial"),  # [rad/s] base frame
    ObsTerm("projected_gravity", "projected_gravity", 3, 1.0, "gravity", "polar"),  # unit vector, base frame
    ObsTerm("velocity_command", "commands.velocity", 3, (2.0, 2.0, 0.25), None, "command"),  # vx, vy [m/s], yaw [rad/s]
    ObsTerm("ee_target", "commands.ee_target_b", 3, 1.0, None, "polar"),  # [m] yaw frame
    ObsTerm("ee_pos", "ee_pos_b", 3, 1.0, "ee_pos", "polar"),  # [m] yaw frame
    ObsTerm("joint_pos", "joint_pos_rel", NUM_ACTIONS, 1.0, "joint_pos", "joints"),  # [rad] minus the default pose
    ObsTerm("joint_vel", "joint_vel", NUM_ACTIONS, 0.05, "joint_vel", "joints"),  # [rad/s]
    ObsTerm("last_actions", "actions", NUM_ACTIONS, 1.0, None, "joints"),
)
CRITIC_TERMS = (
    ObsTerm("base_lin_vel", "base_lin_vel_b", 3, 2.0, mirror="polar"),  # [m/s] base frame
    ObsTerm("trunk_height", "base_height_column", 1),  # [m]
    ObsTerm("foot_contacts", "foot_contact", len(LEG_NAMES), mirror="feet"),  # 0/1, LEG_NAMES order
    ObsTerm("domain_params", "domain_params", 3),  # friction coefficient, added trunk mass [kg], PD-gain scale
    ObsTerm("ee_error", "ee_error", 3, mirror="polar"),  # [m] yaw frame, target minus position
    ObsTerm("velocity_error", "lin_vel_error", 2, mirror="planar"),  # [m/s] base frame, command minus velocity
)
OTHER_GROUPS = {
    "task_id": "(N, 1) the env's task index into task_names (for diagnostics; not a model input)",
    "own_actions": "(N, 18) 1 where the next action's entry is applied, 0 where the partner writes it (with a partner)",
}


def width(terms: tuple[ObsTerm, ...]) -> int:
    """Columns of a group."""
    return sum(term.width for term in terms)


POLICY_OBS_DIM = width(POLICY_TERMS)
CRITIC_OBS_DIM = width(CRITIC_TERMS)


def scale_vector(terms: tuple[ObsTerm, ...], device: torch.device | str = "cpu") -> torch.Tensor:
    """(width,) float32 on ``device``: observation = raw * scale, column by column."""
    scales = [torch.as_tensor(term.scale, dtype=torch.float32, device=device).expand(term.width) for term in terms]
    return torch.cat(scales)


def noise_half_width(terms: tuple[ObsTerm, ...], noise_cfg: dict, device: torch.device | str = "cpu") -> torch.Tensor:
    """(width,) float32 on ``device``, the half-width of the uniform observation noise, in observation units:
    ``noise_cfg[term.noise] * scale * noise_cfg["level"]`` (0 for noise-free terms)."""
    parts = []
    for term in terms:
        half_width = float(noise_cfg[term.noise]) if term.noise else 0.0
        scale = torch.as_tensor(term.scale, dtype=torch.float64, device=device)  # the product in float64, rounded once
        parts.append((half_width * scale).expand(term.width))
    return torch.cat(parts).float() * noise_cfg["level"]
