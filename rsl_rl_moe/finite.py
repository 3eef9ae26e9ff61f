"""Non-finite numbers (NaN, inf) found early, named, and never saved.

A NaN in one weight spreads to every action within a step and to every parameter within an update; rsl_rl
keeps training (the loss is NaN, the checkpoints are NaN, the exit code is 0). These checks stop at the first
one and say where it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch


class NonFiniteError(RuntimeError):
    """A loss, gradient, parameter or weight file holds NaN or inf."""


def first_nonfinite(named_tensors: Iterable[tuple[str, torch.Tensor | float | None]]) -> str | None:
    """``"<name> (<k> of <n> values non-finite, e.g. nan)"`` for the first tensor or number with a NaN or inf,
    or None if all are finite. ``None`` entries (e.g. parameters without a gradient) are skipped; non-float
    tensors (counters) are finite by construction."""
    for name, value in named_tensors:
        if value is None:
            continue
        tensor = torch.as_tensor(value).detach()
        if not tensor.is_floating_point():
            continue
        finite = torch.isfinite(tensor)
        if not bool(finite.all()):
            bad = tensor[~finite]
            return f"{name} ({bad.numel()} of {tensor.numel()} values non-finite, e.g. {bad.flatten()[0].item()})"
    return None


def state_dict_entries(state_dicts: Mapping[str, Mapping[str, torch.Tensor]]) -> list[tuple[str, torch.Tensor]]:
    """``[("<dict name>[<key>]", tensor), ...]`` over several state dicts, e.g. ``{"actor_state_dict": ...}``."""
    return [
        (f"{dict_name}[{key!r}]", value)
        for dict_name, state in state_dicts.items()
        for key, value in state.items()
        if isinstance(value, torch.Tensor)
    ]


def all_finite(tensors: list[torch.Tensor]) -> bool:
    """True if every tensor is free of NaN and inf (one fused norm over all of them: cheap enough per step)."""
    if not tensors:
        return True
    return bool(torch.stack(torch._foreach_norm(tensors)).isfinite().all())


def check_rollout(named_buffers: Mapping[str, torch.Tensor | None], iteration: int) -> None:
    """Before an update: the rollout's rewards, values, returns and advantages must be finite (rsl_rl's own
    check finds NaN in what the env returns, not inf).

    Raises:
        NonFiniteError: naming the iteration and the first non-finite buffer.
    """
    where = first_nonfinite(named_buffers.items())
    if where is not None:
        raise NonFiniteError(f"training stopped at iteration {iteration}: non-finite rollout {where}")


def check_gradients(named_parameters: list[tuple[str, torch.nn.Parameter]], iteration: int) -> None:
    """Before each optimizer step: the gradients must be finite, so a NaN never reaches the parameters.

    Raises:
        NonFiniteError: naming the iteration and the first parameter whose gradient is NaN or inf.
    """
    grads = [p.grad for _, p in named_parameters if p.grad is not None]
    if all_finite(grads):
        return
    where = first_nonfinite((name, p.grad) for name, p in named_parameters)
    raise NonFiniteError(f"training stopped at iteration {iteration}: non-finite gradient of {where}")


def check_update(
    losses: Mapping[str, float], named_parameters: list[tuple[str, torch.nn.Parameter]], iteration: int
) -> None:
    """After an update: the losses and the parameters must be finite.

    Args:
        losses: the update's loss dict (``{"surrogate": ..., ...}``, logged as ``Loss/<name>``).
        named_parameters: ``[("actor.mlp.0.weight", parameter), ...]``.
        iteration: the iteration the update belongs to, named in the error.

    Raises:
        NonFiniteError: naming the iteration and the first non-finite loss or parameter.
    """
    for what, entries in (
        ("loss", ((f"Loss/{name}", value) for name, value in losses.items())),
        ("parameter", iter(named_parameters)),
    ):
        where = first_nonfinite(entries)
        if where is not None:
            raise NonFiniteError(f"training stopped at iteration {iteration}: non-finite {what} {where}")
