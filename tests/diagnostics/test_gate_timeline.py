"""GateTimeline: phase spans and change onsets (known answers), PNG and overlay images; no live window headless."""

import sys

import numpy as np
import pytest
from matplotlib.image import imread

from rsl_rl_moe.diagnostics import GateTimeline, open_live_figure
from rsl_rl_moe.diagnostics.gate_timeline import change_onsets, label_spans


def test_label_spans_and_change_onsets():
    assert label_spans(["a", "a", "b", "a"]) == [(0, 2, "a"), (2, 3, "b"), (3, 4, "a")]
    assert label_spans([]) == []
    # a jump at 2, a run of changes from 4 (a replayed sequence) marked once, a jump at 8
    values = np.array([[0, 0], [0, 0], [1, 0], [1, 0], [2, 0], [3, 0], [4, 0], [4, 0], [4, 5]])
    assert change_onsets(values).tolist() == [2, 4, 8]
    assert change_onsets(np.zeros((1, 3))).tolist() == []


def make_timeline(groups=None) -> GateTimeline:
    timeline = GateTimeline(["base", "arm"], groups, dt=0.5, duration_s=5.0, phase_label="task")
    for t in range(8):
        w = np.array([0.1 * t, 1 - 0.1 * t])
        timeline.add(w if groups is None else np.stack([w, w[::-1]]), "walk" if t < 5 else "reach",
                     {"command": np.array([t // 3]), "target": np.array([t >= 6])})  # fmt: skip
    return timeline


def test_phases_and_events_in_seconds():
    timeline = make_timeline()
    assert timeline.phase_spans() == [(0.0, 2.5, "walk"), (2.5, 4.0, "reach")]
    events = timeline.event_times()
    assert events["command"].tolist() == [1.5, 3.0] and events["target"].tolist() == [3.0]


@pytest.mark.parametrize("groups", [None, ["legs", "arm"]])
def test_png_and_overlay_image(tmp_path, groups):
    timeline = make_timeline(groups)
    timeline.save_png(tmp_path / "weights.png")
    png = imread(tmp_path / "weights.png")
    assert png.shape[0] == 150 + 250 * len(groups or [0]) and png.shape[1] == 900
    image = timeline.image(480, 320)
    assert image.shape == (480, 320, 3) and image.dtype == np.uint8 and image.std() > 0
    assert timeline.image(480, 320).shape == (480, 320, 3)  # the reused figure


def test_no_live_window_without_a_display(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    assert open_live_figure("expert weights") is None
