"""Offline analysis of a training run's TensorBoard logs: gate entropy, expert use, gradient conflict.

:func:`analyze_run` reads the event files of one run folder and writes figures and ``summary.md``.
The library stays env-agnostic: it only knows the tags the diagnostics write.

Tags are parsed by :func:`rsl_rl_moe.diagnostics.tags.parse`, the schema the writers build them with.
Tag families read (``<W>`` = window in env steps; any namespace before the family prefix is
accepted, e.g. ``moe/selection/...`` as MoERunner writes them):

- expert selection, from :meth:`ExpertSelectionTracker.scalars`:
  ``selection[/<group>]/<task>/w<W>/{entropy_of_mean, entropy_of_mean_normalized,
  mean_sample_entropy, mean_sample_entropy_normalized, near_one_hot_share, zero_share}`` and
  ``selection[/<group>]/<task>/w<W>/{mean_weight, frequency}/<expert>`` (``<group>`` only with
  per-limb gates; a single gate is reported as group ``gate``);
- task conflict, from :func:`conflict_scalars`: ``conflict/<group>/{max_negative_cosine,
  mean_cosine, frequency}``, ``conflict/<group>/{cos, magnitude_similarity}/<a>__<b>`` and
  ``conflict/<group>/{cos_with_total, grad_norm, noise_floor}/<task>``;
- rsl_rl's ``Train/mean_reward`` for the final reward.

The x axis of every curve is the TensorBoard step, i.e. the training iteration. Names (tasks,
experts, groups) keep the order in which their tags first appear in the log, which is the
order of the diagnostics' lists. Task names must not contain ``__`` (the pair separator) nor begin or
end with ``_`` (the writers refuse such names).
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tensorboard.backend.event_processing import event_accumulator

from . import tags
from .heatmaps import cosine_heatmap, save_png, selection_heatmap

SINGLE_GATE = "gate"
"""Group name reported for a single gate, whose tags carry no group."""

REWARD_TAG = "Train/mean_reward"


class NoEventFileError(FileNotFoundError):
    """The run folder holds no TensorBoard event file."""


class Series(NamedTuple):
    """One scalar tag over training."""

    steps: np.ndarray  # (N,) int64 iterations (TensorBoard steps), ascending, unique
    values: np.ndarray  # (N,) float64

    def last(self) -> float:
        """Value at the last logged step."""
        return float(self.values[-1])

    def at(self, step: int) -> float:
        """Value logged at ``step``; NaN if the tag was not logged there."""
        i = np.searchsorted(self.steps, step)
        return float(self.values[i]) if i < len(self.steps) and self.steps[i] == step else math.nan


@dataclass
class RunLogs:
    """Scalars and image tags of one run folder."""

    run_dir: str
    scalars: dict[str, Series]  # tag -> series, in the order the tags first appear
    images: dict[str, int]  # image tag -> number of images logged

    @property
    def steps(self) -> np.ndarray:
        """(S,) int64 sorted union of the iterations of all scalars (rsl_rl's ``*/time`` tags, whose step
        is seconds of training, are left out)."""
        iteration_tags = [s.steps for tag, s in self.scalars.items() if not tag.endswith("/time")]
        if not iteration_tags:
            return np.zeros(0, dtype=np.int64)
        return np.unique(np.concatenate(iteration_tags))


def load_run(run_dir: str | os.PathLike) -> RunLogs:
    """Read every event file directly inside ``run_dir`` (all scalars and images kept).

    A step logged twice (a run resumed into the same folder) keeps the value read last.

    Raises:
        NoEventFileError: ``run_dir`` is not a folder or holds no ``events.out.tfevents.*`` file
            (the message names subfolders that hold some, e.g. when given the experiment folder).
    """
    run_dir = os.fspath(run_dir)
    if not os.path.isdir(run_dir):
        raise NoEventFileError(f"run folder {run_dir} does not exist")
    if not any("tfevents" in name for name in os.listdir(run_dir)):
        nested = sorted(
            os.path.relpath(root, run_dir)
            for root, _, files in os.walk(run_dir)
            if root != run_dir and any("tfevents" in name for name in files)
        )
        hint = f"; subfolders with event files: {', '.join(nested[:5])} (pass one of them)" if nested else ""
        raise NoEventFileError(f"no TensorBoard event file (events.out.tfevents.*) in {run_dir}{hint}")
    events = event_accumulator.EventAccumulator(
        run_dir, size_guidance={event_accumulator.SCALARS: 0, event_accumulator.IMAGES: 0}
    )
    events.Reload()
    tags = events.Tags()
    scalars = {}
    for tag in tags[event_accumulator.SCALARS]:
        by_step = {e.step: e.value for e in events.Scalars(tag)}
        steps = np.array(sorted(by_step), dtype=np.int64)
        scalars[tag] = Series(steps, np.array([by_step[s] for s in steps], dtype=np.float64))
    images = {tag: len(events.Images(tag)) for tag in tags[event_accumulator.IMAGES]}
    return RunLogs(run_dir=run_dir, scalars=scalars, images=images)


def _in_family(record_prefix: str, prefix: str) -> bool:
    """True when a record's prefix is ``prefix`` or ``<namespace>/<prefix>``."""
    return record_prefix == prefix or record_prefix.endswith(f"/{prefix}")


def _first_seen(names) -> list:
    """Unique names in order of first appearance."""
    return list(dict.fromkeys(names))


# --------------------------------------------------------------------------- expert selection
@dataclass
class SelectionLogs:
    """Expert-selection scalars of one run.

    ``series[(group, task, window, field, expert)]``: ``field`` one of ``tags.SELECTION_FIELDS`` with ``expert``
    None (:class:`tags.SelectionStat`), or ``mean_weight`` / ``frequency`` with the expert's name
    (:class:`tags.SelectionExpertStat`).
    """

    groups: list[str]
    tasks: list[str]
    windows: list[int]  # ascending, env steps per task
    experts: list[str]
    series: dict[tuple[str, str, int, str, str | None], Series]

    def get(self, group: str, task: str, window: int, field: str, expert: str | None = None) -> Series | None:
        return self.series.get((group, task, window, field, expert))

    def last_step(self, group: str, window: int) -> int | None:
        """Last iteration at which any task logged ``window`` of ``group``; None if never."""
        steps = [s.steps[-1] for (g, _, w, _, _), s in self.series.items() if g == group and w == window]
        return int(max(steps)) if steps else None

    def matrix_at(self, group: str, window: int, kind: str, step: int) -> np.ndarray:
        """(T, E) task x expert ``kind`` ("frequency" or "mean_weight") at ``step``; NaN where not logged."""
        matrix = np.full((len(self.tasks), len(self.experts)), math.nan)
        for i, task in enumerate(self.tasks):
            for j, expert in enumerate(self.experts):
                series = self.get(group, task, window, kind, expert)
                if series is not None:
                    matrix[i, j] = series.at(step)
        return matrix


def parse_selection(scalars: dict[str, Series], prefix: str = tags.SELECTION) -> SelectionLogs | None:
    """:class:`SelectionLogs` from the ``[<namespace>/]<prefix>/...`` selection tags (:class:`tags.SelectionStat`,
    :class:`tags.SelectionExpertStat`); None when the run has none."""
    series, experts = {}, []
    for tag, values in scalars.items():
        record = tags.parse(tag)
        kinds = tags.SelectionStat | tags.SelectionExpertStat
        if not isinstance(record, kinds) or not _in_family(record.prefix, prefix):
            continue
        group = record.group or SINGLE_GATE
        if isinstance(record, tags.SelectionStat):
            series[(group, record.task, record.window, record.field, None)] = values
        else:
            series[(group, record.task, record.window, record.stat, record.expert)] = values
            experts.append(record.expert)
    if not series:
        return None
    return SelectionLogs(
        groups=_first_seen(key[0] for key in series),
        tasks=_first_seen(key[1] for key in series),
        windows=sorted({key[2] for key in series}),
        experts=_first_seen(experts),
        series=series,
    )


# --------------------------------------------------------------------------- gradient conflict
@dataclass
class ConflictLogs:
    """Task-conflict scalars of one run: ``series[(group, metric, labels)]`` where ``metric`` is
    ``max_negative_cosine``, ``mean_cosine`` or ``frequency`` with ``labels = ()`` (:class:`tags.ConflictSummary`),
    ``cos`` or ``magnitude_similarity`` with ``labels = (a, b)`` (:class:`tags.ConflictPair`), or
    ``cos_with_total``, ``grad_norm`` or ``noise_floor`` with ``labels = (task,)`` (:class:`tags.ConflictLabel`)."""

    groups: list[str]
    tasks: list[str]
    series: dict[tuple[str, str, tuple[str, ...]], Series]

    def get(self, group: str, metric: str, *labels: str) -> Series | None:
        return self.series.get((group, metric, labels))

    def matrix_steps(self, group: str) -> np.ndarray:
        """(K,) int64 iterations at which ``group`` logged at least one task-pair cosine."""
        steps = [s.steps for (g, m, _), s in self.series.items() if g == group and m == "cos"]
        return np.unique(np.concatenate(steps)) if steps else np.zeros(0, dtype=np.int64)

    def cosine_matrix(self, group: str, step: int) -> np.ndarray:
        """(T, T) task x task cosine at ``step``; NaN for pairs not logged (a task without gradient),
        1 on the diagonal of tasks with at least one logged pair."""
        num = len(self.tasks)
        matrix = np.full((num, num), math.nan)
        for i in range(num):
            for j in range(num):
                series = self.get(group, "cos", self.tasks[i], self.tasks[j])
                if series is not None:
                    matrix[i, j] = matrix[j, i] = series.at(step)
        has_pair = ~np.isnan(matrix).all(axis=1)
        matrix[np.diag_indices(num)] = np.where(has_pair, 1.0, math.nan)
        return matrix


def parse_conflict(scalars: dict[str, Series], prefix: str = tags.CONFLICT) -> ConflictLogs | None:
    """:class:`ConflictLogs` from the ``[<namespace>/]<prefix>/<group>/...`` tags; None when the run has none.

    Task order: a task that comes first in more logged pairs ``<a>__<b>`` comes earlier (the
    monitor writes pairs i < j), ties in order of first appearance.
    """
    kinds = tags.ConflictSummary | tags.ConflictPair | tags.ConflictLabel
    series, seen, pairs = {}, [], set()
    for tag, values in scalars.items():
        record = tags.parse(tag)
        if not isinstance(record, kinds) or not _in_family(record.prefix, prefix):
            continue
        if isinstance(record, tags.ConflictPair):
            labels = (record.label_a, record.label_b)
            pairs.add(labels)
        elif isinstance(record, tags.ConflictLabel):
            labels = (record.label,)
        else:
            labels = ()
        series[(record.group, record.metric, labels)] = values
        seen += labels
    if not series:
        return None
    seen = _first_seen(seen)
    leads = Counter(a for a, _ in pairs)
    return ConflictLogs(
        groups=_first_seen(g for g, _, _ in series),
        tasks=sorted(seen, key=lambda t: (-leads[t], seen.index(t))),
        series=series,
    )


# --------------------------------------------------------------------------- figures
def _figure(rows: int, cols: int, panel_size: tuple[float, float] = (4.2, 3.0)) -> tuple[Figure, np.ndarray]:
    """Agg figure with a (rows, cols) grid of axes sharing the x axis."""
    fig = Figure(figsize=(panel_size[0] * cols, panel_size[1] * rows), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True)
    return fig, axes


def _colors(count: int, start: int = 0) -> list[str]:
    """``count`` line colours of matplotlib's default cycle from entry ``start`` on (repeating after 10)."""
    return [f"C{(start + i) % 10}" for i in range(count)]


def _plot(ax, series: Series | None, **style) -> None:
    if series is not None:
        ax.plot(series.steps, series.values, **style)


def entropy_figure(sel: SelectionLogs, group: str) -> Figure:
    """Normalised gate entropy (in [0, 1], nats / ln E) over iterations: one panel per window,
    one colour per task; solid = mean per-sample entropy, dashed = entropy of the mean weights."""
    fig, axes = _figure(1, len(sel.windows))
    for ax, window in zip(axes[0], sel.windows):
        for task, color in zip(sel.tasks, _colors(len(sel.tasks))):
            _plot(ax, sel.get(group, task, window, "mean_sample_entropy_normalized"), color=color, label=task)
            _plot(ax, sel.get(group, task, window, "entropy_of_mean_normalized"), color=color, linestyle="--")
        ax.set(title=f"{group}: window {window} env steps", xlabel="iteration", ylim=(-0.02, 1.02))
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("entropy / ln E")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("normalised gate entropy: solid = mean per-sample entropy, dashed = entropy of the mean weights",
                 fontsize=9)  # fmt: skip
    return fig


def mean_weight_figure(sel: SelectionLogs, group: str) -> Figure:
    """Mean gate weight per expert over iterations: rows = tasks, columns = windows, one line per expert."""
    fig, axes = _figure(len(sel.tasks), len(sel.windows), panel_size=(3.6, 2.4))
    for row, task in zip(axes, sel.tasks):
        for ax, window in zip(row, sel.windows):
            for expert, color in zip(sel.experts, _colors(len(sel.experts))):
                _plot(ax, sel.get(group, task, window, "mean_weight", expert), color=color, label=expert)
            ax.set(title=f"{task}, w{window}", ylim=(-0.02, 1.02))
            ax.grid(alpha=0.3)
        row[0].set_ylabel("mean gate weight")
    for ax in axes[-1]:
        ax.set_xlabel("iteration")
    axes[0, 0].legend(fontsize=8)
    return fig


def frequency_heatmap(sel: SelectionLogs, group: str, window: int) -> tuple[int, Figure] | None:
    """(iteration, task x expert argmax-frequency heatmap) at the last iteration ``window`` was logged."""
    step = sel.last_step(group, window)
    if step is None:
        return None
    matrix = sel.matrix_at(group, window, "frequency", step)
    title = f"{group}: argmax frequency\nw{window}, it {step}"
    return step, selection_heatmap(matrix, sel.tasks, sel.experts, title=title)


def spread_steps(steps: np.ndarray, count: int) -> list[int]:
    """Up to ``count`` of ``steps`` evenly spread from the first to the last (both included)."""
    if len(steps) == 0:
        return []
    index = np.unique(np.linspace(0, len(steps) - 1, min(count, len(steps))).round().astype(int))
    return [int(steps[i]) for i in index]


def conflict_heatmaps(conf: ConflictLogs, group: str, count: int = 4) -> list[tuple[int, Figure]]:
    """(iteration, task x task cosine heatmap on [-1, 1]) at up to ``count`` iterations spread over the run."""
    return [
        (step, cosine_heatmap(conf.cosine_matrix(group, step), conf.tasks, title=f"{group} cosine, it {step}"))
        for step in spread_steps(conf.matrix_steps(group), count)
    ]


def conflict_curves_figure(conf: ConflictLogs) -> Figure:
    """Per group over iterations: max negative cosine, mean cosine, and each task's split-half
    noise floor (dotted); all cosines, on [-1, 1]."""
    fig, axes = _figure(1, len(conf.groups))
    for ax, group in zip(axes[0], conf.groups):
        _plot(ax, conf.get(group, "max_negative_cosine"), color="C3", label="max negative cosine")
        _plot(ax, conf.get(group, "mean_cosine"), color="C0", label="mean cosine")
        for task, color in zip(conf.tasks, _colors(len(conf.tasks), start=4)):
            _plot(ax, conf.get(group, "noise_floor", task), color=color, linestyle=":", label=f"noise floor {task}")
        ax.axhline(0.0, color="0.5", linewidth=0.8)
        ax.set(title=f"{group}: gradient conflict between tasks", xlabel="iteration", ylim=(-1.05, 1.05))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("cosine")
    return fig


# --------------------------------------------------------------------------- summary
def _fmt(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def _last(series: Series | None) -> float:
    """Last logged value, NaN for a tag that was not logged."""
    return math.nan if series is None else series.last()


def _safe(name: str) -> str:
    """A group or tag name made safe for a file name."""
    return re.sub(r"[^\w.-]", "_", name)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def _links(figures: list[tuple[str, str]]) -> str:
    """Markdown links ``[label](file)`` joined by commas."""
    return ", ".join(f"[{label}]({name})" for label, name in figures)


def _save(fig: Figure, out_dir: str, name: str, label: str) -> tuple[str, str]:
    """Write ``fig`` to ``out_dir/name``; returns the (label, name) link."""
    save_png(fig, os.path.join(out_dir, name))
    return label, name


def _selection_figures(sel: SelectionLogs, group: str, out_dir: str) -> list[tuple[str, str]]:
    """Figures (a) entropy, (d) mean weights and (c) frequency heatmaps of one gate group."""
    suffix = "" if sel.groups == [SINGLE_GATE] else f"_{_safe(group)}"
    figures = [
        _save(entropy_figure(sel, group), out_dir, f"gate_entropy{suffix}.png", "gate entropy"),
        _save(mean_weight_figure(sel, group), out_dir, f"gate_mean_weight{suffix}.png", "mean gate weights"),
    ]
    for window in sel.windows:
        heatmap = frequency_heatmap(sel, group, window)
        if heatmap is not None:
            name = f"expert_frequency{suffix}_w{window}.png"
            figures.append(_save(heatmap[1], out_dir, name, f"expert frequency w{window} (it {heatmap[0]})"))
    return figures


def _selection_table(sel: SelectionLogs, group: str) -> list[str]:
    """Per task: final normalised entropies per window, dominant expert over the largest window."""
    largest = sel.windows[-1]
    step = sel.last_step(group, largest)
    frequency = sel.matrix_at(group, largest, "frequency", step)
    weights = sel.matrix_at(group, largest, "mean_weight", step)
    rows = []
    for i, task in enumerate(sel.tasks):
        entropies = [
            f"{_fmt(_last(sel.get(group, task, w, 'mean_sample_entropy_normalized')))} / "
            f"{_fmt(_last(sel.get(group, task, w, 'entropy_of_mean_normalized')))}"
            for w in sel.windows
        ]
        if np.isnan(frequency[i]).all():
            dominant = ["n/a"] * 3
        else:
            j = int(np.nanargmax(frequency[i]))
            dominant = [sel.experts[j], _fmt(frequency[i, j]), _fmt(weights[i, j])]
        rows.append([task, *entropies, *dominant])
    header = ["task", *(f"w{w}" for w in sel.windows), f"dominant expert (w{largest}, it {step})",
              "argmax share", "mean weight"]  # fmt: skip
    return _table(header, rows)


def _selection_section(sel: SelectionLogs | None, out_dir: str) -> list[str]:
    """Summary lines of the expert-selection figures, written to ``out_dir``."""
    lines = ["## Expert selection", ""]
    if sel is None:
        return lines + [
            "Skipped: no expert-selection tags (`[<namespace>/]selection/<task>/w<W>/...` from "
            "`ExpertSelectionTracker.scalars()`): the run has no MoE gate or its tracker was off.",
            "",
        ]
    for group in sel.groups:
        lines += [
            f"### {group}",
            "",
            "Final normalised gate entropy per window (mean per-sample entropy / entropy of the mean "
            "weights, both divided by ln E, at each task's last logged iteration), and the expert "
            "most often selected (argmax) over the largest window:",
            "",
            *_selection_table(sel, group),
            "",
            f"Figures: {_links(_selection_figures(sel, group, out_dir))}.",
            "",
        ]
    return lines


def _conflict_row(conf: ConflictLogs, group: str) -> list[str]:
    """Final and mean max-negative cosine of one group against its tasks' noise floors."""
    max_negative = conf.get(group, "max_negative_cosine")
    floors = [conf.get(group, "noise_floor", task) for task in conf.tasks]
    final_floors = [_last(f) for f in floors]
    logged_floors = [f.values for f in floors if f is not None]
    lowest_floor = min((v for v in final_floors if not math.isnan(v)), default=math.nan)
    return [
        group,
        _fmt(_last(max_negative)),
        _fmt(math.nan if max_negative is None else float(np.mean(max_negative.values))),
        _fmt(_last(conf.get(group, "mean_cosine"))),
        ", ".join(f"{task} {_fmt(v)}" for task, v in zip(conf.tasks, final_floors)),
        _fmt(float(np.mean(np.concatenate(logged_floors))) if logged_floors else math.nan),
        _fmt(-_last(max_negative) - lowest_floor),
    ]


def _conflict_section(conf: ConflictLogs | None, out_dir: str) -> list[str]:
    """Summary lines of the conflict figures (curves, matrices over time), written to ``out_dir``."""
    lines = ["## Gradient conflict between tasks", ""]
    if conf is None:
        return lines + [
            "Skipped: no task-conflict tags (`conflict/<group>/...` from `conflict_scalars()`): "
            "conflict diagnostics were off in this run.",
            "",
        ]
    figures = [_save(conflict_curves_figure(conf), out_dir, "conflict_curves.png", "conflict curves")]
    for group in conf.groups:
        figures += [
            _save(fig, out_dir, f"conflict_{_safe(group)}_it{step}.png", f"{group} it {step}")
            for step, fig in conflict_heatmaps(conf, group)
        ]
    header = ["group", "final max-neg cos", "mean max-neg cos", "final mean cos", "final noise floor",
              "mean noise floor", "worst pair cos - lowest noise floor"]  # fmt: skip
    return lines + [
        "Max negative cosine = max over task pairs of -cos(g_i, g_j) (> 0: some pair of task gradients "
        "points apart); its mean is over the logged iterations. Noise floor = cosine between the "
        "gradients of two random halves of the SAME task's rows (mean: over tasks and iterations): a "
        "between-task cosine says something only when clearly below it (last column < 0).",
        "",
        *_table(header, [_conflict_row(conf, group) for group in conf.groups]),
        "",
        f"Figures: {_links(figures)}.",
        "",
    ]


def _run_lines(logs: RunLogs) -> list[str]:
    """Run folder, iterations, final reward and the image tags of the run."""
    steps = logs.steps
    reward = logs.scalars.get(REWARD_TAG)
    lines = [
        f"- Run folder: `{os.path.abspath(logs.run_dir)}`",
        f"- Iterations: {steps[0]} to {steps[-1]} ({len(steps)} logged)" if len(steps) else "- Iterations: none logged",
        f"- Final reward (`{REWARD_TAG}`, it {reward.steps[-1]}): {_fmt(reward.last())}"
        if reward is not None
        else f"- Final reward: `{REWARD_TAG}` not logged",
    ]
    if logs.images:
        lines.append("- TensorBoard images: " + ", ".join(f"`{tag}` ({n})" for tag, n in logs.images.items()))
    return lines


def analyze_run(run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> str:
    """Write the figures and ``summary.md`` of one run into ``out_dir`` (default ``<run_dir>/analysis``).

    Files (``<g>`` = ``_<group>`` with per-limb gates, empty for a single gate):
    ``gate_entropy<g>.png`` (:func:`entropy_figure`), ``gate_mean_weight<g>.png``
    (:func:`mean_weight_figure`), ``expert_frequency<g>_w<W>.png`` (:func:`frequency_heatmap`),
    ``conflict_curves.png`` (:func:`conflict_curves_figure`), ``conflict_<group>_it<N>.png``
    (:func:`conflict_heatmaps`), ``summary.md``. Missing tag families are skipped with a note
    in the summary.

    Returns:
        The path of ``summary.md``.

    Raises:
        NoEventFileError: see :func:`load_run`.
    """
    logs = load_run(run_dir)
    out_dir = os.fspath(out_dir) if out_dir is not None else os.path.join(logs.run_dir, "analysis")
    os.makedirs(out_dir, exist_ok=True)
    lines = ["# Training run analysis", "", *_run_lines(logs), ""]
    lines += _selection_section(parse_selection(logs.scalars), out_dir)
    lines += _conflict_section(parse_conflict(logs.scalars), out_dir)
    path = os.path.join(out_dir, "summary.md")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    return path
