"""Heatmaps: fixed colour range, labels, annotations; written as a real PNG and a TensorBoard image."""

import io

import numpy as np
import pytest
import torch
from matplotlib.image import imread
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from rsl_rl_moe.diagnostics import cosine_heatmap, figure_to_image, save_png, selection_heatmap

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TASKS = ["locomotion", "reaching", "loco_reach"]
COSINE = torch.tensor([[1.0, -0.5, float("nan")], [-0.5, 1.0, 0.05], [float("nan"), 0.05, 1.0]])


def test_cosine_heatmap_layout():
    fig = cosine_heatmap(COSINE, TASKS, title="conflict gate")
    ax = fig.axes[0]
    norm = ax.images[0].norm
    assert (norm.vmin, norm.vmax) == (-1.0, 1.0)  # fixed, not fitted to the data
    assert ax.images[0].get_cmap().name == "RdBu_r"
    assert [t.get_text() for t in ax.get_xticklabels()] == TASKS
    assert [t.get_text() for t in ax.get_yticklabels()] == TASKS
    assert sorted(t.get_text() for t in ax.texts) == sorted(
        ["1.00", "-0.50", "n/a", "-0.50", "1.00", "0.05", "n/a", "0.05", "1.00"]
    )
    with pytest.raises(ValueError, match="labels are 2x2"):
        cosine_heatmap(COSINE, TASKS[:2])


def test_png_file_and_image_array(tmp_path):
    fig = selection_heatmap(torch.tensor([[0.9, 0.1], [0.2, 0.8]]), TASKS[:2], ["loco_expert", "arm_expert"])
    assert (fig.axes[0].images[0].norm.vmin, fig.axes[0].images[0].norm.vmax) == (0.0, 1.0)
    path = tmp_path / "plots" / "selection.png"
    save_png(fig, path)
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = figure_to_image(fig)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert imread(path).shape[:2] == image.shape[:2]
    assert image.std() > 0  # something was drawn


def test_tensorboard_image_round_trip(tmp_path):
    image = figure_to_image(cosine_heatmap(COSINE, TASKS))
    writer = SummaryWriter(log_dir=str(tmp_path))
    writer.add_image("conflict/gate/cosine_heatmap", image, global_step=7, dataformats="HWC")
    writer.close()
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    events.Reload()
    assert "conflict/gate/cosine_heatmap" in events.Tags()["images"]
    (stored,) = events.Images("conflict/gate/cosine_heatmap")
    assert stored.step == 7
    assert (stored.height, stored.width) == image.shape[:2]
    assert stored.encoded_image_string[:8] == PNG_SIGNATURE
    decoded = imread(io.BytesIO(stored.encoded_image_string), format="png")
    assert np.array_equal((decoded[..., :3] * 255).round().astype(np.uint8), image)
