"""Entropy of gate weights: the one definition the gate regularisers (:mod:`rsl_rl_moe.algorithms.gate_losses`)
and the selection statistics (:class:`~rsl_rl_moe.diagnostics.ExpertSelectionTracker`) share.

Torch only, so both the algorithms and the diagnostics import it without a cycle.
"""

from __future__ import annotations

import torch


def entropy(p: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Shannon entropy ``-sum p ln p`` in nats over ``dim`` (weights on the simplex, e.g. gate weights).

    Exact: ``0 ln 0 = 0`` (exactly-zero weights, e.g. under sparsemax or a masked expert, add nothing) and every
    positive weight counts with its own ``p ln p`` (no clamping); a NaN weight gives NaN. The gradient is finite
    everywhere: ``-(ln p + 1)`` for ``p > 0`` and 0 at ``p = 0`` (where the softmax, sparsemax and entmax
    Jacobians pass no gradient anyway). A zero entropy is ``+0.0``. Computed as ``p * log(p)`` (not ``xlogy``,
    whose float32 rounding differs in the last bit: the gate regulariser's gradients, and so a seeded training
    run, stay what they were before this function replaced the regulariser's own).
    """
    safe = torch.where(p > 0, p, torch.ones_like(p))  # log(1) = 0 at zeros: no -inf, no NaN gradient
    return 0.0 - (p * torch.log(safe)).sum(dim=dim)
