"""Every config composes with real hydra; typos are errors."""

import glob
import os

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from helpers import CONFIG_DIR, compose_cfg

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
