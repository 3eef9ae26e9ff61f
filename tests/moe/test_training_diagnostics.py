"""MoERunner's training diagnostics on the tiny LinearEnv: tags and images written, nothing when disabled,
a changed frozen expert stops training, per-limb gate slices, config checks."""

from __future__ import annotations

import contextlib
import io
import os

import pytest
import torch
from helpers import read_events
from moe_helpers import LEGS_ARM, LinearEnv
from test_moe_runner import TASKS, runner_cfg

from rsl_rl_moe.algorithms import PPOMoE
from rsl_rl_moe.diagnostics import FrozenExpertChangedError, grouped_action_ground_cost, tags
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


@pytest.mark.parametrize("action_groups", [None, LEGS_ARM])
def test_wasserstein_between_tasks_is_logged_with_the_expert_action_ground_cost(tmp_path, expert_files, action_groups):
    """A real run logs moe/selection[/<group>]/w<W>/wasserstein/<a>__<b> at every iteration; the ground cost is the
    mean L2 distance between the experts' actions on the update's last minibatch (per group on its actions). Every
    diagnostics tag of the run parses back through the tag schema."""
    runner = make_runner(expert_files, str(tmp_path), EVERY_ITERATION, action_groups=action_groups)
    actor = runner.alg.actor
    update_forwards = []  # expert actions of each forward with gradient: the update's minibatches

    def keep_expert_actions(module, args, out):
        if torch.is_grad_enabled():
            update_forwards.append(module.last_expert_actions)

    actor.register_forward_hook(keep_expert_actions)
    learn(runner, 2)
    tracker = runner.gate_tracker
    groups = actor.action_to_group if action_groups else None
    expected = grouped_action_ground_cost(update_forwards[-1], groups, tracker.num_groups)
    cost = tracker.state_dict()["ground_cost"]  # (G, E, E), checkpointed with the tracker
    assert torch.allclose(cost, expected.cpu()) and (cost[:, 0, 1] > 0).all()
    events = read_events(str(tmp_path))
    literal = (
        "moe/selection/legs/w10/wasserstein/even__odd" if action_groups else "moe/selection/w4/wasserstein/even__odd"
    )
    assert literal in events.Tags()["scalars"]
    tag_groups = list(action_groups) if action_groups else [None]
    for g, group in enumerate(tag_groups):
        for window in tracker.windows:  # the iteration's 4 steps and the configured 10
            wasserstein, tv = (
                events.Scalars(tags.TaskDistance(window, name, "even", "odd", group, tags.RUN_SELECTION).tag)
                for name in ("wasserstein", "tv")
            )
            assert [e.step for e in wasserstein] == [0, 1]
            # two experts: all of the moved mass |p_0 - q_0| = TV travels the one distance between them
            assert wasserstein[-1].value == pytest.approx(tv[-1].value * float(cost[g, 0, 1]), rel=1e-5, abs=1e-7)
    # every tag of the run that is not rsl_rl's is a record of the schema and builds back to itself
    written = events.Tags()["scalars"] + events.Tags()["images"]
    ours = [t for t in written if not t.startswith(("Loss/", "Train/", "Policy/")) and not (
        t.startswith("Perf/") and t != tags.DIAGNOSTICS_TIME)]  # fmt: skip
    assert len(ours) > 150
    for tag in ours:
        record = tags.parse(tag)
        assert record is not None and record.tag == tag, tag
