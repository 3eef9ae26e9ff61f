"""Experts by name (``ExpertSources``): any number, in order, one object for actor and critic; messages in the
library's own words; configs and checkpoints of the version before it still load; one checksum."""

from __future__ import annotations

import os

import pytest
import torch
from moe_helpers import LEGS_ARM, NUM_ACTIONS, OBS_GROUPS, expert_sources, expert_sources_cfg, make_obs, save_expert
from rsl_rl.utils import resolve_callable
from tensordict import TensorDict

from rsl_rl_moe.checkpoint import (
    CheckpointError,
    load_checkpoint,
    upgrade_model_cfg,
    upgrade_model_description,
)
from rsl_rl_moe.compat import resolve_class
from rsl_rl_moe.digest import state_digest, state_digests, tensor_digest
from rsl_rl_moe.modules import ExpertSources, MoEActor, MoECritic, load_expert

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "mixture_before_expert_sources.pt")
"""A mixture checkpoint written by rsl_rl_moe before ExpertSources (commit 9345537): model description with
``class_name: rsl_rl_moe.modules:ActorCriticMoE`` and ``base_ckpt_path`` / ``arm_ckpt_path`` /
``expert_ckpt_paths: {extra: ...}`` / ``freeze_experts`` / ``expert_tasks`` / ``expert_obs``, per-limb gates,
experts of different sizes, ``infos["expert_models"]``, and in ``infos["expected"]`` the observations and the
actions, values and gate weights that version computed on them."""


@pytest.fixture
def three(tmp_path) -> dict[str, str]:
    """Three experts of different sizes, named neither base nor arm, in a deliberate order."""
    return {
        "walk": save_expert(tmp_path / "walk.pt", seed=1),
        "reach": save_expert(tmp_path / "reach.pt", seed=2, hidden_dims=(16,), activation="tanh"),
        "spare": save_expert(tmp_path / "spare.pt", seed=3, hidden_dims=(8, 8)),
    }


def sharpen(model) -> None:
    last = [m for m in model.gate.mlp if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.mul_(300.0)


def test_three_experts_by_name_blend_in_their_order(obs, three):
    sources = expert_sources(three)
    torch.manual_seed(0)
    actor = MoEActor(obs, OBS_GROUPS, "actor", NUM_ACTIONS, expert_sources=sources, action_groups=LEGS_ARM)
    critic = MoECritic(obs, OBS_GROUPS, "critic", 1, expert_sources=sources, residual_hidden_dims=None)
    assert actor.expert_names == critic.expert_names == ["walk", "reach", "spare"]
    assert actor.sources is critic.sources is sources
    assert {k.split(".")[1] for k in actor.state_dict() if k.startswith("experts.")} == {"walk", "reach", "spare"}
    sharpen(actor)
    mean = actor(obs)
    w = actor.last_gate_weights  # (N, G, E)
    assert w.shape == (8, 2, 3)
    outs = [actor.experts[name](obs) for name in ("walk", "reach", "spare")]
    for g, idx in enumerate(LEGS_ARM.values()):
        torch.testing.assert_close(mean[:, idx], sum(w[:, g, e : e + 1] * outs[e][:, idx] for e in range(3)))
    value = critic(obs)
    values = torch.cat([critic.experts[name](obs) for name in ("walk", "reach", "spare")], dim=-1)
    torch.testing.assert_close(value, (critic.last_gate_weights * values).sum(dim=-1, keepdim=True))


def test_a_train_config_gives_the_sources_as_a_dict(obs, three):
    """rsl_rl passes config dicts (checkpoints store them and load with weights_only): the dict form builds the same."""
    cfg = {"class_name": "rsl_rl_moe.modules:MoEActor", "expert_sources": expert_sources_cfg(three, freeze=False)}
    cls, kwargs = resolve_class(cfg)
    actor = cls(obs, OBS_GROUPS, "actor", NUM_ACTIONS, **kwargs)
    assert actor.expert_names == ["walk", "reach", "spare"] and not actor.freeze_experts
    assert ExpertSources.from_dict(expert_sources_cfg(three)) == expert_sources(three)
    with pytest.raises(
        ValueError, match=r"expert_sources takes keys \[.*'experts'.*\]; got unknown \['base_ckpt_path'\]"
    ):
        ExpertSources.from_dict({"experts": three, "base_ckpt_path": "b.pt"})


def test_library_errors_name_the_librarys_arguments(tmp_path, obs, three):
    missing = {**three, "reach": str(tmp_path / "nowhere.pt")}
    with pytest.raises(CheckpointError) as error:
        MoEActor(obs, OBS_GROUPS, "actor", NUM_ACTIONS, expert_sources=expert_sources(missing))
    message = str(error.value)
    assert "nowhere.pt" in message and "`experts['reach']=...`" in message, message
    assert "runner." not in message and "ckpt_path" not in message
    with pytest.raises(ValueError, match=r"at least 2 experts, got 1 \(\['walk'\]\): set `experts\['<name>'\]=\.\.\.`"):
        ExpertSources(experts={"walk": three["walk"]})
    with pytest.raises(ValueError, match=r"expert names \['a.b'\] in `experts` must be Python identifiers"):
        ExpertSources(experts={"a.b": "x.pt", "c": "y.pt"})
    with pytest.raises(ValueError, match=r"`obs_maps` names experts \['go1'\] that are not configured"):
        ExpertSources(experts=three, obs_maps={"go1": {"policy": "critic"}})
    with pytest.raises(
        ValueError, match=r"`action_maps\['spare'\]`.indices has 3 entries but expert 'spare' outputs 18"
    ):
        MoEActor(obs, OBS_GROUPS, "actor", NUM_ACTIONS, expert_sources=expert_sources(three),
                 action_groups=LEGS_ARM, action_maps={"spare": {"indices": [0, 1, 2]}})  # fmt: skip


def test_callers_name_the_arguments_their_own_way(tmp_path, obs, three):
    names = {"experts": "cfg.more", "experts.walk": "cfg.walk_path", "obs_maps": "cfg.observations"}
    sources = ExpertSources(experts=three, message_names=names)
    assert sources.name_of("experts", "walk") == "cfg.walk_path"
    assert sources.name_of("experts", "reach") == "cfg.more.reach"
    assert sources.name_of("obs_maps", "go2", "policy") == "cfg.observations.go2.policy"
    assert sources.name_of("tasks", "walk") == "tasks['walk']" and sources.name_of("action_groups") == "action_groups"
    assert ExpertSources(experts=three).name_of("obs_maps", "go2", "policy") == "obs_maps['go2']['policy']"
    missing = ExpertSources(experts={**three, "walk": str(tmp_path / "nowhere.pt")}, message_names=names)
    with pytest.raises(CheckpointError, match=r"set with `cfg.walk_path=\.\.\.`"):
        MoECritic(obs, OBS_GROUPS, "critic", 1, expert_sources=missing)


# --- configs and checkpoints of the version before ExpertSources -------------------------------------------------


def test_old_model_configs_are_upgraded():
    old = {
        "class_name": "rsl_rl_moe.modules:ActorCriticMoE", "base_ckpt_path": "b.pt", "arm_ckpt_path": "a.pt",
        "expert_ckpt_paths": {"go2": "g.pt"}, "freeze_experts": False,
        "legacy_architectures": {"go2": {"activation": "elu"}},
        "expert_tasks": {"base": "loco"}, "expert_obs": {"go2": {"policy": "lg"}}, "action_maps": {},
        "blend": "mixture",
    }  # fmt: skip
    new = upgrade_model_cfg(old)
    assert new == {
        "class_name": "rsl_rl_moe.modules:MoEActor", "action_maps": {}, "blend": "mixture",
        "expert_sources": {"experts": {"base": "b.pt", "arm": "a.pt", "go2": "g.pt"}, "freeze": False,
                           "legacy_architectures": {"go2": {"activation": "elu"}}, "tasks": {"base": "loco"},
                           "obs_maps": {"go2": {"policy": "lg"}}, "models": None},
    }  # fmt: skip
    assert list(new["expert_sources"]["experts"]) == ["base", "arm", "go2"] and "base_ckpt_path" in old  # a copy
    assert upgrade_model_cfg(new) == new  # current configs are left as they are
    plain = {"class_name": "rsl_rl.models:MLPModel", "hidden_dims": [32]}
    assert upgrade_model_cfg(plain) == plain
    critic = upgrade_model_cfg({"class_name": "rsl_rl_moe.modules:MoECritic", "base_ckpt_path": "b.pt",
                                "arm_ckpt_path": None, "expert_ckpt_paths": {"c": "c.pt"}})  # fmt: skip
    assert (
        critic["expert_sources"]["experts"] == {"base": "b.pt", "c": "c.pt"}
        and critic["expert_sources"]["freeze"] is True
    )
    folded = upgrade_model_cfg({**new, "expert_models": {"base": {}, "arm": {}}})  # an older runner adding descriptions
    assert folded["expert_sources"]["models"] == {"base": {}, "arm": {}}
    with pytest.raises(ValueError, match=r"expert 'base' is given twice"):
        upgrade_model_cfg({"base_ckpt_path": "b.pt", "expert_ckpt_paths": {"base": "c.pt"}})
    with pytest.raises(ValueError, match=r"both expert_sources and the older expert arguments \['arm_ckpt_path'\]"):
        upgrade_model_cfg({**new, "arm_ckpt_path": "a.pt"})


def test_a_mixture_checkpoint_of_the_version_before_loads_and_acts_the_same():
    """Its description upgraded, the models rebuilt from it (experts from ``infos["expert_models"]``: the expert
    files are gone) take its state dicts strictly and compute what that version computed."""
    payload = load_checkpoint(FIXTURE)
    infos = payload["infos"]
    assert infos["model"]["actor"]["class_name"] == "rsl_rl_moe.modules:ActorCriticMoE"
    model = upgrade_model_description(infos["model"])
    expected = infos["expected"]
    obs = TensorDict(expected["obs"], batch_size=[expected["actions"].shape[0]])
    built = {}
    for part, output_dim in (("actor", model["num_actions"]), ("critic", 1)):
        cfg = model[part]
        assert list(cfg["expert_sources"]["experts"]) == ["base", "arm", "extra"]
        cfg["expert_sources"]["experts"] = {name: f"/nowhere/{name}.pt" for name in ("base", "arm", "extra")}
        cfg["expert_sources"]["models"] = infos["expert_models"]  # what MoERunner's with_described_experts adds
        cls, kwargs = resolve_class(cfg)
        built[part] = cls(obs, model["obs_groups"], part, output_dim, **kwargs)
        built[part].load_state_dict(payload[f"{part}_state_dict"], strict=True)
        built[part].eval()
    actor, critic = built["actor"], built["critic"]
    assert type(actor) is MoEActor and type(critic) is MoECritic
    assert actor.expert_names == ["base", "arm", "extra"] and actor.freeze_experts
    with torch.no_grad():
        torch.testing.assert_close(actor(obs), expected["actions"], rtol=0, atol=0)
        torch.testing.assert_close(critic(obs), expected["values"], rtol=0, atol=0)
        torch.testing.assert_close(actor.get_moe_weights(obs), expected["weights"], rtol=0, atol=0)


def test_the_old_class_name_is_explained_not_aliased():
    """``ActorCriticMoE`` named only the actor: no alias, but a config still naming it is told what to use."""
    from rsl_rl_moe import modules

    assert not hasattr(modules, "ActorCriticMoE")
    with pytest.raises(AttributeError, match=r"second name of the MoE actor: use rsl_rl_moe.modules:MoEActor"):
        resolve_callable("rsl_rl_moe.modules:ActorCriticMoE")


def test_a_mixture_checkpoint_of_the_version_before_is_refused_as_an_expert_naming_its_class():
    payload = load_checkpoint(FIXTURE)
    dims = payload["infos"]["model"]["obs_group_dims"]
    obs = TensorDict({g: torch.zeros(2, d) for g, d in dims.items()}, batch_size=[2])
    with pytest.raises(CheckpointError, match=r"its actor is a .*MoEActor.*only rsl_rl MLPModel experts are supported"):
        load_expert("walk", FIXTURE, obs, NUM_ACTIONS, "experts['walk']")


# --- one checksum ------------------------------------------------------------------------------------------------


def test_expert_checksum_is_the_state_digest_of_the_experts(obs, expert_files):
    actor = MoEActor(obs, OBS_GROUPS, "actor", NUM_ACTIONS, expert_sources=expert_sources(expert_files))
    checksum = actor.expert_checksum()
    assert checksum == state_digest(actor.experts)
    digests = state_digests(actor.experts)
    assert digests["base.mlp.0.weight"] == tensor_digest(actor.experts["base"].mlp[0].weight)
    assert "base.obs_normalizer._mean" in digests  # buffers count too
    actor(make_obs(4, seed=1))  # a forward changes nothing
    assert actor.expert_checksum() == checksum
    with torch.no_grad():
        weight = actor.experts["arm"].mlp[0].weight
        weight[0, 0] = torch.nextafter(weight[0, 0], torch.tensor(float("inf")))  # one ulp
    assert actor.expert_checksum() != checksum
    assert tensor_digest(torch.zeros(2, 3)) != tensor_digest(torch.zeros(3, 2)) != tensor_digest(torch.zeros(6))
    assert tensor_digest(torch.zeros(2)) != tensor_digest(torch.zeros(2, dtype=torch.int32))  # same bytes, other dtype
