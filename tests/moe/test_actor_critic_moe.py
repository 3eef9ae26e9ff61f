"""MoE actor and critic: blending, freezing, gradients, checkpoint round trip, TorchScript / ONNX export."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
import torch
from moe_helpers import LEGS_ARM, NUM_ACTIONS, OBS_GROUPS, expert_sources, make_obs

from rsl_rl_moe.checkpoint import load_checkpoint, save_checkpoint
from rsl_rl_moe.modules import MoEActor, MoECritic


def make_actor(obs, files, freeze: bool = True, **kw) -> MoEActor:
    torch.manual_seed(0)
    return MoEActor(obs, OBS_GROUPS, "actor", NUM_ACTIONS, expert_sources=expert_sources(files, freeze=freeze), **kw)


def make_critic(obs, files, **kw) -> MoECritic:
    torch.manual_seed(0)
    return MoECritic(obs, OBS_GROUPS, "critic", 1, expert_sources=expert_sources(files), **kw)


def sharpen(actor):
    """Scale the gate's last layer so weights are far from uniform (and sparse under sparsemax)."""
    last = [m for m in actor.gate.mlp if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.mul_(300.0)


def test_mixture_is_weighted_sum_of_expert_means(obs, expert_files):
    actor = make_actor(obs, expert_files)
    sharpen(actor)
    mean = actor(obs)
    w = actor.get_moe_weights(obs)
    expected = w[:, :1] * actor.experts["base"](obs) + w[:, 1:] * actor.experts["arm"](obs)
    torch.testing.assert_close(mean, expected)
    assert actor.expert_names == ["base", "arm"] and actor.last_gate_weights.shape == (8, 2)
    assert actor.last_expert_actions.shape == (8, NUM_ACTIONS, 2)


def test_experts_of_different_sizes_and_activations_blend(tmp_path, obs):
    """Experts need not share their network: each is rebuilt from its own description ([64, 32] ELU and [16] tanh
    here), and the mixture and the MoE critic blend their outputs as usual."""
    from moe_helpers import save_expert

    files = {
        "base": save_expert(tmp_path / "b.pt", seed=1, hidden_dims=(64, 32)),
        "arm": save_expert(tmp_path / "a.pt", seed=2, hidden_dims=(16,), activation="tanh"),
    }
    actor = make_actor(obs, files)
    sharpen(actor)
    assert [m.out_features for m in actor.experts["base"].mlp if isinstance(m, torch.nn.Linear)] == [
        64,
        32,
        NUM_ACTIONS,
    ]
    assert isinstance(actor.experts["arm"].mlp[1], torch.nn.Tanh)
    w = actor.get_moe_weights(obs)
    expected = w[:, :1] * actor.experts["base"](obs) + w[:, 1:] * actor.experts["arm"](obs)
    torch.testing.assert_close(actor(obs), expected)
    assert make_critic(obs, files)(obs).shape == (8, 1)


def test_per_limb_gating_blends_each_group_with_its_own_weights(obs, expert_files):
    actor = make_actor(obs, expert_files, action_groups=LEGS_ARM, obs_moe={"routing": "entmax15"})
    sharpen(actor)
    mean = actor(obs)
    w = actor.last_gate_weights  # (N, G, E): G = legs, arm
    assert w.shape == (8, 2, 2) and actor.action_group_names == ["legs", "arm"]
    base, arm = actor.experts["base"](obs), actor.experts["arm"](obs)
    for g, idx in enumerate(LEGS_ARM.values()):
        torch.testing.assert_close(mean[:, idx], w[:, g, :1] * base[:, idx] + w[:, g, 1:] * arm[:, idx])


def test_action_groups_must_partition_actions(obs, expert_files):
    with pytest.raises(ValueError, match=r"action indices \[17\] belong to no action group"):
        make_actor(obs, expert_files, action_groups={"legs": list(range(12)), "arm": list(range(12, 17))})


def test_product_of_experts_is_precision_weighted(obs, expert_files):
    actor = make_actor(obs, expert_files, blend="product_of_experts", exploration="gaussian")
    sharpen(actor)
    mean = actor(obs)
    w = actor.last_gate_weights
    (mu_b, mu_a), (s_b, s_a) = zip(*[(e(obs), e.distribution.std_param) for e in actor.experts.values()])
    p_b, p_a = w[:, :1] / s_b**2, w[:, 1:] / s_a**2
    torch.testing.assert_close(mean, (p_b * mu_b + p_a * mu_a) / (p_b + p_a))


@pytest.mark.parametrize("exploration", ["gaussian", "expert_choice"])
def test_frozen_experts_get_no_gradient_and_stay_in_eval(obs, expert_files, exploration):
    actor = make_actor(obs, expert_files, exploration=exploration)
    actor.train()
    assert actor.training and actor.gate.training
    assert all(not m.training for m in actor.experts.modules())
    assert all(not p.requires_grad for p in actor.experts.parameters())
    actor(obs, stochastic_output=True)
    (actor.get_output_log_prob(torch.zeros(8, NUM_ACTIONS)).sum() + actor.output_entropy.sum()).backward()
    grads = {name for name, p in actor.named_parameters() if p.grad is not None}
    assert grads == {name for name, _ in actor.gate.named_parameters(prefix="gate")} | {"distribution.std_param"}


def test_unfrozen_experts_are_trainable(obs, expert_files):
    actor = make_actor(obs, expert_files, freeze=False)
    actor.train()
    actor(obs).sum().backward()
    assert actor.experts["base"].training and actor.experts["base"].mlp[0].weight.grad is not None


@pytest.mark.parametrize("exploration", ["gaussian", "expert_choice"])
def test_default_std_starts_at_mean_expert_std(obs, expert_files, exploration):
    actor = make_actor(obs, expert_files, exploration=exploration)
    stds = [e.distribution.std_param for e in actor.experts.values()]
    torch.testing.assert_close(actor.distribution.std_param.detach(), (stds[0] + stds[1]) / 2)


def test_checkpoint_round_trip(tmp_path, obs, expert_files):
    cfg = {
        "action_groups": LEGS_ARM,
        "obs_moe": {"routing": "sparsemax", "obs_normalization": True, "schedule": {"warmup_iterations": 1}},
    }
    actor = make_actor(obs, expert_files, **cfg)
    actor.train()
    actor.update_normalization(make_obs(32, seed=5))
    sharpen(actor)
    actor.step_routing_schedule()
    save_checkpoint(str(tmp_path / "moe.pt"), {"actor_state_dict": actor.state_dict()})
    restored = make_actor(obs, expert_files, **cfg)
    restored.load_state_dict(load_checkpoint(str(tmp_path / "moe.pt"))["actor_state_dict"])
    assert (
        restored.gate.routing_state == actor.gate.routing_state and restored.gate.routing_state.routing == "sparsemax"
    )
    torch.testing.assert_close(restored(obs), actor(obs), rtol=0, atol=0)
    assert restored.expert_checksum() == actor.expert_checksum()


def test_moe_critic_starts_from_gated_expert_values(obs, expert_files):
    critic = make_critic(obs, expert_files)
    critic.train()
    value = critic(obs)
    w = critic.last_gate_weights
    expected = w[:, :1] * critic.experts["base"](obs) + w[:, 1:] * critic.experts["arm"](obs)
    torch.testing.assert_close(value, expected)
    value.sum().backward()
    grads = {name.split(".")[0] for name, p in critic.named_parameters() if p.grad is not None}
    assert grads == {"gate", "residual"} and all(not m.training for m in critic.experts.modules())
    with pytest.raises(ValueError, match="output_dim=1"):
        MoECritic(obs, OBS_GROUPS, "critic", 2, expert_sources=expert_sources(expert_files))


EXPORT_CASES = {
    "mixture-softmax": {},
    "limbs-sparsemax": {"action_groups": LEGS_ARM, "obs_moe": {"routing": "sparsemax", "obs_normalization": True}},
    "poe-entmax15": {
        "blend": "product_of_experts",
        "exploration": "gaussian",
        "obs_moe": {"routing": "entmax15", "temperature": 0.5},
    },
}


@pytest.mark.parametrize("case", EXPORT_CASES)
def test_torchscript_export_equals_pytorch(obs, expert_files, case):
    actor = make_actor(obs, expert_files, **EXPORT_CASES[case])
    actor.update_normalization(make_obs(32, seed=5))
    sharpen(actor)
    actor.eval()
    scripted = torch.jit.script(actor.as_jit())
    x = torch.cat([obs[g] for g in actor.input_groups], dim=-1)
    torch.testing.assert_close(scripted(x), actor(obs))
    scripted.reset()


@pytest.mark.filterwarnings("ignore:.*LeafSpec:FutureWarning")  # raised inside torch.onnx
@pytest.mark.parametrize("case", ["limbs-sparsemax", "poe-entmax15"])
def test_onnx_export_equals_pytorch(tmp_path, obs, expert_files, case):
    actor = make_actor(obs, expert_files, **EXPORT_CASES[case])
    sharpen(actor)
    actor.eval()
    model = actor.as_onnx(verbose=False)
    path = str(tmp_path / "policy.onnx")
    # The call OnPolicyRunner.export_policy_to_onnx makes.
    torch.onnx.export(
        model,
        model.get_dummy_inputs(),
        path,
        export_params=True,
        opset_version=18,
        input_names=model.input_names,
        output_names=model.output_names,
    )
    session = onnxruntime.InferenceSession(path)
    x = torch.cat([obs[g] for g in actor.input_groups], dim=-1)
    expected = actor(obs).detach().numpy()
    for i in range(3):  # rsl_rl's export has batch size 1
        (out,) = session.run(None, {"obs": x[i : i + 1].numpy()})
        np.testing.assert_allclose(out, expected[i : i + 1], rtol=1e-5, atol=1e-5)
