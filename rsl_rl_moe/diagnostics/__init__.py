"""Diagnostics for a gate over frozen experts: expert selection, gradient conflict, norms, heatmaps.

Framework-light components (torch, numpy, matplotlib only) that the algorithm and runner call. The TensorBoard
tags they write are built and parsed in one place, :mod:`rsl_rl_moe.diagnostics.tags`.
"""

from . import tags
from .conflict import (
    GradientConflictMonitor,
    GradientStats,
    GroupConflict,
    conflict_scalars,
    gradient_stats,
    gradient_stats_scalars,
    term_conflict_scalars,
)
from .gate_timeline import GateTimeline, open_live_figure
from .heatmaps import cosine_heatmap, figure_to_image, save_png, selection_heatmap
from .information import entropy
from .norms import FrozenExpertChangedError, NormMonitor, first_gradients, normalizer_stats, tensor_stats
from .selection import (
    DEFAULT_WINDOWS,
    ExpertSelectionTracker,
    expert_action_ground_cost,
    grouped_action_ground_cost,
    jensen_shannon,
    total_variation,
    wasserstein,
)

__all__ = [
    "DEFAULT_WINDOWS",
    "ExpertSelectionTracker",
    "FrozenExpertChangedError",
    "GateTimeline",
    "GradientConflictMonitor",
    "GradientStats",
    "GroupConflict",
    "NormMonitor",
    "conflict_scalars",
    "cosine_heatmap",
    "entropy",
    "expert_action_ground_cost",
    "figure_to_image",
    "first_gradients",
    "gradient_stats",
    "gradient_stats_scalars",
    "grouped_action_ground_cost",
    "jensen_shannon",
    "normalizer_stats",
    "open_live_figure",
    "save_png",
    "selection_heatmap",
    "tags",
    "tensor_stats",
    "term_conflict_scalars",
    "total_variation",
    "wasserstein",
]
