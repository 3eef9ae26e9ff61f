"""Partial experts: a legged_gym-style Go2 expert (12 actions, its own 48-value observation group, its own
joint order and scales) as the legs of a per-limb mixture, through ``obs_maps`` and ``action_maps``. The models
are given the app's names for their arguments (``scripts/common.py``), as in training, so messages name the overrides
(``runner.alg.actor_critic.expert_obs.go2``)."""

from __future__ import annotations

import pytest
import torch
from moe_helpers import GROUP_DIMS, LEGS_ARM, NUM_ACTIONS, OBS_GROUPS, expert_sources, random_obs, save_expert
from tensordict import TensorDict

from rsl_rl_moe.checkpoint import CheckpointError
from rsl_rl_moe.modules import MoEActor, MoECritic
from scripts.common import expert_message_names

GO2_DIMS = {"policy": 48, "critic": GROUP_DIMS["critic"]}  # the Go2 expert's own layout
ENV_DIMS = {**GROUP_DIMS, "legged_gym_policy": 48}
GO2_OBS = {"go2": {"policy": "legged_gym_policy"}}
# legged_gym order FL, FR, RL, RR -> env order FR, FL, RR, RL (3 joints each)
GO2_INDICES = [3, 4, 5, 0, 1, 2, 9, 10, 11, 6, 7, 8]
GO2_SCALE = [0.25 + 0.05 * k for k in range(12)]
GO2_OFFSET = [0.1, 0.8, -1.5] * 4
GO2_MAP = {"go2": {"indices": GO2_INDICES, "scale": GO2_SCALE, "offset": GO2_OFFSET}}


@pytest.fixture
def env_obs() -> TensorDict:
    return random_obs(ENV_DIMS, 64, seed=5)


@pytest.fixture
def files(tmp_path) -> dict[str, str]:
    return {
        "base": save_expert(tmp_path / "base.pt", seed=1),
        "arm": save_expert(tmp_path / "arm.pt", seed=2),
        "go2": save_expert(tmp_path / "go2.pt", seed=3, num_actions=12, group_dims=GO2_DIMS),
    }


def sources(files, obs_maps=GO2_OBS):
    """Experts base, arm, go2 (in that order) with the app's names for messages."""
    return expert_sources(files, obs_maps=obs_maps, message_names=expert_message_names())


def make_actor(obs, files, expert_obs=GO2_OBS, **kw) -> MoEActor:
    torch.manual_seed(0)
    cfg = {"action_maps": GO2_MAP, "action_groups": LEGS_ARM, **kw}
    return MoEActor(obs, OBS_GROUPS, "actor", NUM_ACTIONS, expert_sources=sources(files, expert_obs), **cfg)


def favour_go2(actor, logit: float = 50.0) -> None:
    """Make the gate want the Go2 expert in every group (the mask must still keep it out of the arm)."""
    last = [m for m in actor.gate.mlp if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.mul_(100.0)
        last.bias.view(len(LEGS_ARM), 3)[:, 2] = logit


def go2_view(obs: TensorDict) -> TensorDict:
    return TensorDict({"policy": obs["legged_gym_policy"], "critic": obs["critic"]}, batch_size=obs.batch_size)


def go2_env_actions(actor, obs) -> torch.Tensor:
    """By hand: the Go2 expert's 12 outputs placed at the env's leg actions, scaled and offset."""
    a = actor.experts["go2"](go2_view(obs))
    out = torch.zeros(a.shape[0], NUM_ACTIONS)
    for k, i in enumerate(GO2_INDICES):
        out[:, i] = GO2_SCALE[k] * a[:, k] + GO2_OFFSET[k]
    return out


@pytest.mark.parametrize("routing", ["softmax", "sparsemax", "entmax15"])
def test_legs_blend_uses_the_mapped_expert_and_the_arm_never_weights_it(env_obs, files, routing):
    actor = make_actor(env_obs, files, obs_moe={"routing": routing})
    favour_go2(actor, logit=1.0)
    mean = actor(env_obs)
    w = actor.last_gate_weights  # (N, G, E), experts base, arm, go2
    assert actor.expert_names == ["base", "arm", "go2"] and w.shape == (64, 2, 3)
    assert (w[:, 1, 2] == 0).all()  # arm group: the Go2 expert has exactly no weight
    torch.testing.assert_close(w.sum(dim=-1), torch.ones(64, 2))
    assert (w[:, 0, 2] > 0).any()  # legs: it is used
    base, arm = actor.experts["base"](env_obs), actor.experts["arm"](env_obs)
    go2 = go2_env_actions(actor, env_obs)
    legs, arm_idx = LEGS_ARM["legs"], LEGS_ARM["arm"]
    expected_legs = w[:, 0, :1] * base[:, legs] + w[:, 0, 1:2] * arm[:, legs] + w[:, 0, 2:] * go2[:, legs]
    torch.testing.assert_close(mean[:, legs], expected_legs)
    torch.testing.assert_close(mean[:, arm_idx], w[:, 1, :1] * base[:, arm_idx] + w[:, 1, 1:2] * arm[:, arm_idx])


def test_go2_alone_on_the_legs_is_its_own_action_in_env_order(env_obs, files):
    actor = make_actor(env_obs, files, obs_moe={"routing": "sparsemax"})
    favour_go2(actor)
    mean = actor(env_obs)
    assert (actor.last_gate_weights[:, 0, 2] == 1).all()
    torch.testing.assert_close(mean[:, :12], go2_env_actions(actor, env_obs)[:, :12])


def test_expert_choice_never_picks_a_masked_expert(env_obs, files):
    actor = make_actor(env_obs, files, exploration="expert_choice", expert_choice_hold_steps=1.0)
    favour_go2(actor)
    with torch.no_grad():
        actor.distribution.std_param.fill_(1e-6)
    obs = random_obs(ENV_DIMS, 2048, seed=6)
    arm_idx = LEGS_ARM["arm"]
    with torch.no_grad():
        for _ in range(5):
            actions = actor(obs, stochastic_output=True)
            means = actor.last_expert_actions[:, arm_idx]  # (N, 6, E)
            nearest = (means - actions[:, arm_idx].unsqueeze(-1)).abs().sum(dim=1).argmin(dim=-1)
            assert (nearest != 2).all()
            assert (actor.last_gate_weights[:, 1, 2] == 0).all()
    # held uniforms at the largest float below 1: a masked last expert is still never chosen
    actor.distribution.hold_steps = 1e12
    actor.distribution._held_uniform = torch.full((2048, 2), 1.0 - 2.0**-24)
    with torch.no_grad():
        actions = actor(obs, stochastic_output=True)
    means = actor.last_expert_actions[:, arm_idx]
    assert ((means - actions[:, arm_idx].unsqueeze(-1)).abs().sum(dim=1).argmin(dim=-1) != 2).all()


def test_log_prob_ignores_the_masked_expert(env_obs, files):
    from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

    actor = make_actor(env_obs, files, exploration="expert_choice")
    favour_go2(actor, logit=1.0)
    actions = actor(env_obs, stochastic_output=True)
    log_prob = actor.get_output_log_prob(actions)
    w, means, std = actor.last_gate_weights, actor.last_expert_actions, actor.distribution.std_param
    allowed = {"legs": [0, 1, 2], "arm": [0, 1]}
    expected = torch.zeros(64)
    for g, (name, idx) in enumerate(LEGS_ARM.items()):
        e = allowed[name]
        comp = Independent(Normal(means[:, idx][..., e].transpose(1, 2), std[idx]), 1)
        expected += MixtureSameFamily(Categorical(probs=w[:, g, e]), comp).log_prob(actions[:, idx])
    torch.testing.assert_close(log_prob, expected)


def test_export_matches_forward(env_obs, files):
    actor = make_actor(env_obs, files, obs_moe={"routing": "entmax15"})
    favour_go2(actor, logit=1.0)
    actor.eval()
    policy = torch.jit.script(actor.as_jit())
    assert actor.input_groups == ["policy", "legged_gym_policy"]
    x = torch.cat([env_obs[g] for g in actor.input_groups], dim=-1)
    torch.testing.assert_close(policy(x), actor(env_obs))


def test_product_of_experts_with_a_partial_expert(env_obs, files):
    actor = make_actor(env_obs, files, blend="product_of_experts", exploration="gaussian")
    mean = actor(env_obs)
    assert mean.isfinite().all()
    assert actor.expert_precision.isfinite().all()
    std = actor.distribution.std_param
    assert std.isfinite().all() and std.shape == (NUM_ACTIONS,)


def test_critic_reads_the_mapped_observations(env_obs, files):
    torch.manual_seed(0)
    critic = MoECritic(env_obs, OBS_GROUPS, "critic", 1, expert_sources=sources(files), residual_hidden_dims=None)
    value = critic(env_obs)
    w = critic.last_gate_weights
    values = torch.cat(
        [critic.experts["base"](env_obs), critic.experts["arm"](env_obs), critic.experts["go2"](go2_view(env_obs))],
        dim=-1,
    )
    torch.testing.assert_close(value, (w * values).sum(dim=-1, keepdim=True))


# --- validation ------------------------------------------------------------------------------------


def test_observation_width_mismatch_names_expert_groups_and_widths(files):
    obs = random_obs({**GROUP_DIMS, "legged_gym_policy": 45}, 4, seed=0)
    with pytest.raises(CheckpointError) as info:
        make_actor(obs, files)
    msg = str(info.value)
    assert "'go2'" in msg and "'policy'" in msg and "'legged_gym_policy'" in msg and "48" in msg and "45" in msg, msg
    assert "runner.alg.actor_critic.expert_obs.go2.policy" in msg and "\n" not in msg


def test_missing_env_group_is_named(files):
    obs = random_obs(GROUP_DIMS, 4, seed=0)
    with pytest.raises(CheckpointError, match=r"'go2'.*'legged_gym_policy', which the env does not provide"):
        make_actor(obs, files)


def test_mapping_a_group_the_expert_does_not_read(env_obs, files):
    with pytest.raises(
        CheckpointError, match=r"'go2'.*maps observation groups \['height_scan'\] that the expert does not read"
    ):
        make_actor(env_obs, files, expert_obs={"go2": {"policy": "legged_gym_policy", "height_scan": "critic"}})


def test_per_expert_maps_must_name_configured_experts(env_obs, files):
    with pytest.raises(ValueError, match=r"expert_obs` names experts \['go1'\] that are not configured"):
        make_actor(env_obs, files, expert_obs={"go1": {"policy": "legged_gym_policy"}})
    with pytest.raises(ValueError, match=r"action_maps` names experts \['go1'\] that are not configured"):
        make_actor(env_obs, files, action_maps={**GO2_MAP, "go1": {"indices": [0]}})


def test_partial_expert_without_action_map_is_refused(env_obs, files):
    with pytest.raises(CheckpointError, match=r"'go2'.*outputs 12 actions but the env has 18 actions.*action_maps"):
        make_actor(env_obs, files, action_maps=None)


@pytest.mark.parametrize(
    ("action_map", "pattern"),
    [
        ({"indices": list(range(11))}, r"action_maps.go2`.indices has 11 entries but expert 'go2' outputs 12 actions"),
        ({"indices": list(range(11)) + [18]}, r"action_maps.go2`.indices holds \[18\], outside the env's 18 actions"),
        ({"indices": list(range(11)) + [-1]}, r"action_maps.go2`.indices holds \[-1\], outside"),
        ({"indices": list(range(11)) + [3]}, r"action_maps.go2`.indices holds env actions \[3\] more than once"),
        (
            {"indices": GO2_INDICES, "scale": [1.0] * 11},
            r"action_maps.go2`.scale has 11 entries but expert 'go2' outputs 12",
        ),
        ({"indices": GO2_INDICES, "offset": [0.0] * 13}, r"action_maps.go2`.offset has 13 entries"),
        (
            {"indices": GO2_INDICES, "gain": [1.0] * 12},
            r"action_maps.go2` takes keys indices \(required\), scale, offset",
        ),
        ({"scale": [1.0] * 12}, r"action_maps.go2` takes keys indices \(required\)"),
    ],
)
def test_bad_action_maps_are_refused(env_obs, files, action_map, pattern):
    with pytest.raises(ValueError, match=pattern):
        make_actor(env_obs, files, action_maps={"go2": action_map})


def test_expert_covering_part_of_a_group_is_refused(env_obs, files):
    indices = list(range(10)) + [12, 13]
    with pytest.raises(
        ValueError, match=r"expert 'go2' writes part of action group 'legs' but not its actions \[10, 11\]"
    ):
        make_actor(env_obs, files, action_maps={"go2": {"indices": indices}})


def test_group_no_expert_covers_is_refused(env_obs, files):
    torch.manual_seed(0)
    legs = {"indices": GO2_INDICES}
    with pytest.raises(
        ValueError, match=r"no expert writes all of action group 'arm' \(actions \[12, 13, 14, 15, 16, 17\]\)"
    ):
        MoEActor(
            env_obs,
            OBS_GROUPS,
            "actor",
            NUM_ACTIONS,
            expert_sources=sources(
                {"base": files["go2"], "arm": files["go2"]}, {"base": GO2_OBS["go2"], "arm": GO2_OBS["go2"]}
            ),
            action_maps={"base": legs, "arm": legs},
            action_groups=LEGS_ARM,
        )


def test_scalar_gate_with_a_partial_expert_is_refused(env_obs, files):
    with pytest.raises(ValueError, match=r"experts \['go2'\] write only some actions.*action_groups"):
        make_actor(env_obs, files, action_groups=None)


@pytest.mark.filterwarnings("ignore:.*LeafSpec:FutureWarning")  # raised inside torch.onnx
def test_onnx_export_matches_forward(tmp_path, env_obs, files):
    import numpy as np
    import onnxruntime

    actor = make_actor(env_obs, files, obs_moe={"routing": "sparsemax"})
    favour_go2(actor, logit=1.0)
    actor.eval()
    model = actor.as_onnx(verbose=False)
    path = str(tmp_path / "policy.onnx")
    torch.onnx.export(
        model,
        model.get_dummy_inputs(),
        path,
        export_params=True,
        opset_version=18,
        input_names=model.input_names,
        output_names=model.output_names,
    )
    x = torch.cat([env_obs[g] for g in actor.input_groups], dim=-1)
    session = onnxruntime.InferenceSession(path)
    got = np.concatenate([session.run(None, {"obs": row[None].numpy()})[0] for row in x[:8]])  # batch size 1
    np.testing.assert_allclose(got, actor(env_obs)[:8].detach().numpy(), rtol=1e-5, atol=1e-5)
