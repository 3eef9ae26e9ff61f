"""Gradient conflict between tasks (and between loss terms) on named parameter groups.

Per task ``k`` the gradient is that of the loss restricted to the minibatch rows of task k,
taken with ``torch.autograd.grad(..., retain_graph=True)`` over the trainable parameters of
each named group (gate, critic, action std, ...), so the training backward still works after.

Distributed: when ``torch.distributed`` is initialised each rank computes *row-sum* gradients
``n_k * grad(mean loss over its task-k rows)``; these and the row counts ``n_k`` are all-reduced
(summed) before dividing, so every rank holds the gradient of the mean loss over all ranks'
task-k rows and computes the identical matrix. A task with no rows on a rank contributes zero.

Metrics per group (T tasks, ``g_k`` the mean gradient of task k):

- ``cosine`` (T, T): ``cos(g_i, g_j)``; NaN where a gradient is zero (e.g. a task with no rows);
- ``max_negative_cosine``: ``max_{i != j} -cos(g_i, g_j)`` (not clipped: -0.3 = all pairs agree);
- ``mean_cosine``: mean off-diagonal cosine;
- ``magnitude_similarity`` (T, T): ``2 |g_i| |g_j| / (|g_i|^2 + |g_j|^2)`` in [0, 1];
- ``cosine_with_total`` (T,): cosine of each task's gradient with the all-rows gradient;
- ``noise_floor`` (T,): cosine between the gradients of two random halves of the same task's
  rows; a between-task cosine is only informative when clearly below it;
- ``conflict_frequency``: share of task pairs with cos < 0 over the last ``frequency_window`` calls.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist

from . import tags


@dataclass
class GradientStats:
    """Pairwise statistics of K gradients (tasks or loss terms), float64 on CPU."""

    labels: list[str]
    cosine: torch.Tensor  # (K, K)
    norms: torch.Tensor  # (K,) L2 norms of the gradients
    magnitude_similarity: torch.Tensor  # (K, K)
    cosine_with_total: torch.Tensor  # (K,)
    max_negative_cosine: float  # NaN with fewer than two non-zero gradients
    mean_cosine: float
    negative_pairs: int  # off-diagonal pairs i < j with cos < 0
    valid_pairs: int  # off-diagonal pairs i < j with both gradients non-zero


@dataclass
class GroupConflict(GradientStats):
    """Task-conflict statistics of one parameter group."""

    noise_floor: torch.Tensor  # (T,), NaN where a task has < 2 rows or no split was computed
    conflict_frequency: float  # over the recent window of calls


def gradient_stats(grads: torch.Tensor, labels: Sequence[str], total: torch.Tensor) -> GradientStats:
    """Pairwise cosines, magnitude similarities and cosines with ``total``.

    Args:
        grads: (K, P) one flattened gradient per row.
        labels: K names for the rows.
        total: (P,) the gradient of the combined loss.
    """
    g = grads.double()
    norms = g.norm(dim=1)
    valid = norms > 0
    unit = g / torch.where(valid, norms, 1.0)[:, None]
    both = valid[:, None] & valid[None, :]
    nan = torch.tensor(float("nan"), dtype=torch.float64, device=g.device)
    cosine = torch.where(both, (unit @ unit.T).clamp(-1.0, 1.0), nan)
    cosine.diagonal().copy_(torch.where(valid, 1.0, nan))
    squares = norms[:, None] ** 2 + norms[None, :] ** 2
    magnitude = torch.where(squares > 0, 2 * norms[:, None] * norms[None, :] / squares, nan)
    total = total.double()
    total_norm = total.norm()
    if total_norm > 0:
        with_total = torch.where(valid, unit @ (total / total_norm), nan)
    else:
        with_total = torch.full_like(norms, float("nan"))
    upper = torch.triu(torch.ones_like(both), diagonal=1) & both
    pairs = cosine[upper]
    return GradientStats(
        labels=list(labels),
        cosine=cosine.cpu(),
        norms=norms.cpu(),
        magnitude_similarity=magnitude.cpu(),
        cosine_with_total=with_total.cpu(),
        max_negative_cosine=float(-pairs.min()) if pairs.numel() else float("nan"),
        mean_cosine=float(pairs.mean()) if pairs.numel() else float("nan"),
        negative_pairs=int((pairs < 0).sum()),
        valid_pairs=int(pairs.numel()),
    )


def _all_reduce_sum(t: torch.Tensor, process_group=None) -> torch.Tensor:
    """Sum ``t`` over ranks in place when torch.distributed is initialised; identity otherwise."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM, group=process_group)
    return t


class GradientConflictMonitor:
    """Per-task and per-loss-term gradient conflict on named parameter groups.

    Args:
        task_names: stable labels of task ids 0..T-1 (the matrix order on every rank).
        param_groups: name -> parameters (e.g. ``{"gate": gate.parameters(), "critic": ...}``);
            parameters with ``requires_grad=False`` (frozen experts) are dropped, a group left
            empty is an error. A parameter may belong to several groups. An entry may also be a
            slice ``(parameter, flat_index)``: only the elements ``parameter.reshape(-1)[flat_index]``
            (long tensor) belong to the group, e.g. the last-layer rows of one action group's gate.
        frequency_window: number of recent calls over which ``conflict_frequency`` is measured.
        noise_floor: also compute the split-half noise floor (two extra backward passes per task).
        seed: seed of the random split-half permutations.
        process_group: torch.distributed group for the all-reduce; None = the default group.

    Under torch.distributed, :meth:`compute` and :meth:`term_conflicts` are collective: every rank
    calls them at the same iteration.
    """

    def __init__(
        self,
        task_names: Sequence[str],
        param_groups: Mapping[str, Sequence[torch.Tensor]],
        frequency_window: int = 100,
        noise_floor: bool = True,
        seed: int = 0,
        process_group=None,
    ) -> None:
        if not task_names:
            raise ValueError("task_names is empty: give one name per task id")
        tags.check_names(task_names, "task name", paired=True)  # tags <a>__<b> pair them
        self.task_names = list(task_names)
        self.noise_floor = noise_floor
        self.process_group = process_group
        self._generator = torch.Generator().manual_seed(seed)
        self._params: list[torch.Tensor] = []
        position = {}
        group_entries: dict[str, list[tuple[int, torch.Tensor | None]]] = {}
        for name, params in param_groups.items():
            entries = [(p, None) if isinstance(p, torch.Tensor) else p for p in params]
            trainable = [(p, index) for p, index in entries if p.requires_grad]
            if not trainable:
                raise ValueError(f"parameter group {name!r} has no trainable parameters (requires_grad=True)")
            for p, _ in trainable:
                if id(p) not in position:
                    position[id(p)] = len(self._params)
                    self._params.append(p)
            group_entries[name] = [(position[id(p)], index) for p, index in trainable]
        offsets = [0]
        for p in self._params:
            offsets.append(offsets[-1] + p.numel())
        self._group_index = {}  # name -> positions of the group's elements in the flat gradient of all params
        self._group_params = {}  # name -> (its params, positions of its elements in their flat gradient)
        for name, entries in group_entries.items():
            self._group_index[name] = self._element_index(entries, dict(enumerate(offsets)))
            used = list(dict.fromkeys(i for i, _ in entries))
            local = dict(zip(used, [0, *torch.tensor([self._params[i].numel() for i in used]).cumsum(0).tolist()]))
            self._group_params[name] = ([self._params[i] for i in used], self._element_index(entries, local))
        self._history = {name: deque(maxlen=frequency_window) for name in self._group_index}

    def _element_index(self, entries: list[tuple[int, torch.Tensor | None]], start: dict[int, int]) -> torch.Tensor:
        """Flat positions of the entries' elements, parameter ``i`` starting at ``start[i]``."""
        return torch.cat(
            [
                start[i] + (torch.arange(self._params[i].numel()) if index is None else index.reshape(-1).cpu())
                for i, index in entries
            ]
        ).to(self._params[0].device)

    @property
    def group_names(self) -> list[str]:
        return list(self._group_index)

    def state_dict(self) -> dict[str, list[list[int]]]:
        """The window of ``conflict_frequency``: ``{group: [[negative_pairs, valid_pairs], ...]}``, oldest first
        (plain lists: a checkpoint stays loadable with ``weights_only=True``)."""
        return {name: [list(entry) for entry in history] for name, history in self._history.items()}

    def load_state_dict(self, state: Mapping[str, Sequence[Sequence[int]]]) -> None:
        """Restore the window of :meth:`state_dict` (groups unknown here are ignored), so a resumed run's
        ``conflict_frequency`` continues over the same calls."""
        for name, entries in state.items():
            if name in self._history:
                self._history[name].clear()
                self._history[name].extend((int(n), int(v)) for n, v in entries)

    def _flat_grad(self, loss: torch.Tensor, params: Sequence[torch.Tensor]) -> torch.Tensor:
        """(sum of numel,) float64 gradient of ``loss`` w.r.t. ``params``; zeros where unused."""
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        return torch.cat(
            [(torch.zeros_like(p) if g is None else g).reshape(-1).double() for p, g in zip(params, grads)]
        )

    def compute(
        self, loss_fn: Callable[[torch.Tensor], torch.Tensor], task_ids: torch.Tensor
    ) -> dict[str, GroupConflict]:
        """Task conflict from a loss restricted to each task's rows.

        Cost: one backward per task (three with ``noise_floor``). A ``loss_fn`` that masks per-row
        losses of one shared forward backpropagates through the whole minibatch each time (about
        9 training backwards for 3 tasks); one that recomputes the forward on ``obs[mask]`` only
        costs about the rows it sees (about 3 training forward+backward passes).

        Args:
            loss_fn: ``mask (B,) bool -> scalar`` mean loss over the masked minibatch rows (e.g. PPO
                surrogate + value + regularisers); called only with non-empty masks.
            task_ids: (B,) long or (B, 1) float task id of each minibatch row.

        Returns:
            ``{group: GroupConflict}`` identical on every rank.
        """
        ids = task_ids.detach().reshape(-1)
        ids = (ids.round() if ids.is_floating_point() else ids).long()
        num_tasks = len(self.task_names)
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= num_tasks):
            raise ValueError(f"task ids span [{int(ids.min())}, {int(ids.max())}] for tasks {self.task_names}")
        # per task: [whole, half A, half B] row-sum gradients and row counts
        sums = torch.zeros(num_tasks, 3, self._num_elements, dtype=torch.float64, device=self._device)
        counts = torch.zeros(num_tasks, 3, dtype=torch.float64, device=self._device)
        for k in range(num_tasks):
            rows = (ids == k).nonzero().reshape(-1)
            subsets = [rows]
            if self.noise_floor:
                shuffled = rows[torch.randperm(rows.numel(), generator=self._generator).to(rows.device)]
                half = rows.numel() // 2
                subsets += [shuffled[:half], shuffled[half:]]
            for s, subset in enumerate(subsets):
                if subset.numel() == 0:
                    continue
                mask = torch.zeros_like(ids, dtype=torch.bool)
                mask[subset] = True
                sums[k, s] = subset.numel() * self._flat_grad(loss_fn(mask), self._params)
                counts[k, s] = subset.numel()
        return self._report(sums, counts)

    @property
    def _num_elements(self) -> int:
        return sum(p.numel() for p in self._params)

    @property
    def _device(self) -> torch.device:
        return self._params[0].device

    def _report(self, sums: torch.Tensor, counts: torch.Tensor) -> dict[str, GroupConflict]:
        """All-reduce (T, 3, P) row-sum gradients and (T, 3) counts, then per-group statistics."""
        num_tasks = sums.shape[0]
        packed = _all_reduce_sum(torch.cat([sums.reshape(-1), counts.reshape(-1)]), self.process_group)
        sums = packed[: sums.numel()].reshape(sums.shape)
        counts = packed[sums.numel() :].reshape(counts.shape)
        means = sums / counts.clamp(min=1)[..., None]
        total = sums[:, 0].sum(dim=0) / counts[:, 0].sum().clamp(min=1)
        report = {}
        for name, index in self._group_index.items():
            stats = gradient_stats(means[:, 0, index], self.task_names, total[index])
            floor = torch.full((num_tasks,), float("nan"), dtype=torch.float64)
            for k in range(num_tasks):
                halves = means[k, 1:, index]
                if counts[k, 1] > 0 and counts[k, 2] > 0:
                    floor[k] = float(gradient_stats(halves, ["a", "b"], halves.sum(0)).cosine[0, 1])
            history = self._history[name]
            history.append((stats.negative_pairs, stats.valid_pairs))
            valid = sum(v for _, v in history)
            frequency = sum(n for n, _ in history) / valid if valid else float("nan")
            report[name] = GroupConflict(**vars(stats), noise_floor=floor, conflict_frequency=frequency)
        return report

    def term_conflicts(self, terms: Mapping[str, torch.Tensor], group: str) -> GradientStats:
        """Conflict between loss terms (e.g. surrogate, value, each regulariser) on one group.

        Args:
            terms: name -> scalar loss term as it enters the total loss (coefficient applied).
            group: a parameter group name.

        Returns:
            Statistics over the terms' gradients; ``cosine_with_total`` is against the sum of all
            terms. Across ranks the gradients are averaged (DDP semantics) before the statistics.
        """
        if group not in self._group_index:
            raise KeyError(f"unknown parameter group {group!r}; known groups: {self.group_names}")
        tags.check_names(terms, "loss term", paired=True)
        params, index = self._group_params[group]
        grads = torch.stack([self._flat_grad(term, params)[index] for term in terms.values()])
        grads = _all_reduce_sum(grads, self.process_group)
        if dist.is_available() and dist.is_initialized():
            grads /= dist.get_world_size(self.process_group)
        return gradient_stats(grads, list(terms), grads.sum(dim=0))


def _pair_tags(prefix: str, group: str, metric: str, matrix: torch.Tensor, labels: Sequence[str]) -> dict[str, float]:
    return {
        tags.ConflictPair(group, metric, labels[i], labels[j], prefix).tag: float(matrix[i, j])
        for i in range(len(labels))
        for j in range(i + 1, len(labels))
        if not torch.isnan(matrix[i, j])
    }


def _vector_tags(prefix: str, group: str, metric: str, vector: torch.Tensor, labels: Sequence[str]) -> dict[str, float]:
    return {
        tags.ConflictLabel(group, metric, label, prefix).tag: float(v)
        for label, v in zip(labels, vector)
        if not torch.isnan(v)
    }


def gradient_stats_scalars(stats: GradientStats, group: str, prefix: str = tags.CONFLICT) -> dict[str, float]:
    """Flat TensorBoard scalars of one :class:`GradientStats` on parameter group ``group`` (NaN entries left out).

    Tags (:mod:`~rsl_rl_moe.diagnostics.tags`; ``<p>`` = ``<prefix>/<group>``): ``<p>/{max_negative_cosine,
    mean_cosine}``, ``<p>/cos/<a>__<b>``, ``<p>/magnitude_similarity/<a>__<b>``, ``<p>/cos_with_total/<label>``,
    ``<p>/grad_norm/<label>``; for a :class:`GroupConflict` also ``<p>/frequency`` and ``<p>/noise_floor/<task>``.
    """
    out = {
        tags.ConflictSummary(group, name, prefix).tag: value
        for name, value in (("max_negative_cosine", stats.max_negative_cosine), ("mean_cosine", stats.mean_cosine))
        if not math.isnan(value)
    }
    out |= _pair_tags(prefix, group, "cos", stats.cosine, stats.labels)
    out |= _pair_tags(prefix, group, "magnitude_similarity", stats.magnitude_similarity, stats.labels)
    out |= _vector_tags(prefix, group, "cos_with_total", stats.cosine_with_total, stats.labels)
    out |= _vector_tags(prefix, group, "grad_norm", stats.norms, stats.labels)
    if isinstance(stats, GroupConflict):
        if not math.isnan(stats.conflict_frequency):
            out[tags.ConflictSummary(group, "frequency", prefix).tag] = stats.conflict_frequency
        out |= _vector_tags(prefix, group, "noise_floor", stats.noise_floor, stats.labels)
    return out


def conflict_scalars(report: Mapping[str, GroupConflict], prefix: str = tags.CONFLICT) -> dict[str, float]:
    """Scalars of a :meth:`GradientConflictMonitor.compute` report under ``<prefix>/<group>/...``."""
    out: dict[str, float] = {}
    for group, stats in report.items():
        out |= gradient_stats_scalars(stats, group, prefix)
    return out


def term_conflict_scalars(stats: GradientStats, group: str, prefix: str = tags.TERM_CONFLICT) -> dict[str, float]:
    """Scalars of :meth:`GradientConflictMonitor.term_conflicts` under ``<prefix>/<group>/...``,
    plus ``<prefix>/<group>/norm_share/<term>``: each term's share ``|g_t| / sum_s |g_s|`` of the
    group's gradient norms."""
    out = gradient_stats_scalars(stats, group, prefix)
    norm_sum = float(stats.norms.sum())
    if norm_sum > 0:
        out |= _vector_tags(prefix, group, "norm_share", stats.norms / norm_sum, stats.labels)
    return out
