"""ObsMoE gate: simplex weights, sparse routing, export routing equal to the entmax package, schedule."""

from __future__ import annotations

import entmax
import pytest
import torch

from rsl_rl_moe.modules.obs_moe import ROUTINGS, ObsMoE, RoutingSchedule, entmax15_forward, sparsemax_forward


@pytest.mark.parametrize("routing", ROUTINGS)
@pytest.mark.parametrize("num_groups", [None, 3])
def test_weights_on_simplex(routing, num_groups):
    torch.manual_seed(0)
    gate = ObsMoE(10, num_experts=4, num_groups=num_groups, routing=routing, temperature=0.7)
    weights, logits = gate(5.0 * torch.randn(32, 10))
    shape = (32, 4) if num_groups is None else (32, num_groups, 4)
    assert weights.shape == logits.shape == shape
    assert (weights >= 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(shape[:-1]))
    assert gate.last_weights.shape == shape and not gate.last_weights.requires_grad


def test_sparsemax_gives_exact_zeros():
    logits = torch.tensor([[3.0, 0.0, -1.0], [0.2, 0.1, 0.0], [5.0, -5.0, 4.9]])
    gate = ObsMoE(3, num_experts=3, routing="sparsemax")
    gate.mlp = torch.nn.Identity()  # the gate's logits are its input
    weights, _ = gate(logits)
    assert weights[0].tolist() == [1.0, 0.0, 0.0]
    assert (weights[2, 1] == 0).item() and weights[1].min() > 0
    softmax_weights, _ = ObsMoE(3, num_experts=3, routing="softmax")(logits)
    assert (softmax_weights > 0).all()


@pytest.mark.parametrize("num_experts", [2, 5])
def test_export_routing_equals_entmax_package(num_experts):
    z = 3.0 * torch.randn(200, num_experts, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(sparsemax_forward(z), entmax.sparsemax(z, dim=-1))
    torch.testing.assert_close(entmax15_forward(z), entmax.entmax15(z, dim=-1))


def test_schedule_warmup_then_annealed_sparsemax():
    sched = RoutingSchedule("sparsemax", 1.0, warmup_iterations=10, anneal_iterations=20, final_temperature=0.5)
    assert sched.state(0).phase == "warmup" and sched.state(9).routing == "softmax"
    assert sched.state(10) == sched.state(10).__class__("anneal", "sparsemax", 1.0)
    assert sched.state(20).temperature == pytest.approx(0.75)
    assert sched.state(30).phase == "final" and sched.state(500).temperature == 0.5
    assert RoutingSchedule("entmax15", 2.0).state(123).phase == "constant"
    with pytest.raises(ValueError, match="unknown routing"):
        RoutingSchedule("top1")


def test_schedule_iteration_restored_from_state_dict():
    cfg = {
        "routing": "sparsemax",
        "schedule": {"warmup_iterations": 2, "anneal_iterations": 4, "final_temperature": 0.5},
    }
    gate = ObsMoE(6, **cfg)
    for _ in range(4):
        gate.step_schedule()
    assert gate.routing_state.phase == "anneal" and gate.routing_state.temperature == pytest.approx(0.75)
    fresh = ObsMoE(6, **cfg)
    fresh.load_state_dict(gate.state_dict())
    assert fresh.routing_state == gate.routing_state


def test_output_init_gain_sets_how_decisive_the_initial_routing_is():
    torch.manual_seed(0)
    obs = torch.randn(512, 20)
    near_uniform, _ = ObsMoE(20, num_experts=2)(obs)
    decisive, _ = ObsMoE(20, num_experts=2, output_init_gain=3.0)(obs)
    assert (near_uniform - 0.5).abs().max() < 0.05
    assert (decisive - 0.5).abs().mean() > 0.15
