"""The tag schema: every family builds the exact strings the runs write and parses them back (round trip),
with the odd names that occur (underscored task names, ``__`` pair separators, group names, dotted parameters);
the writers' tags all parse; names that would make a tag ambiguous are refused."""

import math
from itertools import product

import pytest
import torch

from rsl_rl_moe.diagnostics import (
    ExpertSelectionTracker,
    GradientConflictMonitor,
    conflict_scalars,
    entropy,
    normalizer_stats,
    tags,
    tensor_stats,
    term_conflict_scalars,
)
from rsl_rl_moe.diagnostics.tags import (
    ConflictImage,
    ConflictLabel,
    ConflictPair,
    ConflictSummary,
    DiagnosticsTime,
    GateWeight,
    Lifetime,
    ParamNorm,
    SelectionExpertStat,
    SelectionImage,
    SelectionStat,
    TaskDistance,
    TensorStat,
)

RUN = "moe/selection"

# Tags exactly as short MoE runs wrote them before the schema module existed (tests/moe/test_training_diagnostics.py
# runs, single gate and per-limb gate, and the README's names), with the record each one is.
KNOWN = {
    "moe/even/weight/base": GateWeight("even", "base"),
    "moe/loco_reach/arm/weight/arm": GateWeight("loco_reach", "arm", "arm"),
    "moe/odd/legs/weight/base": GateWeight("odd", "base", "legs"),
    "moe/selection/even/w10/entropy_of_mean": SelectionStat("even", 10, "entropy_of_mean", None, RUN),
    "moe/selection/loco_reach/w8/mean_sample_entropy_normalized": SelectionStat(
        "loco_reach", 8, "mean_sample_entropy_normalized", None, RUN
    ),
    "moe/selection/legs/even/w10/near_one_hot_share": SelectionStat("even", 10, "near_one_hot_share", "legs", RUN),
    "selection/arm/reaching/w5/zero_share": SelectionStat("reaching", 5, "zero_share", "arm"),
    "moe/selection/odd/w4/mean_weight/base": SelectionExpertStat("odd", 4, "mean_weight", "base", None, RUN),
    "moe/selection/arm/even/w10/frequency/arm": SelectionExpertStat("even", 10, "frequency", "arm", "arm", RUN),
    "selection/locomotion/w100000/frequency/loco_expert": SelectionExpertStat(
        "locomotion", 100000, "frequency", "loco_expert"
    ),
    "moe/selection/w4/js/even__odd": TaskDistance(4, "js", "even", "odd", None, RUN),
    "moe/selection/w1000/js/locomotion__reaching": TaskDistance(1000, "js", "locomotion", "reaching", None, RUN),
    "moe/selection/legs/w4/tv/even__odd": TaskDistance(4, "tv", "even", "odd", "legs", RUN),
    "selection/w5/wasserstein/locomotion__loco_reach": TaskDistance(5, "wasserstein", "locomotion", "loco_reach"),
    "moe/selection/w8/wasserstein/loco_reach__reaching": TaskDistance(
        8, "wasserstein", "loco_reach", "reaching", None, RUN
    ),
    "moe/selection/even/lifetime_env_steps": Lifetime("even", "env_steps", RUN),
    "selection/loco_reach/lifetime_rows": Lifetime("loco_reach", "rows"),
    "conflict/gate/max_negative_cosine": ConflictSummary("gate", "max_negative_cosine"),
    "conflict/gate_legs/frequency": ConflictSummary("gate_legs", "frequency"),
    "term_conflict/gate/mean_cosine": ConflictSummary("gate", "mean_cosine", "term_conflict"),
    "conflict/critic/cos/even__odd": ConflictPair("critic", "cos", "even", "odd"),
    "conflict/gate/magnitude_similarity/locomotion__loco_reach": ConflictPair(
        "gate", "magnitude_similarity", "locomotion", "loco_reach"
    ),
    "term_conflict/gate/cos/surrogate__moe_weight_regularization": ConflictPair(
        "gate", "cos", "surrogate", "moe_weight_regularization", "term_conflict"
    ),
    "term_conflict/gate/cos/moe_weight_regularization__moe_router_z": ConflictPair(
        "gate", "cos", "moe_weight_regularization", "moe_router_z", "term_conflict"
    ),
    "conflict/gate_arm/noise_floor/even": ConflictLabel("gate_arm", "noise_floor", "even"),
    "conflict/std/cos_with_total/loco_reach": ConflictLabel("std", "cos_with_total", "loco_reach"),
    "conflict/critic/grad_norm/odd": ConflictLabel("critic", "grad_norm", "odd"),
    "term_conflict/gate/norm_share/moe_router_z": ConflictLabel("gate", "norm_share", "moe_router_z", "term_conflict"),
    "norm/gate/_total_norm": ParamNorm("norm", "gate", "_total_norm"),
    "norm/base_actor/distribution.std_param": ParamNorm("norm", "base_actor", "distribution.std_param"),
    "norm/heads_0/mlp.0.weight": ParamNorm("norm", "heads_0", "mlp.0.weight"),
    "grad/std/std_param": ParamNorm("grad", "std", "std_param"),
    "logits/gate/abs_max": TensorStat("logits/gate", "abs_max"),
    "logits/critic_gate/mean": TensorStat("logits/critic_gate", "mean"),
    "obs_norm/gate/min_std": TensorStat("obs_norm/gate", "min_std"),
    "obs_norm/critic/count": TensorStat("obs_norm/critic", "count"),
    "Perf/diagnostics_time": DiagnosticsTime(),
    "images/conflict/gate_legs": ConflictImage("gate_legs"),
    "images/term_conflict/gate": ConflictImage("gate", "term_conflict"),
    "images/selection/w8": SelectionImage(8),
    "images/selection/arm/w10": SelectionImage(10, "arm"),
}


@pytest.mark.parametrize("tag", list(KNOWN))
def test_known_tags_parse_and_build_back_exactly(tag):
    record = KNOWN[tag]
    assert tags.parse(tag) == record
    assert type(tags.parse(tag)) is type(record)
    assert tags.build(record) == record.tag == tag


def test_every_family_round_trips_from_fields():
    """parse(build(fields)) == fields over a grid of odd names, for every record type."""
    tasks = ["locomotion", "loco_reach", "a_b_c", "w10", "selection", "x1"]
    groups = [None, "legs", "arm_2", "gate"]
    prefixes = ["selection", "moe/selection", "runs/a.b/selection"]
    records = [DiagnosticsTime(), *(SelectionImage(7, group) for group in groups)]
    for task, prefix, count in product(tasks, prefixes, tags.LIFETIME_COUNTS):
        records.append(Lifetime(task, count, prefix))
    for task, group in product(tasks, groups):
        records.append(GateWeight(task, "loco_expert", group))
        for prefix in prefixes:
            records += [SelectionStat(task, 3, field, group, prefix) for field in tags.SELECTION_FIELDS]
            records += [SelectionExpertStat(task, 100, s, "e_0", group, prefix) for s in tags.SELECTION_EXPERT_STATS]
            for distance, other in product(tags.TASK_DISTANCES, tasks):
                records.append(TaskDistance(1, distance, task, other, group, prefix))
    for prefix, group in product(("conflict", "term_conflict", "ns/conflict"), ("gate", "gate_legs", "critic")):
        records += [ConflictSummary(group, m, prefix) for m in tags.CONFLICT_SUMMARIES]
        for metric, a, b in product(tags.CONFLICT_PAIR_METRICS, tasks, tasks):
            records.append(ConflictPair(group, metric, a, b, prefix))
        records += [ConflictLabel(group, m, a, prefix) for m, a in product(tags.CONFLICT_LABEL_METRICS, tasks)]
    records += [ConflictImage("gate_arm", prefix) for prefix in ("conflict", "term_conflict")]
    norm_groups, params = ("gate", "base_actor", "heads_1"), ("_total_norm", "mlp.0.bias")
    records += [ParamNorm(kind, g, p) for kind, g, p in product(tags.NORM_KINDS, norm_groups, params)]
    records += [TensorStat(tags.logits_source(g), s) for g in ("gate", "critic_gate") for s in tags.TENSOR_STATS]
    records += [TensorStat(tags.obs_norm_source(n), s) for n in ("gate", "critic") for s in tags.NORMALIZER_STATS]
    built = [record.tag for record in records]
    assert len(set(built)) == len(built)  # distinct fields give distinct tags
    for record, tag in zip(records, built):
        assert tags.parse(tag) == record, tag
        assert type(tags.parse(tag)) is type(record), tag


def test_other_tags_are_not_diagnostics():
    for tag in ("Loss/surrogate", "Loss/moe_gate_entropy", "Train/mean_reward", "Perf/total_fps", "Episode/rew_x",
                "Task/reaching/ee_error", "selection/even/w0/zero_share", "selection/even/w10/unknown",
                "conflict/gate/cos/even___odd", "conflict/gate/cos/even", "moe/even/weights/base", "norm/gate",
                "logits/gate/median", "images/selection/w10/x"):  # fmt: skip
        assert tags.parse(tag) is None, tag


@pytest.mark.parametrize(
    "record",
    [
        TaskDistance(5, "tv", "loco_", "reach"),  # "loco___reach" would also be "loco" + "_reach"
        TaskDistance(5, "tv", "loco", "_reach"),
        ConflictPair("gate", "cos", "a__b", "c"),
        GateWeight("loco/reach", "base"),
        SelectionStat("even", 0, "zero_share"),
        SelectionStat("even", 5, "entropy"),
        SelectionStat("even", 5, "zero_share", prefix="gate_logging"),
        ConflictSummary("", "mean_cosine"),
        ParamNorm("weight", "gate", "_total_norm"),
    ],
)
def test_ambiguous_or_unknown_fields_are_refused(record):
    with pytest.raises(ValueError):
        _ = record.tag


def test_names_are_checked_where_they_enter():
    with pytest.raises(ValueError, match=r"task name 'loco__reach' cannot be one side of a pair tag"):
        ExpertSelectionTracker(2, ["loco__reach", "reaching"])
    with pytest.raises(ValueError, match="expert name 'a/b'"):
        ExpertSelectionTracker(2, ["a", "b"], expert_names=["a/b", "c"])
    theta = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="task name '_reaching'"):
        GradientConflictMonitor(["locomotion", "_reaching"], {"gate": [theta]})
    monitor = GradientConflictMonitor(["locomotion"], {"gate": [theta]})
    with pytest.raises(ValueError, match="loss term 'moe__z'"):
        monitor.term_conflicts({"moe__z": theta.sum()}, "gate")


def test_writers_tags_all_parse_back():
    """Every tag the writers produce is a record of the schema (and builds back to itself)."""
    tracker = ExpertSelectionTracker(2, ["locomotion", "loco_reach"], windows=(3, 5), group_names=["legs", "arm"],
                                     expert_names=["base", "arm"])  # fmt: skip
    tracker.record(torch.softmax(torch.randn(4, 2, 2), -1), torch.tensor([0, 1, 0, 1]))
    tracker.set_ground_cost(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    theta = torch.nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))
    groups = {"gate": [theta], "gate_legs": [(theta, torch.tensor([0]))]}
    monitor = GradientConflictMonitor(["locomotion", "loco_reach"], groups)
    per_row = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [-1.0, 1.0]], dtype=torch.float64) @ theta
    report = monitor.compute(lambda mask: per_row[mask].mean(), torch.tensor([0, 0, 1, 1]))
    terms = monitor.term_conflicts({"surrogate": per_row.sum(), "moe_router_z": theta.square().sum()}, "gate")
    normalizer = torch.nn.Module()
    normalizer.mean, normalizer.std, normalizer.count = torch.zeros(2), torch.ones(2), 3
    written = (tracker.scalars() | tracker.scalars(prefix=tags.RUN_SELECTION) | conflict_scalars(report)
               | term_conflict_scalars(terms, "gate") | tensor_stats(torch.randn(3, 2), tags.logits_source("gate"))
               | normalizer_stats(normalizer, tags.obs_norm_source("gate")))  # fmt: skip
    assert "selection/legs/w5/wasserstein/locomotion__loco_reach" in written
    for tag in written:
        record = tags.parse(tag)
        assert record is not None and record.tag == tag, tag


def test_one_entropy_exact_at_zeros_with_finite_gradient():
    p = torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.25, 0.25, 0.5]], requires_grad=True)
    h = entropy(p)
    assert torch.allclose(h, torch.tensor([math.log(2), 0.0, 1.5 * math.log(2)]))
    assert h[1].item() == 0.0 and math.copysign(1.0, h[1].item()) == 1.0  # +0.0, not -0.0
    h.sum().backward()
    assert torch.isfinite(p.grad).all() and p.grad[1, 1] == 0.0
    assert p.grad[0, 0].item() == pytest.approx(math.log(2) - 1)  # -(ln p + 1)
    tiny = torch.tensor([1e-12, 1 - 1e-12], dtype=torch.float64)
    exact = -(1e-12 * math.log(1e-12) + (1 - 1e-12) * math.log1p(-1e-12))  # no clamping of small weights
    assert entropy(tiny).item() == pytest.approx(exact, rel=1e-12)
    assert math.isnan(entropy(torch.tensor([float("nan"), 0.5])).item())
    # bit for bit the gate regulariser's previous definition (weights >= 1e-8: seeded trainings unchanged), and
    # within float32 rounding the xlogy-based one the selection statistics used before
    w = torch.softmax(torch.randn(64, 4), -1) * (torch.rand(64, 4) > 0.2)
    assert torch.equal(entropy(w), -(w * torch.log(w.clamp_min(1e-8))).sum(-1))
    assert torch.allclose(entropy(w), 0.0 - torch.special.xlogy(w, w).sum(-1), rtol=1e-6, atol=0.0)
