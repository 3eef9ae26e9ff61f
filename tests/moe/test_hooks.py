"""The runners extend rsl_rl through explicit extension points (rsl_rl_moe.algorithms.hooks) and a logger they
construct, never by replacing methods on the algorithm or the logger; a short MoE run writes the same TensorBoard
tags as when they did (tags captured on that code: the exact families below)."""

from __future__ import annotations

import contextlib
import io

import pytest
import torch
from helpers import read_events
from moe_helpers import LEGS_ARM, LinearEnv
from rsl_rl.algorithms import PPO
from rsl_rl.utils.logger import Logger
from test_moe_runner import TASKS, runner_cfg

from rsl_rl_moe.algorithms import HookedPPO, PPOMoE
from rsl_rl_moe.runners import MoERunner, Runner
from rsl_rl_moe.runners.progress import ProgressLogger

ITERATIONS = 3
REPLACEABLE = {"act", "update", "process_env_step", "compute_returns"}
"""Algorithm methods rsl_rl's learn() calls: none may be an instance attribute."""

RSL_RL_AND_RUNNER_TAGS = {
    "Curriculum/stage", "Loss/entropy", "Loss/learning_rate", "Loss/surrogate", "Loss/value",
    "Loss/moe_diversity", "Loss/moe_gate_entropy", "Loss/moe_load_balance", "Loss/moe_router_z",
    "Loss/moe_routing_phase", "Loss/moe_routing_temperature", "Loss/moe_weight_regularization",
    "Perf/collection_time", "Perf/diagnostics_time", "Perf/learning_time", "Perf/total_fps", "Policy/mean_std",
    "Train/mean_episode_length", "Train/mean_episode_length/time", "Train/mean_reward", "Train/mean_reward/time",
}  # fmt: skip
"""Every tag outside the gate-logging and diagnostics families, as the patching code wrote them."""
GATE_WEIGHT_TAGS = {f"moe/{task}/{group}/weight/{expert}"
                    for task in TASKS for group in LEGS_ARM for expert in ("base", "arm")}  # fmt: skip
FAMILIES = {
    "conflict/critic", "conflict/gate", "conflict/gate_arm", "conflict/gate_legs", "conflict/std", "term_conflict/gate",
    "grad/critic", "grad/gate", "grad/std", "logits/gate", "norm/arm_actor", "norm/base_actor", "norm/critic",
    "norm/gate", "norm/std", "obs_norm/gate", "moe/even", "moe/odd", "moe/selection",
}  # fmt: skip
"""First two levels of the gate-logging and diagnostics tags."""
IMAGES = {
    "images/conflict/critic", "images/conflict/gate", "images/conflict/gate_arm", "images/conflict/gate_legs",
    "images/conflict/std", "images/term_conflict/gate", "images/selection/arm/w10", "images/selection/arm/w4",
    "images/selection/legs/w10", "images/selection/legs/w4",
}  # fmt: skip


def assert_nothing_replaced(runner: Runner) -> None:
    assert not REPLACEABLE & vars(runner.alg).keys(), sorted(REPLACEABLE & vars(runner.alg).keys())
    assert "log" not in vars(runner.logger) and type(runner.logger) is ProgressLogger


class CheckedEnv(LinearEnv):
    """LinearEnv that checks, at every step of a rollout, that the runner has replaced nothing."""

    runner: Runner | None = None

    def step(self, actions: torch.Tensor):
        if self.runner is not None:
            assert_nothing_replaced(self.runner)
        return super().step(actions)


def moe_cfg(files: dict[str, str]) -> dict:
    """Per-limb gate, gate logging, every diagnostic at every iteration, a curriculum stage at iteration 1."""
    cfg = runner_cfg(files, LEGS_ARM)
    cfg["algorithm"]["learning_rate"] = 1e-3
    cfg["actor"]["obs_moe"]["obs_normalization"] = True
    cfg["diagnostics"] = {"conflict_interval": 1, "monitor_norm_freq": 1, "image_interval": 1}
    cfg["curriculum"] = [{"start_iteration": 1, "algorithm": {"entropy_coef": 0.002}}]
    return cfg


def test_moe_runner_replaces_no_method_and_constructs_its_logger(tmp_path, expert_files, monkeypatch):
    constructed = []
    logger_init = Logger.__init__

    def recording_init(self, *args, **kwargs):
        constructed.append(type(self))
        logger_init(self, *args, **kwargs)

    monkeypatch.setattr(Logger, "__init__", recording_init)
    env = CheckedEnv()
    runner = MoERunner(env, moe_cfg(expert_files), log_dir=str(tmp_path), env_description={"task_names": TASKS})
    assert constructed[-1] is ProgressLogger and runner.logger.progress == "line"  # built as one, not re-classed
    assert_nothing_replaced(runner)
    assert type(runner.alg) is PPOMoE and runner.alg.update.__func__ is HookedPPO.update
    assert runner.alg.after_act_hooks == [runner._record_gate_weights]
    assert runner.alg.around_update_hooks == [runner._update_with_diagnostics]
    env.runner = runner
    with contextlib.redirect_stdout(io.StringIO()):
        runner.learn(1)
    assert_nothing_replaced(runner)
    assert runner.alg.around_update_hooks == [runner._update_with_diagnostics]  # the runner's checks: learn() only


def test_short_moe_run_writes_the_same_tags_and_applies_the_curriculum(tmp_path, expert_files):
    runner = MoERunner(LinearEnv(), moe_cfg(expert_files), log_dir=str(tmp_path), env_description={"task_names": TASKS})
    with contextlib.redirect_stdout(io.StringIO()):
        runner.learn(ITERATIONS)
    events = read_events(str(tmp_path))
    scalars = set(events.Tags()["scalars"])
    gate_and_diagnostics = {t for t in scalars if "/".join(t.split("/")[:2]) in FAMILIES}
    assert scalars - gate_and_diagnostics == RSL_RL_AND_RUNNER_TAGS
    assert {"/".join(t.split("/")[:2]) for t in gate_and_diagnostics} == FAMILIES
    assert {t for t in scalars if t.startswith(("moe/even/", "moe/odd/"))} == GATE_WEIGHT_TAGS
    assert "moe/selection/legs/even/w10/near_one_hot_share" in scalars and "grad/gate/_total_norm" in scalars
    assert set(events.Tags()["images"]) == IMAGES
    every_iteration = scalars - {t for t in RSL_RL_AND_RUNNER_TAGS if t.startswith("Train/")}  # no episode ends at 0
    for tag in every_iteration:
        assert [s.step for s in events.Scalars(tag)] == list(range(ITERATIONS)), tag
    assert [s.value for s in events.Scalars("Curriculum/stage")] == [0.0, 1.0, 1.0]
    assert runner.alg.entropy_coef == 0.002


def plain_cfg(files: dict[str, str], class_name: str = "PPO") -> dict:
    cfg = runner_cfg(files)
    cfg["algorithm"]["class_name"] = class_name
    cfg["actor"] = {"class_name": "rsl_rl.models:MLPModel", "hidden_dims": [16],
                    "distribution_cfg": {"class_name": "GaussianDistribution"}}  # fmt: skip
    return cfg


def test_rsl_rl_ppo_is_built_with_the_hooks_which_run_in_order(expert_files):
    runner = Runner(LinearEnv(), plain_cfg(expert_files), log_dir=None)
    assert type(runner.alg) is HookedPPO
    assert runner.cfg["algorithm"]["class_name"] == "rsl_rl_moe.algorithms:HookedPPO"
    calls = []

    def outer(update):
        calls.append("outer in")
        losses = update()
        calls.append("outer out")
        return losses | {"outer": 1.0}

    def inner(update):
        calls.append(("inner in", torch.get_num_threads()))
        return update()

    runner.alg.around_update_hooks += [outer, inner]
    runner.alg.after_act_hooks.append(lambda obs, act: calls.append(("act", tuple(act.shape), "task_id" in obs)))
    runner.learn(1)
    assert calls == [("act", (8, 18), True)] * 4 + ["outer in", ("inner in", torch.get_num_threads()), "outer out"]
    assert_nothing_replaced(runner)
    assert runner.alg.around_update_hooks == [outer, inner]


def test_an_algorithm_without_the_hooks_is_refused(expert_files):
    class OwnPPO(PPO):
        pass

    cfg = plain_cfg(expert_files, class_name=OwnPPO)
    with pytest.raises(TypeError, match="subclass of rsl_rl_moe.algorithms:HookedPPO"):
        Runner(LinearEnv(), cfg, log_dir=None)
