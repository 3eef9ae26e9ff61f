"""torch.distributed for one training spread over processes (``torchrun``): CPU (gloo) or one GPU per process (NCCL).

rsl_rl already synchronises what PPO needs once a process group exists: parameters are broadcast from rank 0
at the start of ``learn()``, gradients are averaged before each optimizer step, the adaptive learning rate
follows the all-reduced KL, and observation normalisers all-reduce their batch statistics. This module adds
the process group on CPU (rsl-rl-lib 5.5 only creates NCCL groups) and the small collectives our runners use.

Every function is a no-op (or returns its input) in a single process, so callers need no branch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class ProcessInfo:
    """Where this process stands in the job (torchrun's environment variables; 1 process: all zero / one)."""

    rank: int
    """Global rank (``RANK``)."""
    local_rank: int
    """Rank on this machine (``LOCAL_RANK``): the GPU index of a CUDA process."""
    world_size: int
    """Processes in the job (``WORLD_SIZE``)."""
    local_world_size: int
    """Processes on this machine (``LOCAL_WORLD_SIZE``): they share its cores."""

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def process_info() -> ProcessInfo:
    """This process's place in the job, from torchrun's environment variables."""
    world_size = int(os.getenv("WORLD_SIZE", "1"))
    return ProcessInfo(
        rank=int(os.getenv("RANK", "0")),
        local_rank=int(os.getenv("LOCAL_RANK", "0")),
        world_size=world_size,
        local_world_size=int(os.getenv("LOCAL_WORLD_SIZE", str(world_size))),
    )


def device_for_rank(device: str, info: ProcessInfo, setting: str = "device") -> str:
    """The device of this process (the learner's, or the physics' with ``setting="env.sim_device"``): ``cuda`` (or
    ``cuda:N`` under torchrun) -> ``cuda:<local rank>``, so each process drives its own GPU; others stay as they are.

    Raises:
        ValueError: ``cuda:N`` with N other than the local rank, in a job of several processes.
    """
    if not device.startswith("cuda"):
        return device
    if not info.is_distributed:
        return device
    wanted = f"cuda:{info.local_rank}"
    if device not in ("cuda", wanted):
        raise ValueError(
            f"{setting}={device}: under torchrun each process uses the GPU of its local rank; give {setting}=cuda "
            f"(this process, local rank {info.local_rank}, gets {wanted})"
        )
    return wanted


def init_process_group(device: str, info: ProcessInfo) -> None:
    """Join the job's process group (once): NCCL for a CUDA learner device, gloo for CPU. No-op in one process."""
    if not info.is_distributed or dist.is_initialized():
        return
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
        dist.init_process_group(backend="nccl", rank=info.rank, world_size=info.world_size)
    else:
        dist.init_process_group(backend="gloo", rank=info.rank, world_size=info.world_size)


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _collective_device() -> torch.device:
    """Where a collective's tensors must live: the current GPU for NCCL, the CPU for gloo."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def all_gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """``(sum of ranks' rows, ...)``: every rank's ``tensor`` (same shape on each), concatenated in rank order."""
    if not is_distributed():
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


def average_(tensors: list[torch.Tensor]) -> None:
    """Replace each tensor by its mean over the ranks, in place (one all-reduce per tensor)."""
    if not is_distributed():
        return
    for tensor in tensors:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor /= dist.get_world_size()


def any_rank(flag: bool) -> bool:
    """True on every rank if ``flag`` is true on any rank (so all ranks take the same branch)."""
    if not is_distributed():
        return flag
    value = torch.tensor([int(flag)], device=_collective_device())
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def broadcast_object(obj, src: int = 0):
    """``obj`` of rank ``src`` on every rank (a picklable object, e.g. the run folder's path)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
