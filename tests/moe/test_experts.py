"""Expert loading: self-describing files, clear errors, rsl_rl 1.x conversion and refusals (other rsl_rl
generations: test_importers.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from moe_helpers import GROUP_DIMS, NUM_ACTIONS, build_expert_models, save_expert

from rsl_rl_moe.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from rsl_rl_moe.modules.experts import ExpertSources, load_expert
from scripts.common import expert_sources

HINT = "runner.alg.actor_critic.base_ckpt_path"


def load(path, obs, **kw):
    return load_expert("base", str(path), obs, NUM_ACTIONS, HINT, **kw)


def test_self_describing_expert_is_rebuilt_exactly(tmp_path, obs):
    expert = load(save_expert(tmp_path / "e.pt", seed=3), obs)
    actor, critic = build_expert_models(3, GROUP_DIMS)
    actor.eval()
    torch.testing.assert_close(expert.actor(obs), actor(obs), rtol=0, atol=0)
    torch.testing.assert_close(expert.critic(obs), critic(obs), rtol=0, atol=0)
    torch.testing.assert_close(expert.action_std, actor.distribution.std_param.detach())
    assert expert.source == "self-describing" and expert.obs_groups["critic"] == ["policy", "critic"]


def test_missing_file_names_path_and_override(tmp_path, obs):
    path = tmp_path / "nope.pt"
    with pytest.raises(CheckpointError) as err:
        load(path, obs)
    assert str(path) in str(err.value) and f"{HINT}=" in str(err.value)


def test_corrupt_file_names_path_and_override(tmp_path, obs):
    path = tmp_path / "corrupt.pt"
    path.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError) as err:
        load(path, obs)
    assert str(path) in str(err.value) and HINT in str(err.value)


def test_observation_size_mismatch_names_both_numbers(tmp_path, obs):
    path = save_expert(tmp_path / "e.pt", seed=3, group_dims={"policy": 60, "critic": 21})
    with pytest.raises(CheckpointError, match=r"'policy' has 60 values in the expert but 66 in the env"):
        load(path, obs)


def test_missing_observation_group_is_named(tmp_path, obs):
    path = save_expert(tmp_path / "e.pt", seed=3, group_dims={"policy": 66, "critic": 21})
    with pytest.raises(CheckpointError, match=r"'critic'.*env groups: \['policy'\]"):
        load(path, obs.exclude("critic"))


def test_action_size_mismatch_names_both_numbers(tmp_path, obs):
    path = save_expert(tmp_path / "e.pt", seed=3, num_actions=12)
    with pytest.raises(CheckpointError, match=r"outputs 12 actions but the env has 18 actions"):
        load(path, obs)


class LegacyActorCritic(nn.Module):
    """The layout of rsl_rl 1.0.2's ActorCritic (actor / critic Sequentials and a raw ``std``)."""

    def __init__(self, num_obs: int, num_actions: int, hidden=(32, 16)):
        super().__init__()

        def mlp(out_dim):
            layers, width = [], num_obs
            for h in hidden:
                layers += [nn.Linear(width, h), nn.ELU()]
                width = h
            return nn.Sequential(*layers, nn.Linear(width, out_dim))

        self.actor, self.critic = mlp(num_actions), mlp(1)
        self.std = nn.Parameter(torch.full((num_actions,), 0.3))


def save_legacy(path, model: nn.Module) -> str:
    save_checkpoint(
        str(path), {"model_state_dict": model.state_dict(), "optimizer_state_dict": {}, "iter": 5, "infos": None}
    )
    return str(path)


def test_legacy_1x_conversion_gives_identical_outputs(tmp_path, obs):
    torch.manual_seed(0)
    legacy = LegacyActorCritic(66, NUM_ACTIONS)
    path = save_legacy(tmp_path / "legacy.pt", legacy)
    expert = load(path, obs, legacy_architecture={"activation": "elu", "actor_hidden_dims": [32, 16]})
    assert expert.source == "rsl_rl 1.x-3.x (no observation normaliser) (converted)"
    torch.testing.assert_close(expert.actor(obs), legacy.actor(obs["policy"]), rtol=0, atol=0)
    torch.testing.assert_close(expert.critic(obs), legacy.critic(obs["policy"]), rtol=0, atol=0)
    torch.testing.assert_close(expert.action_std, legacy.std.detach())


def test_legacy_1x_without_architecture_is_refused_with_what_was_found(tmp_path, obs):
    path = save_legacy(tmp_path / "legacy.pt", LegacyActorCritic(66, NUM_ACTIONS))
    with pytest.raises(CheckpointError) as err:
        load(path, obs, legacy_override="runner.alg.actor_critic.legacy_architectures.base")
    msg = str(err.value)
    assert "rsl_rl 1.x" in msg and "(32, 66)" in msg and "runner.alg.actor_critic.legacy_architectures.base=" in msg


def test_legacy_1x_wrong_hidden_dims_or_width_is_refused(tmp_path, obs):
    path = save_legacy(tmp_path / "legacy.pt", LegacyActorCritic(60, NUM_ACTIONS))
    with pytest.raises(CheckpointError, match=r"\[64, 64\] in the config but \[32, 16\] in the file"):
        load(path, obs, legacy_architecture={"activation": "elu", "actor_hidden_dims": [64, 64]})
    with pytest.raises(
        CheckpointError, match=r"takes 60 observation values but the env groups \['policy'\] provide 66"
    ):
        load(path, obs, legacy_architecture={"activation": "elu"})


def test_incomplete_rsl_rl_layouts_are_refused_naming_what_is_missing(tmp_path, obs):
    """More layouts are covered in test_importers.py; these two used to be refused as "2.x-4.x"."""
    legacy = LegacyActorCritic(66, NUM_ACTIONS).state_dict()
    save_checkpoint(
        str(tmp_path / "v3.pt"), {"model_state_dict": {**legacy, "actor_obs_normalizer._mean": torch.zeros(1, 66)}}
    )
    with pytest.raises(
        CheckpointError, match=r"actor_obs_normalizer has fields \['_mean'\].*missing \['_var', '_std'\]"
    ):
        load(tmp_path / "v3.pt", obs)
    save_checkpoint(
        str(tmp_path / "v4.pt"), {"actor_state_dict": {"mlp.0.weight": torch.zeros(2, 2), "std": torch.ones(2)}}
    )
    with pytest.raises(CheckpointError, match=r"has `actor_state_dict` but no `critic_state_dict`"):
        load(tmp_path / "v4.pt", obs)


def test_fewer_than_two_experts_is_refused():
    """Through the app's spelling (base_ckpt_path, arm_ckpt_path, expert_ckpt_paths): the message names its
    overrides."""
    with pytest.raises(ValueError, match=r"at least 2 experts, got 1 \(\['base'\]\).*arm_ckpt_path=\.\.\."):
        ExpertSources.from_dict(expert_sources({"base_ckpt_path": "b.pt", "arm_ckpt_path": None}))
    sources = expert_sources({"base_ckpt_path": None, "arm_ckpt_path": "a.pt", "expert_ckpt_paths": {"c": "c.pt"}}, "p")
    assert list(ExpertSources.from_dict(sources).experts) == ["arm", "c"]


@pytest.mark.parametrize("class_name", ["rsl_rl.models:CNNModel", "rsl_rl.models:RNNModel"])
def test_cnn_and_recurrent_experts_are_refused_naming_the_class(tmp_path, obs, class_name):
    """CNNModel and RNNModel subclass MLPModel; an expert file describing one is refused, not half-loaded."""
    path = save_expert(tmp_path / "e.pt", seed=3)
    payload = load_checkpoint(str(path))
    payload["infos"]["model"]["actor"]["class_name"] = class_name
    save_checkpoint(str(path), payload)
    with pytest.raises(CheckpointError, match="only rsl_rl MLPModel experts are supported") as error:
        load(path, obs)
    assert class_name.split(":")[1] in str(error.value)
