"""Expert selection and routing-entropy tracking over sliding windows of env steps.

The gate's weights are recorded at every env step of the rollouts; per task (and per action
group for per-limb gating) the tracker keeps one ring buffer of per-step sums, so ``record``
costs O(1) per step whatever the window sizes, and queries sum the last ``W`` slots.

Window semantics
    A window of ``W`` env steps for task ``k`` holds the last ``W`` *vector-env steps in which
    task k was present* (at least one of its envs recorded a row). Each slot aggregates all of
    that step's task-k rows (``N_k`` envs), so ``W = 100`` with 1,365 envs per task covers
    136,500 samples from the last 100 policy steps. Every task has its own step counter: a step
    in which a task has no env neither advances nor pushes out that task's window. A window is
    not padded: before ``W`` steps have been seen it holds what there is (``data_points < W``).

Distances between tasks
    Total variation and Jensen-Shannon distances compare the tasks' mean-weight distributions.
    The Wasserstein-1 distance needs a ground cost between experts and is only reported when
    one is supplied with :meth:`ExpertSelectionTracker.set_ground_cost`; expert *indices* carry no
    geometry, so no index-order fallback exists. The default ground cost of training runs: the mean
    L2 distance between the experts' actions on the same states (:func:`expert_action_ground_cost`;
    per action group on that group's actions, :func:`grouped_action_ground_cost`), which
    :class:`~rsl_rl_moe.runners.training_diagnostics.TrainingDiagnostics` sets after every PPO update
    from the experts' actions on the update's last minibatch (rows drawn from the whole rollout).
    Moving weight between two experts then costs how far apart their actions are, in action units;
    W is 0 when the tasks use the experts alike or the experts act alike.

Memory: ``num_tasks * (max(windows) + 1) * num_groups * (3 * num_experts + 3)`` float32 values
(3 tasks, 100,000 steps, 1 group, 2 experts: 10.8 MB).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from . import tags
from .information import entropy

DEFAULT_WINDOWS = (100, 1_000, 10_000, 100_000)
"""Window sizes in env steps per task: immediate, short, medium, long."""

STATE_VERSION = 1


def total_variation(p: torch.Tensor, q: torch.Tensor) -> float:
    """Total-variation distance ``0.5 * sum |p - q|`` between two distributions (E,), in [0, 1]."""
    return float(0.5 * (p.double() - q.double()).abs().sum())


def jensen_shannon(p: torch.Tensor, q: torch.Tensor) -> float:
    """Jensen-Shannon distance (square root of the JS divergence in bits) between distributions (E,).

    In [0, 1]: 0 for equal distributions, 1 for disjoint supports (scipy's ``jensenshannon(base=2)``).
    """
    p, q = p.double(), q.double()
    m = 0.5 * (p + q)
    divergence = 0.5 * (torch.special.xlogy(p, p / m).nansum() + torch.special.xlogy(q, q / m).nansum())
    return math.sqrt(max(float(divergence) / math.log(2.0), 0.0))


def wasserstein(p: torch.Tensor, q: torch.Tensor, cost: torch.Tensor, tol: float = 1e-12) -> float:
    """Exact Wasserstein-1 (earth mover's) distance between distributions p, q (E,) under ``cost`` (E, E).

    Solves the transportation problem by successive shortest paths (Bellman-Ford on the dense
    residual graph source -> experts of p -> experts of q -> sink); meant for a handful of
    experts, not for large E. Units: those of ``cost`` (e.g. radians if it holds action distances).
    """
    p64 = p.detach().double().cpu().numpy()
    q64 = q.detach().double().cpu().numpy()
    c64 = cost.detach().double().cpu().numpy()
    num = p64.shape[0]
    if c64.shape != (num, num):
        raise ValueError(f"ground cost has shape {tuple(c64.shape)}, expected ({num}, {num}) for {num} experts")
    if (c64 < 0).any():
        raise ValueError("ground cost must be non-negative")
    source, sink, nodes = 2 * num, 2 * num + 1, 2 * num + 2
    capacity = np.zeros((nodes, nodes))
    edge_cost = np.zeros((nodes, nodes))
    capacity[source, :num] = p64 / p64.sum()
    capacity[num : 2 * num, sink] = q64 / q64.sum()
    capacity[:num, num : 2 * num] = np.inf
    edge_cost[:num, num : 2 * num] = c64
    edge_cost[num : 2 * num, :num] = -c64.T  # residual (undo) edges
    total = 0.0
    while capacity[source].max() > tol:
        dist = np.full(nodes, np.inf)
        dist[source] = 0.0
        parent = np.full(nodes, -1)
        for _ in range(nodes - 1):
            through = np.where(capacity > tol, dist[:, None] + edge_cost, np.inf)
            best = through.argmin(axis=0)
            improved = through[best, np.arange(nodes)] < dist - tol
            if not improved.any():
                break
            dist = np.where(improved, through[best, np.arange(nodes)], dist)
            parent = np.where(improved, best, parent)
        if not np.isfinite(dist[sink]):
            break
        path, node = [], sink
        while node != source:
            path.append((parent[node], node))
            node = parent[node]
        amount = min(capacity[u, v] for u, v in path)
        for u, v in path:
            capacity[u, v] -= amount
            capacity[v, u] += amount
        total += amount * dist[sink]
    return float(total)


def expert_action_ground_cost(expert_actions: torch.Tensor) -> torch.Tensor:
    """Ground cost between experts: the mean L2 distance between their actions on the same states.

    Args:
        expert_actions: (E, N, A) action means of the E experts for the same N observations
            (for a per-limb group, only that group's A action dimensions).

    Returns:
        (E, E) symmetric cost with a zero diagonal, in the action units (e.g. rad of joint target).
    """
    if expert_actions.dim() != 3:
        raise ValueError(f"expert_actions must be (E, N, A), got shape {tuple(expert_actions.shape)}")
    a = expert_actions.detach().double()
    return (a[:, None] - a[None, :]).norm(dim=-1).mean(dim=-1)


def grouped_action_ground_cost(
    expert_actions: torch.Tensor, action_to_group: torch.Tensor | None = None, num_groups: int = 1
) -> torch.Tensor:
    """Per action group, :func:`expert_action_ground_cost` on that group's action dimensions.

    Args:
        expert_actions: (N, A, E) action means of the E experts on N states, as
            :attr:`MoEActor.last_expert_actions` keeps them after a forward.
        action_to_group: (A,) long, the action group of each action dimension (per-limb gating);
            None = one group over all A actions.
        num_groups: G, the number of action groups.

    Returns:
        (G, E, E) float64 costs on the device of ``expert_actions``, for :meth:`ExpertSelectionTracker.set_ground_cost`.
    """
    if expert_actions.dim() != 3:
        raise ValueError(f"expert_actions must be (N, A, E), got shape {tuple(expert_actions.shape)}")
    per_expert = expert_actions.detach().permute(2, 0, 1)  # (E, N, A)
    if action_to_group is None:
        if num_groups != 1:
            raise ValueError(f"{num_groups} action groups need action_to_group (the group of each action)")
        return expert_action_ground_cost(per_expert).unsqueeze(0)
    groups = action_to_group.to(per_expert.device)
    return torch.stack([expert_action_ground_cost(per_expert[..., groups == g]) for g in range(num_groups)])


SELECTION_SCALAR_FIELDS = tags.SELECTION_FIELDS
"""Per task and window scalar fields of :meth:`ExpertSelectionTracker.scalars` (``<p>/<task>/w<W>/<field>``)."""


class ExpertSelectionTracker:
    """Per-task, per-window statistics of the gate weights (see the module docstring).

    Args:
        num_experts: E, number of experts the gate weighs (>= 2).
        task_names: stable labels of the task ids 0..T-1 the env reports.
        windows: window sizes in env steps per task (ascending order not required).
        group_names: labels of the G action groups for per-limb gating; None = one gate (N, E).
        expert_names: labels of the experts for tags; default ``expert0``, ``expert1``, ...
        near_one_hot_threshold: a row counts as near one-hot when its max weight exceeds this.
        device: where the ring buffer lives; put it where the gate weights are.
    """

    def __init__(
        self,
        num_experts: int,
        task_names: Sequence[str],
        windows: Sequence[int] = DEFAULT_WINDOWS,
        group_names: Sequence[str] | None = None,
        expert_names: Sequence[str] | None = None,
        near_one_hot_threshold: float = 0.95,
        device: str | torch.device = "cpu",
    ) -> None:
        if num_experts < 2:
            raise ValueError(f"num_experts must be >= 2 for a gate, got {num_experts}")
        if not task_names:
            raise ValueError("task_names is empty: give one name per task id, e.g. ['locomotion', 'reaching']")
        if not windows or min(windows) < 1:
            raise ValueError(f"windows must be positive env-step counts, got {list(windows)}")
        self.num_experts = num_experts
        self.task_names = list(task_names)
        self.windows = sorted(set(int(w) for w in windows))
        self.group_names = list(group_names) if group_names else ["gate"]
        self.expert_names = list(expert_names) if expert_names else [f"expert{i}" for i in range(num_experts)]
        if len(self.expert_names) != num_experts:
            raise ValueError(f"{len(self.expert_names)} expert names for {num_experts} experts")
        tags.check_names(self.task_names, "task name", paired=True)  # tags <a>__<b> pair them
        tags.check_names(self.expert_names, "expert name")
        tags.check_names(self.group_names, "action group name")
        self.near_one_hot_threshold = near_one_hot_threshold
        self.capacity = self.windows[-1]
        num_tasks, num_groups = len(self.task_names), len(self.group_names)
        # slot layout along the last dim: weight sums (E) | argmax counts (E) | zero counts (E) |
        # per-row entropy sum | near-one-hot count | row count
        self._num_fields = 3 * num_experts + 3
        # ring of capacity + 1 slots: the slot at ptr is scratch, never inside a window
        self._buffer = torch.zeros(num_tasks, self.capacity + 1, num_groups, self._num_fields, device=device)
        self._ptr = torch.zeros(num_tasks, dtype=torch.long, device=device)  # next slot to write
        self._filled = torch.zeros(num_tasks, dtype=torch.long, device=device)  # slots holding data
        self._steps = torch.zeros(num_tasks, dtype=torch.long, device=device)  # lifetime env steps
        self._rows = torch.zeros(num_tasks, dtype=torch.long, device=device)  # lifetime rows
        self._task_index = torch.arange(num_tasks, device=device)
        self._ground_cost: torch.Tensor | None = None  # (G, E, E) float64, CPU

    @property
    def num_tasks(self) -> int:
        return len(self.task_names)

    @property
    def num_groups(self) -> int:
        return len(self.group_names)

    # ------------------------------------------------------------------ recording (hot path)
    @torch.no_grad()
    def record(self, weights: torch.Tensor, task_ids: torch.Tensor) -> None:
        """Record one vector-env step.

        Args:
            weights: gate weights (N, E), or (N, G, E) for per-limb gating; rows sum to 1.
            task_ids: task id per env, long (N,) or the float obs group (N, 1).
        """
        w = self._as_groups(weights).to(device=self._buffer.device, dtype=self._buffer.dtype)
        ids = self._as_task_ids(task_ids, w.shape[0])
        max_weight, argmax = w.max(dim=-1)
        per_row = torch.cat(
            (
                w,
                torch.zeros_like(w).scatter_(-1, argmax.unsqueeze(-1), 1.0),
                (w == 0).to(w.dtype),
                entropy(w).unsqueeze(-1),
                (max_weight > self.near_one_hot_threshold).to(w.dtype).unsqueeze(-1),
                torch.ones_like(max_weight).unsqueeze(-1),
            ),
            dim=-1,
        )  # (N, G, S)
        sums = torch.zeros(self.num_tasks, *per_row.shape[1:], dtype=w.dtype, device=w.device)
        sums.index_add_(0, ids, per_row)
        # every task writes its slot at ptr; only present tasks advance, so an absent task's
        # write lands in its scratch slot (the one slot outside all windows)
        self._buffer[self._task_index, self._ptr] = sums
        rows = sums[:, 0, -1]
        step = (rows > 0).long()
        # in place: state stays a normal tensor when recording under torch.inference_mode (rsl_rl rollouts)
        self._ptr.add_(step).remainder_(self.capacity + 1)
        self._filled.add_(step).clamp_(max=self.capacity)
        self._steps += step
        self._rows += rows.long()

    def _as_groups(self, weights: torch.Tensor) -> torch.Tensor:
        """(N, E) or (N, G, E) -> (N, G, E), checking E and G."""
        w = weights.detach()
        if w.dim() == 2 and self.num_groups == 1:
            w = w.unsqueeze(1)
        if w.dim() != 3 or w.shape[1:] != (self.num_groups, self.num_experts):
            expected = (
                f"(N, {self.num_experts})" if self.num_groups == 1 else f"(N, {self.num_groups}, {self.num_experts})"
            )
            raise ValueError(f"gate weights have shape {tuple(weights.shape)}, expected {expected}")
        return w

    def _as_task_ids(self, task_ids: torch.Tensor, num_rows: int) -> torch.Tensor:
        """long (N,) or float (N, 1) task ids -> long (N,) on the buffer's device, range-checked."""
        ids = task_ids.detach().reshape(-1)
        if ids.shape[0] != num_rows:
            raise ValueError(f"{ids.shape[0]} task ids for {num_rows} rows of gate weights")
        if ids.is_floating_point():
            ids = ids.round()
        ids = ids.to(device=self._buffer.device, dtype=torch.long)
        if num_rows:
            low, high = (int(v) for v in ids.aminmax())
            if low < 0 or high >= self.num_tasks:
                raise ValueError(
                    f"task ids span [{low}, {high}] but only {self.num_tasks} task names are known: {self.task_names}"
                )
        return ids

    # ------------------------------------------------------------------ queries
    @torch.no_grad()
    def _window_sums(self) -> dict[int, torch.Tensor]:
        """Per window: (T, G, S) float64 sums over each task's last ``min(W, filled)`` steps (CPU)."""
        newest_first = torch.arange(self.capacity, device=self._buffer.device)
        slots = (self._ptr[:, None] - 1 - newest_first) % (self.capacity + 1)  # (T, C)
        history = self._buffer[self._task_index[:, None], slots].double()  # (T, C, G, S)
        history *= (newest_first[None, :] < self._filled[:, None])[..., None, None]
        cumulative = history.cumsum(dim=1)
        return {w: cumulative[:, w - 1].cpu() for w in self.windows}

    def _fields(self, sums: torch.Tensor, data_points: int) -> dict:
        """Statistics of one task, window and group from its (S,) float64 sums."""
        num_experts, log_e = self.num_experts, math.log(self.num_experts)
        weight_sum = sums[:num_experts]
        counts = sums[num_experts : 2 * num_experts]
        zeros = sums[2 * num_experts : 3 * num_experts]
        entropy_sum, one_hot, rows = (float(v) for v in sums[3 * num_experts :])
        nan = float("nan")
        if rows == 0:
            mean_weights = torch.full((num_experts,), nan, dtype=torch.float64)
        else:
            mean_weights = weight_sum / rows
        entropy_of_mean = float(entropy(mean_weights))
        sample_entropy = entropy_sum / rows if rows else nan
        return {
            "frequencies": (counts / rows if rows else counts * nan).tolist(),
            "total_counts": [int(round(float(c))) for c in counts],
            "total_selections": int(round(rows)),
            "data_points": data_points,
            "mean_weights": mean_weights.tolist(),
            "entropy_of_mean": entropy_of_mean,
            "entropy_of_mean_normalized": entropy_of_mean / log_e,
            "mean_sample_entropy": sample_entropy,
            "mean_sample_entropy_normalized": sample_entropy / log_e,
            "near_one_hot_share": one_hot / rows if rows else nan,
            "zero_share": float(zeros.sum()) / (rows * num_experts) if rows else nan,
            "zero_share_per_expert": (zeros / rows if rows else zeros * nan).tolist(),
        }

    def _task_index_of(self, task: int | str) -> int:
        if isinstance(task, str):
            if task not in self.task_names:
                raise KeyError(f"unknown task {task!r}; known tasks: {self.task_names}")
            return self.task_names.index(task)
        if not 0 <= task < self.num_tasks:
            raise KeyError(f"task id {task} out of range for tasks {self.task_names}")
        return task

    def _group_index_of(self, group: int | str) -> int:
        if isinstance(group, str):
            if group not in self.group_names:
                raise KeyError(f"unknown group {group!r}; known groups: {self.group_names}")
            return self.group_names.index(group)
        if not 0 <= group < self.num_groups:
            raise KeyError(f"group {group} out of range for groups {self.group_names}")
        return group

    def get_expert_selection_stats(self, task_id: int | str | None = None, group: int | str = 0) -> dict:
        """Statistics per task and window, in the shape of the reference implementation plus our fields.

        Args:
            task_id: a task id or name; None = all tasks.
            group: action group (index or name) for per-limb gating; 0 = the only group otherwise.

        Returns:
            ``{task_name: {window: fields}}`` (or ``{window: fields}`` for one ``task_id``) where
            ``fields`` holds, over the task's last ``window`` env steps:

            - ``frequencies`` (E,): share of rows whose argmax is each expert (ties -> lowest index);
            - ``total_counts`` (E,): those argmax counts; ``total_selections``: rows in the window;
            - ``data_points``: env steps in the window (``<= window``);
            - ``mean_weights`` (E,): mean gate weight per expert;
            - ``entropy_of_mean`` (nats) of ``mean_weights`` and ``mean_sample_entropy`` (nats, mean
              of each row's entropy), each also ``*_normalized`` by ln(E) into [0, 1];
            - ``near_one_hot_share``: share of rows with max weight > ``near_one_hot_threshold``;
            - ``zero_share``: share of exactly-zero weights (sparsemax), ``zero_share_per_expert`` (E,).

            Floats are NaN for a window with no rows.
        """
        return self._stats(self._window_sums(), task_id, group)

    def _stats(self, sums: dict[int, torch.Tensor], task_id: int | str | None, group: int | str) -> dict:
        """:meth:`get_expert_selection_stats` from precomputed :meth:`_window_sums`."""
        g = self._group_index_of(group)
        filled = self._filled.tolist()
        tasks = range(self.num_tasks) if task_id is None else [self._task_index_of(task_id)]
        stats = {
            self.task_names[t]: {w: self._fields(sums[w][t, g], min(w, filled[t])) for w in self.windows} for t in tasks
        }
        return stats if task_id is None else stats[self.task_names[tasks[0]]]

    def _check_window(self, window: int) -> None:
        if window not in self.windows:
            raise KeyError(f"window {window} not tracked; tracked windows: {self.windows}")

    def lifetime_counts(self) -> dict[str, dict[str, int]]:
        """Per task: ``{"env_steps": steps with that task present, "rows": rows recorded}`` since creation."""
        steps, rows = self._steps.tolist(), self._rows.tolist()
        return {name: {"env_steps": steps[t], "rows": rows[t]} for t, name in enumerate(self.task_names)}

    def selection_matrix(self, window: int, field: str = "mean_weights", group: int | str = 0) -> torch.Tensor:
        """(T, E) float64 task x expert matrix of ``field`` ("mean_weights", "frequencies" or
        "zero_share_per_expert") over ``window``, for heatmaps."""
        self._check_window(window)
        stats = self.get_expert_selection_stats(group=group)
        return torch.tensor([stats[name][window][field] for name in self.task_names], dtype=torch.float64)

    # ------------------------------------------------------------------ between tasks
    def set_ground_cost(self, cost: torch.Tensor | None) -> None:
        """Set (or clear with None) the ground cost between experts that enables Wasserstein distances.

        Args:
            cost: (E, E) for all groups or (G, E, E) per group, non-negative, e.g. the mean distance
                between expert actions from :func:`expert_action_ground_cost` (for per-limb groups,
                computed on that group's action dimensions).
        """
        if cost is None:
            self._ground_cost = None
            return
        c = cost.detach().double().cpu()
        e, g = self.num_experts, self.num_groups
        if c.shape == (e, e):
            c = c.expand(g, e, e).clone()
        if c.shape != (g, e, e):
            raise ValueError(f"ground cost has shape {tuple(cost.shape)}, expected ({e}, {e}) or ({g}, {e}, {e})")
        if (c < 0).any():
            raise ValueError("ground cost must be non-negative")
        self._ground_cost = c

    def task_distances(self, window: int, group: int | str = 0) -> dict[tuple[str, str], dict[str, float]]:
        """Distances between every pair of tasks' mean-weight distributions over ``window``.

        Returns:
            ``{(task_a, task_b): {"tv": ..., "js": ..., ["wasserstein": ...]}}`` for pairs where both
            tasks have rows in the window; "wasserstein" only when a ground cost is set.
        """
        self._check_window(window)
        return self._distances(self._window_sums()[window], group)

    def _distances(self, window_sums: torch.Tensor, group: int | str) -> dict[tuple[str, str], dict[str, float]]:
        """:meth:`task_distances` from one window's (T, G, S) sums."""
        g = self._group_index_of(group)
        sums = window_sums[:, g]
        e = self.num_experts
        rows = sums[:, -1]
        means = sums[:, :e] / rows.clamp(min=1)[:, None]
        means = means / means.sum(dim=-1, keepdim=True).clamp(min=1e-300)
        result = {}
        for a in range(self.num_tasks):
            for b in range(a + 1, self.num_tasks):
                if rows[a] == 0 or rows[b] == 0:
                    continue
                pair = {"tv": total_variation(means[a], means[b]), "js": jensen_shannon(means[a], means[b])}
                if self._ground_cost is not None:
                    pair["wasserstein"] = wasserstein(means[a], means[b], self._ground_cost[g])
                result[(self.task_names[a], self.task_names[b])] = pair
        return result

    # ------------------------------------------------------------------ logging
    def scalars(self, prefix: str = tags.SELECTION) -> dict[str, float]:
        """Flat TensorBoard scalars; windows without rows are left out.

        Tags (:mod:`~rsl_rl_moe.diagnostics.tags`; ``<p>`` = ``prefix``, or ``prefix/<group>`` with several
        groups; ``w<W>`` = window; ``prefix`` is ``selection`` or ends in ``/selection``):
        ``<p>/<task>/w<W>/{entropy_of_mean, entropy_of_mean_normalized, mean_sample_entropy,
        mean_sample_entropy_normalized, near_one_hot_share, zero_share}``,
        ``<p>/<task>/w<W>/{mean_weight, frequency}/<expert>``,
        ``<p>/w<W>/{tv, js, wasserstein}/<task_a>__<task_b>``, and
        ``<prefix>/<task>/lifetime_{env_steps, rows}``.
        """
        out: dict[str, float] = {}
        for task, counts in self.lifetime_counts().items():
            for count in tags.LIFETIME_COUNTS:
                out[tags.Lifetime(task, count, prefix).tag] = float(counts[count])
        sums = self._window_sums()
        for group in self.group_names:
            tag_group = None if self.num_groups == 1 else group
            for task, per_window in self._stats(sums, None, group).items():
                for window, fields in per_window.items():
                    if fields["total_selections"] == 0:
                        continue
                    for name in tags.SELECTION_FIELDS:
                        out[tags.SelectionStat(task, window, name, tag_group, prefix).tag] = fields[name]
                    for expert, mean_w, freq in zip(self.expert_names, fields["mean_weights"], fields["frequencies"]):
                        for stat, value in (("mean_weight", mean_w), ("frequency", freq)):
                            out[tags.SelectionExpertStat(task, window, stat, expert, tag_group, prefix).tag] = value
            for window in self.windows:
                for (a, b), distances in self._distances(sums[window], group).items():
                    for name, value in distances.items():
                        out[tags.TaskDistance(window, name, a, b, tag_group, prefix).tag] = value
        return out

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """Plain tensors, numbers, strings and lists (loads with ``torch.load(weights_only=True)``).

        ``history`` holds, per task, its filled slots oldest first: (n_t, G, S) float32.
        """
        oldest_first = []
        for t in range(self.num_tasks):
            n = int(self._filled[t])
            slots = (int(self._ptr[t]) - n + torch.arange(n)) % (self.capacity + 1)
            oldest_first.append(self._buffer[t, slots.to(self._buffer.device)].cpu().clone())
        return {
            "version": STATE_VERSION,
            "num_experts": self.num_experts,
            "task_names": list(self.task_names),
            "group_names": list(self.group_names),
            "windows": list(self.windows),
            "history": oldest_first,
            "lifetime_env_steps": self._steps.cpu().clone(),
            "lifetime_rows": self._rows.cpu().clone(),
            "ground_cost": None if self._ground_cost is None else self._ground_cost.clone(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict`; windows may differ (the newest steps that fit are kept)."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"tracker state version {state.get('version')!r}, expected {STATE_VERSION}")
        for key, mine in (("num_experts", self.num_experts), ("task_names", self.task_names),
                          ("group_names", self.group_names)):  # fmt: skip
            if state[key] != mine:
                raise ValueError(f"tracker state has {key}={state[key]!r} but this tracker has {mine!r}")
        device = self._buffer.device
        self._buffer.zero_()
        for t, history in enumerate(state["history"]):
            kept = history[-self.capacity :].to(device=device, dtype=self._buffer.dtype)
            n = kept.shape[0]
            self._buffer[t, :n] = kept
            self._filled[t] = n
            self._ptr[t] = n
        self._steps.copy_(state["lifetime_env_steps"])
        self._rows.copy_(state["lifetime_rows"])
        self.set_ground_cost(state["ground_cost"])
