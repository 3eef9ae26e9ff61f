"""Plain rsl_rl checkpoints of every generation become 5.5 experts with the original actions and values.

Each synthetic file below is built to the layout its rsl_rl version writes, read from the tagged sources of
github.com/leggedrobotics/rsl_rl:

- v1.0.2: ``rsl_rl/runners/on_policy_runner.py`` ``save()`` (``model_state_dict``, ``optimizer_state_dict``,
  ``iter``, ``infos``), ``rsl_rl/modules/actor_critic.py`` (``actor`` / ``critic`` ``nn.Sequential`` with Linear at
  even indices, ``std``; ``act_inference`` = ``actor(obs)``; ``get_activation``: ``"crelu"`` -> ``nn.ReLU``).
- v2.0.0, v2.1.1, v2.2.3, v2.3.0 (checked on every 2.x tag): ``rsl_rl/runners/on_policy_runner.py`` ``save()``
  (top-level ``obs_norm_state_dict`` + ``critic_obs_norm_state_dict``, renamed ``privileged_obs_norm_state_dict`` in
  v2.3.0) and its rollout (the critic reads the env's ``critic`` group through the critic normaliser, else the
  actor's normalised observations), ``get_inference_policy`` (``act_inference(obs_normalizer(x))``),
  ``rsl_rl/modules/normalizer.py`` (``_mean``, ``_var``, ``_std`` of shape ``(1, D)``, ``count`` buffer from v2.1.1;
  ``(x - _mean) / (_std + eps)``, ``eps=1e-2``), ``rsl_rl/modules/actor_critic.py`` (``std``, or ``log_std`` with
  ``noise_std_type="log"`` from v2.2.3).
- v3.0.0, v3.3.0: ``rsl_rl/modules/actor_critic.py`` (``actor_obs_normalizer`` / ``critic_obs_normalizer`` inside
  the model; ``act_inference`` normalises then runs ``actor``), ``rsl_rl/networks/normalization.py`` (same formula,
  ``eps=1e-2``), ``rsl_rl/networks/mlp.py`` (Linear at even indices), ``rsl_rl/runners/on_policy_runner.py``.
- v4.0.0, v4.0.1: ``rsl_rl/algorithms/ppo.py`` ``save()`` (``actor_state_dict``, ``critic_state_dict``,
  ``optimizer_state_dict``), ``rsl_rl/models/mlp_model.py`` (``obs_normalizer``, ``mlp``, ``std`` / ``log_std``),
  ``rsl_rl/modules/normalization.py``.
- v5.0.0 ... v5.4.2: ``rsl_rl/algorithms/ppo.py`` ``save()``, ``rsl_rl/models/mlp_model.py``,
  ``rsl_rl/modules/distribution.py`` (``distribution.std_param`` / ``distribution.log_std_param``).

The expected outputs are computed here by hand (matmuls, the activation, the normaliser formula), not by rsl_rl.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F
from moe_helpers import NUM_ACTIONS

from rsl_rl_moe.checkpoint import CheckpointError, save_checkpoint
from rsl_rl_moe.modules.experts import load_expert

HINT = "runner.alg.actor_critic.base_ckpt_path"
ARCH = "runner.alg.actor_critic.legacy_architectures.base"
EPS = 1e-2  # EmpiricalNormalization(eps=1e-2) in every tag listed above
HIDDEN = [32, 16]
ACTIVATIONS = {"elu": F.elu, "relu": F.relu, "tanh": torch.tanh, "celu": F.celu}


def linear_layers(prefix: str, in_dim: int, out_dim: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """``{prefix}{0,2,4}.weight/bias``: Linear layers of an rsl_rl MLP with HIDDEN widths."""
    dims = [in_dim, *HIDDEN, out_dim]
    params = {}
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        params[f"{prefix}{2 * i}.weight"] = torch.randn(d_out, d_in, generator=gen) / math.sqrt(d_in)
        params[f"{prefix}{2 * i}.bias"] = 0.1 * torch.randn(d_out, generator=gen)
    return params


def normaliser(width: int, gen: torch.Generator, count: bool = True) -> dict[str, torch.Tensor]:
    """Non-trivial EmpiricalNormalization state: ``_mean``, ``_var``, ``_std`` (1, width), ``count``."""
    var = 4 * torch.rand(1, width, generator=gen) + 0.05
    state = {"_mean": 2 * torch.randn(1, width, generator=gen), "_var": var, "_std": var.sqrt()}
    if count:
        state["count"] = torch.tensor(123_456, dtype=torch.long)
    return state


def initial_normaliser(width: int) -> dict[str, torch.Tensor]:
    """A normaliser never updated (rsl_rl 2.x critic normaliser when the env has no ``critic`` group)."""
    return {
        "_mean": torch.zeros(1, width),
        "_var": torch.ones(1, width),
        "_std": torch.ones(1, width),
        "count": torch.tensor(0),
    }


def by_hand(params: dict, prefix: str, x: torch.Tensor, activation: str, norm: dict | None = None) -> torch.Tensor:
    """The original formula: ``(x - _mean) / (_std + eps)``, then Linear / activation pairs, last Linear bare."""
    if norm is not None:
        x = (x - norm["_mean"]) / (norm["_std"] + EPS)
    n = len([k for k in params if k.startswith(prefix) and k.endswith("weight")])
    for i in range(n):
        x = x @ params[f"{prefix}{2 * i}.weight"].T + params[f"{prefix}{2 * i}.bias"]
        if i < n - 1:
            x = ACTIVATIONS[activation](x)
    return x


def v1(gen):
    """rsl_rl v1.0.2 (also 2.x / 3.x without normalisation): actor and critic read ``policy``."""
    sd = {**linear_layers("actor.", 66, NUM_ACTIONS, gen), **linear_layers("critic.", 66, 1, gen)}
    sd["std"] = 0.2 + torch.rand(NUM_ACTIONS, generator=gen)
    payload = {"model_state_dict": sd, "optimizer_state_dict": {}, "iter": 1500, "infos": None}
    return dict(
        payload=payload,
        arch={},
        std=sd["std"],
        actor=lambda o, a: by_hand(sd, "actor.", o["policy"], a),
        critic=lambda o, a: by_hand(sd, "critic.", o["policy"], a),
        source="rsl_rl 1.x-3.x (no observation normaliser) (converted)",
    )


def v2_0_critic_group(gen):
    """rsl_rl v2.0.0 with empirical normalisation and an env ``critic`` group (no ``count`` before v2.1.1)."""
    sd = {**linear_layers("actor.", 66, NUM_ACTIONS, gen), **linear_layers("critic.", 21, 1, gen)}
    sd["std"] = 0.2 + torch.rand(NUM_ACTIONS, generator=gen)
    norm_a, norm_c = normaliser(66, gen, count=False), normaliser(21, gen, count=False)
    payload = {
        "model_state_dict": sd,
        "optimizer_state_dict": {},
        "iter": 300,
        "infos": None,
        "obs_norm_state_dict": norm_a,
        "critic_obs_norm_state_dict": norm_c,
    }
    return dict(
        payload=payload,
        arch={"obs_groups": {"actor": ["policy"], "critic": ["critic"]}},
        std=sd["std"],
        actor=lambda o, a: by_hand(sd, "actor.", o["policy"], a, norm_a),
        critic=lambda o, a: by_hand(sd, "critic.", o["critic"], a, norm_c),
        source="rsl_rl 2.x (empirical normalisation) (converted)",
    )


def v2_2_no_critic_group(gen):
    """rsl_rl v2.1.1-v2.2.x with empirical normalisation, no env ``critic`` group: the critic reads the actor's
    normalised observations and its own normaliser keeps its initial statistics."""
    sd = {**linear_layers("actor.", 66, NUM_ACTIONS, gen), **linear_layers("critic.", 66, 1, gen)}
    sd["std"] = 0.2 + torch.rand(NUM_ACTIONS, generator=gen)
    norm_a = normaliser(66, gen)
    payload = {
        "model_state_dict": sd,
        "optimizer_state_dict": {},
        "iter": 300,
        "infos": None,
        "obs_norm_state_dict": norm_a,
        "critic_obs_norm_state_dict": initial_normaliser(66),
    }
    return dict(
        payload=payload,
        arch={},
        std=sd["std"],
        actor=lambda o, a: by_hand(sd, "actor.", o["policy"], a, norm_a),
        critic=lambda o, a: by_hand(sd, "critic.", o["policy"], a, norm_a),
        source="rsl_rl 2.x (empirical normalisation) (converted)",
    )


def v2_3_log_std(gen):
    """rsl_rl v2.3.x: ``privileged_obs_norm_state_dict``, ``noise_std_type="log"``, RND state alongside."""
    sd = {**linear_layers("actor.", 66, NUM_ACTIONS, gen), **linear_layers("critic.", 21, 1, gen)}
    sd["log_std"] = torch.randn(NUM_ACTIONS, generator=gen) - 1
    norm_a, norm_c = normaliser(66, gen), normaliser(21, gen)
    payload = {
        "model_state_dict": sd,
        "optimizer_state_dict": {},
        "iter": 300,
        "infos": None,
        "rnd_state_dict": {"predictor.0.weight": torch.zeros(2, 2)},
        "rnd_optimizer_state_dict": {},
        "obs_norm_state_dict": norm_a,
        "privileged_obs_norm_state_dict": norm_c,
    }
    return dict(
        payload=payload,
        arch={"obs_groups": {"actor": ["policy"], "critic": ["critic"]}},
        std=sd["log_std"].exp(),
        actor=lambda o, a: by_hand(sd, "actor.", o["policy"], a, norm_a),
        critic=lambda o, a: by_hand(sd, "critic.", o["critic"], a, norm_c),
        source="rsl_rl 2.x (empirical normalisation) (converted)",
    )


def v2_3_plain_log_std(gen):
    """rsl_rl v2.2.3+ (or 3.x) without normalisation, ``log_std``."""
    sd = {**linear_layers("actor.", 66, NUM_ACTIONS, gen), **linear_layers("critic.", 66, 1, gen)}
    sd["log_std"] = torch.randn(NUM_ACTIONS, generator=gen) - 1
    payload = {"model_state_dict": sd, "optimizer_state_dict": {}, "iter": 300, "infos": None}
    return dict(
        payload=payload,
        arch={},
        std=sd["log_std"].exp(),
        actor=lambda o, a: by_hand(sd, "actor.", o["policy"], a),
        critic=lambda o, a: by_hand(sd, "critic.", o["policy"], a),
        source="rsl_rl 1.x-3.x (no observation normaliser) (converted)",
    )


def v3_both_normalisers(gen):
    """rsl_rl v3.x: ``actor_obs_normalization`` and ``critic_obs_normalization``, critic reads policy + critic."""
    norm_a, norm_c = normaliser(66, gen), normaliser(87, gen)
    sd = {
        **linear_layers("actor.", 66, NUM_ACTIONS, gen),
        **{f"actor_obs_normalizer.{k}": v for k, v in norm_a.items()},
        **linear_layers("critic.", 87, 1, gen),
        **{f"critic_obs_normalizer.{k}": v for k, v in norm_c.items()},
        "std": 0.2 + torch.rand(NUM_ACTIONS, generator=gen),
    }
    payload = {"model_state_dict": sd, "optimizer_state_dict": {}, "iter": 300, "infos": None}
    cat = lambda o: torch.cat([o["policy"], o["critic"]], dim=-1)  # noqa: E731
    return dict(
        payload=payload,
        arch={"obs_groups": {"actor": ["policy"], "critic": ["policy", "critic"]}},
        std=sd["std"],
        actor=lambda o, a: by_hand(sd, "actor.", o["policy"], a, norm_a),
        critic=lambda o, a: by_hand(sd, "critic.", cat(o), a, norm_c),
        source="rsl_rl 3.x (converted)",
    )


def v3_actor_normaliser_log_std(gen):
    """rsl_rl v3.x: actor normaliser only, ``noise_std_type="log"``."""
    norm_a = normaliser(66, gen)
    sd = {
        **linear_layers("actor.", 66, NUM_ACTIONS, gen),
        **{f"actor_obs_normalizer.{k}": v for k, v in norm_a.items()},
        **linear_layers("critic.", 21, 1, gen),
        "log_std": torch.randn(NUM_ACTIONS, generator=gen) - 1,
    }
    payload = {"model_state_dict": sd, "optimizer_state_dict": {}, "iter": 300, "infos": None}
    return dict(
        payload=payload,
        arch={"obs_groups": {"actor": ["policy"], "critic": ["critic"]}},
        std=sd["log_std"].exp(),
        actor=lambda o, a: by_hand(sd, "actor.", o["policy"], a, norm_a),
        critic=lambda o, a: by_hand(sd, "critic.", o["critic"], a),
        source="rsl_rl 3.x (converted)",
    )


def v4(gen, std_key="std", critic_norm=True):
    """rsl_rl v4.0.x: ``actor_state_dict`` / ``critic_state_dict`` of ``MLPModel``s."""
    norm_a, norm_c = normaliser(66, gen), normaliser(87, gen)
    actor = {**linear_layers("mlp.", 66, NUM_ACTIONS, gen), **{f"obs_normalizer.{k}": v for k, v in norm_a.items()}}
    critic = linear_layers("mlp.", 87, 1, gen)
    if critic_norm:
        critic.update({f"obs_normalizer.{k}": v for k, v in norm_c.items()})
    raw = (
        torch.randn(NUM_ACTIONS, generator=gen) - 1
        if "log" in std_key
        else 0.2 + torch.rand(NUM_ACTIONS, generator=gen)
    )
    actor[std_key] = raw
    payload = {
        "actor_state_dict": actor,
        "critic_state_dict": critic,
        "optimizer_state_dict": {},
        "iter": 300,
        "infos": None,
    }
    cat = lambda o: torch.cat([o["policy"], o["critic"]], dim=-1)  # noqa: E731
    return dict(
        payload=payload,
        arch={"obs_groups": {"actor": ["policy"], "critic": ["policy", "critic"]}},
        std=raw.exp() if "log" in std_key else raw,
        actor=lambda o, a: by_hand(actor, "mlp.", o["policy"], a, norm_a),
        critic=lambda o, a: by_hand(critic, "mlp.", cat(o), a, norm_c if critic_norm else None),
        source=("rsl_rl 5.x (no model description)" if std_key.startswith("distribution.") else "rsl_rl 4.x")
        + " (converted)",
    )


LAYOUTS = {
    "v1.0.2": v1,
    "v2.0-critic-group": v2_0_critic_group,
    "v2.2-no-critic-group": v2_2_no_critic_group,
    "v2.3-log-std": v2_3_log_std,
    "v2.3-plain-log-std": v2_3_plain_log_std,
    "v3-both-normalisers": v3_both_normalisers,
    "v3-actor-normaliser-log-std": v3_actor_normaliser_log_std,
    "v4-std": lambda gen: v4(gen, "std"),
    "v4-log-std-no-critic-norm": lambda gen: v4(gen, "log_std", critic_norm=False),
    "v5-std-param": lambda gen: v4(gen, "distribution.std_param"),
    "v5-log-std-param": lambda gen: v4(gen, "distribution.log_std_param", critic_norm=False),
}


def saved(tmp_path, case: dict) -> str:
    path = str(tmp_path / "expert.pt")
    save_checkpoint(path, case["payload"])
    return path


def load(path, obs, architecture=None):
    return load_expert("base", path, obs, NUM_ACTIONS, HINT, architecture, ARCH)


def refusal(path, obs, architecture=None) -> str:
    with pytest.raises(CheckpointError) as err:
        load(path, obs, architecture)
    message = str(err.value)
    assert "\n" not in message, message
    return message


def test_rsl_rl_2x_obs_normaliser_is_applied(tmp_path, obs):
    """Regression: a 2.x file with ``obs_norm_state_dict`` used to load as "1.x (converted)" WITHOUT its normaliser."""
    case = v2_2_no_critic_group(torch.Generator().manual_seed(0))
    expert = load(saved(tmp_path, case), obs, {"activation": "elu"})
    torch.testing.assert_close(expert.actor(obs), case["actor"](obs, "elu"), rtol=0, atol=1e-6)
    assert expert.source == "rsl_rl 2.x (empirical normalisation) (converted)"


@pytest.mark.parametrize("activation", ["elu", "tanh"])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_generation_gives_the_original_actions_and_values(tmp_path, obs, layout, activation):
    case = LAYOUTS[layout](torch.Generator().manual_seed(7))
    architecture = {"activation": activation, "actor_hidden_dims": HIDDEN, "critic_hidden_dims": HIDDEN, **case["arch"]}
    expert = load(saved(tmp_path, case), obs, architecture)
    assert expert.source == case["source"]
    torch.testing.assert_close(expert.actor(obs), case["actor"](obs, activation), rtol=0, atol=1e-6)
    torch.testing.assert_close(expert.critic(obs), case["critic"](obs, activation), rtol=0, atol=1e-6)
    torch.testing.assert_close(expert.action_std, case["std"], rtol=1e-6, atol=1e-7)
    assert expert.model["num_actions"] == NUM_ACTIONS and expert.model["actor"]["hidden_dims"] == HIDDEN


def test_a_converted_expert_is_rebuilt_from_its_description(tmp_path, obs):
    """The description stored in a mixture's checkpoint rebuilds the same architecture (normalisers, std type)."""
    from rsl_rl_moe.modules.experts import experts_from_models

    case = v2_3_log_std(torch.Generator().manual_seed(3))
    expert = load(saved(tmp_path, case), obs, {"activation": "elu", **case["arch"]})
    (rebuilt,) = experts_from_models({"base": expert.model}, obs, NUM_ACTIONS)
    rebuilt.actor.load_state_dict(expert.actor.state_dict())
    rebuilt.critic.load_state_dict(expert.critic.state_dict())
    torch.testing.assert_close(rebuilt.actor(obs), expert.actor(obs), rtol=0, atol=0)
    torch.testing.assert_close(rebuilt.critic(obs), expert.critic(obs), rtol=0, atol=0)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_missing_activation_is_refused_in_one_line_naming_the_override(tmp_path, obs, layout):
    case = LAYOUTS[layout](torch.Generator().manual_seed(1))
    path = saved(tmp_path, case)
    message = refusal(path, obs)
    generation = case["source"].removesuffix(" (converted)")
    assert f"is an {generation} checkpoint" in message and f"`{ARCH}={{activation: elu}}`" in message
    assert "activation is not stored" in message
    message = refusal(path, obs, {"actor_hidden_dims": HIDDEN})
    assert "without `activation`" in message and f"`{ARCH}.activation=elu`" in message


def test_crelu_is_refused_where_the_file_may_be_1x_and_celu_is_exact(tmp_path, obs):
    case = v1(torch.Generator().manual_seed(2))
    path = saved(tmp_path, case)
    message = refusal(path, obs, {"activation": "crelu"})
    assert "ambiguous" in message and "nn.ReLU" in message and f"`{ARCH}.activation=relu`" in message
    expert = load(path, obs, {"activation": "celu"})
    torch.testing.assert_close(expert.actor(obs), case["actor"](obs, "celu"), rtol=0, atol=1e-6)
    expert = load(path, obs, {"activation": "relu"})
    torch.testing.assert_close(expert.actor(obs), case["actor"](obs, "relu"), rtol=0, atol=1e-6)
    # a 3.x file: "crelu" was nn.CELU there, as in 5.5
    case = v3_both_normalisers(torch.Generator().manual_seed(2))
    expert = load(saved(tmp_path, case), obs, {"activation": "crelu", **case["arch"]})
    torch.testing.assert_close(expert.actor(obs), case["actor"](obs, "celu"), rtol=0, atol=1e-6)


def test_unknown_activation_is_refused(tmp_path, obs):
    message = refusal(saved(tmp_path, v1(torch.Generator().manual_seed(2))), obs, {"activation": "swishy"})
    assert f"`{ARCH}.activation=swishy` is not an activation rsl_rl 5.5 knows" in message


def _mutated(layout: str, change) -> dict:
    case = LAYOUTS[layout](torch.Generator().manual_seed(4))
    change(case["payload"])
    return case


REFUSED = {
    "not rsl_rl": (
        lambda p: p.clear() or p.update({"weights": {"a": torch.zeros(1)}}),
        r"unsupported checkpoint layout: top-level keys \['weights'\]",
    ),
    "recurrent 1.x": (
        lambda p: p["model_state_dict"].update({"memory_a.rnn.weight_ih_l0": torch.zeros(4, 66)}),
        r"model_state_dict holds keys this importer does not convert: \['memory_a.rnn.weight_ih_l0'\] \(a recurrent",
    ),
    "student-teacher 2.3": (
        lambda p: p.update({"model_state_dict": {"student.0.weight": torch.zeros(4, 66), "std": torch.ones(4)}}),
        r"does not convert: \['student.0.weight'\]",
    ),
    "state-dependent std 3.1": (
        lambda p: p["model_state_dict"].pop("std"),
        r"no action std parameter .*state-dependent std \(rsl_rl 3.1\+ `state_dependent_std=True`\)",
    ),
    "heteroscedastic 5.x": (
        lambda p: p["actor_state_dict"].pop("distribution.std_param"),
        r"actor_state_dict has no action std parameter .*HeteroscedasticGaussianDistribution",
    ),
    "rnn 4.x": (
        lambda p: p["actor_state_dict"].update({"rnn.rnn.weight_hh_l0": torch.zeros(2, 2)}),
        r"actor_state_dict holds keys this importer does not convert: \['rnn.rnn.weight_hh_l0'\]",
    ),
    "2.x without critic normaliser": (
        lambda p: p.pop("critic_obs_norm_state_dict"),
        r"rsl_rl 2.x checkpoint with `obs_norm_state_dict` but without `critic_obs_norm_state_dict` \(2.0-2.2\) or "
        r"`privileged_obs_norm_state_dict` \(2.3\)",
    ),
    "2.x without actor normaliser": (
        lambda p: p.pop("obs_norm_state_dict"),
        r"rsl_rl 2.x checkpoint with `critic_obs_norm_state_dict` but without `obs_norm_state_dict`",
    ),
    "normaliser without _std": (
        lambda p: p["obs_norm_state_dict"].pop("_std"),
        r"obs_norm_state_dict has fields \['_mean', '_var', 'count'\].*missing \['_std'\]",
    ),
    "normaliser of another width": (
        lambda p: p["obs_norm_state_dict"].update({"_mean": torch.zeros(1, 60)}),
        r"obs_norm_state_dict._mean has shape \(1, 60\) but the network it feeds takes 66 inputs",
    ),
    "std of another width": (
        lambda p: p["model_state_dict"].update({"std": torch.ones(12)}),
        r"the action std has shape \(12,\) but the actor outputs 18 values",
    ),
    "gap in the layers": (
        lambda p: [p["model_state_dict"].pop(k) for k in ("actor.2.weight", "actor.2.bias")],
        r"has actor layers at \[0, 4\]",
    ),
}
REFUSED_LAYOUT = {
    "not rsl_rl": "v1.0.2",
    "recurrent 1.x": "v1.0.2",
    "student-teacher 2.3": "v1.0.2",
    "state-dependent std 3.1": "v3-both-normalisers",
    "heteroscedastic 5.x": "v5-std-param",
    "rnn 4.x": "v4-std",
    "2.x without critic normaliser": "v2.2-no-critic-group",
    "2.x without actor normaliser": "v2.2-no-critic-group",
    "normaliser without _std": "v2.2-no-critic-group",
    "normaliser of another width": "v2.2-no-critic-group",
    "std of another width": "v1.0.2",
    "gap in the layers": "v1.0.2",
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_layouts_that_cannot_be_converted_exactly_are_refused_in_one_line(tmp_path, obs, name):
    change, pattern = REFUSED[name]
    path = saved(tmp_path, _mutated(REFUSED_LAYOUT[name], change))
    for architecture in (None, {"activation": "elu"}):  # refused before the activation is asked for
        message = refusal(path, obs, architecture)
        assert re.search(pattern, message), message
        assert f"expert 'base' ('{path}', set with `{HINT}=...`)" in message
