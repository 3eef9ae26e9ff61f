"""Every config composes with real hydra; typos are errors."""

import glob
import os

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from helpers import CONFIG_DIR, compose_cfg
from scripts.common import make_train_cfg

ENV_NAMES = sorted(os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(CONFIG_DIR, "env", "*.yaml")))
TOP_LEVEL = sorted(os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(CONFIG_DIR, "*.yaml")))


@pytest.mark.parametrize("config_name", TOP_LEVEL)
def test_top_level_configs_compose_and_resolve(config_name):
    cfg = compose_cfg(config_name)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert resolved["env"]["name"] and resolved["runner"]["alg"]["actor_critic"]["actor"]["class_name"]


@pytest.mark.parametrize("env_name", ENV_NAMES)
def test_every_env_composes(env_name):
    cfg = compose_cfg("train", [f"env={env_name}"])
    assert cfg.env.name == env_name == cfg.experiment_name


def test_user_overrides_apply():
    cfg = compose_cfg("train", ["env.num_envs=64", "runner.max_iterations=7", "seed=3",
                                "env.tasks.reaching.sequence_sampler.file_path=data/tossing.pkl"])
    assert cfg.env.num_envs == 64 and cfg.runner.max_iterations == 7 and cfg.env.seed == 3
    assert cfg.env.tasks.reaching.sequence_sampler.file_path == "data/tossing.pkl"


@pytest.mark.parametrize("override", ["env.num_envz=3", "runner.max_iteration=3", "env=combo_go2Piper_locomotionn"])
def test_typo_in_override_is_an_error(override):
    with pytest.raises(ConfigCompositionException):
        compose_cfg("train", [override])


def test_train_moe_example_takes_the_user_guide_overrides():
    default = compose_cfg("train_moe_example")
    assert default.env.name == "combo_go2Piper_loco_reach" and default.runner.class_name == "rsl_rl_moe.runners:MoERunner"
    assert default.runner.alg.actor_critic.actor.base_ckpt_path == "resources/checkpoints/base_expert.pt"
    assert default.runner.alg.actor_critic.critic.arm_ckpt_path == "resources/checkpoints/arm_expert.pt"
    cfg = compose_cfg("train_moe_example", ["runner.alg.actor_critic.base_ckpt_path=b.pt",
                                            "runner.alg.actor_critic.arm_ckpt_path=a.pt",
                                            "runner.alg.actor_critic.freeze_experts=false",
                                            "runner.alg.moe_weight_regularization=0.05"])
    train_cfg = make_train_cfg(cfg)
    for part in ("actor", "critic"):
        assert train_cfg[part]["base_ckpt_path"] == "b.pt" and train_cfg[part]["arm_ckpt_path"] == "a.pt"
        assert train_cfg[part]["freeze_experts"] is False
    assert train_cfg["algorithm"]["class_name"] == "rsl_rl_moe.algorithms:PPOMoE"
    assert train_cfg["algorithm"]["moe_weight_regularization"] == 0.05
    assert "actor_critic" not in train_cfg["algorithm"] and "class_name" not in train_cfg  # not rsl_rl kwargs


def test_the_task_sets_the_training_length_and_an_override_wins():
    assert compose_cfg("train", ["env=combo_go2Piper_locomotion"]).runner.max_iterations == 1000
    assert compose_cfg("train", ["env=combo_go2Piper_loco_reach"]).runner.max_iterations == 1500
    cfg = compose_cfg("train", ["env=combo_go2Piper_locomotion", "runner.max_iterations=7"])
    assert cfg.runner.max_iterations == 7


def test_env_symmetry_settings_become_rsl_rl_symmetry_cfg():
    """The task's ``env.symmetry`` turns on rsl_rl's augmentation (and the mirror loss only with a coefficient);
    off, PPO gets no symmetry_cfg at all (the mixture's PPOMoE and its conflict diagnostics never see one)."""
    on = make_train_cfg(compose_cfg("train", ["env=combo_go2Piper_locomotion"]))["algorithm"]["symmetry_cfg"]
    assert on["use_data_augmentation"] is True and on["use_mirror_loss"] is False
    assert on["data_augmentation_func"] == "legged_gym.envs.symmetry:mirror_augmentation"
    loss = make_train_cfg(compose_cfg("train", ["env=combo_go2Piper_loco_reach", "env.symmetry.mirror_loss_coeff=0.5"]))
    assert loss["algorithm"]["symmetry_cfg"]["use_mirror_loss"] is True
    assert loss["algorithm"]["symmetry_cfg"]["mirror_loss_coeff"] == 0.5
    for config_name, overrides in (("train", ["env=combo_go2Piper_loco_reach"]), ("train_moe_example", [])):
        assert "symmetry_cfg" not in make_train_cfg(compose_cfg(config_name, overrides))["algorithm"]


def test_task_algorithm_settings_are_defaults_that_a_typed_override_beats():
    """A task's ``env.algorithm`` sets PPO's numbers from the first iteration; ``runner.alg.*`` typed by the user wins."""
    loco = make_train_cfg(compose_cfg("train", ["env=combo_go2Piper_locomotion"]))["algorithm"]
    assert loco["num_learning_epochs"] == 2 and loco["entropy_coef"] == 0.01
    typed = make_train_cfg(compose_cfg("train", ["env=combo_go2Piper_locomotion", "runner.alg.num_learning_epochs=5",
                                                 "runner.alg.entropy_coef=0.0"]))["algorithm"]
    assert typed["num_learning_epochs"] == 5 and typed["entropy_coef"] == 0.0
    plain = make_train_cfg(compose_cfg("train", ["env=combo_go2Piper_loco_reach"]))["algorithm"]
    assert plain["num_learning_epochs"] == 4 and plain["entropy_coef"] == 0.005


def test_symmetry_given_twice_is_refused():
    cfg = compose_cfg("train", ["env=combo_go2Piper_locomotion",
                                "+runner.alg.symmetry_cfg={use_data_augmentation: true}"])
    with pytest.raises(ValueError, match="runner.alg.symmetry_cfg and env.symmetry"):
        make_train_cfg(cfg)
