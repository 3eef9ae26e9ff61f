"""PPOMoE: gate regularisers, their path into PPO's gradient, and short real training runs."""

from __future__ import annotations

import math

import pytest
import torch
from moe_helpers import NUM_ACTIONS, OBS_GROUPS, LinearEnv
from rsl_rl.models import MLPModel
from rsl_rl.runners import OnPolicyRunner
from rsl_rl.storage import RolloutStorage

from rsl_rl_moe.algorithms import PPOMoE, gate_losses
from rsl_rl_moe.algorithms.ppo_moe import TESTED_RSL_RL_VERSION, attach_loss
from rsl_rl_moe.checkpoint import rsl_rl_version
from rsl_rl_moe.modules import RoutingState

MOE_KEYS = {
    "moe_weight_regularization",
    "moe_load_balance",
    "moe_router_z",
    "moe_diversity",
    "moe_gate_entropy",
    "moe_routing_temperature",
    "moe_routing_phase",
}


def test_rsl_rl_version_is_the_one_ppo_moe_was_checked_against():
    assert rsl_rl_version() == TESTED_RSL_RL_VERSION, (
        f"rsl-rl-lib {rsl_rl_version()} is installed but PPOMoE was checked against {TESTED_RSL_RL_VERSION}. "
        "PPOMoE.update() adds the gate regularisers through a forward hook on the actor's gate, relying on "
        "rsl_rl's PPO.update() running the actor forward once per minibatch before one loss.backward(). "
        "Re-read rsl_rl/algorithms/ppo.py, check test_regularizer_step_is_minus_lr_times_its_gradient passes, "
        "then update TESTED_RSL_RL_VERSION in rsl_rl_moe/algorithms/ppo_moe.py."
    )


def test_gate_loss_values():
    uniform = torch.full((6, 2, 4), 0.25)
    assert gate_losses.kl_to_uniform(uniform).item() == pytest.approx(0.0, abs=1e-6)
    assert gate_losses.load_balance(uniform).item() == pytest.approx(1.0)
    assert gate_losses.diversity_loss(uniform).item() == pytest.approx(0.0, abs=1e-6)
    balanced_one_hot = torch.eye(4).repeat(2, 1)  # (8, 4): each sample one expert, all used equally
    assert gate_losses.diversity_loss(balanced_one_hot).item() == pytest.approx(-math.log(4), abs=1e-5)
    assert gate_losses.kl_to_uniform(balanced_one_hot).item() == pytest.approx(0.0, abs=1e-6)
    collapsed = torch.tensor([[1.0, 0.0]]).repeat(5, 1)
    assert gate_losses.kl_to_uniform(collapsed).item() == pytest.approx(math.log(2), abs=1e-5)
    assert gate_losses.load_balance(collapsed).item() == pytest.approx(2.0)
    logits = torch.tensor([[0.0, math.log(3.0)]])
    assert gate_losses.router_z_loss(logits).item() == pytest.approx(math.log(4.0) ** 2)


def test_attach_loss_adds_the_loss_gradient():
    theta = torch.randn(5, requires_grad=True)
    x = torch.tanh(theta)
    reg = (theta**3).sum()
    (attach_loss(x, reg) * torch.arange(5.0)).sum().backward()
    got = theta.grad.clone()
    theta.grad = None
    ((torch.tanh(theta) * torch.arange(5.0)).sum() + (theta**3).sum()).backward()
    torch.testing.assert_close(got, theta.grad)


def train_cfg(files, critic_class="rsl_rl_moe.modules:MoECritic", **alg) -> dict:
    experts = {"expert_sources": {"experts": {"base": files["base"], "arm": files["arm"]}}}
    critic = {"class_name": critic_class, **(experts if "MoECritic" in critic_class else {"hidden_dims": [32]})}
    return {
        "num_steps_per_env": 4,
        "save_interval": 100,
        "obs_groups": dict(OBS_GROUPS),
        "algorithm": {
            "class_name": "rsl_rl_moe.algorithms:PPOMoE",
            "num_learning_epochs": 2,
            "num_mini_batches": 2,
            "load_balance_coef": 0.01,
            "diversity_coef": 0.01,
            **alg,
        },
        "actor": {
            "class_name": "rsl_rl_moe.modules:MoEActor",
            **experts,
            "obs_moe": {
                "hidden_dims": [16],
                "routing": "sparsemax",
                "schedule": {"warmup_iterations": 1, "anneal_iterations": 2, "final_temperature": 0.5},
            },
        },
        "critic": critic,
    }


def collect(alg, env, steps: int) -> None:
    """One rollout into the algorithm's storage and the returns, as OnPolicyRunner.learn does."""
    obs = env.get_observations()
    with torch.inference_mode():
        for _ in range(steps):
            obs, rewards, dones, extras = env.step(alg.act(obs))
            alg.process_env_step(obs, rewards, dones, extras)
        alg.compute_returns(obs)


@pytest.mark.parametrize(
    ("critic_class", "task_id"), [("rsl_rl_moe.modules:MoECritic", True), ("rsl_rl.models:MLPModel", False)]
)
def test_training_keeps_experts_bit_identical(tmp_path, expert_files, critic_class, task_id):
    env = LinearEnv(task_id=task_id)
    runner = OnPolicyRunner(env, train_cfg(expert_files, critic_class), log_dir=None)
    alg = runner.alg
    assert isinstance(alg, PPOMoE) and ("task_id" in alg.storage.observations.keys()) == task_id
    checksums = [m.expert_checksum() for m in (alg.actor, alg.critic) if hasattr(m, "expert_checksum")]
    gate_before = [p.detach().clone() for p in alg.actor.gate.parameters()]
    runner.learn(2)
    collect(alg, env, 4)
    losses = alg.update()
    assert MOE_KEYS <= set(losses) and all(math.isfinite(v) for v in losses.values())
    assert losses["moe_routing_phase"] == 2.0 and losses["moe_routing_temperature"] == pytest.approx(0.75)
    assert (
        alg.actor.gate.routing_state == RoutingState("final", "sparsemax", 0.5) and int(alg.actor.gate.iteration) == 3
    )
    assert [m.expert_checksum() for m in (alg.actor, alg.critic) if hasattr(m, "expert_checksum")] == checksums
    assert any(not torch.equal(a, b) for a, b in zip(gate_before, alg.actor.gate.parameters()))
    assert all(p.grad is None for p in alg.actor.experts.parameters())
    runner.export_policy_to_jit(str(tmp_path))
    policy = torch.jit.load(str(tmp_path / "policy.pt"))
    obs = env.get_observations()
    x = torch.cat([obs[g] for g in alg.actor.input_groups], dim=-1)
    torch.testing.assert_close(policy(x), alg.actor(obs))


def test_regularizer_step_is_minus_lr_times_its_gradient(expert_files):
    """With zero advantages the gate's only gradient is the regulariser's: one SGD step must equal -lr * grad R."""
    lr = 0.5
    cfg = train_cfg(
        expert_files,
        "rsl_rl.models:MLPModel",
        num_learning_epochs=1,
        num_mini_batches=1,
        optimizer="sgd",
        learning_rate=lr,
        schedule="fixed",
        entropy_coef=0.0,
        max_grad_norm=1e9,
        moe_weight_regularization=0.3,
        router_z_loss_coef=0.1,
    )
    cfg["actor"]["obs_moe"] = {"hidden_dims": [16], "routing": "softmax"}
    env = LinearEnv()
    alg = OnPolicyRunner(env, cfg, log_dir=None).alg
    alg.train_mode()
    collect(alg, env, 4)
    alg.storage.advantages = torch.zeros_like(alg.storage.advantages)
    gate = alg.actor.gate
    before = [p.detach().clone() for p in gate.parameters()]
    x = torch.cat([alg.storage.observations.flatten(0, 1)[g] for g in alg.actor.obs_groups], dim=-1)
    total, _ = alg.gate_regularization(*gate(x))
    grads = torch.autograd.grad(total, list(gate.parameters()))
    assert max((lr * g).abs().max().item() for g in grads) > 1e-3  # a step the check can see
    alg.update()
    for old, new, grad in zip(before, gate.parameters(), grads):
        torch.testing.assert_close(new.detach(), old - lr * grad)


def test_ppo_moe_refuses_an_actor_without_gate():
    obs = LinearEnv().get_observations()
    actor = MLPModel(obs, OBS_GROUPS, "actor", NUM_ACTIONS, distribution_cfg={"class_name": "GaussianDistribution"})
    critic = MLPModel(obs, OBS_GROUPS, "critic", 1)
    storage = RolloutStorage("rl", 8, 4, obs, [NUM_ACTIONS], "cpu")
    with pytest.raises(TypeError, match="ObsMoE `gate`"):
        PPOMoE(actor, critic, storage)


def test_ppo_moe_refuses_torch_compile(expert_files):
    cfg = train_cfg(expert_files, "rsl_rl.models:MLPModel")
    cfg["torch_compile_mode"] = "default"
    with pytest.raises(ValueError, match="torch_compile_mode='default'"):
        OnPolicyRunner(LinearEnv(), cfg, log_dir=None)


def test_loss_terms_are_the_loss_rsl_rl_minimises(expert_files):
    """On one minibatch holding every row: each term equals what PPO.update() reports, and one SGD step of
    update() equals -lr * the gradient of their sum for every trainable parameter (actor gate, std, critic)."""
    lr = 0.5
    cfg = train_cfg(
        expert_files,
        num_learning_epochs=1,
        num_mini_batches=1,
        optimizer="sgd",
        learning_rate=lr,
        schedule="fixed",
        max_grad_norm=1e9,
        entropy_coef=0.01,
        value_loss_coef=0.7,
    )
    env = LinearEnv()
    alg = OnPolicyRunner(env, cfg, log_dir=None).alg
    alg.train_mode()
    collect(alg, env, 4)
    params = [p for p in (*alg.actor.parameters(), *alg.critic.parameters()) if p.requires_grad]
    with torch.no_grad():  # move away from the rollout's policy and values, so both clippings act
        for p in params:
            p.add_(0.5 * torch.randn_like(p))
    rng_state = torch.get_rng_state()
    terms = alg.loss_terms(alg.conflict_minibatch())
    assert torch.equal(torch.get_rng_state(), rng_state)  # training draws the same minibatches and samples
    coefficients = {"surrogate": 1.0, "value": 0.7, "entropy": -0.01, **alg.coefficients}
    assert set(terms) == set(coefficients)  # train_cfg sets every regulariser coefficient non-zero
    grads = torch.autograd.grad(sum(terms.values()), params)
    before = [p.detach().clone() for p in params]
    reported = alg.update()
    for name, term in terms.items():
        assert term.item() == pytest.approx(coefficients[name] * reported[name], rel=1e-5, abs=1e-7), name
    for old, new, grad in zip(before, params, grads):
        step = -lr * grad  # up to ~100 on the critic residual: float32 rounding scales with it
        torch.testing.assert_close(new.detach() - old, step, rtol=1e-4, atol=1e-6 * (1 + step.abs().max().item()))
