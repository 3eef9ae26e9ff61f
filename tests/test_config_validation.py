"""Overrides people type are checked before anything is built: one line naming the override and what it may be.
An expert file recording another task than its role's loads with a warning naming both."""

import os
import warnings

import pytest
import torch
from helpers import REPO_ROOT, SMALL, compose_cfg, run_script
from tensordict import TensorDict

from rsl_rl_moe.checkpoint import load_checkpoint
from rsl_rl_moe.modules.experts import ExpertSources, ExpertTaskWarning, load_experts
from scripts.common import make_train_cfg
from scripts.validation import RULES, ConfigError, validate_config

BAD = [  # (config, override, the key the message must name)
    ("train", "device=gpu", "device"),
    ("train", "device=cuda:x", "device"),
    ("train", "seed=abc", "seed"),
    ("train", "seed=-1", "seed"),
    ("train", "runner.max_iterations=abc", "runner.max_iterations"),
    ("train", "runner.max_iterations=-3", "runner.max_iterations"),
    ("train", "runner.save_interval=0", "runner.save_interval"),
    ("train", "runner.num_steps_per_env=0", "runner.num_steps_per_env"),
    ("train", "env.episode_length_s=0", "env.episode_length_s"),
    ("train", "env.num_envs=16.7", "env.num_envs"),
    ("train", "env.num_envs=16.0", "env.num_envs"),
    ("train", "env.num_envs=0", "env.num_envs"),
    ("train", "env.num_envs=abc", "env.num_envs"),
    ("train", "env.num_envs=true", "env.num_envs"),
    ("train", "env.sim_device=gpu", "env.sim_device"),
    ("train", "env.array_backend=jax", "env.array_backend"),
    ("train", "env.seed=abc", "env.seed"),
    ("train", "env.tasks.probabilities.reaching=-1", "env.tasks.probabilities.reaching"),
    ("train", "env.rewards.scales.base_drift=abc", "env.rewards.scales.base_drift"),
    ("train", "play.duration_s=0", "play.duration_s"),
    ("train", "play.duration_s=0.001", "play.duration_s"),
    ("train", "play.num_envs=0", "play.num_envs"),
    ("train", "play.video=yes", "play.video"),
    ("train", "evaluate.duration_s=0", "evaluate.duration_s"),
    ("train", "evaluate.num_envs=2.5", "evaluate.num_envs"),
    ("train", "runner.rollout_torch_threads=0", "runner.rollout_torch_threads"),
    ("train", "runner.progress=lines", "runner.progress"),
    ("train", "runner.alg.learning_rate=0", "runner.alg.learning_rate"),
    ("train", "runner.alg.num_learning_epochs=0", "runner.alg.num_learning_epochs"),
    ("train", "runner.alg.num_mini_batches=0", "runner.alg.num_mini_batches"),
    ("train", "runner.alg.gamma=1.5", "runner.alg.gamma"),
    ("train", "runner.alg.lam=-0.1", "runner.alg.lam"),
    ("train", "runner.alg.clip_param=0", "runner.alg.clip_param"),
    ("train_moe_example", "runner.alg.moe_weight_regularization=-0.1", "runner.alg.moe_weight_regularization"),
    ("train_moe_example", "runner.gate_logging.windows=[1000,0]", "runner.gate_logging.windows"),
    ("train_moe_example", "runner.diagnostics.conflict_interval=-1", "runner.diagnostics.conflict_interval"),
    (
        "train_moe_example",
        "runner.alg.actor_critic.actor.obs_moe.routing=top1",
        "runner.alg.actor_critic.actor.obs_moe.routing",
    ),
]


@pytest.mark.parametrize("config_name, override, key", BAD, ids=[o for _, o, _ in BAD])
def test_bad_override_is_one_line_naming_it(config_name, override, key):
    with pytest.raises(ConfigError) as err:
        validate_config(compose_cfg(config_name, [override]))
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{key}=") and ": must be " in message, message


def test_messages_state_the_range():
    def message(override, config_name="train"):
        with pytest.raises(ConfigError) as err:
            validate_config(compose_cfg(config_name, [override]))
        return str(err.value)

    assert message("runner.save_interval=0") == "runner.save_interval=0: must be an integer >= 1"
    assert message("env.num_envs=16.7") == "env.num_envs=16.7: must be an integer >= 1"
    assert message("seed=abc") == "seed=abc: must be an integer in [0, 4294967295]"
    assert message("device=gpu") == "device=gpu: must be cpu, cuda or cuda:N (N: a GPU index)"
    assert message("runner.progress=lines") == "runner.progress=lines: must be one of line, full"
    assert message("runner.alg.gamma=1.5") == "runner.alg.gamma=1.5: must be a number in [0, 1]"
    assert (
        message("runner.rollout_torch_threads=0") == "runner.rollout_torch_threads=0: must be an integer >= 1 or null"
    )


def test_every_bad_value_is_named_on_the_same_line():
    with pytest.raises(ConfigError) as err:
        validate_config(compose_cfg("train", ["runner.save_interval=0", "seed=abc"]))
    message = str(err.value)
    assert "\n" not in message and "runner.save_interval=0" in message and "seed=abc" in message
    assert "env.seed" not in message  # env.seed interpolates seed: only the key that was typed is named


@pytest.mark.parametrize("config_name", ["train", "train_moe_example"])
def test_shipped_configs_pass(config_name):
    validate_config(compose_cfg(config_name))


@pytest.mark.parametrize(
    "override",
    [
        "runner.rollout_torch_threads=null",
        "env.sim_device=cuda:1",
        "env.sim_device=warp-cpu",
        "env.array_backend=torch",
        "device=cuda",
        "play.duration_s=30",
        "runner.progress=full",
        "env.rewards.scales.base_drift=-50",
        "evaluate.duration_s=0.4",
        "runner.alg.desired_kl=null",
    ],
)
def test_good_overrides_pass(override):
    validate_config(compose_cfg("train", [override]))


def test_rule_table_is_well_formed():
    """Every rule's kind and range parse, and every key without a wildcard exists in some shipped config."""
    cfgs = [compose_cfg("train"), compose_cfg("train_moe_example")]
    for key, _, _ in RULES:
        if "*" not in key and not key.startswith("compare."):
            assert any(_has_key(cfg, key) for cfg in cfgs), f"{key} is in no shipped config (renamed?)"


def _has_key(cfg, key):
    from omegaconf import OmegaConf

    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
    return parent is not None and leaf in parent


def test_train_script_refuses_a_bad_override_in_one_line(tmp_path):
    """Before validation: ZeroDivisionError traceback after the first iteration (SMALL keeps that iteration short)."""
    result = run_script(
        "train.py",
        [
            "--config-name=train",
            "runner.save_interval=0",
            "runner.max_iterations=1",
            *SMALL,
            f"hydra.run.dir={tmp_path}",
        ],
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "runner.save_interval" in error_lines[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "run folder" not in result.stdout  # refused before any env is built


def expert_obs(path: str) -> TensorDict:
    """Zero observations of the widths the file was trained on (enough to rebuild its models)."""
    dims = load_checkpoint(path)["infos"]["model"]["obs_group_dims"]
    return TensorDict({g: torch.zeros(2, d) for g, d in dims.items()}, batch_size=[2])


def load_configured_experts(overrides):
    """The MoE actor's experts as ``train_moe_example`` + ``overrides`` configures them."""
    actor = make_train_cfg(compose_cfg("train_moe_example", overrides))["actor"]
    obs = expert_obs(os.path.join(REPO_ROOT, "resources", "checkpoints", "base_expert.pt"))
    return load_experts(ExpertSources.from_dict(actor["expert_sources"]), obs, None)


def test_expert_file_of_another_task_warns_naming_both(monkeypatch):
    monkeypatch.chdir(REPO_ROOT)  # the config's expert paths are relative to the repo root
    with pytest.warns(ExpertTaskWarning) as record:
        load_configured_experts(["runner.alg.actor_critic.arm_ckpt_path=resources/checkpoints/base_expert.pt"])
    (warning,) = [str(w.message) for w in record if issubclass(w.category, ExpertTaskWarning)]
    assert "'combo_go2Piper_locomotion'" in warning and "'combo_go2Piper_reaching'" in warning, warning
    assert "runner.alg.actor_critic.arm_ckpt_path" in warning and "base_expert.pt" in warning
    assert "runner.alg.actor_critic.expert_tasks.arm" in warning


def test_the_app_loads_the_configured_experts_by_name(monkeypatch):
    """``scripts/common.py: load_configured_experts`` (compare_moe's fixed blends): all configured experts in gate
    order, or the named ones in the order asked; a name not configured is refused naming its override."""
    from types import SimpleNamespace

    from scripts.common import load_configured_experts as load_from_app

    monkeypatch.chdir(REPO_ROOT)
    cfg = compose_cfg("train_moe_example",
                      ["+runner.alg.actor_critic.expert_ckpt_paths.spare=resources/checkpoints/base_expert.pt",
                       "+runner.alg.actor_critic.expert_tasks.spare=null"])  # fmt: skip
    obs = expert_obs(os.path.join(REPO_ROOT, "resources", "checkpoints", "base_expert.pt"))
    env = SimpleNamespace(get_observations=lambda: obs, num_actions=18)
    assert [e.name for e in load_from_app(cfg, env)] == ["base", "arm", "spare"]
    assert [e.name for e in load_from_app(cfg, env, ("arm", "base"))] == ["arm", "base"]
    with pytest.raises(
        ValueError,
        match=r"experts \['go2'\] are not configured: set `runner.alg.actor_critic.expert_ckpt_paths.go2=\.\.\.`",
    ):
        load_from_app(cfg, env, ("base", "go2"))


def test_shipped_experts_in_their_roles_do_not_warn(monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ExpertTaskWarning)
        load_configured_experts([])
        load_configured_experts(
            [
                "runner.alg.actor_critic.arm_ckpt_path=resources/checkpoints/base_expert.pt",
                "runner.alg.actor_critic.expert_tasks.arm=null",
            ]
        )
