"""Attributes bound to fixed buffers, so that the views the env keeps of them never go stale.

The env reads its step state through numpy views of torch buffers (cheaper per op than torch on arrays
this small). Code outside the env assigns some of those attributes: rsl_rl's ``learn(init_at_random_ep_len=True)``
does ``env.episode_length_buf = torch.randint_like(...)``; legged_gym-style subclasses write
``self.reset_buf = ...``. A plain attribute would then point at a new tensor while the env kept counting on
the old one. With :class:`InPlaceBuffer`, assignment copies into the bound buffer instead, so every view of
it sees the new values. :class:`ReadOnlyView` is for views of the simulator state, which must be written
through the simulator backend.
"""

from __future__ import annotations

import numpy as np
import torch


class BoundAttribute:
    """Base of the descriptors below: the value lives in the instance dict under the attribute's own name
    (a data descriptor takes precedence over it), and the first assignment binds it."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj, owner: type | None = None):
        if obj is None:
            return self
        try:
            return obj.__dict__[self.name]
        except KeyError:
            raise AttributeError(f"{type(obj).__name__}.{self.name} is not bound yet") from None


class InPlaceBuffer(BoundAttribute):
    """Data descriptor: the first assignment binds a tensor, later assignments copy into it.

    ``obj.name = value`` with ``value`` a tensor, numpy array or scalar broadcastable to the buffer's shape
    writes ``buffer[...] = value`` (dtype converted as torch's ``copy_`` does); the buffer object, and every
    view taken of it, stays the same. A value of another shape raises ``ValueError`` naming the attribute.
    """

    def __set__(self, obj, value) -> None:
        buffer = obj.__dict__.get(self.name)
        if buffer is None:
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"{type(obj).__name__}.{self.name} must first be bound to a tensor, got {type(value)}")
            obj.__dict__[self.name] = value
            return
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(value)
        try:
            buffer.copy_(torch.as_tensor(value, device=buffer.device))
        except RuntimeError as exc:
            shape = tuple(getattr(value, "shape", ()))
            raise ValueError(
                f"{type(obj).__name__}.{self.name} = <{shape}>: the buffer has shape {tuple(buffer.shape)} "
                "and is written in place (the env keeps views of it)"
            ) from exc


class ReadOnlyView(BoundAttribute):
    """Data descriptor for a view of the simulator state: bound once, never assigned again (write the state
    through the simulator backend, e.g. ``env.sim.reset`` / ``env.sim.set_base_velocity``)."""

    def __set__(self, obj, value) -> None:
        if self.name in obj.__dict__:
            raise AttributeError(
                f"{type(obj).__name__}.{self.name} is a view of the simulator state: write the state through "
                "env.sim (reset, set_base_velocity, ...), not by assigning the attribute"
            )
        obj.__dict__[self.name] = value


def declare_in_place_buffers(cls: type, names) -> None:
    """Declare ``names`` (attributes of ``cls`` bound to tensors at run time) as :class:`InPlaceBuffer`."""
    for name in names:
        descriptor = InPlaceBuffer()
        descriptor.__set_name__(cls, name)
        setattr(cls, name, descriptor)
