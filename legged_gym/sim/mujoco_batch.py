"""CPU backend: ``mujoco.batch.Batch`` steps all envs in C on one thread per core."""

from __future__ import annotations

import mujoco
import mujoco.batch
import numpy as np
import torch

from legged_gym.sim.base import SimBackend


class MujocoBatchBackend(SimBackend):
    """All envs in one ``mujoco.batch.Batch`` (non-persistent: only the state rows are kept).

    Sensor values are those ``mj_step`` computed at the start of the last physics substep, i.e.
    they lag the returned state by one timestep (5 ms at the default settings); qpos / qvel are current.
    The state tensors are float32 views of one buffer that :meth:`step` and :meth:`reset` overwrite.

    Args:
        model: the compiled MJCF model (actuator gains already set).
        num_envs: number of simulations N.
        nthread: worker threads (0: one per CPU core).
    """

    def __init__(self, model: mujoco.MjModel, num_envs: int, nthread: int = 0):
        self.model = model
        self.num_envs = num_envs
        self.nq, self.nv, self.nu = model.nq, model.nv, model.nu
        self.device = torch.device("cpu")
        self.batch = mujoco.batch.Batch(model, num_envs, nthread=nthread)
        self.batch.reset(keyframe=-1)
        # Live float64 numpy views of the batch's state rows.
        self._qpos_np = self.batch.bind("qpos")
        self._qvel_np = self.batch.bind("qvel")
        self._sensordata_np = self.batch.bind("sensordata")
        self._ctrl = torch.from_numpy(self.batch.bind("ctrl"))  # float64 view: controls are written through it
        # Their float32 copy, [qpos | qvel | sensordata] per row, refreshed in place; qpos, qvel and sensordata
        # are torch views of it.
        self._state_np = np.zeros((num_envs, self.nq + self.nv + model.nsensordata), dtype=np.float32)
        state = torch.from_numpy(self._state_np)
        self._qpos, self._qvel, self._sensordata = state.split([self.nq, self.nv, model.nsensordata], dim=1)
        self._colliding_geoms = np.flatnonzero(model.geom_contype | model.geom_conaffinity)
        self._trunk_body = model.body("base").id
        self._refresh()

    def _refresh(self) -> None:
        """Copy the state rows into the float32 buffer (one numpy call) and flag the unstable envs."""
        np.concatenate((self._qpos_np, self._qvel_np, self._sensordata_np), axis=1, out=self._state_np)
        unstable = self.batch.status != 0
        dynamics = self._state_np[:, : self.nq + self.nv]
        if not np.isfinite(dynamics.sum()):  # one NaN or inf anywhere makes the sum non-finite: then find the rows
            unstable |= ~np.isfinite(dynamics).all(axis=1)
        self._unstable = torch.from_numpy(unstable)

    def step(self, ctrl: torch.Tensor, nstep: int) -> None:
        self._ctrl.copy_(ctrl.detach())
        self.batch.step(nstep=nstep)
        self._refresh()

    def reset(self, env_ids: torch.Tensor, qpos: torch.Tensor, qvel: torch.Tensor, ctrl: torch.Tensor) -> None:
        ids = env_ids.cpu().numpy()
        if ids.size == 0:
            return
        self.batch.reset(ids, stage=int(mujoco.mjtStage.mjSTAGE_NONE))
        self._qpos_np[ids] = qpos.cpu().numpy()
        self._qvel_np[ids] = qvel.cpu().numpy()
        self._ctrl[env_ids] = ctrl.to(self._ctrl)
        self.batch.forward(ids)
        self._refresh()

    def set_base_velocity(self, env_ids: torch.Tensor, lin_vel_w: torch.Tensor) -> None:
        ids = env_ids.cpu().numpy()
        self._qvel_np[ids, 0:3] = lin_vel_w.cpu().numpy()
        self._qvel[env_ids, 0:3] = lin_vel_w.float()

    def set_friction(self, env_ids: torch.Tensor, friction: torch.Tensor) -> None:
        geom_friction = self.batch.expand("geom_friction")
        ids = env_ids.cpu().numpy()
        geom_friction[np.ix_(ids, self._colliding_geoms, [0])] = friction.cpu().numpy()[:, None, None]

    def set_added_mass(self, env_ids: torch.Tensor, added_mass: torch.Tensor) -> None:
        body_mass = self.batch.expand("body_mass")
        ids = env_ids.cpu().numpy()
        body_mass[ids, self._trunk_body] = self.model.body_mass[self._trunk_body] + added_mass.cpu().numpy()
        self.batch.set_const(ids)

    def set_actuator_gains(self, env_ids: torch.Tensor, kp: torch.Tensor, kd: torch.Tensor) -> None:
        gainprm = self.batch.expand("actuator_gainprm")
        biasprm = self.batch.expand("actuator_biasprm")
        ids = env_ids.cpu().numpy()
        kp_np, kd_np = kp.cpu().numpy(), kd.cpu().numpy()
        gainprm[ids, :, 0] = kp_np
        biasprm[ids, :, 1] = -kp_np
        biasprm[ids, :, 2] = -kd_np

    def mjdata(self, env_index: int) -> mujoco.MjData:
        data = self.batch.get_data(env_index)
        mujoco.mj_forward(self.batch.get_model(env_index), data)
        return data
