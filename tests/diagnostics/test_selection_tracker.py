"""ExpertSelectionTracker: known statistics, window roll-over, distances, checkpoint round trip."""

import math

import pytest
import torch

from rsl_rl_moe.diagnostics import (
    ExpertSelectionTracker,
    expert_action_ground_cost,
    jensen_shannon,
    total_variation,
    wasserstein,
)

TASKS = ["locomotion", "reaching", "loco_reach"]


def one_hot_rows(experts, num_experts):
    return torch.nn.functional.one_hot(torch.tensor(experts), num_experts).float()


def test_known_entropies_shares_and_distances():
    tracker = ExpertSelectionTracker(4, TASKS, windows=(10,))
    # locomotion: 2 uniform rows; reaching: one-hot rows on experts 0 and 1
    weights = torch.cat([torch.full((2, 4), 0.25), one_hot_rows([0, 1], 4)])
    tracker.record(weights, torch.tensor([0, 0, 1, 1]))

    loco = tracker.get_expert_selection_stats("locomotion")[10]
    assert loco["mean_weights"] == [0.25] * 4
    assert loco["entropy_of_mean"] == pytest.approx(math.log(4), abs=1e-12)
    assert loco["entropy_of_mean_normalized"] == pytest.approx(1.0, abs=1e-12)
    assert loco["mean_sample_entropy"] == pytest.approx(math.log(4), abs=1e-6)
    assert loco["near_one_hot_share"] == 0.0 and loco["zero_share"] == 0.0
    assert loco["frequencies"] == [1.0, 0.0, 0.0, 0.0]  # ties go to the lowest index
    assert loco["total_selections"] == 2 and loco["data_points"] == 1

    reach = tracker.get_expert_selection_stats(1)[10]
    assert reach["mean_weights"] == [0.5, 0.5, 0.0, 0.0]
    assert reach["entropy_of_mean"] == pytest.approx(math.log(2), abs=1e-12)
    assert reach["entropy_of_mean_normalized"] == pytest.approx(0.5, abs=1e-12)
    assert reach["mean_sample_entropy"] == 0.0
    assert reach["near_one_hot_share"] == 1.0
    assert reach["zero_share"] == 0.75
    assert reach["zero_share_per_expert"] == [0.5, 0.5, 1.0, 1.0]
    assert reach["frequencies"] == [0.5, 0.5, 0.0, 0.0]
    assert reach["total_counts"] == [1, 1, 0, 0]

    empty = tracker.get_expert_selection_stats()["loco_reach"][10]
    assert empty["total_selections"] == 0 and empty["data_points"] == 0 and math.isnan(empty["entropy_of_mean"])

    distances = tracker.task_distances(10)
    assert list(distances) == [("locomotion", "reaching")]  # loco_reach has no rows yet
    # JS in bits: KL(p||m) = 0.5 log2(2/3) + 0.5, KL(q||m) = log2(4/3)
    js = math.sqrt(0.5 * ((0.5 * math.log2(2 / 3) + 0.5) + math.log2(4 / 3)))
    assert distances[("locomotion", "reaching")]["tv"] == pytest.approx(0.5, abs=1e-12)
    assert distances[("locomotion", "reaching")]["js"] == pytest.approx(js, abs=1e-9)
    assert "wasserstein" not in distances[("locomotion", "reaching")]


def test_window_rolls_over_at_exactly_its_size():
    tracker = ExpertSelectionTracker(2, TASKS, windows=(3, 5))
    a, b = one_hot_rows([0], 2), one_hot_rows([1], 2)
    task0 = torch.tensor([0])
    for _ in range(3):
        tracker.record(a, task0)
    stats = tracker.get_expert_selection_stats(0)
    assert stats[3]["mean_weights"] == [1.0, 0.0] and stats[3]["data_points"] == 3

    # steps in which task 0 has no env neither advance nor push out its window
    for _ in range(4):
        tracker.record(b, torch.tensor([1]))
    assert tracker.get_expert_selection_stats(0) == stats

    tracker.record(b, task0)  # 4th step of task 0: the first drops out of the 3-step window
    stats = tracker.get_expert_selection_stats(0)
    assert stats[3]["mean_weights"] == pytest.approx([2 / 3, 1 / 3], abs=1e-12)
    assert stats[3]["data_points"] == 3 and stats[3]["total_selections"] == 3
    assert stats[5]["mean_weights"] == [0.75, 0.25] and stats[5]["data_points"] == 4

    tracker.record(b, task0)
    tracker.record(b, task0)  # 6 steps: window 5 holds a, a, b, b, b
    stats = tracker.get_expert_selection_stats(0)
    assert stats[3]["mean_weights"] == [0.0, 1.0]
    assert stats[5]["mean_weights"] == pytest.approx([0.4, 0.6], abs=1e-12) and stats[5]["data_points"] == 5
    assert tracker.lifetime_counts() == {
        "locomotion": {"env_steps": 6, "rows": 6},
        "reaching": {"env_steps": 4, "rows": 4},
        "loco_reach": {"env_steps": 0, "rows": 0},
    }


def test_float_task_id_group_and_input_errors():
    tracker = ExpertSelectionTracker(2, TASKS, windows=(4,))
    tracker.record(torch.tensor([[0.2, 0.8], [0.6, 0.4]]), torch.tensor([[2.0], [2.0]]))
    stats = tracker.get_expert_selection_stats("loco_reach")[4]
    assert stats["mean_weights"] == pytest.approx([0.4, 0.6], abs=1e-7)
    assert stats["total_selections"] == 2 and stats["data_points"] == 1
    with pytest.raises(ValueError, match="task ids span"):
        tracker.record(torch.tensor([[0.5, 0.5]]), torch.tensor([3]))
    with pytest.raises(ValueError, match=r"expected \(N, 2\)"):
        tracker.record(torch.full((1, 3), 1 / 3), torch.tensor([0]))
    with pytest.raises(ValueError, match="2 task ids for 1 rows"):
        tracker.record(torch.tensor([[0.5, 0.5]]), torch.tensor([0, 1]))
    with pytest.raises(KeyError, match="unknown task"):
        tracker.get_expert_selection_stats("swimming")


def test_per_group_statistics_and_tags():
    tracker = ExpertSelectionTracker(2, TASKS[:2], windows=(5,), group_names=["legs", "arm"])
    # legs follow expert 0, the arm follows expert 1, for both tasks
    weights = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]] * 2)
    tracker.record(weights, torch.tensor([0, 1]))
    assert tracker.get_expert_selection_stats(0, group="legs")[5]["frequencies"] == [1.0, 0.0]
    assert tracker.get_expert_selection_stats(0, group="arm")[5]["frequencies"] == [0.0, 1.0]
    with pytest.raises(ValueError, match=r"expected \(N, 2, 2\)"):
        tracker.record(torch.tensor([[1.0, 0.0]]), torch.tensor([0]))
    tags = tracker.scalars()
    assert tags["selection/arm/reaching/w5/mean_weight/expert1"] == 1.0
    assert tags["selection/legs/locomotion/w5/near_one_hot_share"] == 1.0
    assert tags["selection/legs/w5/tv/locomotion__reaching"] == 0.0
    assert tags["selection/locomotion/lifetime_rows"] == 1.0
    matrix = tracker.selection_matrix(5, "frequencies", group="arm")
    assert torch.equal(matrix, torch.tensor([[0.0, 1.0], [0.0, 1.0]], dtype=torch.float64))


def test_distance_functions_known_values():
    p, q = torch.tensor([0.5, 0.5, 0.0]), torch.tensor([0.0, 0.5, 0.5])
    assert total_variation(p, q) == 0.5
    assert jensen_shannon(p, p) == 0.0
    assert jensen_shannon(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])) == pytest.approx(1.0, abs=1e-12)
    line = torch.tensor([[0.0, 1.0, 2.0], [1.0, 0.0, 1.0], [2.0, 1.0, 0.0]])  # experts on a line, spacing 1
    assert wasserstein(p, q, line) == pytest.approx(1.0, abs=1e-12)  # sum |CDF_p - CDF_q|
    far = torch.tensor([[0.0, 3.0, 3.0], [3.0, 0.0, 3.0], [3.0, 3.0, 0.0]])
    assert wasserstein(p, q, far) == pytest.approx(1.5, abs=1e-12)  # 0.5 mass moved at cost 3
    # the distance follows the ground cost, not the expert index order
    perm = [2, 0, 1]
    assert wasserstein(p[perm], q[perm], line[perm][:, perm]) == pytest.approx(1.0, abs=1e-12)
    actions = torch.stack([torch.zeros(4, 2), torch.tensor([[3.0, 4.0]]).expand(4, 2)])  # (E=2, N=4, A=2)
    assert torch.equal(expert_action_ground_cost(actions), torch.tensor([[0.0, 5.0], [5.0, 0.0]], dtype=torch.float64))


def test_wasserstein_with_ground_cost_in_tracker():
    tracker = ExpertSelectionTracker(2, TASKS[:2], windows=(5,))
    tracker.record(one_hot_rows([0, 1], 2), torch.tensor([0, 1]))
    tracker.set_ground_cost(torch.tensor([[0.0, 0.7], [0.7, 0.0]], dtype=torch.float64))
    assert tracker.task_distances(5)[("locomotion", "reaching")]["wasserstein"] == pytest.approx(0.7, abs=1e-12)
    assert tracker.scalars()["selection/w5/wasserstein/locomotion__reaching"] == pytest.approx(0.7, abs=1e-12)
    with pytest.raises(ValueError, match="ground cost has shape"):
        tracker.set_ground_cost(torch.zeros(3, 3))


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    tracker = ExpertSelectionTracker(3, TASKS, windows=(3, 5))
    tracker.set_ground_cost(torch.ones(3, 3) - torch.eye(3))
    for _ in range(7):
        tracker.record(torch.softmax(torch.randn(6, 3), -1), torch.randint(0, 2, (6,)))
    path = tmp_path / "tracker.pt"
    torch.save({"selection_tracker": tracker.state_dict()}, path)
    state = torch.load(path, weights_only=True)["selection_tracker"]

    restored = ExpertSelectionTracker(3, TASKS, windows=(3, 5))
    restored.load_state_dict(state)
    # repr compares exactly and treats the NaNs of the empty loco_reach windows as equal
    assert repr(restored.get_expert_selection_stats()) == repr(tracker.get_expert_selection_stats())
    assert restored.lifetime_counts() == tracker.lifetime_counts()
    assert restored.scalars() == tracker.scalars()
    step = (torch.softmax(torch.randn(6, 3), -1), torch.randint(0, 3, (6,)))
    tracker.record(*step)
    restored.record(*step)
    assert restored.get_expert_selection_stats() == tracker.get_expert_selection_stats()
    assert restored.get_expert_selection_stats()["loco_reach"][3]["total_selections"] > 0

    shorter = ExpertSelectionTracker(3, TASKS, windows=(3,))  # keeps the newest steps that fit
    shorter.load_state_dict(state)
    original = ExpertSelectionTracker(3, TASKS, windows=(3, 5))
    original.load_state_dict(state)
    assert (
        shorter.get_expert_selection_stats()["locomotion"][3] == original.get_expert_selection_stats()["locomotion"][3]
    )

    with pytest.raises(ValueError, match="task_names"):
        ExpertSelectionTracker(3, ["a", "b", "c"], windows=(3,)).load_state_dict(state)


def test_recording_under_inference_mode_leaves_a_loadable_tracker():
    """rsl_rl rollouts run under torch.inference_mode; the tracker's state must stay a normal tensor."""
    tracker = ExpertSelectionTracker(2, TASKS, windows=(4,))
    with torch.inference_mode():
        for _ in range(3):
            tracker.record(torch.softmax(torch.randn(6, 2), -1), torch.randint(0, 3, (6,)))
    state = tracker.state_dict()
    tracker.load_state_dict(state)  # in-place writes outside inference mode
    assert sum(c["env_steps"] for c in tracker.lifetime_counts().values()) >= 3
