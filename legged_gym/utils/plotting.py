"""Matplotlib figures of a rollout (Agg canvas, no pyplot state: works headless and leaves the
backend free for a live window)."""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def plot_tracking(
    time_s: np.ndarray, commanded: np.ndarray, actual: np.ndarray, labels: list[str], title: str, path: str
):
    """One panel per component: commanded vs actual over time.

    Args:
        time_s: (T,) [s].
        commanded, actual: (T, K) in the units named by ``labels`` (K entries).
        title: figure title.
        path: PNG file to write.
    """
    fig = Figure(figsize=(9, 2.2 * len(labels)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(labels), 1, sharex=True, squeeze=False)
    for k, (ax, label) in enumerate(zip(axes[:, 0], labels)):
        ax.plot(time_s, commanded[:, k], "k--", lw=1.2, label="commanded")
        ax.plot(time_s, actual[:, k], "C0", lw=1.0, label="actual")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(loc="upper right", fontsize=8)
    axes[0, 0].set_title(title)
    axes[-1, 0].set_xlabel("time [s]")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
