"""Batched quaternion helpers (quaternions are (w, x, y, z), shape (N, 4))."""

from __future__ import annotations

import numpy as np
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


# numpy, written in place: the env derives its state with these every step. On arrays of a few hundred rows
# numpy runs such small elementwise ops several times cheaper than torch.


def rotation_matrices(q: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Rotation matrices ``out`` (N, 3, 3) of unit quaternions ``q`` (N, 4): ``R v`` maps frame-``q`` vectors
    into the world. Returns ``out``."""
    w, x, y, z = q.T
    xx, yy, zz, xy, xz, yz, wx, wy, wz = x * x, y * y, z * z, x * y, x * z, y * z, w * x, w * y, w * z
    out[:, 0, 0], out[:, 0, 1], out[:, 0, 2] = 1 - 2 * (yy + zz), 2 * (xy - wz), 2 * (xz + wy)
    out[:, 1, 0], out[:, 1, 1], out[:, 1, 2] = 2 * (xy + wz), 1 - 2 * (xx + zz), 2 * (yz - wx)
    out[:, 2, 0], out[:, 2, 1], out[:, 2, 2] = 2 * (xz - wy), 2 * (yz + wx), 1 - 2 * (xx + yy)
    return out


def rotate_inverse(rotation: np.ndarray, v: np.ndarray, out: np.ndarray) -> None:
    """``out`` (N, 3) = ``R^T v`` for rotation matrices (N, 3, 3) and world vectors ``v`` (N, 3)."""
    np.matmul(v[:, None, :], rotation, out=out[:, None, :])  # the row vector v^T R is (R^T v)^T


def world_to_yaw_frame(yaw: np.ndarray, v: np.ndarray, out: np.ndarray) -> None:
    """``out`` (N, 3): world vectors ``v`` (N, 3) in the heading frame given by ``yaw`` (N,); z stays vertical."""
    c, s = np.cos(yaw), np.sin(yaw)
    x, y, z = v.T
    out[:, 0] = c * x + s * y
    out[:, 1] = c * y - s * x
    out[:, 2] = z
