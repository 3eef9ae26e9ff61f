"""Gradient conflict on constructed linear losses whose per-task gradients are known exactly."""

import math

import pytest
import torch

from rsl_rl_moe.diagnostics import GradientConflictMonitor, conflict_scalars, term_conflict_scalars

TASKS = ["locomotion", "reaching", "loco_reach"]
NAN = float("nan")


def linear_problem():
    """Per-row loss x_r . theta + y_r * phi: the gradient of a task's mean loss is its mean (x, y).

    Task gradients on theta: (1, 0), (0, 2), (-1, 0); on phi: 1, 1, 0.
    """
    theta = torch.nn.Parameter(torch.tensor([0.3, -0.7], dtype=torch.float64))
    phi = torch.nn.Parameter(torch.tensor([1.5], dtype=torch.float64))
    x = torch.tensor([[1, 0]] * 4 + [[0, 2]] * 2 + [[-1, 0]] * 2, dtype=torch.float64)
    y = torch.tensor([1.0] * 4 + [1.0] * 2 + [0.0] * 2, dtype=torch.float64)
    task_ids = torch.tensor([0] * 4 + [1] * 2 + [2] * 2)
    per_row = x @ theta + y * phi
    return theta, phi, per_row, task_ids


def assert_matrix(actual, expected):
    expected = torch.tensor(expected, dtype=torch.float64)
    assert torch.allclose(actual, expected, atol=1e-12, equal_nan=True), actual


def test_known_cosine_matrix_and_statistics():
    theta, phi, per_row, task_ids = linear_problem()
    frozen = torch.nn.Parameter(torch.zeros(3), requires_grad=False)
    monitor = GradientConflictMonitor(TASKS, {"gate": [theta, frozen], "critic": [phi]})
    report = monitor.compute(lambda mask: per_row[mask].mean(), task_ids)

    gate = report["gate"]
    assert_matrix(gate.cosine, [[1, 0, -1], [0, 1, 0], [-1, 0, 1]])
    assert gate.max_negative_cosine == pytest.approx(1.0, abs=1e-12)
    assert gate.mean_cosine == pytest.approx(-1 / 3, abs=1e-12)
    assert_matrix(gate.norms, [1, 2, 1])
    assert_matrix(gate.magnitude_similarity, [[1, 0.8, 1], [0.8, 1, 0.8], [1, 0.8, 1]])
    # total = mean over all 8 rows = (0.25, 0.5)
    s5 = math.sqrt(5)
    assert_matrix(gate.cosine_with_total, [1 / s5, 2 / s5, -1 / s5])
    assert_matrix(gate.noise_floor, [1, 1, 1])  # identical rows inside each task
    assert gate.conflict_frequency == pytest.approx(1 / 3, abs=1e-12)

    critic = report["critic"]  # loco_reach has a zero gradient: its cosines are undefined
    assert_matrix(critic.cosine, [[1, 1, NAN], [1, 1, NAN], [NAN, NAN, NAN]])
    assert critic.max_negative_cosine == pytest.approx(-1.0, abs=1e-12)  # not clipped at 0
    assert critic.valid_pairs == 1 and critic.negative_pairs == 0

    tags = conflict_scalars(report)
    assert tags["conflict/gate/cos/locomotion__loco_reach"] == pytest.approx(-1.0, abs=1e-12)
    assert tags["conflict/gate/magnitude_similarity/locomotion__reaching"] == pytest.approx(0.8, abs=1e-12)
    assert tags["conflict/gate/frequency"] == pytest.approx(1 / 3, abs=1e-12)
    assert tags["conflict/gate/noise_floor/reaching"] == pytest.approx(1.0, abs=1e-12)
    assert tags["conflict/gate/grad_norm/reaching"] == pytest.approx(2.0, abs=1e-12)
    assert tags["conflict/critic/max_negative_cosine"] == pytest.approx(-1.0, abs=1e-12)
    assert "conflict/critic/cos/locomotion__loco_reach" not in tags

    # the training backward still works after the analysis (graph retained)
    per_row.mean().backward()
    assert torch.allclose(theta.grad, torch.tensor([0.25, 0.5], dtype=torch.float64))


def test_conflict_frequency_over_recent_calls():
    theta, _, per_row, task_ids = linear_problem()
    monitor = GradientConflictMonitor(TASKS, {"gate": [theta]}, frequency_window=2, noise_floor=False)
    conflicting = lambda mask: per_row[mask].mean()  # noqa: E731  1 of 3 pairs negative
    agreeing = lambda mask: (per_row[mask] * 0 + theta.sum()).mean()  # noqa: E731  all pairs cos = 1
    assert monitor.compute(conflicting, task_ids)["gate"].conflict_frequency == pytest.approx(1 / 3)
    report = monitor.compute(agreeing, task_ids)["gate"]
    assert report.conflict_frequency == pytest.approx(1 / 6)
    assert torch.isnan(report.noise_floor).all()
    assert monitor.compute(agreeing, task_ids)["gate"].conflict_frequency == 0.0  # window of 2 calls


def test_absent_task_and_row_weighted_total():
    """A task without rows in the minibatch: NaN cosines for it; the total gradient weights tasks by their rows.

    3 rows of locomotion with gradient (1, 1), none of reaching, 1 of loco_reach with (-1, 0)."""
    theta, _, _, _ = linear_problem()
    x = torch.tensor([[1.0, 1.0]] * 3 + [[-1.0, 0.0]], dtype=torch.float64)
    per_row = x @ theta
    report = GradientConflictMonitor(TASKS, {"gate": [theta]}).compute(
        lambda mask: per_row[mask].mean(), torch.tensor([0, 0, 0, 2])
    )
    c = -1 / math.sqrt(2)
    assert_matrix(report["gate"].cosine, [[1, NAN, c], [NAN, NAN, NAN], [c, NAN, 1]])
    assert report["gate"].max_negative_cosine == pytest.approx(-c, abs=1e-12)
    # total = (3 * (1, 1) + 1 * (-1, 0)) / 4 = (0.5, 0.75)
    total = torch.tensor([0.5, 0.75], dtype=torch.float64)
    expected = torch.tensor([[1.0, 1.0], [-1.0, 0.0]], dtype=torch.float64) @ total
    expected /= torch.tensor([math.sqrt(2), 1.0], dtype=torch.float64) * total.norm()
    assert torch.allclose(report["gate"].cosine_with_total[[0, 2]], expected, atol=1e-12)
    assert torch.isnan(report["gate"].noise_floor[1:]).all()  # no rows; one row cannot be split in halves
    with pytest.raises(ValueError, match=r"task ids span \[0, 3\] for tasks"):
        monitor = GradientConflictMonitor(TASKS, {"gate": [theta]})
        monitor.compute(lambda mask: per_row[mask].mean(), torch.tensor([0, 0, 0, 3]))


def test_loss_term_conflicts_and_norm_shares():
    theta, _, _, _ = linear_problem()
    monitor = GradientConflictMonitor(TASKS, {"gate": [theta]})
    terms = {
        "surrogate": theta @ torch.tensor([1.0, 0.0], dtype=torch.float64),
        "value": theta @ torch.tensor([-1.0, 1.0], dtype=torch.float64),
        "load_balance": theta.sum() * 0,
    }
    stats = monitor.term_conflicts(terms, "gate")
    c = -1 / math.sqrt(2)
    assert_matrix(stats.cosine, [[1, c, NAN], [c, 1, NAN], [NAN, NAN, NAN]])
    assert stats.max_negative_cosine == pytest.approx(-c, abs=1e-12)
    assert_matrix(stats.cosine_with_total, [0, 1 / math.sqrt(2), NAN])  # total gradient (0, 1)
    tags = term_conflict_scalars(stats, "gate")
    assert tags["term_conflict/gate/cos/surrogate__value"] == pytest.approx(c, abs=1e-12)
    assert tags["term_conflict/gate/norm_share/surrogate"] == pytest.approx(1 / (1 + math.sqrt(2)), abs=1e-12)
    assert tags["term_conflict/gate/norm_share/load_balance"] == 0.0
    with pytest.raises(KeyError, match="unknown parameter group"):
        monitor.term_conflicts(terms, "critic")


def test_input_errors():
    theta, _, per_row, task_ids = linear_problem()
    frozen = torch.nn.Parameter(torch.zeros(2), requires_grad=False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        GradientConflictMonitor(TASKS, {"experts": [frozen]})
    with pytest.raises(ValueError, match="task ids span"):
        GradientConflictMonitor(TASKS[:2], {"gate": [theta]}).compute(lambda m: per_row[m].mean(), task_ids)


def test_parameter_slices_form_groups():
    """A slice ``(param, flat_index)`` is the group of those elements: same statistics as a separate parameter."""
    _, _, per_row, task_ids = linear_problem()
    x = torch.tensor([[1, 0]] * 4 + [[0, 2]] * 2 + [[-1, 0]] * 2, dtype=torch.float64)
    joint = torch.nn.Parameter(torch.tensor([[0.3, 9.0], [-0.7, 9.0]], dtype=torch.float64))  # column 0 = theta
    per_row = x @ joint[:, 0] + per_row.detach()
    theta_elements = torch.tensor([0, 2])  # joint.reshape(-1)[[0, 2]] = joint[:, 0]
    monitor = GradientConflictMonitor(TASKS, {"theta": [(joint, theta_elements)], "all": [joint]})
    report = monitor.compute(lambda mask: per_row[mask].mean(), task_ids)
    assert_matrix(report["theta"].cosine, [[1, 0, -1], [0, 1, 0], [-1, 0, 1]])
    assert_matrix(report["theta"].norms, [1, 2, 1])
    assert_matrix(report["all"].norms, [1, 2, 1])  # the unused column has zero gradient
    stats = monitor.term_conflicts({"a": joint[0, 0] * 3, "b": joint[1, 0] - joint[0, 1]}, "theta")
    assert_matrix(stats.norms, [3, 1])  # joint[0, 1] is outside the slice
