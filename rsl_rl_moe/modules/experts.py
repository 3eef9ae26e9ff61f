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

Observation widths and the action count are checked against the environment before any weight is loaded; errors
name both numbers and the override that sets the path. An expert trained on another observation layout reads its
groups from other env groups by name (``expert_obs: {<expert>: {<its group>: <env group>}}``, :func:`expert_obs_view`);
the env must provide those groups, with the widths the expert was trained on. A caller that knows which task each expert is for passes ``expected_task`` / ``expert_tasks``: a
self-describing file that records another task (``infos["env"]["name"]``, the env it was trained on) loads
with an :class:`ExpertTaskWarning` naming both.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from rsl_rl.models import MLPModel
from rsl_rl.modules import GaussianDistribution
from rsl_rl.utils import resolve_callable
from tensordict import TensorDict

from rsl_rl_moe.checkpoint import CheckpointError, is_self_describing, load_checkpoint
from rsl_rl_moe.finite import first_nonfinite, state_dict_entries
from rsl_rl_moe.modules import importers
from rsl_rl_moe.modules.own_actions import OwnActionsMLPModel

class ExpertTaskWarning(UserWarning):
    """An expert file records a task (the name of the env it was trained on) other than the one expected of it."""


@dataclass
class Expert:
    """One pre-trained expert rebuilt from its file."""

    name: str
    """Expert name (``"base"``, ``"arm"``, or a key of ``expert_ckpt_paths``)."""
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


def expert_paths(
    base_ckpt_path: str | None,
    arm_ckpt_path: str | None,
    expert_ckpt_paths: dict[str, str] | None,
    override_prefix: str,
) -> dict[str, tuple[str, str]]:
    """Ordered ``{name: (path, override)}`` of the configured experts: base, arm, then the map.

    Raises:
        ValueError: fewer than 2 experts, or a name used twice.
    """
    named: dict[str, tuple[str, str]] = {}
    for name, path in (("base", base_ckpt_path), ("arm", arm_ckpt_path)):
        if path:
            named[name] = (path, f"{override_prefix}.{name}_ckpt_path")
    for name, path in (expert_ckpt_paths or {}).items():
        if not name.isidentifier():
            raise ValueError(f"expert name {name!r} in expert_ckpt_paths must be a Python identifier (no dots)")
        if name in named:
            raise ValueError(f"expert name {name!r} is given twice (as {name}_ckpt_path and in expert_ckpt_paths)")
        named[name] = (path, f"{override_prefix}.expert_ckpt_paths.{name}")
    if len(named) < 2:
        raise ValueError(
            f"a mixture needs at least 2 experts, got {len(named)} ({list(named) or 'none'}): set "
            f"`{override_prefix}.base_ckpt_path=...` and `{override_prefix}.arm_ckpt_path=...`, "
            f"or add `{override_prefix}.expert_ckpt_paths.<name>=...`"
        )
    return named


def load_experts(
    obs: TensorDict,
    num_actions: int | None,
    base_ckpt_path: str | None,
    arm_ckpt_path: str | None,
    expert_ckpt_paths: dict[str, str] | None,
    legacy_architectures: dict[str, dict] | None,
    override_prefix: str,
    expert_models: dict[str, dict] | None = None,
    expert_tasks: dict[str, str | None] | None = None,
    expert_obs: dict[str, dict[str, str]] | None = None,
    partial_experts: set[str] | frozenset[str] = frozenset(),
) -> list[Expert]:
    """Load every configured expert (see :func:`expert_paths` and :func:`load_expert`), in order; with
    ``expert_models`` (a mixture checkpoint's descriptions), rebuild those instead and read no file.
    ``expert_tasks``: ``{expert name: task its file should record}`` (``override_prefix.expert_tasks``); names
    not configured as experts and None values are not checked. ``expert_obs``: ``{expert name: {group the
    expert was trained on: env group it reads instead}}`` (``override_prefix.expert_obs``).
    ``partial_experts``: experts whose action count is not checked against ``num_actions`` (they have an
    action map; the caller checks them)."""
    names = list(expert_models) if expert_models else list(
        expert_paths(base_ckpt_path, arm_ckpt_path, expert_ckpt_paths, override_prefix)
    )
    check_expert_names(expert_obs, names, f"{override_prefix}.expert_obs")
    expert_obs = expert_obs or {}
    if expert_models:
        return experts_from_models(expert_models, obs, num_actions, expert_obs, partial_experts, override_prefix)
    return [
        load_expert(
            name,
            path,
            obs,
            num_actions,
            override,
            (legacy_architectures or {}).get(name),
            f"{override_prefix}.legacy_architectures.{name}",
            device=obs.device,
            expected_task=(expert_tasks or {}).get(name),
            expected_task_override=f"{override_prefix}.expert_tasks.{name}",
            obs_map=expert_obs.get(name),
            obs_map_override=f"{override_prefix}.expert_obs.{name}",
            check_num_actions=name not in partial_experts,
        )
        for name, (path, override) in expert_paths(base_ckpt_path, arm_ckpt_path, expert_ckpt_paths, override_prefix).items()
    ]


def load_expert(
    name: str,
    path: str,
    obs: TensorDict,
    num_actions: int | None,
    override: str,
    legacy_architecture: dict | None = None,
    legacy_override: str = "legacy_architectures.<expert>",
    device: str | torch.device = "cpu",
    expected_task: str | None = None,
    expected_task_override: str = "expert_tasks.<expert>",
    obs_map: dict[str, str] | None = None,
    obs_map_override: str = "expert_obs.<expert>",
    check_num_actions: bool = True,
) -> Expert:
    """Rebuild the expert stored at ``path`` for an env whose observations look like ``obs``.

    Args:
        name: expert name, used in messages.
        path: checkpoint file.
        obs: a batch of env observations (only group names and widths are used).
        num_actions: the env's action count A (None: not checked).
        override: the config override that sets ``path``, named in messages.
        legacy_architecture: for plain rsl_rl files (1.x-5.x) only: ``{"activation": "elu"}`` plus optionally
            ``actor_hidden_dims`` / ``critic_hidden_dims`` (checked against the weights) and
            ``obs_groups`` (default ``{"actor": ["policy"], "critic": <actor groups>}``).
        legacy_override: the config override that sets ``legacy_architecture``, named in messages.
        device: device of the rebuilt models.
        expected_task: the task this expert is used for (the env name its file should record in
            ``infos["env"]["name"]``); None: not checked. A file recording another task still loads, with an
            :class:`ExpertTaskWarning` naming both; files that record none (plain rsl_rl files) are not checked.
        expected_task_override: the config override that sets ``expected_task``, named in the warning.
        obs_map: ``{group the expert was trained on: env group}``: the expert reads that env group under its
            own group name (:func:`expert_obs_view`); widths must match.
        obs_map_override: the config override that sets ``obs_map``, named in messages.
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
    expert_obs: dict[str, dict[str, str]] | None = None,
    partial_experts: set[str] | frozenset[str] = frozenset(),
    override_prefix: str = "",
) -> list[Expert]:
    """Experts of the described architectures (``{name: model description}``, in gate order), with freshly
    initialised weights: a mixture checkpoint's state dicts hold the real ones and overwrite them on load.
    ``expert_obs`` and ``partial_experts`` as for :func:`load_experts`.

    Raises:
        CheckpointError: a description that does not fit the env (observation widths, action count).
    """
    experts = []
    for name, model in expert_models.items():
        where = f"expert {name!r} (described in the mixture's checkpoint)"
        obs_map = (expert_obs or {}).get(name)
        map_override = f"{override_prefix}.expert_obs.{name}".lstrip(".")
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
    """Every key of a per-expert config map (``expert_obs``, ``action_maps``) must be a configured expert."""
    unknown = [k for k in (per_expert or {}) if k not in names]
    if unknown:
        raise ValueError(f"`{override}` names experts {unknown} that are not configured (experts: {names})")


def _mapped_obs(obs: TensorDict, obs_map: dict[str, str] | None, where: str, override: str) -> TensorDict:
    """:func:`expert_obs_view` after checking that every mapped env group exists."""
    for expert_group, env_group in (obs_map or {}).items():
        if env_group not in obs.keys():
            raise CheckpointError(
                f"{where}: `{override}.{expert_group}={env_group}` reads env observation group {env_group!r}, which "
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
                    f"(env groups: {list(obs.keys())}; map it to an env group with `{override or 'expert_obs.<expert>'}"
                    f".{group}=<env group>`)"
                )
            expected, got = model["obs_group_dims"][group], obs[group].shape[-1]
            if expected != got and group in (obs_map or {}):
                raise CheckpointError(
                    f"{where}: observation group {group!r} has {expected} values in the expert but the env group "
                    f"{obs_map[group]!r} it reads instead (`{override}.{group}`) has {got}"
                )
            if expected != got:
                raise CheckpointError(
                    f"{where}: observation group {group!r} has {expected} values in the expert "
                    f"but {got} in the env"
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
            f"part of the body needs an action map, `action_maps.<expert>`)"
        )


def _check_input_width(sd: dict, groups: list[str], obs: TensorDict, where: str, part: str, override: str) -> None:
    """A converted part's first layer must take as many inputs as its env groups provide."""
    missing = [g for g in groups if g not in obs.keys()]
    if missing:
        raise CheckpointError(
            f"{where}: its {part} reads observation groups {missing}, which the env does not provide "
            f"(env groups: {list(obs.keys())}; set `{override}.obs_groups`)"
        )
    expected = sd["mlp.0.weight"].shape[1]
    got = sum(obs[g].shape[-1] for g in groups)
    if expected != got:
        raise CheckpointError(
            f"{where}: its {part} takes {expected} observation values but the env groups {groups} "
            f"provide {got} (set `{override}.obs_groups`, or map them with `expert_obs`)"
        )


def _build(
    model: dict, part: str, obs: TensorDict, output_dim: int, state_dict: dict | None, where: str, device
) -> MLPModel:
    """Instantiate one part (``"actor"`` / ``"critic"``) and load its weights (None: keep the initial ones)."""
    cfg = dict(model[part])
    cls = resolve_callable(cfg.pop("class_name", "rsl_rl.models:MLPModel"))
    if cls is OwnActionsMLPModel:  # trained beside a partner; its inference and weights are MLPModel's
        cls = MLPModel
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
