"""Exact content digests of tensors and modules: the one checksum of expert and parameter contents.

Used to prove that frozen experts stay bit-identical (:meth:`rsl_rl_moe.modules.ExpertMixture.expert_checksum`,
the norm monitor's frozen-expert guard in :mod:`rsl_rl_moe.diagnostics.norms`). BLAKE2b over dtype, shape and
bytes: two tensors share a digest iff they are equal bit for bit (NaN payloads and -0.0 included).
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn

DIGEST_SIZE = 16
"""Bytes of every digest (32 hex characters)."""


def tensor_digest(tensor: torch.Tensor) -> str:
    """Hex digest of a tensor's dtype, shape and bytes."""
    t = tensor.detach().contiguous().cpu()
    h = hashlib.blake2b(f"{t.dtype}{tuple(t.shape)}".encode(), digest_size=DIGEST_SIZE)
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def state_digests(module: nn.Module) -> dict[str, str]:
    """``{name: tensor_digest}`` of every parameter and buffer in ``module.state_dict()`` (e.g. an observation
    normaliser's running mean too)."""
    return {name: tensor_digest(t) for name, t in module.state_dict(keep_vars=True).items()}


def state_digest(module: nn.Module) -> str:
    """One hex digest over the names and :func:`state_digests` of ``module``: unchanged iff every parameter and
    buffer is bit-identical under the same names."""
    h = hashlib.blake2b(digest_size=DIGEST_SIZE)
    for name, digest in state_digests(module).items():
        h.update(f"{name}\0{digest}\0".encode())
    return h.hexdigest()
