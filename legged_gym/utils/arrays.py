"""The array operations the env's per-step math is written against, once, for two array backends.

Every buffer the env keeps is a torch tensor on ``env.device``. The per-step math (deriving the state, air time,
terminations, command counters) runs on *arrays* of those tensors, through an :class:`ArrayOps` namespace:

- :data:`NUMPY_OPS`: the arrays are numpy views of CPU tensors (``tensor.numpy()``, same memory). On arrays of a
  few hundred rows the cost is per op, and numpy's is several times lower than torch's: this is the CPU default.
- :class:`TorchOps`: the arrays are the tensors themselves, on any device (a GPU with MuJoCo Warp).

Both spell their operations as numpy does (``subtract(a, b, out=c)``, ``copyto(dst, src, where=mask)``, ...),
and Python's operators (``+=``, ``|=``, ``<``, ``%``, indexing) work on both, so one function body serves both.
"""

from __future__ import annotations

import numpy as np
import torch

ARRAY_BACKENDS = ("auto", "numpy", "torch")
"""Values of ``env.array_backend``: ``auto`` is numpy on a CPU sim device, torch elsewhere."""


class ArrayOps:
    """The operations one array backend provides (numpy's names and signatures; ``out=`` writes in place).

    Elementwise: ``subtract``, ``multiply``, ``negative``, ``greater``, ``greater_equal``, ``logical_and``,
    ``arctan2``, ``cos``, ``sin``, ``matmul``; ``copyto(dst, src, where=None)``; ``flatnonzero(mask) -> ids``.
    Conversions: :meth:`of` (tensor -> array, same memory), :meth:`as_tensor` (array -> tensor, same memory),
    :meth:`asarray` (a numpy constant -> an array of this backend on its device).
    """

    name: str

    def of(self, tensor: torch.Tensor):
        """The array that shares ``tensor``'s memory."""
        raise NotImplementedError

    def as_tensor(self, array) -> torch.Tensor:
        """The tensor that shares ``array``'s memory."""
        raise NotImplementedError

    def asarray(self, constant: np.ndarray):
        """``constant`` as an array of this backend (copied to its device)."""
        raise NotImplementedError

    def uniform_source(self, seed: int):
        """A random source for :meth:`fill_uniform`, seeded."""
        raise NotImplementedError

    def fill_uniform(self, source, out) -> None:
        """Fill float32 ``out`` with uniform samples in [0, 1) from ``source``."""
        raise NotImplementedError


class NumpyOps(ArrayOps):
    """numpy on the memory of CPU tensors (the operations are numpy's own functions: no wrapper per call)."""

    name = "numpy"
    subtract = np.subtract
    multiply = np.multiply
    negative = np.negative
    greater = np.greater
    greater_equal = np.greater_equal
    logical_and = np.logical_and
    arctan2 = np.arctan2
    cos = np.cos
    sin = np.sin
    matmul = np.matmul
    copyto = staticmethod(np.copyto)  # Python-level functions (not ufuncs): unbound, or they would get ``self``
    flatnonzero = staticmethod(np.flatnonzero)

    def of(self, tensor: torch.Tensor) -> np.ndarray:
        return tensor.numpy()

    def as_tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(array)

    def asarray(self, constant: np.ndarray) -> np.ndarray:
        return np.asarray(constant)

    def uniform_source(self, seed: int) -> np.random.Generator:
        return np.random.default_rng(seed)  # draws float32 faster than torch's CPU generator

    def fill_uniform(self, source: np.random.Generator, out: np.ndarray) -> None:
        source.random(out=out, dtype=np.float32)


def _copyto(dst: torch.Tensor, src, where: torch.Tensor | None = None) -> None:
    """numpy's ``copyto`` for tensors: ``dst[...] = src``, or only where ``where`` is true."""
    if where is None:
        dst.copy_(torch.as_tensor(src, device=dst.device))
    elif isinstance(src, torch.Tensor):
        torch.where(where, src, dst, out=dst)
    else:
        dst.masked_fill_(where, src)


def _flatnonzero(mask: torch.Tensor) -> torch.Tensor:
    """Indices (K,) long of the true entries of a flattened ``mask``."""
    return torch.nonzero(mask.reshape(-1)).flatten()


class TorchOps(ArrayOps):
    """torch on ``device``: the arrays are the tensors (torch's numpy-named functions take ``out=`` as well)."""

    name = "torch"
    subtract = staticmethod(torch.subtract)
    multiply = staticmethod(torch.multiply)
    negative = staticmethod(torch.negative)
    greater = staticmethod(torch.greater)
    greater_equal = staticmethod(torch.greater_equal)
    logical_and = staticmethod(torch.logical_and)
    arctan2 = staticmethod(torch.arctan2)
    cos = staticmethod(torch.cos)
    sin = staticmethod(torch.sin)
    matmul = staticmethod(torch.matmul)
    copyto = staticmethod(_copyto)
    flatnonzero = staticmethod(_flatnonzero)

    def __init__(self, device: torch.device | str):
        self.device = torch.device(device)

    def of(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def as_tensor(self, array: torch.Tensor) -> torch.Tensor:
        return array

    def asarray(self, constant: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(constant, device=self.device)

    def uniform_source(self, seed: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(seed)

    def fill_uniform(self, source: torch.Generator, out: torch.Tensor) -> None:
        out.uniform_(generator=source)


NUMPY_OPS = NumpyOps()


def array_ops(array_backend: str, device: torch.device) -> ArrayOps:
    """The ops for ``env.array_backend`` (see :data:`ARRAY_BACKENDS`) on the sim ``device``.

    Raises:
        ValueError: an unknown backend, or numpy on a non-CPU device (numpy cannot see GPU memory).
    """
    if array_backend not in ARRAY_BACKENDS:
        raise ValueError(f"env.array_backend={array_backend!r}: must be one of {list(ARRAY_BACKENDS)}")
    if array_backend == "auto":
        array_backend = "numpy" if device.type == "cpu" else "torch"
    if array_backend == "numpy":
        if device.type != "cpu":
            raise ValueError(
                f"env.array_backend=numpy needs the state in CPU memory, but env.sim_device is on {device}: "
                "use env.array_backend=torch (or auto)"
            )
        return NUMPY_OPS
    return TorchOps(device)
