"""Physics backends behind one small interface (:class:`SimBackend`)."""

from __future__ import annotations

import mujoco

from legged_gym.sim.base import SimBackend

SIM_DEVICES = "'cpu' (mujoco.batch), 'warp-cpu' (MuJoCo Warp on the CPU) or 'cuda' / 'cuda:N' (MuJoCo Warp)"


def make_backend(model: mujoco.MjModel, num_envs: int, sim_device: str, nthread: int = 0) -> SimBackend:
    """Build the backend for ``sim_device``: ``"cpu"`` -> ``mujoco.batch`` on ``nthread`` threads; ``"warp-cpu"``
    -> MuJoCo Warp on Warp's CPU device (slow: for tests); ``"cuda"`` / ``"cuda:N"`` -> MuJoCo Warp on that GPU.

    Raises:
        ValueError: for any other device string.
        ImportError: for a Warp device when mujoco_warp / warp is not installed.
    """
    if sim_device == "cpu":
        from legged_gym.sim.mujoco_batch import MujocoBatchBackend

        return MujocoBatchBackend(model, num_envs, nthread=nthread)
    if sim_device == "warp-cpu":
        return _warp_backend()(model, num_envs, device="cpu")
    if sim_device == "cuda" or (sim_device.startswith("cuda:") and sim_device[5:].isdigit()):
        return _warp_backend()(model, num_envs, device=sim_device)
    raise ValueError(f"env.sim_device={sim_device!r} is not a simulation device: use {SIM_DEVICES}")


def _warp_backend() -> type[SimBackend]:
    try:
        from legged_gym.sim.mujoco_warp import MujocoWarpBackend
    except ImportError as error:
        raise ImportError(
            f'the MuJoCo Warp backend needs mujoco_warp and warp ({error}): pip install -e ".[gpu]"'
        ) from error
    return MujocoWarpBackend


__all__ = ["SimBackend", "make_backend"]
