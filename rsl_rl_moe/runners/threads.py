"""Torch CPU threads during rollouts and during updates.

On a CPU simulator whose worker threads use every core (``mujoco.batch``), torch's OpenMP workers
are in the way during rollouts: after each parallel op (a policy forward, an env's reward maths)
they spin-wait for more work and take cores from the physics threads. Measured on 2 cores, N=256:
the same physics call took 15.5 ms per policy step with 2 torch threads and 12.7 ms with 1.
:class:`~rsl_rl_moe.runners.Runner` therefore runs rollouts with ``rollout_torch_threads`` threads
(default 1) and the PPO update with the threads torch had when ``learn()`` started.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(num_threads: int | None):
    """Run the block with ``num_threads`` torch intra-op threads (None: unchanged); restore the count after."""
    if num_threads is None:
        yield
        return
    if num_threads < 1:
        raise ValueError(f"torch threads must be >= 1 (or null for unchanged), got {num_threads}")
    previous = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
