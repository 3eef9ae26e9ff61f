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
name both numbers and the override that sets the path. A caller that knows which task each expert is for passes ``expected_task`` / ``expert_tasks``: a
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
) -> list[Expert]:
    """Load every configured expert (see :func:`expert_paths` and :func:`load_expert`), in order; with
    ``expert_models`` (a mixture checkpoint's descriptions), rebuild those instead and read no file.
    ``expert_tasks``: ``{expert name: task its file should record}`` (``override_prefix.expert_tasks``); names
    not configured as experts and None values are not checked."""
    if expert_models:
        return experts_from_models(expert_models, obs, num_actions)
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

    Raises:
        CheckpointError: missing / unreadable / unsupported file, sizes that differ from the env's, or a NaN / inf
            weight (named).
    """
    payload = load_checkpoint(path, override_hint=override, map_location=device)
    where = f"expert {name!r} ({path!r}, set with `{override}=...`)"
    if is_self_describing(payload):
        model = payload["infos"]["model"]
        actor_sd, critic_sd = payload["actor_state_dict"], payload["critic_state_dict"]
        source = "self-describing"
        _check_group_dims(model, obs, where)
        _warn_on_other_task(payload["infos"], expected_task, expected_task_override, where)
    else:
        imported = importers.read_rsl_rl_checkpoint(payload, where)
        if legacy_architecture is None:
            raise importers.missing_architecture_error(imported, where, legacy_override)
        model, actor_sd, critic_sd = importers.convert(imported, legacy_architecture, where, legacy_override)
        source = f"{imported.generation} (converted)"
        _check_input_width(actor_sd, model["obs_groups"]["actor"], obs, where, "actor", legacy_override)
        _check_input_width(critic_sd, model["obs_groups"]["critic"], obs, where, "critic", legacy_override)
        groups = {g for part in ("actor", "critic") for g in model["obs_groups"][part]}
        model["obs_group_dims"] = {g: int(obs[g].shape[-1]) for g in groups}
    _check_num_actions(model, num_actions, where)
    nonfinite = first_nonfinite(state_dict_entries({"actor": actor_sd, "critic": critic_sd}))
    if nonfinite is not None:
        raise CheckpointError(f"{where} holds non-finite weights: {nonfinite}")
    actor = _build(model, "actor", obs, model["num_actions"], actor_sd, where, device)
    critic = _build(model, "critic", obs, 1, critic_sd, where, device)
    return Expert(name, path, actor, critic, model["obs_groups"], source, model)


def experts_from_models(expert_models: dict[str, dict], obs: TensorDict, num_actions: int | None) -> list[Expert]:
    """Experts of the described architectures (``{name: model description}``, in gate order), with freshly
    initialised weights: a mixture checkpoint's state dicts hold the real ones and overwrite them on load.

    Raises:
        CheckpointError: a description that does not fit the env (observation widths, action count).
    """
    experts = []
    for name, model in expert_models.items():
        where = f"expert {name!r} (described in the mixture's checkpoint)"
        _check_group_dims(model, obs, where)
        _check_num_actions(model, num_actions, where)
        actor = _build(model, "actor", obs, model["num_actions"], None, where, obs.device)
        critic = _build(model, "critic", obs, 1, None, where, obs.device)
        source = "described in the mixture's checkpoint"
        experts.append(Expert(name, "", actor, critic, model["obs_groups"], source, model))
    return experts


def _check_group_dims(model: dict, obs: TensorDict, where: str) -> None:
    """Each env group an expert reads must exist with the width the expert was trained on."""
    for part in ("actor", "critic"):
        for group in model["obs_groups"][part]:
            if group not in obs.keys():
                raise CheckpointError(
                    f"{where}: its {part} reads observation group {group!r}, which the env does not provide "
                    f"(env groups: {list(obs.keys())})"
                )
            expected, got = model["obs_group_dims"][group], obs[group].shape[-1]
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
        raise CheckpointError(f"{where} outputs {model['num_actions']} actions but the env has {num_actions} actions")


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
            f"provide {got} (set `{override}.obs_groups`)"
        )


def _build(
    model: dict, part: str, obs: TensorDict, output_dim: int, state_dict: dict | None, where: str, device
) -> MLPModel:
    """Instantiate one part (``"actor"`` / ``"critic"``) and load its weights (None: keep the initial ones)."""
    cfg = dict(model[part])
    cls = resolve_callable(cfg.pop("class_name", "rsl_rl.models:MLPModel"))
    if not (isinstance(cls, type) and issubclass(cls, MLPModel)) or cls.is_recurrent:
        raise CheckpointError(f"{where}: its {part} is a {cls}, only rsl_rl MLPModel experts are supported")
    net = cls(obs, model["obs_groups"], part, output_dim, **cfg).to(device)
    if state_dict is None:
        return net
    try:
        net.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{where}: {part} weights do not fit its described architecture: {exc}") from exc
    return net
