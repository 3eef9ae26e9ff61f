"""The TensorBoard tag schema of the MoE diagnostics: one place that builds every tag and parses it back.

Every writer builds its tags from the records below (``record.tag``) and the offline analysis reads them back
with :func:`parse`, so the schema exists once. Each record is a small :class:`~typing.NamedTuple`;
``parse(record.tag) == record`` and ``parse(tag).tag == tag`` for every tag of a family (tests check both).

=====================================================  ===============================================================
record                                                 tag (``[...]`` only when given)
=====================================================  ===============================================================
``GateWeight(task, expert, group)``                    ``moe/<task>[/<group>]/weight/<expert>``
``SelectionStat(task, window, field, group, prefix)``  ``<prefix>[/<group>]/<task>/w<W>/<field>``
``SelectionExpertStat(task, window, stat, expert,      ``<prefix>[/<group>]/<task>/w<W>/<stat>/<expert>``
group, prefix)``
``TaskDistance(window, distance, task_a, task_b,       ``<prefix>[/<group>]/w<W>/<distance>/<task_a>__<task_b>``
group, prefix)``
``Lifetime(task, count, prefix)``                      ``<prefix>/<task>/lifetime_<count>``
``ConflictSummary(group, metric, prefix)``             ``<prefix>/<group>/<metric>``
``ConflictPair(group, metric, label_a, label_b,        ``<prefix>/<group>/<metric>/<label_a>__<label_b>``
prefix)``
``ConflictLabel(group, metric, label, prefix)``        ``<prefix>/<group>/<metric>/<label>``
``ParamNorm(kind, group, param)``                      ``<kind>/<group>/<param>`` (kind ``norm`` or ``grad``)
``TensorStat(source, stat)``                           ``<source>/<stat>`` (source ``logits/<gate>`` or
                                                       ``obs_norm/<normaliser>``)
``DiagnosticsTime()``                                  ``Perf/diagnostics_time``
``ConflictImage(group, prefix)``                       ``images/<prefix>/<group>`` (an image tag)
``SelectionImage(window, group)``                      ``images/selection[/<group>]/w<W>`` (an image tag)
=====================================================  ===============================================================

Field values: ``field`` in :data:`SELECTION_FIELDS`; ``stat`` in :data:`SELECTION_EXPERT_STATS`; ``distance`` in
:data:`TASK_DISTANCES`; ``count`` in :data:`LIFETIME_COUNTS`; conflict ``metric`` in :data:`CONFLICT_SUMMARIES`,
:data:`CONFLICT_PAIR_METRICS` or :data:`CONFLICT_LABEL_METRICS`; a ``logits/`` stat in :data:`TENSOR_STATS`, an
``obs_norm/`` stat in :data:`NORMALIZER_STATS`. ``window`` is a positive int (env steps per task).

Prefixes: a selection prefix is ``selection`` (:data:`SELECTION`, the tracker's default) or ends in ``/selection``
(MoERunner writes :data:`RUN_SELECTION` = ``moe/selection``); a conflict prefix is ``conflict``
(:data:`CONFLICT`, between tasks) or ``term_conflict`` (:data:`TERM_CONFLICT`, between loss terms), possibly
after a namespace likewise. ``group`` of a selection record is an action group of a per-limb gate, None for one
global gate (its tags carry no group).

Names (tasks, experts, groups, parameters, labels) are single path segments: non-empty, without ``/``. Names that
appear in pairs (task names, loss-term labels) also must not contain ``__`` (:data:`PAIR_SEPARATOR`) nor begin or
end with ``_``: ``a_`` + ``__`` + ``b`` and ``a`` + ``__`` + ``_b`` would be the same tag. Builders raise
``ValueError`` for names that break these rules (:func:`check_name`, :func:`check_pair_label`), so every tag
written parses back to what was written.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import NamedTuple

PAIR_SEPARATOR = "__"
"""Between the two names of a pair tag: ``<a>__<b>``."""

GATE_WEIGHT_ROOT = "moe"
SELECTION = "selection"
"""Default prefix of :meth:`ExpertSelectionTracker.scalars`."""
RUN_SELECTION = f"{GATE_WEIGHT_ROOT}/{SELECTION}"
"""Prefix of the selection scalars MoERunner logs."""
CONFLICT = "conflict"
TERM_CONFLICT = "term_conflict"
IMAGES = "images"
LOGITS = "logits"
OBS_NORM = "obs_norm"
TOTAL_NORM = "_total_norm"
"""``param`` of a :class:`ParamNorm` holding the L2 norm over the whole group."""

SELECTION_FIELDS = (
    "entropy_of_mean",
    "entropy_of_mean_normalized",
    "mean_sample_entropy",
    "mean_sample_entropy_normalized",
    "near_one_hot_share",
    "zero_share",
)
"""Per task and window scalar fields of the selection statistics."""
SELECTION_EXPERT_STATS = ("mean_weight", "frequency")
TASK_DISTANCES = ("tv", "js", "wasserstein")
LIFETIME_COUNTS = ("env_steps", "rows")
CONFLICT_SUMMARIES = ("max_negative_cosine", "mean_cosine", "frequency")
CONFLICT_PAIR_METRICS = ("cos", "magnitude_similarity")
CONFLICT_LABEL_METRICS = ("cos_with_total", "grad_norm", "noise_floor", "norm_share")
NORM_KINDS = ("norm", "grad")
TENSOR_STATS = ("mean", "std", "min", "max", "abs_max")
NORMALIZER_STATS = ("mean_mean", "abs_max_mean", "mean_std", "min_std", "max_std", "count")
DIAGNOSTICS_TIME = "Perf/diagnostics_time"


# --------------------------------------------------------------------------- name rules
def check_name(name: str, what: str = "name") -> str:
    """``name`` if it is one path segment (a non-empty str without ``/``); ValueError otherwise."""
    if not isinstance(name, str) or not name or "/" in name:
        raise ValueError(f"{what} {name!r} cannot be a TensorBoard tag segment: give a non-empty name without '/'")
    return name


def check_pair_label(name: str, what: str = "name") -> str:
    """``name`` if it can be one side of a pair tag ``<a>__<b>`` (see the module docstring); ValueError otherwise."""
    check_name(name, what)
    if PAIR_SEPARATOR in name or name.startswith("_") or name.endswith("_"):
        raise ValueError(
            f"{what} {name!r} cannot be one side of a pair tag '<a>{PAIR_SEPARATOR}<b>': it must not contain "
            f"{PAIR_SEPARATOR!r} nor begin or end with '_'"
        )
    return name


def check_names(names: Iterable[str], what: str, paired: bool = False) -> None:
    """:func:`check_name` (or :func:`check_pair_label` when ``paired``) on each of ``names``."""
    for name in names:
        (check_pair_label if paired else check_name)(name, what)


def _check_choice(value: str, choices: tuple[str, ...], what: str) -> None:
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; known: {list(choices)}")


def _check_window(window: int) -> None:
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be a positive int (env steps per task), got {window!r}")


def _check_prefix(prefix: str, last: tuple[str, ...]) -> None:
    segments = prefix.split("/") if isinstance(prefix, str) else [""]
    if segments[-1] not in last or not all(segments):
        raise ValueError(f"prefix {prefix!r} must be {' or '.join(last)}, possibly after '<namespace>/'")


def _pair(a: str, b: str, what: str) -> str:
    return f"{check_pair_label(a, what)}{PAIR_SEPARATOR}{check_pair_label(b, what)}"


def _grouped(prefix: str, group: str | None) -> str:
    return prefix if group is None else f"{prefix}/{check_name(group, 'group')}"


# --------------------------------------------------------------------------- records
class GateWeight(NamedTuple):
    """Mean gate weight of ``expert`` over the task's envs in the iteration's rollout (MoERunner)."""

    task: str
    expert: str
    group: str | None = None

    @property
    def tag(self) -> str:
        task = check_pair_label(self.task, "task")
        return f"{_grouped(f'{GATE_WEIGHT_ROOT}/{task}', self.group)}/weight/{check_name(self.expert, 'expert')}"


class SelectionStat(NamedTuple):
    """One of :data:`SELECTION_FIELDS` of a task over a selection window."""

    task: str
    window: int
    field: str
    group: str | None = None
    prefix: str = SELECTION

    @property
    def tag(self) -> str:
        _check_prefix(self.prefix, (SELECTION,))
        _check_window(self.window)
        _check_choice(self.field, SELECTION_FIELDS, "selection field")
        task = check_pair_label(self.task, "task")
        return f"{_grouped(self.prefix, self.group)}/{task}/w{self.window}/{self.field}"


class SelectionExpertStat(NamedTuple):
    """Mean weight or argmax frequency (:data:`SELECTION_EXPERT_STATS`) of one expert, task and window."""

    task: str
    window: int
    stat: str
    expert: str
    group: str | None = None
    prefix: str = SELECTION

    @property
    def tag(self) -> str:
        _check_prefix(self.prefix, (SELECTION,))
        _check_window(self.window)
        _check_choice(self.stat, SELECTION_EXPERT_STATS, "selection statistic")
        task, expert = check_pair_label(self.task, "task"), check_name(self.expert, "expert")
        return f"{_grouped(self.prefix, self.group)}/{task}/w{self.window}/{self.stat}/{expert}"


class TaskDistance(NamedTuple):
    """Distance (:data:`TASK_DISTANCES`) between two tasks' mean gate weights over a window."""

    window: int
    distance: str
    task_a: str
    task_b: str
    group: str | None = None
    prefix: str = SELECTION

    @property
    def tag(self) -> str:
        _check_prefix(self.prefix, (SELECTION,))
        _check_window(self.window)
        _check_choice(self.distance, TASK_DISTANCES, "task distance")
        pair = _pair(self.task_a, self.task_b, "task")
        return f"{_grouped(self.prefix, self.group)}/w{self.window}/{self.distance}/{pair}"


class Lifetime(NamedTuple):
    """Lifetime count (:data:`LIFETIME_COUNTS`) of a task in the selection tracker."""

    task: str
    count: str
    prefix: str = SELECTION

    @property
    def tag(self) -> str:
        _check_prefix(self.prefix, (SELECTION,))
        _check_choice(self.count, LIFETIME_COUNTS, "lifetime count")
        return f"{self.prefix}/{check_pair_label(self.task, 'task')}/lifetime_{self.count}"


class ConflictSummary(NamedTuple):
    """A summary (:data:`CONFLICT_SUMMARIES`) of the gradient conflict on one parameter group."""

    group: str
    metric: str
    prefix: str = CONFLICT

    @property
    def tag(self) -> str:
        _check_prefix(self.prefix, (CONFLICT, TERM_CONFLICT))
        _check_choice(self.metric, CONFLICT_SUMMARIES, "conflict summary")
        return f"{self.prefix}/{check_name(self.group, 'group')}/{self.metric}"


class ConflictPair(NamedTuple):
    """A pairwise metric (:data:`CONFLICT_PAIR_METRICS`) between two tasks' (or loss terms') gradients."""

    group: str
    metric: str
    label_a: str
    label_b: str
    prefix: str = CONFLICT

    @property
    def tag(self) -> str:
        _check_prefix(self.prefix, (CONFLICT, TERM_CONFLICT))
        _check_choice(self.metric, CONFLICT_PAIR_METRICS, "conflict pair metric")
        pair = _pair(self.label_a, self.label_b, "label")
        return f"{self.prefix}/{check_name(self.group, 'group')}/{self.metric}/{pair}"


class ConflictLabel(NamedTuple):
    """A per-task (or per-term) metric (:data:`CONFLICT_LABEL_METRICS`) of the gradient conflict."""

    group: str
    metric: str
    label: str
    prefix: str = CONFLICT

    @property
    def tag(self) -> str:
        _check_prefix(self.prefix, (CONFLICT, TERM_CONFLICT))
        _check_choice(self.metric, CONFLICT_LABEL_METRICS, "conflict label metric")
        return f"{self.prefix}/{check_name(self.group, 'group')}/{self.metric}/{check_pair_label(self.label, 'label')}"


class ParamNorm(NamedTuple):
    """L2 norm of a parameter (``kind="norm"``) or of its gradient (``"grad"``); ``param`` :data:`TOTAL_NORM`
    for the whole group."""

    kind: str
    group: str
    param: str

    @property
    def tag(self) -> str:
        _check_choice(self.kind, NORM_KINDS, "norm kind")
        return f"{self.kind}/{check_name(self.group, 'group')}/{check_name(self.param, 'parameter')}"


class TensorStat(NamedTuple):
    """A statistic of a tensor (gate logits, :data:`TENSOR_STATS`) or of an input normaliser
    (:data:`NORMALIZER_STATS`); ``source`` is ``logits/<gate>`` / ``obs_norm/<name>`` (:func:`logits_source`,
    :func:`obs_norm_source`); other sources build but do not parse back."""

    source: str
    stat: str

    @property
    def tag(self) -> str:
        if not isinstance(self.source, str) or not all(self.source.split("/")):
            raise ValueError(f"statistics source {self.source!r} must be a path of non-empty segments")
        return f"{self.source}/{check_name(self.stat, 'statistic')}"


class DiagnosticsTime(NamedTuple):
    """Seconds TrainingDiagnostics spent in the iteration."""

    @property
    def tag(self) -> str:
        return DIAGNOSTICS_TIME


class ConflictImage(NamedTuple):
    """Image tag of a cosine heatmap: task x task (``prefix="conflict"``) or term x term (``"term_conflict"``)."""

    group: str
    prefix: str = CONFLICT

    @property
    def tag(self) -> str:
        _check_prefix(self.prefix, (CONFLICT, TERM_CONFLICT))
        return f"{IMAGES}/{self.prefix}/{check_name(self.group, 'group')}"


class SelectionImage(NamedTuple):
    """Image tag of the task x expert mean-weight heatmap over a window."""

    window: int
    group: str | None = None

    @property
    def tag(self) -> str:
        _check_window(self.window)
        return f"{_grouped(f'{IMAGES}/{SELECTION}', self.group)}/w{self.window}"


Record = (
    GateWeight | SelectionStat | SelectionExpertStat | TaskDistance | Lifetime | ConflictSummary | ConflictPair
    | ConflictLabel | ParamNorm | TensorStat | DiagnosticsTime | ConflictImage | SelectionImage
)  # fmt: skip


def logits_source(gate: str) -> str:
    """``source`` of a :class:`TensorStat` of a gate's logits: ``logits/<gate>``."""
    return f"{LOGITS}/{check_name(gate, 'gate')}"


def obs_norm_source(name: str) -> str:
    """``source`` of a :class:`TensorStat` of an input normaliser: ``obs_norm/<name>``."""
    return f"{OBS_NORM}/{check_name(name, 'normaliser')}"


def build(record: Record) -> str:
    """The tag of ``record`` (same as ``record.tag``)."""
    return record.tag


# --------------------------------------------------------------------------- parsing
_SEG = r"[^/]+"
_LABEL = r"[^/_]+(?:_[^/_]+)*"  # a name check_pair_label accepts: no '/', no '__', no leading / trailing '_'
_PAIR = rf"(?P<a>{_LABEL})__(?P<b>{_LABEL})"


def _alt(choices: tuple[str, ...]) -> str:
    return "|".join(re.escape(c) for c in choices)


def _namespaced(*last: str) -> str:
    return rf"(?P<prefix>(?:{_SEG}/)*?(?:{_alt(last)}))"


def _group(match: re.Match) -> str | None:
    return match["group"]


_SELECTION_PREFIX = _namespaced(SELECTION)
_CONFLICT_PREFIX = _namespaced(CONFLICT, TERM_CONFLICT)
_OPTIONAL_GROUP = rf"(?:(?P<group>{_SEG})/)?"

_PARSERS: list[tuple[re.Pattern, Callable[[re.Match], Record]]] = [
    (
        rf"{_SELECTION_PREFIX}/{_OPTIONAL_GROUP}(?P<task>{_LABEL})/w(?P<window>[1-9]\d*)/"
        rf"(?P<field>{_alt(SELECTION_FIELDS)})",
        lambda m: SelectionStat(m["task"], int(m["window"]), m["field"], _group(m), m["prefix"]),
    ),
    (
        rf"{_SELECTION_PREFIX}/{_OPTIONAL_GROUP}(?P<task>{_LABEL})/w(?P<window>[1-9]\d*)/"
        rf"(?P<stat>{_alt(SELECTION_EXPERT_STATS)})/(?P<expert>{_SEG})",
        lambda m: SelectionExpertStat(m["task"], int(m["window"]), m["stat"], m["expert"], _group(m), m["prefix"]),
    ),
    (
        rf"{_SELECTION_PREFIX}/{_OPTIONAL_GROUP}w(?P<window>[1-9]\d*)/(?P<distance>{_alt(TASK_DISTANCES)})/{_PAIR}",
        lambda m: TaskDistance(int(m["window"]), m["distance"], m["a"], m["b"], _group(m), m["prefix"]),
    ),
    (
        rf"{_SELECTION_PREFIX}/(?P<task>{_LABEL})/lifetime_(?P<count>{_alt(LIFETIME_COUNTS)})",
        lambda m: Lifetime(m["task"], m["count"], m["prefix"]),
    ),
    (
        rf"{GATE_WEIGHT_ROOT}/(?P<task>{_LABEL})/{_OPTIONAL_GROUP}weight/(?P<expert>{_SEG})",
        lambda m: GateWeight(m["task"], m["expert"], _group(m)),
    ),
    (
        rf"{_CONFLICT_PREFIX}/(?P<group>{_SEG})/(?P<metric>{_alt(CONFLICT_SUMMARIES)})",
        lambda m: ConflictSummary(m["group"], m["metric"], m["prefix"]),
    ),
    (
        rf"{_CONFLICT_PREFIX}/(?P<group>{_SEG})/(?P<metric>{_alt(CONFLICT_PAIR_METRICS)})/{_PAIR}",
        lambda m: ConflictPair(m["group"], m["metric"], m["a"], m["b"], m["prefix"]),
    ),
    (
        rf"{_CONFLICT_PREFIX}/(?P<group>{_SEG})/(?P<metric>{_alt(CONFLICT_LABEL_METRICS)})/(?P<label>{_LABEL})",
        lambda m: ConflictLabel(m["group"], m["metric"], m["label"], m["prefix"]),
    ),
    (
        rf"(?P<kind>{_alt(NORM_KINDS)})/(?P<group>{_SEG})/(?P<param>{_SEG})",
        lambda m: ParamNorm(m["kind"], m["group"], m["param"]),
    ),
    (
        rf"(?P<source>{LOGITS}/{_SEG})/(?P<stat>{_alt(TENSOR_STATS)})",
        lambda m: TensorStat(m["source"], m["stat"]),
    ),
    (
        rf"(?P<source>{OBS_NORM}/{_SEG})/(?P<stat>{_alt(NORMALIZER_STATS)})",
        lambda m: TensorStat(m["source"], m["stat"]),
    ),
    (re.escape(DIAGNOSTICS_TIME), lambda m: DiagnosticsTime()),
    (
        rf"{IMAGES}/(?P<prefix>{CONFLICT}|{TERM_CONFLICT})/(?P<group>{_SEG})",
        lambda m: ConflictImage(m["group"], m["prefix"]),
    ),
    (
        rf"{IMAGES}/{SELECTION}/{_OPTIONAL_GROUP}w(?P<window>[1-9]\d*)",
        lambda m: SelectionImage(int(m["window"]), _group(m)),
    ),
]
_COMPILED = [(re.compile(pattern), make) for pattern, make in _PARSERS]


def parse(tag: str) -> Record | None:
    """The record a diagnostics tag was built from; None for any other tag (rsl_rl's, the env's, unknown).

    Families are tried in the order of the module docstring's table; the first that matches wins.
    """
    for pattern, make in _COMPILED:
        match = pattern.fullmatch(tag)
        if match is not None:
            return make(match)
    return None
