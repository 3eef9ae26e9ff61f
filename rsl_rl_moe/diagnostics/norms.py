"""Norm monitoring: parameter and gradient L2 norms per module group, tensor statistics, and a
checksum guard that the frozen experts never change.

Cadence: every ``monitor_norm_freq`` training iterations and at iteration 0 (0 disables).
Call :meth:`NormMonitor.parameter_norms` anywhere in the iteration and
:meth:`NormMonitor.gradient_norms` after ``backward()`` and BEFORE gradient clipping, or on the
gradients :func:`first_gradients` captured inside a training step that clips (e.g. rsl_rl's
``PPO.update()``, which runs ``backward()`` and ``clip_grad_norm_`` back to back).

Tags (flat dict, values are Python floats; built by :mod:`~rsl_rl_moe.diagnostics.tags`):

- ``norm/<group>/<param name>`` and ``norm/<group>/_total_norm`` (L2 over the group's parameters);
- ``grad/<group>/<param name>`` and ``grad/<group>/_total_norm`` (parameters with a gradient only);
- ``<prefix>/{mean, std, min, max, abs_max}`` from :func:`tensor_stats`, e.g. ``logits/gate/abs_max``;
- ``<prefix>/{mean_mean, abs_max_mean, mean_std, min_std, max_std, count}`` from
  :func:`normalizer_stats`, e.g. ``obs_norm/policy/min_std``.

A group given as an ``nn.ModuleList`` (e.g. per-task heads) is expanded into ``<group>_<i>``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping

import torch
from torch import nn

from rsl_rl_moe.digest import state_digests

from . import tags

ParamSource = nn.Module | Iterable[torch.Tensor]


class FrozenExpertChangedError(RuntimeError):
    """A frozen expert's parameters or buffers differ from the checksum taken at start."""


def _named_tensors(source: ParamSource) -> list[tuple[str, torch.Tensor]]:
    """(name, parameter) pairs of a module (its trainable parameters, by name) or of an iterable (``p<i>``)."""
    if isinstance(source, nn.Module):
        return [(name, p) for name, p in source.named_parameters() if p.requires_grad]
    return [(f"p{i}", p) for i, p in enumerate(source)]


def _expand(groups: Mapping[str, ParamSource]) -> dict[str, list[tuple[str, torch.Tensor]]]:
    """Group name -> named parameters, with ModuleLists split into ``<name>_<i>``."""
    expanded = {}
    for name, source in groups.items():
        if isinstance(source, nn.ModuleList):
            expanded.update({f"{name}_{i}": _named_tensors(m) for i, m in enumerate(source)})
        else:
            expanded[name] = _named_tensors(source)
    return expanded


def _norm_tags(kind: str, group: str, named: list[tuple[str, torch.Tensor]]) -> dict[str, float]:
    """``<kind>/<group>/<name>`` L2 norms and ``<kind>/<group>/_total_norm``; empty if ``named`` is empty."""
    if not named:
        return {}
    norms = torch.stack([t.detach().double().norm() for _, t in named]).cpu()
    out = {tags.ParamNorm(kind, group, name).tag: float(n) for (name, _), n in zip(named, norms)}
    out[tags.ParamNorm(kind, group, tags.TOTAL_NORM).tag] = float(norms.square().sum().sqrt())
    return out


class NormMonitor:
    """Parameter / gradient norms per group and the frozen-expert guard.

    Args:
        groups: name -> module or parameters of the trained parts (gate, critic, std, heads); of a
            module only the trainable parameters count (a frozen expert inside it is left out).
        frozen: name -> module of each frozen expert; checksummed now, verified by :meth:`check_frozen`.
        monitor_norm_freq: monitor every this many iterations and at iteration 0; 0 disables.
    """

    def __init__(
        self,
        groups: Mapping[str, ParamSource],
        frozen: Mapping[str, nn.Module] | None = None,
        monitor_norm_freq: int = 5000,
    ) -> None:
        if monitor_norm_freq < 0:
            raise ValueError(f"monitor_norm_freq must be >= 0 (0 disables), got {monitor_norm_freq}")
        self.monitor_norm_freq = monitor_norm_freq
        self._groups = _expand(groups)
        self._frozen = dict(frozen or {})
        self._frozen_checksums = {name: state_digests(m) for name, m in self._frozen.items()}

    def should_monitor(self, iteration: int) -> bool:
        """True at iteration 0 and every ``monitor_norm_freq`` iterations (never when it is 0)."""
        return self.monitor_norm_freq > 0 and iteration % self.monitor_norm_freq == 0

    def parameter_norms(self) -> dict[str, float]:
        """``norm/<group>/...`` for the trained groups and the frozen experts."""
        out: dict[str, float] = {}
        for name, named in self._groups.items():
            out |= _norm_tags("norm", name, named)
        for name, module in self._frozen.items():
            out |= _norm_tags("norm", name, list(module.named_parameters()))
        return out

    @property
    def parameters(self) -> list[torch.Tensor]:
        """The monitored trainable parameters (each once), e.g. for :func:`first_gradients`."""
        return list({id(p): p for named in self._groups.values() for _, p in named}.values())

    def gradient_norms(self, grads: Mapping[int, torch.Tensor] | None = None) -> dict[str, float]:
        """``grad/<group>/...`` over parameters that have a gradient; call BEFORE clipping.

        Args:
            grads: ``id(parameter) -> gradient`` to use instead of ``parameter.grad`` (from
                :func:`first_gradients`); parameters missing from it count as without gradient.
        """
        out: dict[str, float] = {}
        for name, named in self._groups.items():
            pairs = [(n, p.grad if grads is None else grads.get(id(p))) for n, p in named]
            out |= _norm_tags("grad", name, [(n, g) for n, g in pairs if g is not None])
        return out

    def check_frozen(self) -> None:
        """Raise :class:`FrozenExpertChangedError` naming the expert and tensors if any changed."""
        for name, module in self._frozen.items():
            now = state_digests(module)
            before = self._frozen_checksums[name]
            changed = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
            if changed:
                raise FrozenExpertChangedError(
                    f"frozen expert {name!r} changed since the start of training: {changed}. Experts must "
                    f"stay frozen: set requires_grad=False on their parameters, keep them out of the "
                    f"optimizer, and keep their observation normalisers in eval mode."
                )


@contextlib.contextmanager
def first_gradients(params: Iterable[torch.Tensor]) -> Iterator[dict[int, torch.Tensor]]:
    """Capture each parameter's gradient as the first ``backward()`` inside the block leaves it.

    A post-accumulate-grad hook on every parameter copies ``p.grad`` the first time autograd
    accumulates into it, i.e. after the first backward pass and before anything the training
    step does next (gradient clipping, all-reduce, optimizer step). ``torch.autograd.grad`` does
    not accumulate and so is not seen. Hooks are removed on exit.

    Yields:
        ``{id(parameter): gradient copy}``, filled during the block (parameters that received no
        gradient are absent).
    """
    captured: dict[int, torch.Tensor] = {}

    def capture(p: torch.Tensor) -> None:
        if id(p) not in captured:
            captured[id(p)] = p.grad.detach().clone()

    handles = [p.register_post_accumulate_grad_hook(capture) for p in params if p.requires_grad]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def tensor_stats(x: torch.Tensor, prefix: str) -> dict[str, float]:
    """``<prefix>/{mean, std, min, max, abs_max}`` over all elements of ``x`` (e.g. gate logits (N, E) with
    ``prefix`` = :func:`tags.logits_source` ``("gate")`` = ``logits/gate``)."""
    x = x.detach().double()
    values = torch.stack([x.mean(), x.std(unbiased=False), x.min(), x.max(), x.abs().max()]).tolist()
    return {tags.TensorStat(prefix, k).tag: v for k, v in zip(tags.TENSOR_STATS, values)}


@torch.no_grad()
def normalizer_stats(normalizer: nn.Module, prefix: str) -> dict[str, float]:
    """Statistics of an rsl_rl ``EmpiricalNormalization`` (running ``mean``, ``std``, ``count``).

    Returns ``<prefix>/{mean_mean, abs_max_mean, mean_std, min_std, max_std, count}``; an empty
    dict for a module without running statistics (e.g. ``nn.Identity`` when normalisation is off).
    """
    if not all(hasattr(normalizer, a) for a in ("mean", "std", "count")):
        return {}
    mean, std = normalizer.mean.double(), normalizer.std.double()
    values = {
        "mean_mean": mean.mean(),
        "abs_max_mean": mean.abs().max(),
        "mean_std": std.mean(),
        "min_std": std.min(),
        "max_std": std.max(),
        "count": normalizer.count,
    }
    return {tags.TensorStat(prefix, k).tag: float(v) for k, v in values.items()}
