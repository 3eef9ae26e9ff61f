"""Exploration by expert choice: the MoE actor as a mixture of Gaussians around the experts' actions."""

from __future__ import annotations

import math

import pytest
import torch
from moe_helpers import LEGS_ARM, NUM_ACTIONS, LinearEnv, make_obs
from rsl_rl.runners import OnPolicyRunner
from test_actor_critic_moe import make_actor, sharpen
from test_ppo_moe import train_cfg
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal


def choice_actor(obs, files, **kw):
    return make_actor(obs, files, exploration="expert_choice", **kw)


def reference_log_prob(actor, obs, actions, groups):
    """log pi(a|s) = sum_g log sum_i w_gi N(a_g; a_ig, std_g) from torch.distributions."""
    weights = actor.get_moe_weights(obs)
    weights = weights if weights.dim() == 3 else weights.unsqueeze(1)
    means = torch.stack([e(obs) for e in actor.experts.values()], dim=-1)  # (N, A, E)
    std = actor.distribution.std_param
    total = torch.zeros(actions.shape[0])
    for g, idx in enumerate(groups):
        components = Independent(Normal(means[:, idx].transpose(1, 2), std[idx]), 1)  # batch (N, E), event |g|
        total += MixtureSameFamily(Categorical(probs=weights[:, g]), components).log_prob(actions[:, idx])
    return total


@pytest.mark.parametrize("action_groups", [None, LEGS_ARM])
def test_log_prob_is_the_mixture_density(obs, expert_files, action_groups):
    actor = choice_actor(obs, expert_files, action_groups=action_groups)
    actions = actor(obs, stochastic_output=True)
    groups = list(action_groups.values()) if action_groups else [list(range(NUM_ACTIONS))]
    torch.testing.assert_close(actor.get_output_log_prob(actions), reference_log_prob(actor, obs, actions, groups))
    torch.testing.assert_close(actor(obs), actor.output_mean)  # deterministic output: the blend


def test_samples_choose_experts_with_the_gate_probabilities(expert_files):
    obs = make_obs(num_envs=4000, seed=3)
    actor = choice_actor(obs, expert_files)
    with torch.inference_mode():
        actions = actor(obs, stochastic_output=True)
        means = actor.last_expert_actions  # (N, A, E)
        chosen = ((actions.unsqueeze(-1) - means) ** 2).sum(dim=1).argmin(dim=-1)  # nearest expert
        base_weight = actor.last_gate_weights[:, 0].mean().item()
    assert (chosen == 0).float().mean().item() == pytest.approx(base_weight, abs=0.03)
    noise = actions - means.gather(-1, chosen.view(-1, 1, 1).expand(-1, NUM_ACTIONS, 1)).squeeze(-1)
    torch.testing.assert_close(noise.std(dim=0), actor.distribution.std_param.detach(), atol=0.05, rtol=0.05)


@pytest.mark.parametrize(("hold_steps", "redrawn_share"), [(1e9, 0.0), (1.0, 1.0)])
def test_choices_are_held_between_rollout_steps(expert_files, hold_steps, redrawn_share):
    obs = make_obs(num_envs=2000, seed=4)
    actor = choice_actor(obs, expert_files, expert_choice_hold_steps=hold_steps)
    with torch.no_grad():
        for _ in range(2):
            actor(obs, stochastic_output=True)
        first = actor.distribution._held_uniform.clone()
        actor(obs, stochastic_output=True)
        redrawn = (actor.distribution._held_uniform != first).float().mean().item()
        held = actor.distribution._held_uniform.clone()
    assert redrawn == pytest.approx(redrawn_share)
    actor(obs, stochastic_output=True)  # the PPO update's forward (autograd on) leaves the held numbers alone
    assert torch.equal(actor.distribution._held_uniform, held)


def test_gate_gets_a_choice_gradient_and_kl_bound_is_zero_at_identity(obs, expert_files):
    actor = choice_actor(obs, expert_files, action_groups=LEGS_ARM)
    sharpen(actor)
    with torch.no_grad():
        actions = actor(obs, stochastic_output=True)
        old_params = tuple(p.clone() for p in actor.output_distribution_params)
    actor(obs, stochastic_output=True)
    actor.get_output_log_prob(actions).sum().backward()
    assert all(p.grad is None for p in actor.experts.parameters())
    assert sum(p.grad.abs().sum() for p in actor.gate.parameters()) > 0
    new_params = actor.output_distribution_params
    torch.testing.assert_close(actor.get_kl_divergence(old_params, new_params), torch.zeros(8), atol=1e-5, rtol=0)
    shifted = (old_params[0].roll(1, dims=-1),) + old_params[1:]
    assert (actor.get_kl_divergence(old_params, shifted) > 0).all()


def test_entropy_bound_is_choice_plus_gaussian_entropy(obs, expert_files):
    actor = choice_actor(obs, expert_files)
    actor(obs, stochastic_output=True)
    std = actor.distribution.std_param
    gaussian = (0.5 + 0.5 * math.log(2 * math.pi) + std.log()).sum()
    w = actor.last_gate_weights
    torch.testing.assert_close(actor.output_entropy, gaussian + Categorical(probs=w).entropy())


def test_expert_choice_needs_the_mixture_blend(obs, expert_files):
    with pytest.raises(ValueError, match="needs blend='mixture'"):
        choice_actor(obs, expert_files, blend="product_of_experts")
    with pytest.raises(ValueError, match="unknown exploration 'greedy'"):
        make_actor(obs, expert_files, exploration="greedy")
    with pytest.raises(ValueError, match="expert_choice_hold_steps must be >= 1"):
        choice_actor(obs, expert_files, expert_choice_hold_steps=0.5)


def test_ppo_trains_the_gate_with_expert_choice(expert_files):
    cfg = train_cfg(expert_files, schedule="adaptive", desired_kl=0.01)
    cfg["actor"].update(exploration="expert_choice", expert_choice_hold_steps=3, action_groups=LEGS_ARM)
    runner = OnPolicyRunner(LinearEnv(), cfg, log_dir=None)
    actor = runner.alg.actor
    checksum = actor.expert_checksum()
    gate_before = [p.detach().clone() for p in actor.gate.parameters()]
    runner.learn(3)
    assert actor.expert_checksum() == checksum
    assert any(not torch.equal(a, b) for a, b in zip(gate_before, actor.gate.parameters()))
    assert math.isfinite(runner.alg.learning_rate)


def test_checkpoints_load_across_explorations(obs, expert_files):
    """Runs trained before expert choice existed (Gaussian exploration) load into today's default actor."""
    gaussian = make_actor(obs, expert_files, exploration="gaussian")
    sharpen(gaussian)
    choice = choice_actor(obs, expert_files)
    choice.load_state_dict(gaussian.state_dict())
    torch.testing.assert_close(choice(obs), gaussian(obs))
