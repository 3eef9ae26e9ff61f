"""Gate weights of one env over time, with its phases and command changes marked.

Env-agnostic: at every policy step the caller passes the env's gate weights, a phase label (e.g.
the env's task) and named signals (e.g. the commands it follows). The figure has one panel per
gate (per action group for per-limb gating) with one line per expert; spans of equal phase are
shaded and labelled, and every onset of a change of a signal is a vertical line (a signal that
changes at every step, such as a replayed target sequence, is marked once, where it starts moving).

Outputs: a PNG (:meth:`GateTimeline.save_png`), an RGB image for a video overlay
(:meth:`GateTimeline.image`), and drawing onto any figure (:meth:`GateTimeline.draw`), e.g. a live
window from :func:`open_live_figure`. Figures use matplotlib's Agg canvas, no pyplot state, except
the live window.
"""

from __future__ import annotations

import itertools
import os
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .heatmaps import figure_to_image, save_png

EVENT_STYLES = ("--", ":", "-.")
"""Line styles of the signals' change markers, in the order the signals are first given."""

PHASE_ALPHA = 0.12
"""Opacity of the phase shading."""

MIN_LABELLED_SPAN = 0.1
"""Phase spans at least this share of the x axis carry their name as text (all are in the legend)."""


def change_onsets(values: np.ndarray) -> np.ndarray:
    """Steps where a run of changes starts.

    Args:
        values: ``(T, ...)`` a signal per step.

    Returns:
        ``(K,)`` int steps ``t >= 1`` with ``values[t] != values[t-1]`` but ``values[t-1] == values[t-2]``
        (or ``t == 1``).
    """
    flat = np.asarray(values).reshape(len(values), -1)
    changed = np.concatenate([[False], (flat[1:] != flat[:-1]).any(axis=1)])
    onset = changed & ~np.concatenate([[False], changed[:-1]])
    return np.flatnonzero(onset)


def label_spans(labels: Sequence[str]) -> list[tuple[int, int, str]]:
    """Maximal runs of equal labels: ``[(start, stop, label)]``, ``stop`` exclusive."""
    spans: list[tuple[int, int, str]] = []
    for t, label in enumerate(labels):
        if spans and spans[-1][2] == label:
            spans[-1] = (spans[-1][0], t + 1, label)
        else:
            spans.append((t, t + 1, label))
    return spans


class GateTimeline:
    """Per-step gate weights of one env with phase labels and signals, drawn as a figure.

    Args:
        expert_names: the E experts, in the order of the weights' last axis.
        group_names: the G action groups of a per-limb gate; None or empty for one gate.
        dt: time between steps [s].
        duration_s: x-axis length [s] (None: up to the last step), fixed so a growing plot does not rescale.
        phase_label: what a phase is, in the legend (e.g. ``"task"``).
        phase_names: known phases, given fixed colours in this order (others get theirs as they appear).
    """

    def __init__(
        self,
        expert_names: Sequence[str],
        group_names: Sequence[str] | None = None,
        dt: float = 1.0,
        duration_s: float | None = None,
        phase_label: str = "phase",
        phase_names: Sequence[str] = (),
    ) -> None:
        self.expert_names = list(expert_names)
        self.phase_label = phase_label
        self.group_names = list(group_names) if group_names else []
        self.dt = dt
        self.duration_s = duration_s
        self.weights: list[np.ndarray] = []  # each (G, E)
        self.phases: list[str] = []
        self.signals: dict[str, list[np.ndarray]] = {}
        self._phase_colors: dict[str, str] = {}
        for phase in phase_names:
            self._color_of(phase)
        self._image_figure: Figure | None = None

    def _color_of(self, phase: str) -> str:
        """The phase's shading colour: matplotlib's cycle after the experts' line colours C0..C{E-1}."""
        return self._phase_colors.setdefault(phase, f"C{(len(self.expert_names) + len(self._phase_colors)) % 10}")

    def add(
        self,
        weights: torch.Tensor | np.ndarray,
        phase: str,
        signals: Mapping[str, torch.Tensor | np.ndarray] | None = None,
    ) -> None:
        """Append one step.

        Args:
            weights: ``(E,)`` or ``(G, E)`` gate weights of the env.
            phase: label of the env's phase (e.g. its task).
            signals: ``{name: value}`` whose changes are marked, e.g. commands; the same names at every step.
        """
        w = weights.detach().cpu().numpy() if isinstance(weights, torch.Tensor) else np.asarray(weights)
        self.weights.append(w.reshape(-1, len(self.expert_names)).astype(np.float64))
        self.phases.append(phase)
        self._color_of(phase)
        for name, value in (signals or {}).items():
            v = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
            self.signals.setdefault(name, []).append(v.copy())

    @property
    def time_s(self) -> np.ndarray:
        """``(T,)`` time of each step [s]."""
        return np.arange(len(self.weights)) * self.dt

    def phase_spans(self) -> list[tuple[float, float, str]]:
        """``[(start [s], end [s], phase)]`` for each run of equal phase."""
        return [(start * self.dt, stop * self.dt, label) for start, stop, label in label_spans(self.phases)]

    def event_times(self) -> dict[str, np.ndarray]:
        """``{signal: (K,) times [s]}`` of the onsets of each signal's changes."""
        return {name: change_onsets(np.stack(values)) * self.dt for name, values in self.signals.items()}

    def draw(self, fig: Figure) -> None:
        """Clear ``fig`` and draw the timeline on it: one panel per gate, the legend above them."""
        fig.clear()
        num_panels = max(len(self.group_names), 1)
        axes = fig.subplots(num_panels, 1, sharex=True, squeeze=False)[:, 0]
        weights = np.stack(self.weights) if self.weights else np.zeros((0, num_panels, len(self.expert_names)))
        time_s, spans, events = self.time_s, self.phase_spans(), self.event_times()
        end = self.duration_s if self.duration_s is not None else max(len(self.weights) * self.dt, self.dt)
        handles = []
        for g, ax in enumerate(axes):
            for start, stop, phase in spans:
                ax.axvspan(start, stop, color=self._phase_colors[phase], alpha=PHASE_ALPHA, lw=0)
            lines = [ax.plot(time_s, weights[:, g, e], color=f"C{e}", lw=1.5, label=expert)[0]
                     for e, expert in enumerate(self.expert_names)]  # fmt: skip
            markers = [
                [ax.axvline(t, color="0.3", ls=style, lw=0.9, label=f"{name} changes") for t in times]
                for (name, times), style in zip(events.items(), itertools.cycle(EVENT_STYLES))
            ]
            ax.set_xlim(0.0, end)
            ax.set_ylim(-0.03, 1.03)
            ax.set_ylabel(f"{self.group_names[g]} weight" if self.group_names else "weight")
            ax.grid(alpha=0.3)
            if g == 0:
                handles = lines + [m[0] for m in markers if m]
        for start, stop, phase in spans:
            if stop - start >= MIN_LABELLED_SPAN * end:
                axes[0].text(start + 0.01 * end, 0.97, phase, transform=axes[0].get_xaxis_transform(), va="top",
                             fontsize=8, color=self._phase_colors[phase])  # fmt: skip
        handles += [Patch(color=self._phase_colors[phase], alpha=2 * PHASE_ALPHA, label=f"{self.phase_label}: {phase}")
                    for phase in dict.fromkeys(self.phases)]  # fmt: skip
        fig.legend(handles=handles, loc="outside upper center", ncol=min(len(handles), 4), fontsize=8, frameon=False)
        axes[-1].set_xlabel("time [s]")

    def figure(self, width_px: int = 900, height_px: int | None = None, dpi: int = 100) -> Figure:
        """A new Agg figure with the timeline (default height: 250 px per panel plus margins)."""
        height_px = height_px or 150 + 250 * max(len(self.group_names), 1)
        fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi, layout="constrained")
        FigureCanvasAgg(fig)
        self.draw(fig)
        return fig

    def save_png(self, path: str | os.PathLike) -> None:
        """Write the timeline to ``path`` (PNG)."""
        save_png(self.figure(), path)

    def image(self, height_px: int, width_px: int, dpi: int = 100) -> np.ndarray:
        """``(height_px, width_px, 3)`` uint8 RGB of the timeline so far (e.g. a video overlay); reuses one figure."""
        fig = self._image_figure
        if fig is None or tuple(fig.canvas.get_width_height()) != (width_px, height_px):
            fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi, layout="constrained")
            FigureCanvasAgg(fig)
            self._image_figure = fig
        self.draw(fig)
        return figure_to_image(fig)


def display_available() -> bool:
    """True where a GUI window can open: a ``DISPLAY`` or ``WAYLAND_DISPLAY`` on Linux/BSD; macOS and Windows always."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class LiveFigure:
    """A pyplot window redrawn on request; build it with :func:`open_live_figure`."""

    def __init__(self, plt, title: str) -> None:
        self._plt = plt
        plt.ion()
        self.fig = plt.figure(title, figsize=(9, 4), layout="constrained")

    def refresh(self, draw: Callable[[Figure], None]) -> None:
        """Redraw the window with ``draw(fig)`` and let the GUI process its events."""
        draw(self.fig)
        self.fig.canvas.draw_idle()
        self._plt.pause(0.001)

    def close(self) -> None:
        self._plt.close(self.fig)


def open_live_figure(title: str) -> LiveFigure | None:
    """A live window, or None when no display is available, matplotlib has no interactive backend here,
    or the window cannot open (e.g. a ``DISPLAY`` that cannot be reached; a warning says why).

    Headless runs never import pyplot.
    """
    if not display_available():
        return None
    import matplotlib.pyplot as plt
    from matplotlib.backends import BackendFilter, backend_registry

    if plt.get_backend().lower() not in backend_registry.list_builtin(BackendFilter.INTERACTIVE):
        return None
    try:
        return LiveFigure(plt, title)
    except Exception as exc:  # toolkits raise their own types (e.g. Tk's TclError)
        warnings.warn(f"no live window ({type(exc).__name__}: {exc}); the PNG is still written", stacklevel=2)
        return None
