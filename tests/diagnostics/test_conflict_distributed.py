"""Two gloo ranks on CPU, each with different task rows, compute the single-process conflict matrix."""

import datetime

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from rsl_rl_moe.diagnostics import GradientConflictMonitor

TASKS = ["locomotion", "reaching", "loco_reach"]
# rank 0 holds locomotion rows 0-5 and all reaching rows; rank 1 the other locomotion rows and all
# loco_reach rows: each rank lacks one task entirely
TASK_IDS = torch.tensor([0] * 10 + [1] * 8 + [2] * 6)
RANK_ROWS = [list(range(0, 6)) + list(range(10, 18)), list(range(6, 10)) + list(range(18, 24))]


def make_problem():
    """A small float64 MLP, its parameter groups and a per-row squared-error loss over 24 rows."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)).double()
    obs = torch.randn(24, 4, dtype=torch.float64)
    target = torch.randn(24, 2, dtype=torch.float64)
    groups = {"gate": list(model[0].parameters()), "head": list(model[2].parameters())}
    return model, groups, obs, target


def conflict_report(rows):
    model, groups, obs, target = make_problem()
    per_row = (model(obs[rows]) - target[rows]).square().sum(dim=-1)
    monitor = GradientConflictMonitor(TASKS, groups, seed=dist.get_rank() if dist.is_initialized() else 0)
    report = monitor.compute(lambda mask: per_row[mask].mean(), TASK_IDS[rows])
    return {
        group: {
            "cosine": stats.cosine,
            "norms": stats.norms,
            "magnitude_similarity": stats.magnitude_similarity,
            "cosine_with_total": stats.cosine_with_total,
            "noise_floor": stats.noise_floor,
        }
        for group, stats in report.items()
    }


def worker(rank, world_size, folder):
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{folder}/store",
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        torch.save(conflict_report(RANK_ROWS[rank]), f"{folder}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_ranks_match_single_process(tmp_path):
    assert not dist.is_initialized()
    expected = conflict_report(list(range(24)))
    mp.spawn(worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for group, single in expected.items():
        # the constructed problem has real conflict on the gate: not a trivial all-ones matrix
        assert (single["cosine"] < 0.99).any()
        for key in ("cosine", "norms", "magnitude_similarity", "cosine_with_total"):
            for r in range(2):
                assert torch.allclose(ranks[r][group][key], single[key], atol=1e-12, rtol=0), (group, key, r)
            assert torch.equal(ranks[0][group][key], ranks[1][group][key]), (group, key)
        # the split-half noise floor uses rank-local random halves, then the same all-reduce
        assert torch.equal(ranks[0][group]["noise_floor"], ranks[1][group]["noise_floor"])
        assert not torch.isnan(ranks[0][group]["noise_floor"]).any()
