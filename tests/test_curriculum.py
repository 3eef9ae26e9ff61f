"""The curriculum: stages applied by the runner at their iterations, logged, and re-applied on resume."""

from __future__ import annotations

import pytest
from helpers import SMALL, compose_cfg, read_events

STAGES = [
    {
        "start_iteration": 1,
        "name": "sharpen",
        "env": {"rewards": {"tracking_sigma": 0.1, "scales": {"termination": -100.0}}},
        "algorithm": {"entropy_coef": 0.001},
    },
    {
        "start_iteration": 2,
        "env": {"tasks": {"locomotion": {"resampling_time_s": 5.0}}},
        "algorithm": {"learning_rate": 1.0e-4},
    },
]


def make(tmp_path, name: str, stages=STAGES):
    from common import env_config, make_env, make_runner

    cfg = compose_cfg("train", [*SMALL, "env=combo_go2Piper_locomotion", "runner.alg.schedule=fixed"])
    cfg.env.curriculum = stages
    env = make_env(env_config(cfg))
    return make_runner(cfg, env, log_dir=str(tmp_path / name))


def test_stages_apply_at_their_iterations_and_are_logged(tmp_path, capsys):
    runner = make(tmp_path, "a")
    env, alg = runner.env, runner.alg
    assert env.reward_cfg["tracking_sigma"] == 0.25 and "termination" not in env.reward_names
    runner.learn(3)
    assert env.reward_cfg["tracking_sigma"] == 0.1 and env.reward_names[-1] == "termination"
    assert env.reward_scales[-1, 0] == pytest.approx(-100.0 * env.dt)
    assert env.commands.vel_interval == 250
    assert alg.entropy_coef == 0.001 and alg.learning_rate == 1.0e-4
    assert all(group["lr"] == 1.0e-4 for group in alg.optimizer.param_groups)
    stages = [event.value for event in read_events(str(tmp_path / "a")).Scalars("Curriculum/stage")]
    assert stages == [0.0, 1.0, 2.0]
    out = capsys.readouterr().out
    assert "curriculum: 'sharpen' from iteration 1" in out and "curriculum: 'stage 2' from iteration 2" in out


def test_a_resumed_run_re_applies_the_stages_up_to_its_iteration(tmp_path):
    first = make(tmp_path, "a")
    first.learn(3)
    resumed = make(tmp_path, "b")
    resumed.load(str(tmp_path / "a" / "model_2.pt"))
    resumed.learn(1)
    assert resumed.env.reward_cfg["tracking_sigma"] == 0.1 and resumed.env.commands.vel_interval == 250
    assert resumed.alg.entropy_coef == 0.001 and resumed.alg.learning_rate == 1.0e-4


@pytest.mark.parametrize(
    "stages, message",
    [
        (
            [
                {"start_iteration": 2, "algorithm": {"entropy_coef": 0.0}},
                {"start_iteration": 2, "algorithm": {"gamma": 0.9}},
            ],
            r"curriculum\[1\].start_iteration=2: must be an integer > 2",
        ),
        ([{"start_iteration": 1}], r"curriculum\[0\]: the stage changes nothing"),
        ([{"start_iteration": 1, "envs": {}}], r"curriculum\[0\]: unknown keys \['envs'\]"),
    ],
)
def test_malformed_stages_are_refused_naming_the_stage(tmp_path, stages, message):
    with pytest.raises(ValueError, match=message):
        make(tmp_path, "a", stages)


@pytest.mark.parametrize(
    "stage, message",
    [
        (
            {"start_iteration": 0, "env": {"rewards": {"scales": {"tracking_lin_vell": 1.0}}}},
            r"env.rewards.scales.tracking_lin_vell: no such setting",
        ),
        ({"start_iteration": 0, "env": {"num_envs": 8}}, r"env settings \['num_envs'\] cannot change during training"),
        ({"start_iteration": 0, "algorithm": {"entropy": 0.1}}, r"algorithm.entropy=0.1: PPO has no numeric setting"),
    ],
)
def test_stages_that_change_what_cannot_change_are_refused_naming_it(tmp_path, stage, message):
    runner = make(tmp_path, "a", [stage])
    with pytest.raises(ValueError, match=message):
        runner.learn(1)
