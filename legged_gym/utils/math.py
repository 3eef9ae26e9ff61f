"""Batched quaternion helpers (quaternions are (w, x, y, z), shape (N, 4))."""

from __future__ import annotations

import torch


def quat_rotate_inverse(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Rotate world-frame vectors ``v`` (N, 3) into the frame of ``q`` (N, 4): R(q)^T v."""
    w, xyz = q[:, :1], q[:, 1:]
    t = 2.0 * torch.cross(xyz, v, dim=-1)
    return v - w * t + torch.cross(xyz, t, dim=-1)


def quat_rotate(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Rotate body-frame vectors ``v`` (N, 3) into the world frame: R(q) v."""
    w, xyz = q[:, :1], q[:, 1:]
    t = 2.0 * torch.cross(xyz, v, dim=-1)
    return v + w * t + torch.cross(xyz, t, dim=-1)


def yaw_from_quat(q: torch.Tensor) -> torch.Tensor:
    """Heading angle (N,) [rad] of ``q`` about the world z axis."""
    w, x, y, z = q.unbind(-1)
    return torch.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def quat_from_yaw(yaw: torch.Tensor) -> torch.Tensor:
    """Quaternions (N, 4) of a rotation by ``yaw`` (N,) [rad] about z."""
    half = 0.5 * yaw
    zeros = torch.zeros_like(half)
    return torch.stack([torch.cos(half), zeros, zeros, torch.sin(half)], dim=-1)


def world_to_yaw_frame(yaw: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Express world vectors ``v`` (N, 3) in the heading frame given by ``yaw`` (N,): z stays vertical."""
    c, s = torch.cos(yaw), torch.sin(yaw)
    x = c * v[:, 0] + s * v[:, 1]
    y = -s * v[:, 0] + c * v[:, 1]
    return torch.stack([x, y, v[:, 2]], dim=-1)
