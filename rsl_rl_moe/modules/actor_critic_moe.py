"""The mixture-of-experts actor-critic for rsl_rl 5: ``MoEActor`` (the actor) and ``MoECritic`` (the critic).

rsl_rl 5 builds the actor and the critic as two model objects::

    actor  = actor_class(obs, obs_groups, "actor", num_actions, **actor_cfg)
    critic = critic_class(obs, obs_groups, "critic", 1, **critic_cfg)

so both classes take those four positional arguments plus the config keys documented on them, and
each loads its half (actor or critic) of every expert checkpoint. Both take the same
``expert_sources`` (:class:`~rsl_rl_moe.modules.experts.ExpertSources`: ``experts: {name: path}``, any number, in
gate order, plus freezing and how files are read), e.g.::

    sources = ExpertSources(experts={"walk": "walk.pt", "reach": "reach.pt", "go2": "go2.pt"})
    actor = MoEActor(obs, obs_groups, "actor", num_actions, expert_sources=sources, action_groups=...)
    critic = MoECritic(obs, obs_groups, "critic", 1, expert_sources=sources)

(in a train config: ``expert_sources: {experts: {...}, freeze: true}``, the same dict in both models). Experts are
rsl_rl ``MLPModel`` instances rebuilt from their files (:mod:`rsl_rl_moe.modules.experts`); with
``expert_sources.freeze`` they never receive gradients, never leave eval mode, and :meth:`expert_checksum` proves it.
The user guide's name for this pair, "ActorCriticMoE", is this module; ``rsl_rl_moe.modules:ActorCriticMoE`` in
older configs and checkpoints means the actor, :class:`MoEActor` (:func:`rsl_rl_moe.checkpoint.upgrade_model_cfg`).

Actor data flow (N envs, E experts, A actions, G action groups)::

    obs --gate groups--> ObsMoE --> w (N, E) or (N, G, E)
    obs --each expert's own groups--> expert_i --> mean a_i (N, A)
    blend: mixture            a = sum_i w_i a_i
           product_of_experts a = sum_i (w_i / s_i^2) a_i / sum_i (w_i / s_i^2)   (s_i: expert i's action std)
    exploration: gaussian      Gaussian(a, std), trainable std (rsl_rl GaussianDistribution) --> sampled action
                 expert_choice per action group pick expert i with probability w_i, Gaussian around a_i
                               (rsl_rl_moe.modules.expert_choice); the deterministic output is the blend a

Partial experts (``expert_sources.obs_maps``, ``action_maps``): an expert trained elsewhere, e.g. a legged_gym Go2
policy (48 observations, 12 actions), reads its observation groups from other env groups by name
(``obs_maps: {go2: {policy: legged_gym_policy}}``, the env provides them) and writes only some env
actions: ``action_maps: {go2: {indices: [...], scale: [...], offset: [...]}}`` places its output
``a_e`` (A_e,) at env actions ``indices`` as ``scale * a_e + offset``. In each action group the gate may
only weight experts that cover all of the group's actions: the others' logits are masked, so their
weights are exactly 0 there (the rest renormalised) and expert choice never picks them; the critic
uses every expert's value.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
import torch.nn as nn
from rsl_rl.modules import MLP
from rsl_rl.utils import unpad_trajectories
from tensordict import TensorDict

from rsl_rl_moe.checkpoint import entry_name
from rsl_rl_moe.compat import resolve_class
from rsl_rl_moe.digest import state_digest
from rsl_rl_moe.modules.expert_choice import ExpertChoiceDistribution
from rsl_rl_moe.modules.experts import Expert, ExpertSources, check_expert_names, expert_obs_view, load_experts
from rsl_rl_moe.modules.obs_moe import ObsMoE

BLENDS = ("mixture", "product_of_experts")
"""Ways the actor combines expert action means."""

EXPLORATIONS = ("gaussian", "expert_choice")
"""How the actor samples actions in training: around the blend, or by choosing an expert."""


def grouped_weights(weights: torch.Tensor) -> torch.Tensor:
    """``(N, G, E)`` gate weights per action group: ``(N, E)`` (one global gate) becomes ``(N, 1, E)``."""
    return weights if weights.dim() == 3 else weights.unsqueeze(1)


def per_action_weights(weights: torch.Tensor, action_to_group: torch.Tensor) -> torch.Tensor:
    """Expand gate weights to one weight vector per action dimension.

    Args:
        weights: ``(N, E)`` (one global gate) or ``(N, G, E)`` (one gate per action group).
        action_to_group: ``(A,)`` long, the group of each action index (all zeros for a global gate).

    Returns:
        ``(N, A, E)``.
    """
    return grouped_weights(weights).index_select(1, action_to_group)


def blend_actions(weights: torch.Tensor, means: torch.Tensor, precision: torch.Tensor | None) -> torch.Tensor:
    """Blend expert action means.

    Args:
        weights: ``(N, A, E)`` per-action gate weights (each ``[n, a, :]`` on the simplex).
        means: ``(N, A, E)`` expert action means.
        precision: None for the mixture ``sum_i w_i a_i``; ``(A, E)`` expert precisions ``1 / std^2``
            for the product of Gaussian experts ``sum_i w_i p_i a_i / sum_i w_i p_i``.

    Returns:
        ``(N, A)`` blended action mean.
    """
    if precision is None:
        return (weights * means).sum(dim=-1)
    weighted_precision = weights * precision
    return (weighted_precision * means).sum(dim=-1) / weighted_precision.sum(dim=-1)


def _resolve_action_groups(
    action_groups: dict[str, list[int]] | None, num_actions: int
) -> tuple[list[str], torch.Tensor]:
    """Group names and the ``(A,)`` group index of every action; the groups must partition ``0..A-1``."""
    if not action_groups:
        return [], torch.zeros(num_actions, dtype=torch.long)
    action_to_group = torch.full((num_actions,), -1, dtype=torch.long)
    for g, (name, indices) in enumerate(action_groups.items()):
        for i in indices:
            if not 0 <= i < num_actions:
                raise ValueError(
                    f"action group {name!r} holds index {i}, outside the {num_actions} actions 0..{num_actions - 1}"
                )
            if action_to_group[i] >= 0:
                raise ValueError(f"action index {i} is in more than one action group (second: {name!r})")
            action_to_group[i] = g
    missing = (action_to_group < 0).nonzero().flatten().tolist()
    if missing:
        raise ValueError(
            f"action indices {missing} belong to no action group: "
            f"{dict(action_groups)} must cover all {num_actions} actions"
        )
    return list(action_groups), action_to_group


def _mean_expert_std(expert_stds: list[torch.Tensor | None], num_actions: int) -> torch.Tensor:
    """``(A,)`` the mean of the experts' action stds over the experts that write each action (NaN where an
    expert does not); 1.0 if an expert has none."""
    if any(s is None for s in expert_stds):
        return torch.ones(num_actions)
    return torch.stack(expert_stds).nanmean(dim=0)


class ActionMap(nn.Module):
    """A partial expert's output ``(N, A_e)`` placed in the env's action space ``(N, A)``:
    ``scale * a_e + offset`` at env actions ``index``, 0 elsewhere (those actions get no weight)."""

    def __init__(self, index: list[int], scale: list[float], offset: list[float], num_actions: int) -> None:
        super().__init__()
        self.num_actions = num_actions
        # not saved: derived from the config, so mixture checkpoints stay loadable without or with maps
        self.register_buffer("index", torch.tensor(index, dtype=torch.long), persistent=False)
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float), persistent=False)
        self.register_buffer("offset", torch.tensor(offset, dtype=torch.float), persistent=False)

    def forward(self, actions: torch.Tensor) -> torch.Tensor:
        out = actions.new_zeros(actions.shape[0], self.num_actions)
        return out.index_copy(1, self.index, self.scale * actions + self.offset)


def _resolve_action_maps(
    action_maps: dict[str, dict] | None, experts: list[Expert], num_actions: int, sources: ExpertSources
) -> dict[str, ActionMap]:
    """Check ``action_maps`` against the experts and the env's action count; ``{expert: ActionMap}``."""
    names = [e.name for e in experts]
    check_expert_names(action_maps, names, sources.name_of("action_maps"))
    maps = {}
    for expert in experts:
        if expert.name not in (action_maps or {}):
            continue
        cfg = dict(action_maps[expert.name])
        where = f"`{sources.name_of('action_maps', expert.name)}`"
        unknown = sorted(set(cfg) - {"indices", "scale", "offset"})
        if unknown or "indices" not in cfg:
            raise ValueError(f"{where} takes keys indices (required), scale, offset; got {sorted(cfg)}")
        indices = [int(i) for i in cfg["indices"]]
        count = expert.model["num_actions"]
        if len(indices) != count:
            raise ValueError(
                f"{where}.indices has {len(indices)} entries but expert {expert.name!r} outputs {count} actions"
            )
        outside = [i for i in indices if not 0 <= i < num_actions]
        if outside:
            raise ValueError(
                f"{where}.indices holds {outside}, outside the env's {num_actions} actions 0..{num_actions - 1}"
            )
        repeated = sorted({i for i in indices if indices.count(i) > 1})
        if repeated:
            raise ValueError(f"{where}.indices holds env actions {repeated} more than once")
        per_output = {}
        for key, default in (("scale", 1.0), ("offset", 0.0)):
            values = cfg.get(key)
            values = [default] * count if values is None else [float(v) for v in values]
            if len(values) != count:
                raise ValueError(
                    f"{where}.{key} has {len(values)} entries but expert {expert.name!r} outputs {count} actions"
                )
            per_output[key] = values
        maps[expert.name] = ActionMap(indices, per_output["scale"], per_output["offset"], num_actions)
    return maps


def _allowed_experts(
    maps: dict[str, ActionMap],
    expert_names: list[str],
    group_names: list[str],
    action_to_group: torch.Tensor,
    sources: ExpertSources,
) -> torch.Tensor | None:
    """``(G, E)`` bool: expert e may be weighted in action group g (it writes all of g's actions); None when
    every expert writes every action.

    Raises:
        ValueError: a partial expert with a scalar gate, an expert covering part of a group, or a group no
            expert covers.
    """
    if not maps:
        return None
    if not group_names:
        raise ValueError(
            f"experts {list(maps)} write only some actions (`{sources.name_of('action_maps')}`): they need a per-limb "
            f"gate, set `{sources.name_of('action_groups')}`"
        )
    allowed = torch.ones(len(group_names), len(expert_names), dtype=torch.bool)
    for g, group in enumerate(group_names):
        group_actions = (action_to_group == g).nonzero().flatten().tolist()
        for e, name in enumerate(expert_names):
            if name not in maps:
                continue
            covered = set(maps[name].index.tolist())
            missing = [i for i in group_actions if i not in covered]
            if not missing:
                continue
            if len(missing) < len(group_actions):
                raise ValueError(
                    f"expert {name!r} writes part of action group {group!r} but not its actions {missing} "
                    f"(`{entry_name(sources.name_of('action_maps', name), 'indices')}`): an expert must write all of a "
                    f"group or none"
                )
            allowed[g, e] = False
        if not allowed[g].any():
            raise ValueError(
                f"no expert writes all of action group {group!r} (actions {group_actions}): check "
                f"`{sources.name_of('action_maps')}`"
            )
    return allowed


def as_expert_sources(expert_sources: ExpertSources | Mapping) -> ExpertSources:
    """The :class:`ExpertSources` a model was given: itself, or built from a train config's dict."""
    return ExpertSources.from_dict(expert_sources)


class ExpertMixture(nn.Module):
    """What the MoE actor and critic share: named experts (one half each), a gate, and obs plumbing.

    Attributes for diagnostics: ``expert_names`` (order of the last weight axis), ``sources`` (the
    :class:`ExpertSources` it was built from), ``expert_origins`` (file and format of each expert), ``obs_groups``
    (groups the gate reads), ``gate`` (:class:`ObsMoE`), ``freeze_experts``.
    """

    is_recurrent: bool = False

    def __init__(
        self,
        obs: TensorDict,
        obs_groups: dict[str, list[str]],
        obs_set: str,
        sources: ExpertSources,
        experts: list[Expert],
        part: str,
        obs_moe: dict | None,
        num_groups: int | None,
        allowed_experts: torch.Tensor | None = None,
    ) -> None:
        """Args:
        obs, obs_groups, obs_set: as rsl_rl passes them to a model.
        sources: where the experts came from (``freeze``: no gradient, always eval mode; ``obs_maps``: observation
            groups experts read under other names).
        experts: the loaded experts of ``sources``, in gate order.
        part: ``"actor"`` or ``"critic"``, the half of each expert this model uses.
        obs_moe: keys of :class:`ObsMoE` for the gate.
        num_groups: gate weight vectors per sample (None: one).
        allowed_experts: ``(G, E)`` bool, experts the gate may weight per action group (None: all).
        """
        super().__init__()
        self.sources = sources
        self.obs_groups = list(obs_groups[obs_set])
        self.obs_dim = sum(obs[g].shape[-1] for g in self.obs_groups)
        self.expert_names = [e.name for e in experts]
        self.expert_origins = {e.name: {"path": e.path, "source": e.source} for e in experts}
        self.expert_models = {e.name: e.model for e in experts}  # saved with the mixture (MoERunner.save)
        self.obs_maps = {e.name: dict(sources.obs_maps.get(e.name) or {}) for e in experts}
        # env groups each expert reads (after its observation map), in its input order
        self.expert_obs_groups = {
            e.name: [self.obs_maps[e.name].get(g, g) for g in e.obs_groups[part]] for e in experts
        }
        self.group_dims = {g: obs[g].shape[-1] for g in obs.keys()}
        self.experts = nn.ModuleDict({e.name: getattr(e, part) for e in experts})
        self.freeze_experts = sources.freeze
        if self.freeze_experts:
            self.experts.requires_grad_(False)
            self.experts.eval()
        self.gate = ObsMoE(
            self.obs_dim,
            num_experts=len(experts),
            num_groups=num_groups,
            allowed_experts=allowed_experts,
            **(obs_moe or {}),
        )

    def train(self, mode: bool = True) -> ExpertMixture:
        """Set train/eval mode; frozen experts always stay in eval mode."""
        super().train(mode)
        if self.freeze_experts:
            self.experts.eval()
        return self

    def expert_checksum(self) -> str:
        """Digest of every expert tensor (parameters and buffers) with its name (:func:`rsl_rl_moe.digest.state_digest`,
        the checksum the norm monitor's frozen-expert guard uses too).

        Unchanged across training iff the experts are bit-identical.
        """
        return state_digest(self.experts)

    def _gate_input(self, obs: TensorDict) -> torch.Tensor:
        """``(N, obs_dim)``: the model's observation set, concatenated."""
        return torch.cat([obs[g] for g in self.obs_groups], dim=-1)

    def _expert_outputs(self, obs: TensorDict) -> list[torch.Tensor]:
        """Each expert's output on its view of the observations (:func:`expert_obs_view`), in gate order."""
        with torch.set_grad_enabled(self._expert_grad_enabled()):
            return [expert(expert_obs_view(obs, self.obs_maps[name])) for name, expert in self.experts.items()]

    def _expert_grad_enabled(self) -> bool:
        return torch.is_grad_enabled() and not self.freeze_experts

    @property
    def last_gate_weights(self) -> torch.Tensor | None:
        """Detached gate weights of the last forward, ``(N, E)`` or ``(N, G, E)``."""
        return self.gate.last_weights

    @property
    def last_gate_logits(self) -> torch.Tensor | None:
        """Detached raw gate logits of the last forward, same shape as the weights."""
        return self.gate.last_logits

    def get_moe_weights(self, obs: TensorDict) -> torch.Tensor:
        """Gate weights for ``obs`` without gradient: ``(N, E)`` or ``(N, G, E)``, experts in ``expert_names`` order."""
        with torch.no_grad():
            return self.gate(self._gate_input(obs))[0]

    def step_routing_schedule(self) -> None:
        """Advance the gate's routing schedule by one training iteration."""
        self.gate.step_schedule()

    def update_normalization(self, obs: TensorDict) -> None:
        """Update the gate's input normaliser (experts' normalisers stay as trained)."""
        self.gate.update_normalization(self._gate_input(obs))

    def reset(self, dones: torch.Tensor | None = None, hidden_state=None) -> None:
        """No recurrent state: no-op."""

    def get_hidden_state(self) -> None:
        """No recurrent state: None."""
        return None

    def detach_hidden_state(self, dones: torch.Tensor | None = None) -> None:
        """No recurrent state: no-op."""


class MoEActor(ExpertMixture):
    """Actor: a gate over frozen expert actors, with a trainable Gaussian around the blended mean.

    Usable as ``actor.class_name: rsl_rl_moe.modules:MoEActor``.
    After each forward: ``last_gate_weights`` ``(N, E)`` / ``(N, G, E)``, ``last_gate_logits`` (same
    shape) and ``last_expert_actions`` ``(N, A, E)`` hold detached values for diagnostics.
    """

    def __init__(
        self,
        obs: TensorDict,
        obs_groups: dict[str, list[str]],
        obs_set: str,
        output_dim: int,
        expert_sources: ExpertSources | Mapping,
        blend: str = "mixture",
        action_groups: dict[str, list[int]] | None = None,
        obs_moe: dict | None = None,
        exploration: str = "expert_choice",
        expert_choice_hold_steps: float = 50.0,
        distribution_cfg: dict | None = None,
        action_maps: dict[str, dict] | None = None,
    ) -> None:
        """Args:
        obs, obs_groups, obs_set, output_dim: as rsl_rl passes them (``output_dim`` = A actions).
        expert_sources: the experts, an :class:`ExpertSources` or the dict of its fields: ``experts: {name: path}``
            (at least 2, in gate order), ``freeze`` (default True: no gradient, always eval mode),
            ``legacy_architectures``, ``tasks``, ``obs_maps``, ``models``, ``message_names``. Give the critic the same.
        blend: ``"mixture"`` or ``"product_of_experts"`` (needs experts with a state-independent Gaussian std).
        action_groups: per-limb gating ``{name: [action indices]}`` partitioning ``0..A-1``, e.g.
            ``{"legs": [0, ..., 11], "arm": [12, ..., 17]}``; None: one weight vector for all actions.
        obs_moe: gate config, keys of :class:`ObsMoE` (``hidden_dims``, ``activation``, ``obs_normalization``,
            ``routing``, ``temperature``, ``schedule``); the gate reads this model's observation set.
        exploration: ``"expert_choice"`` (default): per action group, sample one expert with probability
            w_i and a Gaussian around its action (a mixture of Gaussians, :class:`ExpertChoiceDistribution`;
            needs ``blend="mixture"``); ``"gaussian"``: sample a Gaussian around the blend (the only choice
            for ``blend="product_of_experts"``).
        expert_choice_hold_steps: with ``expert_choice``, mean number of policy steps a choice is kept.
        distribution_cfg: with ``exploration="gaussian"``, the output distribution; default: rsl_rl
            ``GaussianDistribution`` with a scalar, per-action std initialised to the mean of the experts' stds
            (1.0 if an expert has none).
            Must take its parameters from outside the network (GaussianDistribution).
        action_maps: ``{expert: {indices: [...], scale: [...], offset: [...]}}``: the expert writes only the env
            actions ``indices`` (one per expert output, unique), as ``scale * a_e + offset`` (defaults 1 and 0).
            Needs ``action_groups``; in each group the gate weights only experts that write all of its actions.
        """
        if blend not in BLENDS:
            raise ValueError(f"unknown blend {blend!r}: choose one of {list(BLENDS)}")
        if exploration not in EXPLORATIONS:
            raise ValueError(f"unknown exploration {exploration!r}: choose one of {list(EXPLORATIONS)}")
        if exploration == "expert_choice" and (blend != "mixture" or distribution_cfg is not None):
            raise ValueError(
                "exploration='expert_choice' samples the mixture sum_i w_i N(a_i, std): it needs blend='mixture' "
                "and no distribution_cfg"
            )
        sources = as_expert_sources(expert_sources)
        experts = load_experts(sources, obs, output_dim, frozenset(action_maps or {}))
        group_names, action_to_group = _resolve_action_groups(action_groups, output_dim)
        maps = _resolve_action_maps(action_maps, experts, output_dim, sources)
        allowed = _allowed_experts(maps, [e.name for e in experts], group_names, action_to_group, sources)
        super().__init__(
            obs, obs_groups, obs_set, sources, experts, "actor", obs_moe, len(group_names) or None, allowed
        )
        self.action_maps = nn.ModuleDict(maps)
        self.num_actions = output_dim
        self.blend = blend
        self.action_group_names = group_names
        self.register_buffer("action_to_group", action_to_group.to(obs.device))
        stds = {e.name: self._env_std(e.action_std, maps.get(e.name), output_dim) for e in experts}
        if blend == "product_of_experts":
            lacking = [name for name, std in stds.items() if std is None]
            if lacking:
                raise ValueError(
                    f"blend='product_of_experts' needs a state-independent Gaussian action std in every expert; "
                    f"{lacking} have none: use blend='mixture'"
                )
            # (A, E); an expert that does not write an action gets weight 0 there, its precision is a placeholder
            precision = torch.stack([s.pow(-2) for s in stds.values()], dim=-1)
            self.register_buffer("expert_precision", precision.nan_to_num(1.0))
        else:
            self.expert_precision: torch.Tensor | None = None
        if exploration == "expert_choice":
            self.distribution = ExpertChoiceDistribution(
                self.action_to_group,
                _mean_expert_std(list(stds.values()), output_dim),
                expert_choice_hold_steps,
                allowed,
            )
        else:
            self.distribution = self._make_distribution(distribution_cfg, output_dim, list(stds.values()))
        self.exploration = exploration
        self.last_expert_actions: torch.Tensor | None = None

    @staticmethod
    def _env_std(std: torch.Tensor | None, action_map: ActionMap | None, num_actions: int) -> torch.Tensor | None:
        """An expert's action std in env action space ``(A,)``: ``|scale| * std`` at its actions, NaN elsewhere."""
        if std is None or action_map is None:
            return std
        out = torch.full((num_actions,), float("nan"), dtype=std.dtype, device=std.device)
        return out.index_copy(0, action_map.index.to(std.device), action_map.scale.to(std.device).abs() * std)

    @staticmethod
    def _make_distribution(cfg: dict | None, num_actions: int, expert_stds: list[torch.Tensor | None]) -> nn.Module:
        default = cfg is None
        dist_class, dist_cfg = resolve_class(
            cfg or {"class_name": "GaussianDistribution", "init_std": 1.0, "std_type": "scalar"}
        )
        distribution = dist_class(num_actions, **dist_cfg)
        if distribution.input_dim != num_actions:
            raise ValueError(
                f"{type(distribution).__name__} takes its parameters from the network output; the MoE actor "
                f"outputs only the blended mean: use GaussianDistribution"
            )
        if default:
            with torch.no_grad():
                distribution.std_param.copy_(_mean_expert_std(expert_stds, num_actions).to(distribution.std_param))
        return distribution

    def _expert_means(self, obs: TensorDict) -> torch.Tensor:
        """``(N, A, E)`` action means of the experts (a partial expert's through its action map, 0 at actions
        it does not write)."""
        outputs = self._expert_outputs(obs)
        means = [
            self.action_maps[name](out) if name in self.action_maps else out
            for name, out in zip(self.experts.keys(), outputs)
        ]
        return torch.stack(means, dim=-1)

    def forward(
        self,
        obs: TensorDict,
        masks: torch.Tensor | None = None,
        hidden_state=None,
        stochastic_output: bool = False,
    ) -> torch.Tensor:
        """Blended action mean ``(N, A)``, or a sample around it with ``stochastic_output=True``."""
        obs = unpad_trajectories(obs, masks) if masks is not None else obs
        weights, _ = self.gate(self._gate_input(obs))
        means = self._expert_means(obs)
        self.last_expert_actions = means.detach()
        mean = blend_actions(per_action_weights(weights, self.action_to_group), means, self.expert_precision)
        if stochastic_output:
            if self.exploration == "expert_choice":
                self.distribution.update(grouped_weights(weights), means, mean)
            else:
                self.distribution.update(mean)
            return self.distribution.sample()
        return self.distribution.deterministic_output(mean)

    @property
    def output_mean(self) -> torch.Tensor:
        """Mean of the current output distribution ``(N, A)``."""
        return self.distribution.mean

    @property
    def output_std(self) -> torch.Tensor:
        """Std of the current output distribution ``(N, A)``."""
        return self.distribution.std

    @property
    def output_entropy(self) -> torch.Tensor:
        """Entropy of the current output distribution, summed over actions ``(N,)``."""
        return self.distribution.entropy

    @property
    def output_distribution_params(self) -> tuple[torch.Tensor, ...]:
        """``(mean, std)`` of the current output distribution."""
        return self.distribution.params

    def get_output_log_prob(self, outputs: torch.Tensor) -> torch.Tensor:
        """Log-probability ``(N,)`` of actions ``(N, A)`` under the current distribution."""
        return self.distribution.log_prob(outputs)

    def get_kl_divergence(
        self, old_params: tuple[torch.Tensor, ...], new_params: tuple[torch.Tensor, ...]
    ) -> torch.Tensor:
        """KL(old || new) ``(N,)`` between two parameterisations of the distribution."""
        return self.distribution.kl_divergence(old_params, new_params)

    @property
    def input_groups(self) -> list[str]:
        """Env groups an exported policy reads, in the order they are concatenated into its input:
        the actor observation set, then any other group an expert reads."""
        groups = list(self.obs_groups)
        for expert_groups in self.expert_obs_groups.values():
            groups += [g for g in expert_groups if g not in groups]
        return groups

    def as_jit(self) -> nn.Module:
        """The whole blended policy (gate + experts + blend), deterministic, for ``torch.jit.script``."""
        return _ExportedMoEPolicy(self)

    def as_onnx(self, verbose: bool = False) -> nn.Module:
        """The whole blended policy for ``torch.onnx.export`` (``get_dummy_inputs``, ``input_names``, ...)."""
        return _ExportedMoEPolicy(self)


class _ExpertSlice(nn.Module):
    """Export helper: one expert reading its columns of the concatenated input, through its action map."""

    def __init__(self, net: nn.Module, index: torch.Tensor, action_map: ActionMap | None) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("index", index)
        self.action_map = action_map if action_map is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.action_map(self.net(x.index_select(-1, self.index)))


class _ExportedMoEPolicy(nn.Module):
    """Deterministic blended policy on one tensor ``(N, D)``: the groups of ``MoEActor.input_groups`` concatenated."""

    is_recurrent: bool = False

    def __init__(self, actor: MoEActor) -> None:
        super().__init__()
        offsets, start = {}, 0
        for g in actor.input_groups:
            offsets[g] = torch.arange(start, start + actor.group_dims[g])
            start += actor.group_dims[g]
        self.input_size = start
        self.input_groups = actor.input_groups
        self.input_names = ["obs"]
        self.output_names = ["actions"]
        self.gate = actor.gate.as_export()
        self.register_buffer("gate_index", torch.cat([offsets[g] for g in actor.obs_groups]))
        self.experts = nn.ModuleList(
            _ExpertSlice(
                expert.as_jit(),
                torch.cat([offsets[g] for g in actor.expert_obs_groups[name]]),
                copy.deepcopy(actor.action_maps[name]) if name in actor.action_maps else None,
            )
            for name, expert in actor.experts.items()
        )
        self.register_buffer("action_to_group", actor.action_to_group.clone())
        precision = actor.expert_precision
        self.expert_precision: torch.Tensor | None = None if precision is None else precision.clone()
        self.to(actor.action_to_group.device)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.gate(x.index_select(-1, self.gate_index))
        means: list[torch.Tensor] = []
        for expert in self.experts:
            means.append(expert(x))
        return blend_actions(
            per_action_weights(weights, self.action_to_group), torch.stack(means, dim=-1), self.expert_precision
        )

    @torch.jit.export
    def reset(self) -> None:
        """No recurrent state: no-op."""

    def get_dummy_inputs(self) -> tuple[torch.Tensor]:
        """A zero input ``(1, D)`` for ONNX tracing."""
        return (torch.zeros(1, self.input_size, device=self.action_to_group.device),)


class MoECritic(ExpertMixture):
    """Critic: a gate over the experts' (frozen) critics plus a trainable residual MLP.

    ``V(s) = sum_i w_i(s) V_i(s) + r(s)``; the residual ``r`` starts at exactly 0 (zero last layer),
    so training starts from the experts' own value estimates.

    Why this is the default critic (``critic/moe.yaml``): a fresh MLP critic starts from noise, so the
    first advantages are noise and PPO pushes the gate away from a possibly good initial blend; the
    experts' critics already know how good states are for their skills. But they were fitted to other
    rewards and other policies, and a convex combination of frozen values cannot represent the
    mixture's return, so a residual is needed to fit it. ``residual_hidden_dims: null`` gives the pure
    gated critic (biased, for ablations); a fresh critic is ``critic.class_name: rsl_rl.models:MLPModel``.
    """

    def __init__(
        self,
        obs: TensorDict,
        obs_groups: dict[str, list[str]],
        obs_set: str,
        output_dim: int,
        expert_sources: ExpertSources | Mapping,
        obs_moe: dict | None = None,
        residual_hidden_dims: tuple[int, ...] | list[int] | None = (256, 128),
        residual_activation: str = "elu",
    ) -> None:
        """Args:
        obs, obs_groups, obs_set, output_dim: as rsl_rl passes them (``output_dim`` must be 1).
        expert_sources: as for :class:`MoEActor` (give both the same). A partial expert's value is used like any
            other (the actor's action maps do not matter here).
        obs_moe: config of this critic's own gate (keys of :class:`ObsMoE`), reading the critic observation set.
        residual_hidden_dims: hidden widths of the residual MLP; None: no residual.
        residual_activation: activation of the residual MLP.
        """
        if output_dim != 1:
            raise ValueError(f"MoECritic outputs a value (output_dim=1), got output_dim={output_dim}")
        sources = as_expert_sources(expert_sources)
        experts = load_experts(sources, obs, None)
        super().__init__(obs, obs_groups, obs_set, sources, experts, "critic", obs_moe, None)
        if residual_hidden_dims is None:
            self.residual = None
        else:
            self.residual = MLP(self.obs_dim, 1, residual_hidden_dims, residual_activation)
            nn.init.zeros_(self.residual[-1].weight)
            nn.init.zeros_(self.residual[-1].bias)

    def forward(self, obs: TensorDict, masks: torch.Tensor | None = None, hidden_state=None) -> torch.Tensor:
        """Value ``(N, 1)``; the residual reads the gate's (normalised) input."""
        obs = unpad_trajectories(obs, masks) if masks is not None else obs
        x = self._gate_input(obs)
        weights, _ = self.gate(x)
        values = torch.cat(self._expert_outputs(obs), dim=-1)
        value = (weights * values).sum(dim=-1, keepdim=True)
        if self.residual is not None:
            value = value + self.residual(self.gate.normalize(x))
        return value
