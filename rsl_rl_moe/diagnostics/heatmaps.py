"""Annotated heatmaps (matplotlib, Agg canvas, no pyplot state) for TensorBoard and PNG files.

- :func:`cosine_heatmap`: a task x task (or term x term) cosine matrix, diverging colormap fixed
  on [-1, 1] so colours mean the same in every image;
- :func:`selection_heatmap`: a task x expert matrix (mean weights or selection frequencies) on [0, 1];
- :func:`figure_to_image`: (H, W, 3) uint8 for ``SummaryWriter.add_image(tag, img, step, dataformats="HWC")``;
- :func:`save_png`: write a figure to a PNG file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _heatmap(
    matrix: torch.Tensor | np.ndarray,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    title: str,
    cmap: str,
    vmin: float,
    vmax: float,
) -> Figure:
    """Annotated heatmap of an (R, C) matrix; NaN cells are grey and read "n/a"."""
    values = np.asarray(matrix.detach().cpu() if isinstance(matrix, torch.Tensor) else matrix, dtype=float)
    rows, cols = values.shape
    if (rows, cols) != (len(row_labels), len(col_labels)):
        raise ValueError(f"matrix is {rows}x{cols} but labels are {len(row_labels)}x{len(col_labels)}")
    row_text = max(len(label) for label in row_labels)  # characters: room for the tick labels
    col_text = max(len(label) for label in col_labels)
    size = (2.0 + 0.9 * cols + 0.08 * row_text, 1.0 + 0.7 * rows + 0.05 * col_text)  # inches
    fig = Figure(figsize=size, dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_facecolor("0.8")
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=vmin, vmax=vmax)
    fig.colorbar(image, ax=ax)
    ax.set_xticks(range(cols), labels=list(col_labels), rotation=30, ha="right")
    ax.set_yticks(range(rows), labels=list(row_labels))
    ax.set_title(title)
    middle = 0.5 * (vmin + vmax)
    for i in range(rows):
        for j in range(cols):
            v = values[i, j]
            strong = not math.isnan(v) and abs(v - middle) > 0.3 * (vmax - vmin)
            ax.text(j, i, "n/a" if math.isnan(v) else f"{v:.2f}", ha="center", va="center",
                    color="white" if strong else "black", fontsize=9)  # fmt: skip
    return fig


def cosine_heatmap(matrix: torch.Tensor | np.ndarray, labels: Sequence[str], title: str = "gradient cosine") -> Figure:
    """(K, K) cosine matrix with labels on both axes, colormap ``RdBu_r`` fixed on [-1, 1]."""
    return _heatmap(matrix, labels, labels, title, cmap="RdBu_r", vmin=-1.0, vmax=1.0)


def selection_heatmap(
    matrix: torch.Tensor | np.ndarray,
    task_labels: Sequence[str],
    expert_labels: Sequence[str],
    title: str = "expert selection",
) -> Figure:
    """(T, E) task x expert shares (mean weights or argmax frequencies), colormap ``viridis`` on [0, 1]."""
    return _heatmap(matrix, task_labels, expert_labels, title, cmap="viridis", vmin=0.0, vmax=1.0)


def figure_to_image(fig: Figure) -> np.ndarray:
    """Render ``fig`` to an (H, W, 3) uint8 RGB array (for ``add_image(..., dataformats="HWC")``)."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def save_png(fig: Figure, path: str | os.PathLike) -> None:
    """Write ``fig`` to ``path`` as PNG, creating the folder if needed."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, format="png")
