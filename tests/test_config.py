"""Every config composes with real hydra; typos are errors."""

import glob
import os

import pytest
import torch
from helpers import CONFIG_DIR, compose_cfg
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from tensordict import TensorDict

from rsl_rl_moe.checkpoint import CheckpointError
from rsl_rl_moe.compat import resolve_class
from rsl_rl_moe.modules import ExpertSources
from scripts.common import make_train_cfg

ENV_NAMES = sorted(
    os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(CONFIG_DIR, "env", "*.yaml"))
)
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
    cfg = compose_cfg(
        "train",
        [
            "env.num_envs=64",
            "runner.max_iterations=7",
            "seed=3",
            "env.tasks.reaching.sequence_sampler.file_path=data/tossing.pkl",
        ],
    )
    assert cfg.env.num_envs == 64 and cfg.runner.max_iterations == 7 and cfg.env.seed == 3
    assert cfg.env.tasks.reaching.sequence_sampler.file_path == "data/tossing.pkl"


@pytest.mark.parametrize("override", ["env.num_envz=3", "runner.max_iteration=3", "env=combo_go2Piper_locomotionn"])
def test_typo_in_override_is_an_error(override):
    with pytest.raises(ConfigCompositionException):
        compose_cfg("train", [override])


def test_train_moe_example_takes_the_user_guide_overrides():
    default = compose_cfg("train_moe_example")
    assert (
        default.env.name == "combo_go2Piper_loco_reach" and default.runner.class_name == "rsl_rl_moe.runners:MoERunner"
    )
    default_models = make_train_cfg(default)  # the guide's keys reach both models as the library's expert_sources
    assert default_models["actor"]["expert_sources"]["experts"]["base"] == "resources/checkpoints/base_expert.pt"
    assert default_models["critic"]["expert_sources"]["experts"]["arm"] == "resources/checkpoints/arm_expert.pt"
    cfg = compose_cfg(
        "train_moe_example",
        [
            "runner.alg.actor_critic.base_ckpt_path=b.pt",
            "runner.alg.actor_critic.arm_ckpt_path=a.pt",
            "runner.alg.actor_critic.freeze_experts=false",
            "runner.alg.moe_weight_regularization=0.05",
        ],
    )
    train_cfg = make_train_cfg(cfg)
    for part in ("actor", "critic"):
        experts = train_cfg[part]["expert_sources"]["experts"]
        assert experts["base"] == "b.pt" and experts["arm"] == "a.pt"
        assert train_cfg[part]["expert_sources"]["freeze"] is False
    assert train_cfg["algorithm"]["class_name"] == "rsl_rl_moe.algorithms:PPOMoE"
    assert train_cfg["algorithm"]["moe_weight_regularization"] == 0.05
    assert "actor_critic" not in train_cfg["algorithm"] and "class_name" not in train_cfg  # not rsl_rl kwargs


def test_the_user_guide_spelling_becomes_the_librarys_experts_by_name():
    """base_ckpt_path, arm_ckpt_path (+ expert_ckpt_paths.<name>) and freeze_experts compose through hydra into one
    ``expert_sources`` both models get, in the library's words: ``experts: {base, arm, go2}`` in that order."""
    cfg = compose_cfg(
        "train_moe_example",
        [
            "runner.alg.actor_critic.base_ckpt_path=b.pt",
            "runner.alg.actor_critic.arm_ckpt_path=a.pt",
            "+runner.alg.actor_critic.expert_ckpt_paths.go2=g.pt",
            "+runner.alg.actor_critic.expert_tasks.go2=null",
            "runner.alg.actor_critic.freeze_experts=false",
        ],
    )
    train_cfg = make_train_cfg(cfg)
    sources = train_cfg["actor"]["expert_sources"]
    assert train_cfg["critic"]["expert_sources"] == sources
    library = ExpertSources.from_dict(sources)
    assert list(library.experts.items()) == [("base", "b.pt"), ("arm", "a.pt"), ("go2", "g.pt")]
    assert library.freeze is False and library.tasks["base"] == "combo_go2Piper_locomotion"
    assert train_cfg["actor"]["class_name"] == "rsl_rl_moe.modules:MoEActor"
    app_words = ("base_ckpt_path", "arm_ckpt_path", "expert_ckpt_paths", "freeze_experts", "expert_tasks", "expert_obs")
    for part in ("actor", "critic"):
        assert not set(app_words) & set(train_cfg[part]), train_cfg[part]
    twice = compose_cfg("train_moe_example", ["+runner.alg.actor_critic.expert_ckpt_paths.base=c.pt"])
    with pytest.raises(ValueError, match=r"expert 'base' is given twice: `runner.alg.actor_critic.base_ckpt_path` and "
                                         r"`runner.alg.actor_critic.expert_ckpt_paths.base`"):  # fmt: skip
        make_train_cfg(twice)


def test_a_missing_expert_is_named_by_the_apps_override_and_by_the_librarys_argument(tmp_path):
    cfg = compose_cfg("train_moe_example", [f"runner.alg.actor_critic.base_ckpt_path={tmp_path}/nowhere.pt"])
    actor_cfg = make_train_cfg(cfg)["actor"]
    obs = TensorDict({"policy": torch.zeros(2, 69)}, batch_size=[2])
    cls, kwargs = resolve_class(actor_cfg)
    with pytest.raises(CheckpointError) as app_error:
        cls(obs, {"actor": ["policy"]}, "actor", 18, **kwargs)
    assert "nowhere.pt" in str(app_error.value) and "`runner.alg.actor_critic.base_ckpt_path=...`" in str(
        app_error.value
    )
    library = {**kwargs["expert_sources"], "message_names": {}}  # the same sources, as the library names them
    with pytest.raises(CheckpointError) as library_error:
        cls(obs, {"actor": ["policy"]}, "actor", 18, **{**kwargs, "expert_sources": library})
    assert "`experts['base']=...`" in str(library_error.value) and "runner." not in str(library_error.value)


def test_an_older_runs_config_still_builds_its_models():
    """A run's config.yaml written before ExpertSources: ``class_name: rsl_rl_moe.modules:ActorCriticMoE`` and the
    expert keys repeated in actor and critic (play / evaluate / compare_moe read it back)."""
    cfg = compose_cfg("train_moe_example", ["runner.alg.actor_critic.base_ckpt_path=b.pt"])
    old = OmegaConf.to_container(cfg, resolve=True)
    expert_keys = {"base_ckpt_path": "b.pt", "arm_ckpt_path": "resources/checkpoints/arm_expert.pt",
                   "expert_ckpt_paths": {}, "freeze_experts": True, "legacy_architectures": {}}  # fmt: skip
    old["runner"]["alg"]["actor_critic"]["actor"].update(class_name="rsl_rl_moe.modules:ActorCriticMoE", **expert_keys)
    old["runner"]["alg"]["actor_critic"]["critic"].update(expert_keys)
    train_cfg = make_train_cfg(OmegaConf.create(old))
    assert train_cfg["actor"]["class_name"] == "rsl_rl_moe.modules:MoEActor"
    for part in ("actor", "critic"):
        sources = ExpertSources.from_dict(train_cfg[part]["expert_sources"])
        assert sources.experts == {"base": "b.pt", "arm": "resources/checkpoints/arm_expert.pt"} and sources.freeze
        assert sources.name_of("experts", "base") == "runner.alg.actor_critic.base_ckpt_path"
        assert not {"base_ckpt_path", "freeze_experts"} & set(train_cfg[part])


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
    """A task's ``env.algorithm`` sets PPO's numbers from the first iteration; ``runner.alg.*`` typed by the user
    wins."""
    loco = make_train_cfg(compose_cfg("train", ["env=combo_go2Piper_locomotion"]))["algorithm"]
    assert loco["num_learning_epochs"] == 2 and loco["entropy_coef"] == 0.01
    typed = make_train_cfg(
        compose_cfg(
            "train",
            ["env=combo_go2Piper_locomotion", "runner.alg.num_learning_epochs=5", "runner.alg.entropy_coef=0.0"],
        )
    )["algorithm"]
    assert typed["num_learning_epochs"] == 5 and typed["entropy_coef"] == 0.0
    plain = make_train_cfg(compose_cfg("train", ["env=combo_go2Piper_loco_reach"]))["algorithm"]
    assert plain["num_learning_epochs"] == 4 and plain["entropy_coef"] == 0.005


def test_symmetry_given_twice_is_refused():
    cfg = compose_cfg(
        "train", ["env=combo_go2Piper_locomotion", "+runner.alg.symmetry_cfg={use_data_augmentation: true}"]
    )
    with pytest.raises(ValueError, match="runner.alg.symmetry_cfg and env.symmetry"):
        make_train_cfg(cfg)
