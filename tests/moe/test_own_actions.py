"""OwnActionsMLPModel: PPO's log-probability, entropy and KL count only the entries the policy writes itself."""

from __future__ import annotations

import copy

import torch
from moe_helpers import GROUP_DIMS, NUM_ACTIONS, OBS_GROUPS, random_obs
from rsl_rl.models import MLPModel
from torch.distributions import Normal

from rsl_rl_moe.modules.own_actions import OwnActionsMLPModel

KW = {
    "hidden_dims": [16],
    "activation": "elu",
    "distribution_cfg": {"class_name": "GaussianDistribution", "init_std": 1.0, "std_type": "scalar"},
}


def models():
    obs = random_obs(GROUP_DIMS, 6, seed=0)
    torch.manual_seed(0)
    own = OwnActionsMLPModel(obs, OBS_GROUPS, "actor", NUM_ACTIONS, **copy.deepcopy(KW))  # rsl_rl 5.4 pops from it
    plain = MLPModel(obs, OBS_GROUPS, "actor", NUM_ACTIONS, **copy.deepcopy(KW))
    plain.load_state_dict(own.state_dict())
    with torch.no_grad():
        own.distribution.std_param.uniform_(0.3, 1.5)
        plain.distribution.std_param.copy_(own.distribution.std_param)
    return obs, own, plain


def test_without_the_group_it_is_mlp_model():
    obs, own, plain = models()
    actions = torch.randn(6, NUM_ACTIONS)
    own(obs, stochastic_output=True), plain(obs, stochastic_output=True)
    torch.testing.assert_close(own.get_output_log_prob(actions), plain.get_output_log_prob(actions))
    torch.testing.assert_close(own.output_entropy, plain.output_entropy)


def test_partner_entries_leave_log_prob_entropy_and_kl_and_get_no_gradient():
    obs, model, _ = models()
    mask = torch.ones(6, NUM_ACTIONS)
    mask[:3, :12] = 0.0  # rows 0-2: a partner writes the legs
    obs["own_actions"] = mask
    actions = torch.randn(6, NUM_ACTIONS)
    model(obs, stochastic_output=True)
    mean, std = model.distribution.mean, model.distribution.std
    expected = (Normal(mean, std).log_prob(actions) * mask).sum(dim=-1)
    log_prob = model.get_output_log_prob(actions)
    torch.testing.assert_close(log_prob, expected)
    entropy = model.output_entropy
    torch.testing.assert_close(entropy, (Normal(mean, std).entropy() * mask).sum(dim=-1))
    (log_prob[:3].sum() + entropy[:3].sum()).backward()
    grad = model.distribution.std_param.grad
    assert torch.all(grad[:12] == 0) and torch.all(grad[12:] != 0)  # legs: the partner's in rows 0-2
    new = (mean.detach() + 0.1, std.detach() * 1.2)
    kl = model.get_kl_divergence((mean.detach(), std.detach()), new)
    per_entry = torch.distributions.kl_divergence(Normal(mean.detach(), std.detach()), Normal(*new))
    torch.testing.assert_close(kl, (per_entry * mask).sum(dim=-1))
    assert kl[0] < kl[5]


def test_a_checkpoint_trained_with_it_loads_as_an_mlp_expert(tmp_path):
    from rsl_rl_moe.checkpoint import make_infos, save_checkpoint
    from rsl_rl_moe.modules.experts import load_expert

    obs, model, plain = models()
    critic = MLPModel(obs, OBS_GROUPS, "critic", 1, hidden_dims=[16], activation="elu")
    actor_cfg = {"class_name": "rsl_rl_moe.modules.own_actions:OwnActionsMLPModel", **KW}
    infos = make_infos(
        {
            "actor": actor_cfg,
            "critic": {"class_name": "rsl_rl.models:MLPModel", "hidden_dims": [16], "activation": "elu"},
            "obs_groups": OBS_GROUPS,
            "obs_group_dims": GROUP_DIMS,
            "num_actions": NUM_ACTIONS,
        }
    )
    path = str(tmp_path / "e.pt")
    save_checkpoint(
        path,
        {
            "actor_state_dict": model.state_dict(),
            "critic_state_dict": critic.state_dict(),
            "optimizer_state_dict": {},
            "iter": 1,
            "infos": infos,
        },
    )
    expert = load_expert("arm", path, obs, NUM_ACTIONS, "test")
    assert type(expert.actor) is MLPModel
    torch.testing.assert_close(expert.actor(obs), plain.eval()(obs))


def test_entropy_action_weights_leave_entries_out_of_the_bonus_and_its_gradient():
    obs, plain_own, _ = models()
    weights = [0.0] * 12 + [1.0] * (NUM_ACTIONS - 12)  # the bonus on the arm only
    torch.manual_seed(0)
    model = OwnActionsMLPModel(obs, OBS_GROUPS, "actor", NUM_ACTIONS, entropy_action_weights=weights, **KW)
    model.load_state_dict(plain_own.state_dict())  # no extra state: the weights are not in the state dict
    mask = torch.ones(6, NUM_ACTIONS)
    mask[:3, 12:] = 0.0  # rows 0-2: a partner writes the arm
    obs["own_actions"] = mask
    model(obs, stochastic_output=True)
    per_entry = Normal(model.distribution.mean, model.distribution.std).entropy()
    entropy = model.output_entropy
    torch.testing.assert_close(entropy, (per_entry * mask * torch.tensor(weights)).sum(dim=-1))
    assert torch.all(entropy[:3] == 0)  # own entries: legs (weight 0); arm: the partner's
    entropy.sum().backward()
    grad = model.distribution.std_param.grad
    assert torch.all(grad[:12] == 0) and torch.all(grad[12:] != 0)


def test_entropy_action_weights_must_match_the_actions():
    obs = random_obs(GROUP_DIMS, 2, seed=0)
    try:
        OwnActionsMLPModel(obs, OBS_GROUPS, "actor", NUM_ACTIONS, entropy_action_weights=[1.0, 0.0], **KW)
    except ValueError as exc:
        assert "entropy_action_weights: 2 weights for" in str(exc)
    else:
        raise AssertionError("no error")
