"""Physics backends behind one small interface (:class:`SimBackend`)."""

from __future__ import annotations

import mujoco

from legged_gym.sim.base import SimBackend


def make_backend(model: mujoco.MjModel, num_envs: int, sim_device: str, nthread: int = 0) -> SimBackend:
    """Build the backend for ``sim_device``: ``"cpu"`` -> ``mujoco.batch`` (the only one so far).

    Raises:
        ValueError: for ``cuda:N`` (no GPU backend yet) or an unknown device string.
    """
    if sim_device == "cpu":
        from legged_gym.sim.mujoco_batch import MujocoBatchBackend

        return MujocoBatchBackend(model, num_envs, nthread=nthread)
    if sim_device.startswith("cuda"):
        raise ValueError(
            f"env.sim_device={sim_device!r}: no GPU physics backend exists yet (a MuJoCo Warp backend is planned); "
            "use env.sim_device=cpu. The learner can still run on a GPU with runner.device=cuda:0."
        )
    raise ValueError(
        f"env.sim_device={sim_device!r} is not a device: use 'cpu' (or 'cuda:N' once a GPU backend exists)"
    )


__all__ = ["SimBackend", "make_backend"]
