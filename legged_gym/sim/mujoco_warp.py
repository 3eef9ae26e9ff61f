"""GPU backend: MuJoCo Warp steps all envs as ``nworld`` worlds of one ``mujoco_warp`` Data, on a CUDA device
(as CUDA graphs) or on Warp's CPU device (the tests' reference against :class:`MujocoBatchBackend`).

Warp is float32: states differ from ``mujoco.batch`` (float64) by float32 round-off, which contacts amplify.
"""

from __future__ import annotations

import copy
import gc
from collections.abc import Callable

import mujoco
import mujoco_warp as mjw
import numpy as np
import torch
import warp as wp

from legged_gym.sim.base import SimBackend

wp.config.enable_backward = False  # no differentiation through the physics: kernels compile without adjoints

RANDOMISED_FIELDS = ("geom_friction", "body_mass", "actuator_gainprm", "actuator_biasprm")
"""The model fields the setters write per world."""
DERIVED_FIELDS = ("body_subtreemass", "body_invweight0", "dof_invweight0")
"""Constants ``set_const`` derives from ``body_mass`` that the physics reads: per world, like it."""
UNSTABLE_OVERFLOWS = (
    mjw.OverflowType.NEFC  # a world's constraint rows exceed njmax (per world)
    | mjw.OverflowType.NJMAX_NNZ
    | mjw.OverflowType.BROADPHASE  # the contacts of all worlds exceed naconmax (flags every world)
    | mjw.OverflowType.NARROWPHASE  # (likewise)
    | mjw.OverflowType.CCD
    | mjw.OverflowType.HFIELD
    | mjw.OverflowType.NVMAX
)
"""``Data.overflow`` bits that mean a world dropped contacts or constraints: its physics is wrong."""
CUDA_GRAPH_MIN_DRIVER = (12, 4)
"""Conditional graph nodes (the solver's iteration loop) need this CUDA driver."""


class MujocoWarpBackend(SimBackend):
    """All envs as the worlds of one MuJoCo Warp ``Data``; ``qpos``, ``qvel``, ``sensordata`` are zero-copy
    torch views of its arrays (float32, on ``device``).

    ``unstable``: qpos / qvel hold a NaN or inf, or the last call overflowed a contact or constraint buffer
    (:data:`UNSTABLE_OVERFLOWS`). Warp counts contacts over all worlds: a contact overflow (more than N * nconmax)
    flags every world; a constraint overflow (more than njmax rows) flags its world.

    Sensor values are those computed at the start of the last physics substep, i.e. they lag the returned
    state by one timestep, as in :class:`MujocoBatchBackend`; after :meth:`reset` the reset envs' sensors are
    current. On CUDA the step, the reset and the forward dynamics run as CUDA graphs (each captured at its first
    use; one step graph per ``nstep``) on Warp's stream of the device, a blocking stream: torch work on the default
    stream is ordered with it.

    Args:
        model: the compiled MJCF model (actuator gains already set). Its ``mjDSBL_AUTORESET`` flag is ignored:
            Warp never auto-resets (a diverged world keeps its NaN state until :meth:`reset`).
        num_envs: number of simulations N.
        device: ``"cpu"`` (Warp's CPU device) or ``"cuda"`` / ``"cuda:N"``; :attr:`device` is its torch device.
        nconmax: contacts per world (all worlds share N * nconmax slots). Default: a bound from the model's
            colliding geom pairs (:func:`default_nconmax`; 60 for the Go2+Piper, which makes at most ~8).
        njmax: constraint rows per world. Default: enough for nconmax contacts and every joint limit active.
        graphs: run the Warp work as captured graphs. Default: on a CUDA device that supports them
            (:func:`cuda_graphs_supported`); Warp's CPU device replays graphs too (the tests check them there).
    """

    def __init__(
        self,
        model: mujoco.MjModel,
        num_envs: int,
        device: str = "cpu",
        nconmax: int | None = None,
        njmax: int | None = None,
        graphs: bool | None = None,
    ):
        self.model = model
        self.num_envs = num_envs
        self.nq, self.nv, self.nu = model.nq, model.nv, model.nu
        self._wp_device = warp_device(device)
        self.device = torch.device(wp.device_to_torch(self._wp_device))  # "cuda" -> "cuda:0", Warp's default
        warp_model = copy.copy(model)
        warp_model.opt.disableflags &= ~int(mujoco.mjtDisableBit.mjDSBL_AUTORESET)  # unsupported by Warp
        batched = {name: num_envs for name in RANDOMISED_FIELDS + DERIVED_FIELDS}
        with wp.ScopedDevice(self._wp_device):
            self.wp_model = mjw.put_model(warp_model, batch_sizes=batched)
            self.wp_model.opt.warn_overflow = 0  # no kernel printf per world: overflows show in `unstable`
            self.nconmax = default_nconmax(self.wp_model) if nconmax is None else nconmax
            self.njmax = default_njmax(model, self.nconmax) if njmax is None else njmax
            self.wp_data = mjw.make_data(warp_model, nworld=num_envs, nconmax=self.nconmax, njmax=self.njmax)
            self._reset_mask_wp = wp.zeros(num_envs, dtype=bool)
        view = wp.to_torch
        self._qpos, self._qvel = view(self.wp_data.qpos), view(self.wp_data.qvel)
        self._sensordata, self._ctrl = view(self.wp_data.sensordata), view(self.wp_data.ctrl)
        self._overflow = view(self.wp_data.overflow)  # (N,) int32 OverflowType bits
        self._reset_mask = view(self._reset_mask_wp)  # (N,) bool: the worlds reset_data resets
        self._fields = {name: view(getattr(self.wp_model, name)) for name in RANDOMISED_FIELDS + DERIVED_FIELDS}
        self._colliding_geoms = torch.as_tensor(
            np.flatnonzero(model.geom_contype | model.geom_conaffinity), device=self.device
        )
        self._trunk_body = model.body("base").id
        self._graphs: dict[object, wp.Graph] = {}
        self._use_graphs = cuda_graphs_supported(self._wp_device) if graphs is None else graphs
        self._render_model = copy.copy(model)
        self._run("forward", self._forward)
        self._refresh()

    # ------------------------------------------------------------------ Warp calls
    def _run(self, key: object, launches: Callable[[], None]) -> None:
        """Run ``launches`` (Warp work) on the backend's device: as the graph captured under ``key`` at its first
        call, or directly without graphs."""
        with wp.ScopedDevice(self._wp_device):
            if not self._use_graphs:
                launches()
                return
            if key not in self._graphs:
                self._graphs[key] = capture_graph(launches)
            wp.capture_launch(self._graphs[key])

    def _forward(self) -> None:
        mjw.forward(self.wp_model, self.wp_data)

    def _reset_masked(self) -> None:
        mjw.reset_data(self.wp_model, self.wp_data, reset=self._reset_mask_wp)

    def _substeps(self, nstep: int) -> Callable[[], None]:
        """``nstep`` physics steps, after clearing the overflow flags (so they tell of this call only)."""

        def launches() -> None:
            self.wp_data.overflow.zero_()
            for _ in range(nstep):
                mjw.step(self.wp_model, self.wp_data)

        return launches

    def _refresh(self) -> None:
        """Flag the unstable worlds: non-finite qpos / qvel, or an overflow bit of :data:`UNSTABLE_OVERFLOWS`."""
        finite = torch.isfinite(self._qpos).all(dim=1) & torch.isfinite(self._qvel).all(dim=1)
        self._unstable = ~finite | (self._overflow & int(UNSTABLE_OVERFLOWS) != 0)

    # ------------------------------------------------------------------ SimBackend
    def step(self, ctrl: torch.Tensor, nstep: int) -> None:
        self._ctrl.copy_(ctrl.detach())
        self._run(("step", nstep), self._substeps(nstep))
        self._refresh()

    def reset(self, env_ids: torch.Tensor, qpos: torch.Tensor, qvel: torch.Tensor, ctrl: torch.Tensor) -> None:
        """Reset the whole data of ``env_ids`` to the model's defaults, then set their state and run the forward
        dynamics, so that their sensors describe the new state.

        Warp's forward runs on every world: the other worlds' state rows (qpos, qvel, ctrl, warm start) are
        inputs it leaves alone, and their sensordata is put back, so they continue exactly as before.
        """
        if env_ids.numel() == 0:
            return
        ids = env_ids.to(self.device)
        self._reset_mask.zero_()
        self._reset_mask[ids] = True
        self._run("reset", self._reset_masked)
        self._qpos[ids] = qpos.to(self._qpos)
        self._qvel[ids] = qvel.to(self._qvel)
        self._ctrl[ids] = ctrl.to(self._ctrl)
        sensordata = self._sensordata.clone()
        self._run("forward", self._forward)
        self._sensordata.copy_(torch.where(self._reset_mask[:, None], self._sensordata, sensordata))
        self._refresh()

    def set_base_velocity(self, env_ids: torch.Tensor, lin_vel_w: torch.Tensor) -> None:
        self._qvel[env_ids.to(self.device), 0:3] = lin_vel_w.to(self._qvel)

    def set_friction(self, env_ids: torch.Tensor, friction: torch.Tensor) -> None:
        """Sliding friction (M,) of every colliding geom of ``env_ids``: (N, ngeom, 3) ``geom_friction[..., 0]``."""
        ids = env_ids.to(self.device)
        geom_friction = self._fields["geom_friction"]
        geom_friction[ids[:, None], self._colliding_geoms, 0] = friction.to(geom_friction)[:, None]

    def set_added_mass(self, env_ids: torch.Tensor, added_mass: torch.Tensor) -> None:
        """Trunk mass of ``env_ids`` = the model's + ``added_mass`` (M,) [kg]; then ``set_const`` recomputes the
        derived constants (subtree masses, inverse weights) of every world from its own masses."""
        body_mass = self._fields["body_mass"]
        nominal = float(self.model.body_mass[self._trunk_body])
        body_mass[env_ids.to(self.device), self._trunk_body] = nominal + added_mass.to(body_mass)
        with wp.ScopedDevice(self._wp_device):
            mjw.set_const(self.wp_model, self.wp_data)

    def set_actuator_gains(self, env_ids: torch.Tensor, kp: torch.Tensor, kd: torch.Tensor) -> None:
        """Position-servo gains (M, nu): ``gainprm[0] = kp``, ``biasprm[1:3] = (-kp, -kd)`` of ``env_ids``."""
        ids = env_ids.to(self.device)
        gainprm, biasprm = self._fields["actuator_gainprm"], self._fields["actuator_biasprm"]
        kp, kd = kp.to(gainprm), kd.to(gainprm)
        gainprm[ids, :, 0] = kp
        biasprm[ids, :, 1] = -kp
        biasprm[ids, :, 2] = -kd

    def mjdata(self, env_index: int) -> mujoco.MjData:
        """Env ``env_index``'s state (qpos, qvel, ctrl) in a new ``MjData`` of a model with its randomised (and
        derived) fields, ``mj_forward`` done in float64 on the CPU.

        Only that world's rows come to the host (``mujoco_warp.get_data_into`` would copy every world's arrays).
        """
        model = self._render_model
        for name, values in self._fields.items():
            getattr(model, name)[:] = values[env_index].cpu().numpy()
        data = mujoco.MjData(model)
        data.qpos[:] = self._qpos[env_index].cpu().numpy()
        data.qvel[:] = self._qvel[env_index].cpu().numpy()
        data.ctrl[:] = self._ctrl[env_index].cpu().numpy()
        mujoco.mj_forward(model, data)
        return data


def default_nconmax(wp_model: mjw.Model) -> int:
    """Contacts per world: 4 (a box face on a plane, the most of this robot's geom pairs) for every geom pair
    Warp tests (those contype / conaffinity and the parent filter leave). Box-box or mesh pairs may need more."""
    return 4 * wp_model.nxn_geom_pair_filtered.shape[0]


def default_njmax(model: mujoco.MjModel, nconmax: int) -> int:
    """Constraint rows per world: every contact with its most rows (pyramidal cone: 2 * (condim - 1)), every
    joint limit and dof friction loss, 6 per equality constraint."""
    condim = int(model.geom_condim.max(initial=1))
    rows_per_contact = 2 * (condim - 1) if model.opt.cone == mujoco.mjtCone.mjCONE_PYRAMIDAL else condim
    limits = int(model.jnt_limited.sum()) + int(model.tendon_limited.sum())
    friction_loss = int((model.dof_frictionloss > 0).sum())
    return nconmax * max(rows_per_contact, 1) + limits + friction_loss + 6 * model.neq


def warp_device(name: str) -> wp.Device:
    """Warp's device ``name`` ("cpu", "cuda", "cuda:N").

    Raises:
        ValueError: if this machine has no such device (no GPU, or too few), naming the ones it has.
    """
    try:
        return wp.get_device(name)
    except (ValueError, RuntimeError) as error:
        devices = ", ".join(device.alias for device in wp.get_devices())
        raise ValueError(
            f"env.sim_device={name!r}: Warp has no such device here (its devices: {devices}); without a GPU use "
            "env.sim_device=cpu (mujoco.batch)"
        ) from error


def cuda_graphs_supported(device: wp.Device) -> bool:
    """Whether the step can run as a CUDA graph: a CUDA device with a memory pool and a recent driver."""
    if not device.is_cuda:
        return False
    driver = wp.get_cuda_driver_version()
    return driver is not None and driver >= CUDA_GRAPH_MIN_DRIVER and wp.is_mempool_enabled(device)


def capture_graph(launches: Callable[[], None]) -> wp.Graph:
    """Capture ``launches`` on the current device as a graph (not running them). The garbage collector is
    paused meanwhile: a stale graph finalised during the capture would record its destructor into it."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        with wp.ScopedCapture() as capture:
            launches()
    finally:
        if enabled:
            gc.enable()
    return capture.graph
