"""The small interface every physics backend implements.

An env only talks to a backend through this interface, so a GPU backend (MuJoCo Warp) can be
added without touching the envs. All arrays are torch tensors on ``backend.device``, float32.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import mujoco
import torch


class SimBackend(ABC):
    """Steps ``num_envs`` copies of one MJCF model.

    State tensors, refreshed in place by :meth:`step` and :meth:`reset` (the same tensors for the backend's
    lifetime, so views of them stay current):
        qpos: (N, nq) generalised positions (free joint: xyz [m], quat wxyz, then joints [rad]).
        qvel: (N, nv) generalised velocities (free joint: world linear [m/s], body-frame angular [rad/s]).
        sensordata: (N, nsensordata) the model's sensors.
    """

    num_envs: int
    nq: int
    nv: int
    nu: int
    device: torch.device

    @abstractmethod
    def step(self, ctrl: torch.Tensor, nstep: int) -> None:
        """Hold ``ctrl`` (N, nu) and advance every env by ``nstep`` physics steps."""

    @abstractmethod
    def reset(self, env_ids: torch.Tensor, qpos: torch.Tensor, qvel: torch.Tensor, ctrl: torch.Tensor) -> None:
        """Set the state of ``env_ids`` (M,) to ``qpos`` (M, nq), ``qvel`` (M, nv), ``ctrl`` (M, nu)."""

    @abstractmethod
    def set_base_velocity(self, env_ids: torch.Tensor, lin_vel_w: torch.Tensor) -> None:
        """Overwrite the world-frame base linear velocity (M, 3) [m/s] of ``env_ids`` (pushes)."""

    @abstractmethod
    def set_friction(self, env_ids: torch.Tensor, friction: torch.Tensor) -> None:
        """Sliding friction coefficient (M,) of every colliding geom of ``env_ids``."""

    @abstractmethod
    def set_added_mass(self, env_ids: torch.Tensor, added_mass: torch.Tensor) -> None:
        """Mass (M,) [kg] added to the trunk of ``env_ids``."""

    @abstractmethod
    def set_actuator_gains(self, env_ids: torch.Tensor, kp: torch.Tensor, kd: torch.Tensor) -> None:
        """Per-env PD gains (M, nu) [N*m/rad, N*m*s/rad] of the position servos."""

    @abstractmethod
    def mjdata(self, env_index: int) -> mujoco.MjData:
        """A ``mujoco.MjData`` with env ``env_index``'s current state, forward kinematics done (for rendering)."""

    # The state tensors: subclasses bind ``_qpos``, ``_qvel``, ``_sensordata`` once in ``__init__`` and set
    # ``_unstable`` at each refresh.
    _qpos: torch.Tensor
    _qvel: torch.Tensor
    _sensordata: torch.Tensor
    _unstable: torch.Tensor

    @property
    def qpos(self) -> torch.Tensor:
        return self._qpos

    @property
    def qvel(self) -> torch.Tensor:
        return self._qvel

    @property
    def sensordata(self) -> torch.Tensor:
        return self._sensordata

    @property
    def unstable(self) -> torch.Tensor:
        """(N,) bool: the simulator flagged an instability (NaN / divergence) in the last step, or the state
        holds a NaN or inf. A new tensor at each refresh."""
        return self._unstable
