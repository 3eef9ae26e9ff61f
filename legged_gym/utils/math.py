"""Batched quaternion helpers (quaternions are (w, x, y, z), shape (N, 4))."""

from __future__ import annotations

import numpy as np
import torch

from legged_gym.utils.arrays import ArrayOps


def quat_rotate_inverse(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Rotate world-frame vectors ``v`` (N, 3) into the frame of ``q`` (N, 4): R(q)^T v."""
    w, xyz = q[:, :1], q[:, 1:]
    t = 2.0 * torch.cross(xyz, v, dim=-1)
    return v - w * t + torch.cross(xyz, t, dim=-1)


def yaw_from_quat(q: torch.Tensor) -> torch.Tensor:
    """Heading angle (N,) [rad] of ``q`` about the world z axis."""
    w, x, y, z = q.unbind(-1)
    return torch.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def quat_from_yaw(yaw: torch.Tensor) -> torch.Tensor:
    """Quaternions (N, 4) of a rotation by ``yaw`` (N,) [rad] about z."""
    half = 0.5 * yaw
    zeros = torch.zeros_like(half)
    return torch.stack([torch.cos(half), zeros, zeros, torch.sin(half)], dim=-1)


# The env derives its state with the helpers of :class:`StateMath` every step, in place, on the arrays of one
# array backend (numpy on CPU, torch on the sim device: :mod:`legged_gym.utils.arrays`).


# Every entry of a unit quaternion's rotation matrix is linear in the ten products q_i q_j (i <= j), so one matmul
# builds all N matrices: R.reshape(N, 9) = products (N, 10) @ _ROTATION_FROM_PRODUCTS (10, 9).
_PRODUCT_I, _PRODUCT_J = np.triu_indices(4)  # pairs (w, w), (w, x), ..., (z, z), q = (w, x, y, z)


def _rotation_from_products() -> np.ndarray:
    """(10, 9) coefficients: R[r, c] = sum_k coefficient[k, 3 r + c] * q_i(k) q_j(k) (homogeneous form)."""
    terms = {  # R entry: {(i, j): coefficient}, indices into (w, x, y, z)
        (0, 0): {(0, 0): 1, (1, 1): 1, (2, 2): -1, (3, 3): -1},
        (0, 1): {(1, 2): 2, (0, 3): -2},
        (0, 2): {(1, 3): 2, (0, 2): 2},
        (1, 0): {(1, 2): 2, (0, 3): 2},
        (1, 1): {(0, 0): 1, (1, 1): -1, (2, 2): 1, (3, 3): -1},
        (1, 2): {(2, 3): 2, (0, 1): -2},
        (2, 0): {(1, 3): 2, (0, 2): -2},
        (2, 1): {(2, 3): 2, (0, 1): 2},
        (2, 2): {(0, 0): 1, (1, 1): -1, (2, 2): -1, (3, 3): 1},
    }
    pairs = list(zip(_PRODUCT_I.tolist(), _PRODUCT_J.tolist()))
    coefficients = np.zeros((len(pairs), 9), dtype=np.float32)
    for (row, col), entry in terms.items():
        for pair, value in entry.items():
            coefficients[pairs.index(pair), 3 * row + col] = value
    return coefficients


_ROTATION_FROM_PRODUCTS = _rotation_from_products()


class StateMath:
    """Rotation helpers written once for both array backends (constants placed once on the backend's device).

    Args:
        ops: the array backend (:func:`legged_gym.utils.arrays.array_ops`).
    """

    def __init__(self, ops: ArrayOps):
        self.ops = ops
        self._product_i = ops.asarray(_PRODUCT_I)
        self._product_j = ops.asarray(_PRODUCT_J)
        self._rotation_from_products = ops.asarray(_ROTATION_FROM_PRODUCTS)

    def rotation_matrices(self, q, out):
        """Rotation matrices ``out`` (N, 3, 3, contiguous) of unit quaternions ``q`` (N, 4): ``R v`` maps
        frame-``q`` vectors into the world. Returns ``out``."""
        products = q[:, self._product_i] * q[:, self._product_j]  # (N, 10)
        self.ops.matmul(products, self._rotation_from_products, out=out.reshape(len(q), 9))
        return out

    def rotate_inverse(self, rotation, v, out) -> None:
        """``out`` (N, 3) = ``R^T v`` for rotation matrices (N, 3, 3) and world vectors ``v`` (N, 3)."""
        self.ops.matmul(v[:, None, :], rotation, out=out[:, None, :])  # the row vector v^T R is (R^T v)^T

    def world_to_yaw_frame(self, yaw, v, out) -> None:
        """``out`` (N, 3): world vectors ``v`` (N, 3) in the heading frame given by ``yaw`` (N,); z stays vertical."""
        c, s = self.ops.cos(yaw), self.ops.sin(yaw)
        x, y, z = v.T
        out[:, 0] = c * x + s * y
        out[:, 1] = c * y - s * x
        out[:, 2] = z
