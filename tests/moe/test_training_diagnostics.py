"""MoERunner's training diagnostics on the tiny LinearEnv: tags and images written, nothing when disabled,
a changed frozen expert stops training, per-limb gate slices, config checks."""

from __future__ import annotations

import contextlib
import io
import os

import pytest
import torch
from moe_helpers import LEGS_ARM, LinearEnv
from test_moe_runner import TASKS, runner_cfg

from helpers import read_events
from rsl_rl_moe.algorithms import PPOMoE
from rsl_rl_moe.diagnostics import FrozenExpertChangedError
from rsl_rl_moe.runners import MoERunner
from rsl_rl_moe.runners.training_diagnostics import DiagnosticsConfig, limb_gate_slices

DIAGNOSTIC_PREFIXES = ("conflict/", "term_conflict/", "norm/", "grad/", "logits/", "obs_norm/", "Perf/diagnostics_time")
EVERY_ITERATION = {"conflict_interval": 1, "monitor_norm_freq": 1, "image_interval": 1}


def make_runner(files, log_dir, diagnostics, gate_logging=None, action_groups=None) -> MoERunner:
    cfg = runner_cfg(files, action_groups)
    cfg["algorithm"]["learning_rate"] = 1e-3
    cfg["actor"]["obs_moe"]["obs_normalization"] = True
    cfg["diagnostics"] = diagnostics
    cfg["gate_logging"] = {**cfg["gate_logging"], **(gate_logging or {})}
    return MoERunner(LinearEnv(), cfg, log_dir=log_dir, env_description={"task_names": TASKS})


def learn(runner: MoERunner, iterations: int) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        runner.learn(iterations)


def test_per_limb_run_writes_every_diagnostic_family(tmp_path, expert_files):
    learn(make_runner(expert_files, str(tmp_path), EVERY_ITERATION, action_groups=LEGS_ARM), 2)
    events = read_events(str(tmp_path))
    tags = set(events.Tags()["scalars"])
    for group in ("gate", "gate_legs", "gate_arm", "std", "critic"):
        assert len(events.Scalars(f"conflict/{group}/cos/even__odd")) == 2
        assert f"conflict/{group}/noise_floor/even" in tags
    assert {
        "term_conflict/gate/cos/surrogate__moe_weight_regularization", "term_conflict/gate/norm_share/value",
        "norm/gate/_total_norm", "norm/base_actor/_total_norm", "grad/gate/_total_norm", "grad/std/_total_norm",
        "grad/critic/_total_norm", "logits/gate/abs_max", "obs_norm/gate/min_std", "Perf/diagnostics_time",
    } <= tags  # fmt: skip
    assert not any(t.startswith("grad/") and "experts" in t for t in tags)  # frozen: no gradient
    images = set(events.Tags()["images"])
    assert {"images/conflict/gate_legs", "images/term_conflict/gate", "images/selection/arm/w10"} <= images
    assert sorted(os.listdir(tmp_path / "diagnostics"))[:2] == ["conflict_critic_it0.png", "conflict_critic_it1.png"]


def test_disabled_diagnostics_leave_update_alone_and_write_none_of_their_tags(tmp_path, expert_files):
    runner = make_runner(expert_files, str(tmp_path), {"enabled": False}, gate_logging={"enabled": False})
    assert runner.diagnostics is None and runner.gate_tracker is None
    assert runner.alg.update.__func__ is PPOMoE.update and runner.alg.act.__func__ is PPOMoE.act
    learn(runner, 2)
    tags = read_events(str(tmp_path)).Tags()
    assert not any(t.startswith((*DIAGNOSTIC_PREFIXES, "moe/")) for t in tags["scalars"])
    assert tags["images"] == [] and not (tmp_path / "diagnostics").exists()
    assert "gate_selection" not in torch.load(tmp_path / "model_1.pt", weights_only=True)["infos"]


def test_changed_frozen_expert_stops_training_naming_it(expert_files):
    runner = make_runner(expert_files, None, {"conflict_interval": 0, "monitor_norm_freq": 1})
    weight = runner.alg.actor.experts["arm"].mlp[0].weight
    step = runner.env.step

    def step_and_corrupt(actions):  # a stray in-place update of a frozen expert during training
        with torch.no_grad():
            weight[0, 0] += 1e-3
        return step(actions)

    learn(runner, 1)  # checksums are taken when learn() starts: unchanged so far
    runner.env.step = step_and_corrupt
    with pytest.raises(FrozenExpertChangedError, match=r"frozen expert 'arm_actor' changed.*'mlp\.0\.weight'"):
        learn(runner, 1)


def test_limb_gate_slices_own_exactly_their_group_logits(expert_files):
    actor = make_runner(expert_files, None, {"enabled": False}, action_groups=LEGS_ARM).alg.actor
    x = torch.randn(5, actor.gate.obs_dim)
    before = actor.gate(x)[1]  # (5, G, E) logits
    for g, (name, slices) in enumerate(limb_gate_slices(actor).items()):
        assert name == f"gate_{actor.action_group_names[g]}"
        with torch.no_grad():
            for param, elements in slices:
                param.view(-1)[elements] += 1.0
        changed = (actor.gate(x)[1] != before).any(dim=(0, 2))
        assert changed.tolist() == [i == g for i in range(len(LEGS_ARM))]
        before = actor.gate(x)[1]


def test_diagnostics_config_is_checked():
    with pytest.raises(ValueError, match=r"unknown runner.diagnostics keys \['conflict_intreval'\]"):
        DiagnosticsConfig.from_dict({"conflict_intreval": 5})
    with pytest.raises(ValueError, match="image_interval=15 is not a multiple of conflict_interval=10"):
        DiagnosticsConfig.from_dict({"image_interval": 15})
    with pytest.raises(ValueError, match="monitor_norm_freq must be >= 0"):
        DiagnosticsConfig.from_dict({"monitor_norm_freq": -1})
    assert DiagnosticsConfig.from_dict({"conflict_interval": 0, "image_interval": 15}).image_interval == 15


def test_diagnostics_do_not_change_training(tmp_path, expert_files):
    """Same seed, diagnostics at every iteration or off: bit-identical models after training (no RNG draw,
    gradient or parameter of the update is touched)."""
    states = []
    for name, diagnostics in (("on", EVERY_ITERATION), ("off", {"enabled": False})):
        torch.manual_seed(0)
        runner = make_runner(expert_files, str(tmp_path / name), diagnostics)
        learn(runner, 2)
        states.append(runner.alg.save())
    for part in ("actor_state_dict", "critic_state_dict"):
        for key, value in states[0][part].items():
            assert torch.equal(value, states[1][part][key]), (part, key)
