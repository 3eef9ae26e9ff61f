"""Rebuild pre-trained rsl_rl experts (actor + critic ``MLPModel``) from checkpoint files.

Accepted files:

- self-describing checkpoints written with :mod:`rsl_rl_moe.checkpoint` (the model description is
  in ``infos["model"]``);
- plain rsl_rl checkpoints of every generation with an MLP actor-critic and a state-independent action std,
  converted exactly (same actions and values, normalisers included) by :mod:`rsl_rl_moe.modules.importers`:
  1.x (``model_state_dict``: ``actor.N.*``, ``critic.N.*``, ``std``); 2.x with or without empirical
  normalisation (top-level ``obs_norm_state_dict`` + ``critic_obs_norm_state_dict`` /
  ``privileged_obs_norm_state_dict``; ``std`` or ``log_std``); 3.x (``actor_obs_normalizer.*`` /
  ``critic_obs_normalizer.*`` inside ``model_state_dict``); 4.x (``actor_state_dict`` / ``critic_state_dict`` with
  ``mlp.N.*``, ``obs_normalizer.*``, ``std`` / ``log_std``); 5.x runner files without a model description
  (``distribution.std_param`` / ``distribution.log_std_param``). None of them stores the activation, so the caller
  states it (``legacy_architectures.<expert>: {activation: elu}``, optionally ``actor_hidden_dims`` /
  ``critic_hidden_dims``, checked against the weights, and ``obs_groups``); layer widths, normalisers and the std
  parameterisation are read from the file.

Refused with one line naming what was found or is missing: recurrent, CNN or student-teacher models, a
state-dependent std (3.1+ ``state_dependent_std``, 5.x heteroscedastic / Beta distributions), incomplete
normaliser state, any other layout, and a converted file without ``legacy_architectures.<expert>``.

A mixture's experts are given by one :class:`ExpertSources` (``experts: {name: path}``, any number, in gate order,
plus how they are loaded and treated), the same object for the MoE actor and the MoE critic; :func:`load_experts`
rebuilds them.

Observation widths and the action count are checked against the environment before any weight is loaded; errors
name both numbers and the argument that sets the path (``experts['base']``, or the caller's own name for it:
:attr:`ExpertSources.message_names`). An expert trained on another observation layout reads its groups from other
env groups by name (``obs_maps: {<expert>: {<its group>: <env group>}}``, :func:`expert_obs_view`); the env must
provide those groups, with the widths the expert was trained on. A caller that knows which task each expert is for
passes ``expected_task`` / ``ExpertSources.tasks``: a self-describing file that records another task
(``infos["env"]["name"]``, the env it was trained on) loads with an :class:`ExpertTaskWarning` naming both.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from rsl_rl.models import MLPModel
from rsl_rl.modules import GaussianDistribution
from rsl_rl.utils import resolve_callable
from tensordict import TensorDict

from rsl_rl_moe.checkpoint import CheckpointError, entry_name, is_self_describing, load_checkpoint, upgrade_model_cfg
from rsl_rl_moe.finite import first_nonfinite, state_dict_entries
from rsl_rl_moe.modules import importers
from rsl_rl_moe.modules.own_actions import OwnActionsMLPModel


class ExpertTaskWarning(UserWarning):
    """An expert file records a task (the name of the env it was trained on) other than the one expected of it."""


@dataclass
class Expert:
    """One pre-trained expert rebuilt from its file."""

    name: str
    """Expert name: its key in :attr:`ExpertSources.experts`."""
    path: str
    """File it was loaded from."""
    actor: MLPModel
    """Actor: observations -> action mean ``(N, A)``; its Gaussian holds the expert's action std."""
    critic: MLPModel
    """Critic: observations -> value ``(N, 1)``."""
    obs_groups: dict[str, list[str]]
    """Env observation groups each part reads: ``{"actor": [...], "critic": [...]}``."""
    source: str
    """``"self-describing"``, ``"<rsl_rl generation> (converted)"`` (e.g. ``"rsl_rl 2.x (empirical normalisation)
    (converted)"``, see :mod:`rsl_rl_moe.modules.importers`) or ``"described in the mixture's checkpoint"``."""
    model: dict
    """Its description, shaped as ``infos["model"]`` of a self-describing checkpoint: enough, with the weights,
    to rebuild it (:func:`experts_from_models`). A mixture's checkpoint carries these, so it needs no expert file."""

    @property
    def action_std(self) -> torch.Tensor | None:
        """State-independent action std ``(A,)`` of the expert's Gaussian, or None if it has none."""
        dist = self.actor.distribution
        if type(dist) is not GaussianDistribution:  # heteroscedastic / Beta: no constant std
            return None
        dist.update(torch.zeros(1, dist.output_dim, device=next(self.actor.parameters()).device))
        return dist.std[0].detach().clone()


@dataclass(frozen=True)
class ExpertSources:
    """Where a mixture's experts come from and how they are treated: one object, given to both the MoE actor and
    the MoE critic (:class:`~rsl_rl_moe.modules.MoEActor`, :class:`~rsl_rl_moe.modules.MoECritic`), which therefore
    use the same experts. Plain data: a train config holds it as a dict (:meth:`as_dict`; checkpoints store model
    configs and load with ``weights_only=True``), the models take either form (:meth:`from_dict`).

    Example: ``ExpertSources(experts={"walk": "walk.pt", "reach": "reach.pt", "go2": "go2.pt"}, freeze=True)``.

    Raises (on construction):
        ValueError: fewer than 2 experts, a name that is not a Python identifier, or an ``obs_maps`` entry for an
            expert that is not configured.
    """

    experts: dict[str, str] = field(default_factory=dict)
    """``{name: checkpoint path}``, in gate order (the last axis of the gate weights); at least 2. Names are
    Python identifiers (they become module and TensorBoard names)."""
    freeze: bool = True
    """Experts get no gradient and stay in eval mode (:meth:`~rsl_rl_moe.modules.ExpertMixture.expert_checksum`
    proves it)."""
    legacy_architectures: dict[str, dict] = field(default_factory=dict)
    """``{name: {"activation": ..., ...}}`` for plain rsl_rl 1.x-5.x files without our model description
    (:mod:`rsl_rl_moe.modules.importers`)."""
    tasks: dict[str, str | None] = field(default_factory=dict)
    """``{name: task}``: the task (env name) each expert file should record; a file recording another loads with an
    :class:`ExpertTaskWarning` naming both. Names that are not experts and None values are not checked."""
    obs_maps: dict[str, dict[str, str]] = field(default_factory=dict)
    """``{name: {group the expert was trained on: env group}}``: that expert reads the env group under its own group
    name (same width), e.g. ``{"go2": {"policy": "legged_gym_policy"}}`` (:func:`expert_obs_view`)."""
    models: dict[str, dict] | None = None
    """``{name: description}`` from a mixture checkpoint's ``infos["expert_models"]``: rebuild these experts
    (weights to come from that checkpoint) instead of reading the files of ``experts``."""
    message_names: dict[str, str] = field(default_factory=dict)
    """For messages only: how the caller's config names these arguments, ``{argument: name}``. An argument is a
    field (``"tasks"``), one entry of a field (``"experts.base"``) or an argument of the mixture that messages name
    alongside (``"action_maps"``, ``"action_groups"``), e.g. ``{"experts.base":
    "runner.alg.actor_critic.base_ckpt_path", "experts": "runner.alg.actor_critic.expert_ckpt_paths"}``. Arguments
    without one are named as the library spells them: ``experts['base']``, ``obs_maps['go2']['policy']``
    (:meth:`name_of`)."""

    def __post_init__(self) -> None:
        for name in ("experts", "legacy_architectures", "tasks", "obs_maps", "message_names"):
            object.__setattr__(self, name, dict(getattr(self, name) or {}))
        if self.models is not None:
            object.__setattr__(self, "models", dict(self.models) or None)
        if not isinstance(self.freeze, bool):
            raise ValueError(f"`{self.name_of('freeze')}` must be true or false, got {self.freeze!r}")
        bad = [name for name in self.experts if not (isinstance(name, str) and name.isidentifier())]
        if bad:
            raise ValueError(
                f"expert names {bad} in `{self.name_of('experts')}` must be Python identifiers "
                "(letters, digits, _; no dots)"
            )
        names = self.names
        if len(names) < 2:
            named = [f"`{self.name_of('experts', key.split('.', 1)[1])}=...`"
                     for key in self.message_names if key.startswith("experts.")]  # fmt: skip
            ways = [*named, f"`{self.name_of('experts', '<name>')}=...`"]
            ways = f"{', '.join(ways[:-1])} or {ways[-1]}" if len(ways) > 1 else ways[0]
            raise ValueError(f"a mixture needs at least 2 experts, got {len(names)} ({names or 'none'}): set {ways}")
        check_expert_names(self.obs_maps, names, self.name_of("obs_maps"))

    @classmethod
    def from_dict(cls, value: ExpertSources | Mapping) -> ExpertSources:
        """``value`` itself, or the :class:`ExpertSources` of a dict of its fields (e.g. a train config's).

        Raises:
            ValueError: a key that is not a field.
        """
        if isinstance(value, ExpertSources):
            return value
        fields = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(value) - set(fields))
        if unknown:
            raise ValueError(f"expert_sources takes keys {fields}; got unknown {unknown}")
        return cls(**value)

    def as_dict(self) -> dict:
        """The fields as plain dicts, lists and strings (for a train config or a checkpoint)."""
        return dataclasses.asdict(self)

    @property
    def names(self) -> list[str]:
        """Expert names in gate order: those of ``models`` when given, else those of ``experts``."""
        return list(self.models) if self.models else list(self.experts)

    def name_of(self, argument: str, *keys: str) -> str:
        """How messages name ``argument`` (and an entry ``keys`` of it): the caller's name from
        :attr:`message_names` for the longest of ``argument``, ``argument.key0``, ... it has, the remaining keys
        appended in that name's style (:func:`~rsl_rl_moe.checkpoint.entry_name`); else the library's spelling,
        ``experts['base']``."""
        parts = (argument, *keys)
        for n in range(len(parts), 0, -1):
            name = self.message_names.get(".".join(parts[:n]))
            if name is not None:
                return entry_name(name, *parts[n:])
        return entry_name(f"{argument}[{keys[0]!r}]", *keys[1:]) if keys else argument


def load_experts(
    sources: ExpertSources,
    obs: TensorDict,
    num_actions: int | None,
    partial_experts: set[str] | frozenset[str] = frozenset(),
) -> list[Expert]:
    """Every expert of ``sources``, in gate order: rebuilt from ``sources.models`` when given (no file is read),
    else loaded from the files of ``sources.experts`` (:func:`load_expert`, which checks them against ``obs`` and
    ``num_actions``). ``partial_experts``: experts whose action count is not checked against ``num_actions`` (they
    have an action map; the caller checks them)."""
    if sources.models:
        return experts_from_models(sources.models, obs, num_actions, partial_experts, sources)
    return [
        load_expert(
            name,
            path,
            obs,
            num_actions,
            sources.name_of("experts", name),
            sources.legacy_architectures.get(name),
            sources.name_of("legacy_architectures", name),
            device=obs.device,
            expected_task=sources.tasks.get(name),
            expected_task_override=sources.name_of("tasks", name),
            obs_map=sources.obs_maps.get(name),
            obs_map_override=sources.name_of("obs_maps", name),
            check_num_actions=name not in partial_experts,
        )
        for name, path in sources.experts.items()
    ]


def load_expert(
    name: str,
    path: str,
    obs: TensorDict,
    num_actions: int | None,
    override: str,
    legacy_architecture: dict | None = None,
    legacy_override: str = "legacy_architecture",
    device: str | torch.device = "cpu",
    expected_task: str | None = None,
    expected_task_override: str = "expected_task",
    obs_map: dict[str, str] | None = None,
    obs_map_override: str = "obs_map",
    check_num_actions: bool = True,
) -> Expert:
    """Rebuild the expert stored at ``path`` for an env whose observations look like ``obs``.

    Args:
        name: expert name, used in messages.
        path: checkpoint file.
        obs: a batch of env observations (only group names and widths are used).
        num_actions: the env's action count A (None: not checked).
        override: how messages name the setting of ``path`` (a caller's config override, or its argument name).
        legacy_architecture: for plain rsl_rl files (1.x-5.x) only: ``{"activation": "elu"}`` plus optionally
            ``actor_hidden_dims`` / ``critic_hidden_dims`` (checked against the weights) and
            ``obs_groups`` (default ``{"actor": ["policy"], "critic": <actor groups>}``).
        legacy_override: how messages name the setting of ``legacy_architecture``.
        device: device of the rebuilt models.
        expected_task: the task this expert is used for (the env name its file should record in
            ``infos["env"]["name"]``); None: not checked. A file recording another task still loads, with an
            :class:`ExpertTaskWarning` naming both; files that record none (plain rsl_rl files) are not checked.
        expected_task_override: how the warning names the setting of ``expected_task``.
        obs_map: ``{group the expert was trained on: env group}``: the expert reads that env group under its
            own group name (:func:`expert_obs_view`); widths must match.
        obs_map_override: how messages name the setting of ``obs_map``.
        check_num_actions: compare the expert's action count with ``num_actions`` (False for an expert with
            an action map).

    Raises:
        CheckpointError: missing / unreadable / unsupported file, sizes that differ from the env's, or a NaN / inf
            weight (named).
    """
    payload = load_checkpoint(path, override_hint=override, map_location=device)
    where = f"expert {name!r} ({path!r}, set with `{override}=...`)"
    obs = _mapped_obs(obs, obs_map, where, obs_map_override)
    if is_self_describing(payload):
        model = payload["infos"]["model"]
        actor_sd, critic_sd = payload["actor_state_dict"], payload["critic_state_dict"]
        source = "self-describing"
        _check_obs_map_keys(model, obs_map, where, obs_map_override)
        _check_group_dims(model, obs, where, obs_map, obs_map_override)
        _warn_on_other_task(payload["infos"], expected_task, expected_task_override, where)
    else:
        imported = importers.read_rsl_rl_checkpoint(payload, where)
        if legacy_architecture is None:
            raise importers.missing_architecture_error(imported, where, legacy_override)
        model, actor_sd, critic_sd = importers.convert(imported, legacy_architecture, where, legacy_override)
        source = f"{imported.generation} (converted)"
        _check_obs_map_keys(model, obs_map, where, obs_map_override)
        _check_input_width(actor_sd, model["obs_groups"]["actor"], obs, where, "actor", legacy_override)
        _check_input_width(critic_sd, model["obs_groups"]["critic"], obs, where, "critic", legacy_override)
        groups = {g for part in ("actor", "critic") for g in model["obs_groups"][part]}
        model["obs_group_dims"] = {g: int(obs[g].shape[-1]) for g in groups}
    if check_num_actions:
        _check_num_actions(model, num_actions, where)
    nonfinite = first_nonfinite(state_dict_entries({"actor": actor_sd, "critic": critic_sd}))
    if nonfinite is not None:
        raise CheckpointError(f"{where} holds non-finite weights: {nonfinite}")
    actor = _build(model, "actor", obs, model["num_actions"], actor_sd, where, device)
    critic = _build(model, "critic", obs, 1, critic_sd, where, device)
    return Expert(name, path, actor, critic, model["obs_groups"], source, model)


def experts_from_models(
    expert_models: dict[str, dict],
    obs: TensorDict,
    num_actions: int | None,
    partial_experts: set[str] | frozenset[str] = frozenset(),
    sources: ExpertSources | None = None,
) -> list[Expert]:
    """Experts of the described architectures (``{name: model description}``, in gate order), with freshly
    initialised weights: a mixture checkpoint's state dicts hold the real ones and overwrite them on load.
    ``partial_experts`` as for :func:`load_experts`; ``sources``: the experts' observation maps and the names
    messages give them (none: no maps).

    Raises:
        CheckpointError: a description that does not fit the env (observation widths, action count).
    """
    experts = []
    for name, model in expert_models.items():
        where = f"expert {name!r} (described in the mixture's checkpoint)"
        obs_map = sources.obs_maps.get(name) if sources else None
        map_override = sources.name_of("obs_maps", name) if sources else "obs_map"
        view = _mapped_obs(obs, obs_map, where, map_override)
        _check_obs_map_keys(model, obs_map, where, map_override)
        _check_group_dims(model, view, where, obs_map, map_override)
        if name not in partial_experts:
            _check_num_actions(model, num_actions, where)
        actor = _build(model, "actor", view, model["num_actions"], None, where, obs.device)
        critic = _build(model, "critic", view, 1, None, where, obs.device)
        source = "described in the mixture's checkpoint"
        experts.append(Expert(name, "", actor, critic, model["obs_groups"], source, model))
    return experts


def expert_obs_view(obs: TensorDict, obs_map: dict[str, str] | None) -> TensorDict:
    """The observations as an expert sees them: ``obs`` plus, for each ``{expert group: env group}`` of
    ``obs_map``, the env group under the expert's name (``obs`` itself when there is no map)."""
    if not obs_map:
        return obs
    groups = {g: obs[g] for g in obs.keys()}
    groups.update({expert_group: obs[env_group] for expert_group, env_group in obs_map.items()})
    return TensorDict(groups, batch_size=obs.batch_size, device=obs.device)


def check_expert_names(per_expert: dict | None, names: list[str], override: str) -> None:
    """Every key of a per-expert map (``obs_maps``, ``action_maps``; named ``override`` in the message) must be a
    configured expert."""
    unknown = [k for k in (per_expert or {}) if k not in names]
    if unknown:
        raise ValueError(f"`{override}` names experts {unknown} that are not configured (experts: {names})")


def _mapped_obs(obs: TensorDict, obs_map: dict[str, str] | None, where: str, override: str) -> TensorDict:
    """:func:`expert_obs_view` after checking that every mapped env group exists."""
    for expert_group, env_group in (obs_map or {}).items():
        if env_group not in obs.keys():
            raise CheckpointError(
                f"{where}: `{entry_name(override, expert_group)}={env_group}` "
                f"reads env observation group {env_group!r}, which "
                f"the env does not provide (env groups: {list(obs.keys())}); the env must provide it"
            )
    return expert_obs_view(obs, obs_map)


def _check_obs_map_keys(model: dict, obs_map: dict[str, str] | None, where: str, override: str) -> None:
    """Every key of an observation map must be a group the expert reads."""
    read = [g for part in ("actor", "critic") for g in model["obs_groups"][part]]
    unused = [g for g in (obs_map or {}) if g not in read]
    if unused:
        raise CheckpointError(
            f"{where}: `{override}` maps observation groups {unused} that the expert does not read "
            f"(it reads {sorted(set(read))})"
        )


def _check_group_dims(
    model: dict, obs: TensorDict, where: str, obs_map: dict[str, str] | None = None, override: str = ""
) -> None:
    """Each env group an expert reads (through ``obs_map``) must exist with the width the expert was trained on."""
    for part in ("actor", "critic"):
        for group in model["obs_groups"][part]:
            if group not in obs.keys():
                raise CheckpointError(
                    f"{where}: its {part} reads observation group {group!r}, which the env does not provide "
                    f"(env groups: {list(obs.keys())}; map it to an env group with "
                    f"`{entry_name(override or 'obs_map', group)}=<env group>`)"
                )
            expected, got = model["obs_group_dims"][group], obs[group].shape[-1]
            if expected != got and group in (obs_map or {}):
                raise CheckpointError(
                    f"{where}: observation group {group!r} has {expected} values in the expert but the env group "
                    f"{obs_map[group]!r} it reads instead (`{entry_name(override, group)}`) has {got}"
                )
            if expected != got:
                raise CheckpointError(
                    f"{where}: observation group {group!r} has {expected} values in the expert but {got} in the env"
                )


def _warn_on_other_task(infos: dict, expected_task: str | None, expected_override: str, where: str) -> None:
    """Warn when the file records a task (``infos["env"]["name"]``) other than ``expected_task``."""
    recorded = (infos.get("env") or {}).get("name")
    if expected_task is None or recorded is None or recorded == expected_task:
        return
    warnings.warn(
        f"{where} was trained on task {recorded!r} but its role expects task {expected_task!r} "
        f"(`{expected_override}`): check the path, or set `{expected_override}={recorded}` (or null) if intended",
        ExpertTaskWarning,
        stacklevel=2,
    )


def _check_num_actions(model: dict, num_actions: int | None, where: str) -> None:
    """The expert must write the env's action count (None: not checked)."""
    if num_actions is not None and model["num_actions"] != num_actions:
        raise CheckpointError(
            f"{where} outputs {model['num_actions']} actions but the env has {num_actions} actions (an expert for "
            f"part of the body needs an action map: the mixture's `action_maps`)"
        )


def _check_input_width(sd: dict, groups: list[str], obs: TensorDict, where: str, part: str, override: str) -> None:
    """A converted part's first layer must take as many inputs as its env groups provide."""
    missing = [g for g in groups if g not in obs.keys()]
    if missing:
        raise CheckpointError(
            f"{where}: its {part} reads observation groups {missing}, which the env does not provide "
            f"(env groups: {list(obs.keys())}; set `{entry_name(override, 'obs_groups')}`)"
        )
    expected = sd["mlp.0.weight"].shape[1]
    got = sum(obs[g].shape[-1] for g in groups)
    if expected != got:
        raise CheckpointError(
            f"{where}: its {part} takes {expected} observation values but the env groups {groups} "
            f"provide {got} (set `{entry_name(override, 'obs_groups')}`, or map them to other env groups)"
        )


def _build(
    model: dict, part: str, obs: TensorDict, output_dim: int, state_dict: dict | None, where: str, device
) -> MLPModel:
    """Instantiate one part (``"actor"`` / ``"critic"``) and load its weights (None: keep the initial ones)."""
    cfg = upgrade_model_cfg(model[part])  # e.g. an older mixture's class name, refused below by its current one
    cls = resolve_callable(cfg.pop("class_name", "rsl_rl.models:MLPModel"))
    if cls is OwnActionsMLPModel:  # trained beside a partner; its inference and weights are MLPModel's
        cls = MLPModel
        cfg.pop("entropy_action_weights", None)  # a training setting
    if cls is not MLPModel:  # CNNModel and RNNModel subclass MLPModel but read other inputs / keep state
        raise CheckpointError(f"{where}: its {part} is a {cls}, only rsl_rl MLPModel experts are supported")
    net = cls(obs, model["obs_groups"], part, output_dim, **cfg).to(device)
    if state_dict is None:
        return net
    try:
        net.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{where}: {part} weights do not fit its described architecture: {exc}") from exc
    return net
