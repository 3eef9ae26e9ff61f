"""Offline analysis: a synthetic run written with the real tag producers and real event files,
analysed by scripts/analyze.py; figures are real PNGs and the summary holds the known numbers."""

import math

import numpy as np
import pytest
import torch
from helpers import run_script
from matplotlib.image import imread
from torch.utils.tensorboard import SummaryWriter

from rsl_rl_moe.diagnostics import (
    ExpertSelectionTracker,
    GradientConflictMonitor,
    conflict_scalars,
    cosine_heatmap,
    figure_to_image,
)
from rsl_rl_moe.diagnostics.analysis import NoEventFileError, Series, load_run, parse_conflict, parse_selection

TASKS = ["locomotion", "reaching"]
EXPERTS = ["loco_expert", "arm_expert"]
WINDOWS = (3, 10)
STEPS_PER_ITERATION = 4
REACHING_ANGLES = [60.0, 90.0, 120.0, 135.0, 150.0]  # degrees from the locomotion gradient, per iteration
LOCO_ROWS = torch.tensor([[0.9, 0.1]] * 2)
REACH_EARLY = torch.tensor([[0.5, 0.5]] * 3)
REACH_LATE = torch.tensor([[0.2, 0.8], [0.2, 0.8], [0.7, 0.3]])  # from iteration 2 on: 12 steps > w10
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def conflict_setup(task_names):
    """A monitor over theta (2,) as group "gate" and phi (1,) as group "critic"."""
    theta = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    phi = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    return GradientConflictMonitor(task_names, {"gate": [theta], "critic": [phi]}), theta, phi


def conflict_report(setup, angle_deg: float) -> dict:
    """Per-row loss x_r . theta + phi over 4 rows of task 0 and 4 of task 1: task gradients on theta
    are (1, 0) and (cos a, sin a), on phi 1 for both; identical rows give a noise floor of 1."""
    monitor, theta, phi = setup
    a = math.radians(angle_deg)
    x = torch.tensor([[1.0, 0.0]] * 4 + [[math.cos(a), math.sin(a)]] * 4, dtype=torch.float64)
    per_row = x @ theta + phi
    return monitor.compute(lambda mask: per_row[mask].mean(), torch.tensor([0] * 4 + [1] * 4))


def write_moe_run(run_dir) -> ExpertSelectionTracker:
    """Five iterations of selection, conflict and rsl_rl tags; returns the tracker in its final state."""
    tracker = ExpertSelectionTracker(2, TASKS, windows=WINDOWS, expert_names=EXPERTS)
    conflict = conflict_setup(TASKS)
    writer = SummaryWriter(log_dir=str(run_dir))
    for it, angle in enumerate(REACHING_ANGLES):
        reach = REACH_EARLY if it < 2 else REACH_LATE
        for _ in range(STEPS_PER_ITERATION):
            tracker.record(torch.cat([LOCO_ROWS, reach]), torch.tensor([0, 0, 1, 1, 1]))
        scalars = {"Train/mean_reward": float(it + 1), "Loss/value_function": 0.5 / (it + 1)}
        # the tag prefix MoERunner uses; the analysis accepts any namespace before "selection"
        scalars |= tracker.scalars(prefix="moe/selection") | conflict_scalars(conflict_report(conflict, angle))
        for tag, value in scalars.items():
            writer.add_scalar(tag, value, it)
    writer.add_image("conflict/gate/cosine_heatmap", figure_to_image(cosine_heatmap(np.eye(2), TASKS)), 4,
                     dataformats="HWC")  # fmt: skip
    writer.close()
    return tracker


def assert_png(path):
    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    image = imread(path)
    assert image.ndim == 3 and min(image.shape[:2]) > 50 and image.std() > 0, path


@pytest.fixture(scope="module")
def moe_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    tracker = write_moe_run(run_dir)
    result = run_script("analyze.py", [str(run_dir)], timeout=120)
    assert result.returncode == 0, result.stderr
    return run_dir, tracker, (run_dir / "analysis" / "summary.md").read_text()


def test_figures_are_written_as_real_images(moe_run):
    run_dir, _, summary = moe_run
    heatmaps = [f"conflict_{group}_it{it}.png" for group in ("gate", "critic") for it in (0, 1, 3, 4)]  # spread
    names = ["gate_entropy.png", "gate_mean_weight.png", "expert_frequency_w3.png", "expert_frequency_w10.png",
             "conflict_curves.png", *heatmaps]  # fmt: skip
    for name in names:
        assert_png(run_dir / "analysis" / name)
        assert f"]({name})" in summary  # linked from the summary
    assert sorted(p.name for p in (run_dir / "analysis").glob("*.png")) == sorted(names)


def test_summary_holds_the_known_selection_numbers(moe_run):
    run_dir, tracker, summary = moe_run
    assert str(run_dir) in summary
    assert "Iterations: 0 to 4 (5 logged)" in summary
    assert "Final reward (`Train/mean_reward`, it 4): 5.000" in summary
    assert "`conflict/gate/cosine_heatmap` (1)" in summary
    loco_entropy = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1)) / math.log(2)  # 0.469: all rows alike
    loco = f"{loco_entropy:.3f} / {loco_entropy:.3f}"  # per-sample / of the mean, for both windows
    assert f"| locomotion | {loco} | {loco} | loco_expert | 1.000 | 0.900 |" in summary
    reach = tracker.get_expert_selection_stats("reaching")
    fields = ("mean_sample_entropy_normalized", "entropy_of_mean_normalized")
    cells = " | ".join(" / ".join(f"{reach[w][f]:.3f}" for f in fields) for w in WINDOWS)
    assert f"| reaching | {cells} | arm_expert | 0.667 | 0.633 |" in summary  # 2 of 3 rows pick the arm


def test_summary_holds_the_known_conflict_numbers(moe_run):
    _, _, summary = moe_run
    cosines = [math.cos(math.radians(a)) for a in REACHING_ANGLES]
    final, mean = -cosines[-1], -sum(cosines) / len(cosines)  # 0.866, 0.315
    noise = "locomotion 1.000, reaching 1.000 | 1.000"
    assert f"| gate | {final:.3f} | {mean:.3f} | {cosines[-1]:.3f} | {noise} | {cosines[-1] - 1:.3f} |" in summary
    assert f"| critic | -1.000 | -1.000 | 1.000 | {noise} | 0.000 |" in summary


def test_parsing_recovers_matrices_groups_and_namespaces():
    """Per-limb gate groups, the default tag prefix, task order from the pair tags."""
    tracker = ExpertSelectionTracker(2, TASKS, windows=(5,), group_names=["legs", "arm"])
    tracker.record(torch.tensor([[[1.0, 0.0], [0.25, 0.75]]]), torch.tensor([1]))
    report = conflict_report(conflict_setup(["reaching", "locomotion"]), 120.0)
    tags = tracker.scalars() | conflict_scalars(report)
    tags["term_conflict/gate/cos/surrogate__value"] = 0.1  # another family: not a task pair
    scalars = {tag: Series(np.array([7]), np.array([value])) for tag, value in tags.items()}

    sel = parse_selection(scalars)
    assert (sel.groups, sel.tasks, sel.windows) == (["legs", "arm"], ["reaching"], [5])
    assert sel.experts == ["expert0", "expert1"]
    assert sel.matrix_at("arm", 5, "mean_weight", 7).tolist() == [[0.25, 0.75]]  # locomotion had no rows
    assert sel.get("legs", "reaching", 5, "near_one_hot_share").last() == 1.0

    conf = parse_conflict(scalars)
    assert conf.groups == ["gate", "critic"] and conf.tasks == ["reaching", "locomotion"]
    assert conf.matrix_steps("gate").tolist() == [7]
    assert np.allclose(conf.cosine_matrix("gate", 7), [[1, -0.5], [-0.5, 1]])
    assert np.isnan(conf.cosine_matrix("gate", 8)).all()  # not logged at that iteration
    assert parse_selection({"Loss/surrogate": scalars["conflict/gate/mean_cosine"]}) is None


def test_run_without_moe_tags_still_gets_a_summary(tmp_path):
    writer = SummaryWriter(log_dir=str(tmp_path))
    for it in range(3):
        writer.add_scalar("Loss/surrogate", -0.01 * it, it)
        writer.add_scalar("Train/mean_reward", 2.0 * it, it)
        writer.add_scalar("Train/mean_reward/time", 2.0 * it, 100 * it)  # rsl_rl: step = seconds of training
    writer.close()
    result = run_script("analyze.py", [str(tmp_path), "--out", str(tmp_path / "elsewhere")], timeout=120)
    assert result.returncode == 0, result.stderr
    summary = (tmp_path / "elsewhere" / "summary.md").read_text()
    assert "Final reward (`Train/mean_reward`, it 2): 4.000" in summary
    assert "Iterations: 0 to 2 (3 logged)" in summary
    assert "Skipped: no expert-selection tags" in summary
    assert "Skipped: no task-conflict tags" in summary
    assert not list((tmp_path / "elsewhere").glob("*.png"))


def test_folder_without_event_file_is_a_one_line_error(tmp_path):
    result = run_script("analyze.py", [str(tmp_path)], timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: no TensorBoard event file (events.out.tfevents.*) in {tmp_path}"
    writer = SummaryWriter(log_dir=str(tmp_path / "2024-01-01_run"))
    writer.add_scalar("Train/mean_reward", 1.0, 0)
    writer.close()
    with pytest.raises(NoEventFileError, match=r"subfolders with event files: 2024-01-01_run \(pass one of them\)"):
        load_run(tmp_path)
