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
        value = torch.as_tensor(np.asarray(value) if isinstance(value, np.ndarray) else value, device=buffer.device)
        try:
            fits = torch.broadcast_shapes(value.shape, buffer.shape) == buffer.shape
        except RuntimeError:
            fits = False
        if not fits:
            raise ValueError(
                f"{type(obj).__name__}.{self.name} = <{tuple(value.shape)}>: "
                f"the buffer has shape {tuple(buffer.shape)} "
                "and is written in place (the env keeps views of it)"
            )
        buffer.copy_(value)


class ReadOnlyView(BoundAttribute):
    """Data descriptor for a view of the simulator state (or another object whose buffers the owner keeps views
    of): bound once, never assigned again (write the state through the simulator backend, e.g. ``env.sim.reset`` /
    ``env.sim.set_base_velocity``; change such an object's buffers in place).

    Args:
        hint: what to do instead, named in the error.
    """

    def __init__(
        self,
        hint: str = "a view of the simulator state: write the state through env.sim (reset, "
        "set_base_velocity, ...), not by assigning the attribute",
    ):
        self.hint = hint

    def __set__(self, obj, value) -> None:
        if self.name in obj.__dict__:
            raise AttributeError(f"{type(obj).__name__}.{self.name} is {self.hint}")
        obj.__dict__[self.name] = value


def bind_buffer(obj, name: str, tensor: torch.Tensor) -> None:
    """Make ``tensor`` the buffer behind attribute ``name`` of ``obj``, replacing whatever was bound (the owner's
    explicit binding: a subclass that assigned the attribute before the owner's ``__init__`` must not keep its own
    tensor, which the owner's views would not see)."""
    obj.__dict__[name] = tensor


def declare_in_place_buffers(cls: type, names) -> None:
    """Declare ``names`` (attributes of ``cls`` bound to tensors at run time) as :class:`InPlaceBuffer`."""
    for name in names:
        descriptor = InPlaceBuffer()
        descriptor.__set_name__(cls, name)
        setattr(cls, name, descriptor)
