"""A partner policy writes one limb group's actions in some tasks' episodes (composable experts, env.partner)."""

from __future__ import annotations

import os
import re

import pytest
import torch
from helpers import REPO_ROOT, compose_cfg, make_env

ARM = slice(12, 18)
LEGS = slice(0, 12)
MIXED_TASKS = ["env.tasks.probabilities.locomotion=1.0", "env.tasks.probabilities.loco_reach=1.0"]


class ConstantPolicy:
    """Returns ``value`` for every action entry and records the observations it was given."""

    def __init__(self, value: float):
        self.value = value
        self.seen = []

    def __call__(self, obs):
        self.seen.append(obs["policy"].clone())
        return torch.full((obs.batch_size[0], 18), self.value)


def test_partner_writes_its_limbs_in_its_tasks_only():
    env = make_env(32, MIXED_TASKS, quiet=True)
    partner = ConstantPolicy(0.7)
    env.set_partner(partner, "arm", ["loco_reach"])
    for _ in range(3):
        obs_before = env.get_observations()["policy"].clone()
        loco_reach = env.commands.task_ids == env.task_names.index("loco_reach")  # the tasks of this step
        assert 0 < int(loco_reach.sum()) < env.num_envs
        env.step(torch.full((env.num_envs, 18), -0.3))
        torch.testing.assert_close(partner.seen[-1], obs_before)  # it reads what the acting policy read
        assert torch.all(env.actions[loco_reach, ARM] == 0.7)
        assert torch.all(env.actions[~loco_reach, ARM] == -0.3)
        assert torch.all(env.actions[:, LEGS] == -0.3)
        torch.testing.assert_close(env.get_observations()["policy"][:, -18:], env.actions)  # last actions: applied


def test_partner_legs_and_clipping():
    env = make_env(8, ["env.tasks.probabilities.locomotion=0.0", "env.tasks.probabilities.loco_reach=1.0"], quiet=True)
    env.set_partner(ConstantPolicy(1e6), "legs", ["loco_reach"])
    env.step(torch.zeros(8, 18))
    clip = env.cfg["robot"]["clip_actions"]
    assert torch.all(env.actions[:, LEGS] == clip) and torch.all(env.actions[:, ARM] == 0.0)


@pytest.mark.parametrize(
    "limbs, tasks, message",
    [
        ("tail", ["loco_reach"], "env.partner.limbs='tail'"),
        ("arm", ["swimming"], "env.partner.tasks=['swimming']"),
        ("arm", [], "env.partner.tasks=[]"),
    ],
)
def test_bad_partner_settings_name_the_key(limbs, tasks, message):
    env = make_env(2, quiet=True)
    with pytest.raises(ValueError) as error:
        env.set_partner(ConstantPolicy(0.0), limbs, tasks)
    assert message in str(error.value)


def test_configured_partner_is_the_expert_file():
    """``env.partner.ckpt_path`` loads the expert; in loco_reach episodes its arm actions are the ones applied."""
    from common import env_config
    from common import make_env as make_configured_env

    from rsl_rl_moe.modules.experts import load_expert

    arm_path = os.path.join(REPO_ROOT, "resources", "checkpoints", "arm_expert.pt")
    cfg = compose_cfg(
        "train",
        [
            "env=combo_go2Piper_loco_reach",
            "env.num_envs=16",
            *MIXED_TASKS,
            "env.tasks.probabilities.reaching=0.0",
            f"env.partner.ckpt_path={arm_path}",
            "env.partner.limbs=arm",
            "env.observations.add_noise=false",
        ],
    )
    env = make_configured_env(env_config(cfg))
    arm = load_expert("arm", arm_path, env.get_observations(), 18, "test")
    loco_reach = env.commands.task_ids == env.task_names.index("loco_reach")
    with torch.inference_mode():
        expected = arm.actor(env.get_observations()).clamp(-10.0, 10.0)
        env.step(torch.zeros(16, 18))
    torch.testing.assert_close(env.actions[loco_reach, ARM], expected[loco_reach, ARM])
    assert torch.all(env.actions[~loco_reach] == 0.0) and torch.all(env.actions[:, LEGS] == 0.0)


def test_missing_partner_file_names_the_override(tmp_path):
    from common import env_config
    from common import make_env as make_configured_env

    from rsl_rl_moe.checkpoint import CheckpointError

    cfg = compose_cfg("train", ["env.num_envs=2", f"env.partner.ckpt_path={tmp_path}/nope.pt"])
    with pytest.raises(CheckpointError, match="env.partner.ckpt_path"):
        make_configured_env(env_config(cfg))


def test_a_partner_that_never_acts_is_not_loaded(tmp_path):
    """Evaluating the base expert on locomotion alone needs no arm file: no task the partner drives is drawn, now or
    in a curriculum stage. With a stage that draws loco_reach, the file is loaded (and a missing one refused)."""
    from common import env_config
    from common import make_env as make_configured_env

    from rsl_rl_moe.checkpoint import CheckpointError

    missing = [f"env.partner.ckpt_path={tmp_path}/nope.pt", "env.num_envs=2"]
    env = make_configured_env(env_config(compose_cfg("train", [*missing, "env.curriculum=[]"])))
    assert env._partner_policy is None
    with pytest.raises(CheckpointError, match="env.partner.ckpt_path"):
        make_configured_env(env_config(compose_cfg("train", missing)))  # the sharpen stage draws loco_reach


def test_a_partner_file_of_another_task_warns_naming_both():
    from common import env_config
    from common import make_env as make_configured_env

    from rsl_rl_moe.modules.experts import ExpertTaskWarning

    base_path = os.path.join(REPO_ROOT, "resources", "checkpoints", "base_expert.pt")
    cfg = compose_cfg("train", ["env.num_envs=2", f"env.partner.ckpt_path={base_path}"])  # expects the arm expert
    with pytest.warns(ExpertTaskWarning, match="env.partner.expected_task"):
        make_configured_env(env_config(cfg))


def test_own_actions_group_marks_the_entries_the_policy_writes():
    env = make_env(32, MIXED_TASKS, quiet=True)
    assert "own_actions" not in env.get_observations().keys()
    env.set_partner(ConstantPolicy(0.7), "arm", ["loco_reach"])
    for _ in range(2):
        loco_reach = env.commands.task_ids == env.task_names.index("loco_reach")
        own = env.get_observations()["own_actions"]
        assert torch.all(own[loco_reach, ARM] == 0.0) and torch.all(own[~loco_reach, ARM] == 1.0)
        assert torch.all(own[:, LEGS] == 1.0)
        env.step(torch.zeros(32, 18))


def test_training_beside_a_partner_uses_the_own_actions_actor():
    from common import make_train_cfg

    with_partner = make_train_cfg(compose_cfg("train", ["env=combo_go2Piper_reaching"]))
    assert with_partner["actor"]["class_name"] == "rsl_rl_moe.modules.own_actions:OwnActionsMLPModel"
    never_acts = make_train_cfg(compose_cfg("train", ["env=combo_go2Piper_locomotion", "env.curriculum=[]"]))
    assert never_acts["actor"]["class_name"] == "MLPModel"
    no_partner = make_train_cfg(
        compose_cfg(
            "train", ["env=combo_go2Piper_reaching", "env.partner.ckpt_path=null", "env.algorithm.entropy_limbs=null"]
        )
    )
    assert no_partner["actor"]["class_name"] == "MLPModel"


def test_entropy_limbs_weigh_the_entropy_bonus_of_those_limbs_entries_only():
    from common import make_train_cfg

    overrides = ["env=combo_go2Piper_locomotion", "env.curriculum=[]", "+env.algorithm.entropy_limbs=[arm]"]
    actor = make_train_cfg(compose_cfg("train", overrides))["actor"]
    assert actor["class_name"] == "rsl_rl_moe.modules.own_actions:OwnActionsMLPModel"
    assert actor["entropy_action_weights"] == [0.0] * 12 + [1.0] * 6
    for limbs, message in (("[hand]", "env.algorithm.entropy_limbs=['hand']"), ("arm", "must be a non-empty list")):
        with pytest.raises(ValueError, match=re.escape(message)):
            make_train_cfg(compose_cfg("train", [*overrides[:2], f"+env.algorithm.entropy_limbs={limbs}"]))
