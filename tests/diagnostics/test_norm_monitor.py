"""NormMonitor tags and values, cadence, frozen-expert checksum failure, tensor statistics."""

import pytest
import torch
from rsl_rl.modules import EmpiricalNormalization
from torch import nn

from rsl_rl_moe.diagnostics import (
    FrozenExpertChangedError,
    NormMonitor,
    first_gradients,
    normalizer_stats,
    tensor_stats,
)


def filled_linear(value):
    layer = nn.Linear(2, 2)
    nn.init.constant_(layer.weight, value)
    nn.init.constant_(layer.bias, 0.0)
    return layer


def make_expert():
    expert = nn.Module()
    expert.actor = filled_linear(1.0)
    expert.obs_normalizer = EmpiricalNormalization(2)
    return expert.eval()


def test_parameter_and_gradient_norm_tags():
    gate = filled_linear(1.0)  # weight norm 2
    heads = nn.ModuleList([filled_linear(0.5), filled_linear(2.0)])  # weight norms 1 and 4
    std = nn.Parameter(torch.tensor([3.0, 4.0]))
    monitor = NormMonitor({"gate": gate, "heads": heads, "std": [std]}, frozen={"locomotion": make_expert()})

    norms = monitor.parameter_norms()
    assert norms["norm/gate/weight"] == pytest.approx(2.0) and norms["norm/gate/bias"] == 0.0
    assert norms["norm/gate/_total_norm"] == pytest.approx(2.0)
    assert norms["norm/heads_0/_total_norm"] == pytest.approx(1.0)
    assert norms["norm/heads_1/_total_norm"] == pytest.approx(4.0)
    assert norms["norm/std/p0"] == pytest.approx(5.0) and norms["norm/std/_total_norm"] == pytest.approx(5.0)
    assert norms["norm/locomotion/_total_norm"] == pytest.approx(2.0)

    # loss with gradient 3 on every gate weight entry and bias entry: |grad| = 3 * sqrt(6)
    (gate(torch.ones(1, 2)).sum() * 3 + (std * torch.tensor([0.0, 1.0])).sum()).backward()
    grads = monitor.gradient_norms()
    nn.utils.clip_grad_norm_(list(gate.parameters()) + [std], max_norm=0.1)
    assert grads["grad/gate/weight"] == pytest.approx(6.0)
    assert grads["grad/gate/_total_norm"] == pytest.approx(3 * 6**0.5)  # measured before clipping
    assert grads["grad/std/_total_norm"] == pytest.approx(1.0)
    assert not any(tag.startswith("grad/heads") for tag in grads)  # heads got no gradient


def test_monitor_cadence():
    monitor = NormMonitor({"gate": filled_linear(1.0)}, monitor_norm_freq=5)
    assert [i for i in range(12) if monitor.should_monitor(i)] == [0, 5, 10]
    assert not NormMonitor({"gate": filled_linear(1.0)}, monitor_norm_freq=0).should_monitor(0)
    with pytest.raises(ValueError, match="monitor_norm_freq"):
        NormMonitor({}, monitor_norm_freq=-1)


def test_frozen_expert_checksum_failures():
    experts = {"locomotion": make_expert(), "reaching": make_expert()}
    monitor = NormMonitor({"gate": filled_linear(1.0)}, frozen=experts)
    monitor.check_frozen()  # unchanged: passes

    with torch.no_grad():
        experts["reaching"].actor.weight[0, 1] += 1e-6
    with pytest.raises(FrozenExpertChangedError, match=r"frozen expert 'reaching' changed.*actor\.weight"):
        monitor.check_frozen()

    # a normaliser left in train mode updates its running statistics: caught as well
    monitor = NormMonitor({}, frozen={"locomotion": experts["locomotion"]})
    experts["locomotion"].obs_normalizer.train()
    experts["locomotion"].obs_normalizer.update(torch.randn(8, 2))
    with pytest.raises(FrozenExpertChangedError, match=r"'locomotion'.*obs_normalizer\._mean"):
        monitor.check_frozen()


def test_tensor_and_normalizer_stats():
    stats = tensor_stats(torch.tensor([[-3.0], [1.0]]), "logits/gate")
    assert stats == {
        "logits/gate/mean": -1.0,
        "logits/gate/std": 2.0,
        "logits/gate/min": -3.0,
        "logits/gate/max": 1.0,
        "logits/gate/abs_max": 3.0,
    }
    normalizer = EmpiricalNormalization(2).train()
    normalizer.update(torch.tensor([[0.0, 2.0], [2.0, 6.0]]))  # mean (1, 4), std (1, 2)
    assert normalizer_stats(normalizer, "obs_norm/policy") == {
        "obs_norm/policy/mean_mean": 2.5,
        "obs_norm/policy/abs_max_mean": 4.0,
        "obs_norm/policy/mean_std": 1.5,
        "obs_norm/policy/min_std": 1.0,
        "obs_norm/policy/max_std": 2.0,
        "obs_norm/policy/count": 2.0,
    }
    assert normalizer_stats(nn.Identity(), "obs_norm/policy") == {}


def test_first_gradients_are_taken_before_clipping_and_frozen_parameters_are_skipped():
    model = nn.Sequential(filled_linear(1.0), filled_linear(2.0))
    model[1].requires_grad_(False)  # a frozen part inside a monitored module
    monitor = NormMonitor({"model": model})
    assert len(monitor.parameters) == 2 and "norm/model/1.weight" not in monitor.parameter_norms()
    with first_gradients(monitor.parameters) as grads:
        for scale in (1.0, 10.0):  # two steps: only the first backward is kept
            model.zero_grad()
            (scale * model(torch.ones(1, 2)).sum()).backward()
            nn.utils.clip_grad_norm_(model.parameters(), max_norm=1e-3)
    # d/dW0 of sum(W1 (W0 x + b0) + b1) with W1 = 2, x = 1: every entry 2 * 2 = 4 -> |grad W0| = 8
    assert monitor.gradient_norms(grads)["grad/model/0.weight"] == pytest.approx(8.0)
    assert monitor.gradient_norms()["grad/model/_total_norm"] == pytest.approx(1e-3)  # .grad: second step, clipped
