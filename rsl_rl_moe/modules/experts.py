"""Rebuild pre-trained rsl_rl experts (actor + critic ``MLPModel``) from checkpoint files.

Accepted files:

- self-describing checkpoints written with :mod:`rsl_rl_moe.checkpoint` (the model description is
  in ``infos["model"]``);
- rsl_rl 1.x checkpoints (legged_gym's ``model_state_dict`` with ``actor.N.*``, ``critic.N.*``,
  ``std``) when the caller states the activation (``legacy_architectures.<expert>``), which the file
  does not store; layer widths are read from the weights. Mapping: ``actor.N.* -> mlp.N.*``,
  ``critic.N.* -> mlp.N.*``, ``std -> distribution.std_param``.

Everything else (rsl_rl 2.x-4.x layouts, a 5.x runner file without a model description) is refused
with a message saying what was found. Observation widths and the action count are checked against
the environment before any weight is loaded; errors name both numbers and the override that sets
the path. A caller that knows which task each expert is for passes ``expected_task`` / ``expert_tasks``: a
self-describing file that records another task (``infos["env"]["name"]``, the env it was trained on) loads
with an :class:`ExpertTaskWarning` naming both.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import torch
from rsl_rl.models import MLPModel
from rsl_rl.modules import GaussianDistribution
from rsl_rl.utils import resolve_callable
from tensordict import TensorDict

from rsl_rl_moe.checkpoint import CheckpointError, is_self_describing, load_checkpoint
from rsl_rl_moe.finite import first_nonfinite, state_dict_entries

_LEGACY_1X_KEY = re.compile(r"^(actor|critic)\.\d+\.(weight|bias)$")


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
    """``"self-describing"``, ``"rsl_rl 1.x (converted)"`` or ``"described in the mixture's checkpoint"``."""
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
        legacy_architecture: for rsl_rl 1.x files only: ``{"activation": "elu"}`` plus optionally
            ``actor_hidden_dims`` / ``critic_hidden_dims`` (checked against the weights) and
            ``obs_groups`` (default ``{"actor": ["policy"], "critic": <actor groups>}``).
        legacy_override: the config override that sets ``legacy_architecture``, named in messages.
        device: device of the rebuilt models.
        expected_task: the task this expert is used for (the env name its file should record in
            ``infos["env"]["name"]``); None: not checked. A file recording another task still loads, with an
            :class:`ExpertTaskWarning` naming both; files that record none (rsl_rl 1.x) are not checked.
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
    elif _is_rsl_rl_1x(payload):
        if legacy_architecture is None:
            raise CheckpointError(
                f"{where} is an rsl_rl 1.x checkpoint ({_describe_1x(payload['model_state_dict'])}); its "
                f"activation is not stored in the file: state it with `{legacy_override}={{activation: elu}}` "
                f"(optionally also actor_hidden_dims, critic_hidden_dims, obs_groups)"
            )
        model, actor_sd, critic_sd = convert_rsl_rl_1x(payload["model_state_dict"], legacy_architecture, where)
        source = "rsl_rl 1.x (converted)"
        _check_input_width(actor_sd, model["obs_groups"]["actor"], obs, where, "actor")
        _check_input_width(critic_sd, model["obs_groups"]["critic"], obs, where, "critic")
        groups = {g for part in ("actor", "critic") for g in model["obs_groups"][part]}
        model["obs_group_dims"] = {g: int(obs[g].shape[-1]) for g in groups}
    else:
        raise CheckpointError(f"{where}: unsupported checkpoint layout: {_describe_layout(payload)}")
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


def convert_rsl_rl_1x(model_state_dict: dict, architecture: dict, where: str) -> tuple[dict, dict, dict]:
    """Map an rsl_rl 1.x ``model_state_dict`` to 5.x ``MLPModel`` state dicts.

    Args:
        model_state_dict: ``actor.N.*``, ``critic.N.*``, ``std`` tensors.
        architecture: see ``legacy_architecture`` in :func:`load_expert`.
        where: description of the file, used in messages.

    Returns:
        ``(model description, actor state dict, critic state dict)``; the description has the shape
        of ``infos["model"]`` in a self-describing checkpoint.
    """
    if "activation" not in architecture:
        raise CheckpointError(f"{where}: legacy architecture {architecture} lacks `activation` (e.g. elu)")
    parts = {}
    for part in ("actor", "critic"):
        sd = {f"mlp.{k[len(part) + 1:]}": v for k, v in model_state_dict.items() if k.startswith(f"{part}.")}
        widths = [sd[k].shape[0] for k in sorted(sd, key=lambda k: int(k.split(".")[1])) if k.endswith("weight")]
        hidden, out = widths[:-1], widths[-1]
        given = architecture.get(f"{part}_hidden_dims")
        if given is not None and list(given) != hidden:
            raise CheckpointError(f"{where}: {part}_hidden_dims is {list(given)} in the config but {hidden} in the file")
        parts[part] = (sd, hidden, out)
    actor_sd, actor_hidden, num_actions = parts["actor"]
    critic_sd, critic_hidden, _ = parts["critic"]
    actor_sd["distribution.std_param"] = model_state_dict["std"]
    actor_groups = list(architecture.get("obs_groups", {}).get("actor", ["policy"]))
    critic_groups = list(architecture.get("obs_groups", {}).get("critic", actor_groups))
    activation = architecture["activation"]
    model = {
        "actor": {
            "class_name": "rsl_rl.models:MLPModel",
            "hidden_dims": actor_hidden,
            "activation": activation,
            "obs_normalization": False,
            "distribution_cfg": {"class_name": "GaussianDistribution", "init_std": 1.0, "std_type": "scalar"},
        },
        "critic": {"class_name": "rsl_rl.models:MLPModel", "hidden_dims": critic_hidden, "activation": activation},
        "obs_groups": {"actor": actor_groups, "critic": critic_groups},
        "num_actions": num_actions,
    }
    return model, actor_sd, critic_sd


def _is_rsl_rl_1x(payload: dict) -> bool:
    sd = payload.get("model_state_dict")
    if not isinstance(sd, dict) or "std" not in sd or "actor.0.weight" not in sd or "critic.0.weight" not in sd:
        return False
    return all(k == "std" or _LEGACY_1X_KEY.match(k) for k in sd)


def _describe_1x(sd: dict) -> str:
    actor = sorted({int(k.split(".")[1]) for k in sd if k.startswith("actor.")})
    widths = [tuple(sd[f"actor.{i}.weight"].shape) for i in actor if f"actor.{i}.weight" in sd]
    return f"model_state_dict with actor layers {widths} (out, in), critic.N.*, std"


def _describe_layout(payload: dict) -> str:
    top = sorted(payload)
    if "model_state_dict" in payload:
        keys = sorted(payload["model_state_dict"])
        return (
            f"an rsl_rl 2.x-4.x checkpoint, or a 1.x one with a recurrent model (top-level keys {top}; "
            f"model_state_dict keys {keys[:6]}"
            f"{' ...' if len(keys) > 6 else ''}); this package reads self-describing checkpoints "
            f"(rsl_rl_moe.checkpoint) and rsl_rl 1.x files (actor.N.*, critic.N.*, std): retrain or re-save the expert"
        )
    if "actor_state_dict" in payload:
        keys = sorted(payload["actor_state_dict"])
        version = "4.x" if "std" in keys or "log_std" in keys else "5.x"
        return (
            f"an rsl_rl {version} runner checkpoint without a model description (top-level keys {top}; "
            f"actor_state_dict keys {keys[:6]}{' ...' if len(keys) > 6 else ''}): save it with "
            f"rsl_rl_moe.checkpoint.make_infos(...) as `infos` so the expert can be rebuilt"
        )
    return f"top-level keys {top}, expected a checkpoint with `actor_state_dict` and `infos`"


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


def _check_input_width(sd: dict, groups: list[str], obs: TensorDict, where: str, part: str) -> None:
    """A converted 1.x part's first layer must take as many inputs as its env groups provide."""
    missing = [g for g in groups if g not in obs.keys()]
    if missing:
        raise CheckpointError(
            f"{where}: its {part} reads observation groups {missing}, which the env does not provide "
            f"(env groups: {list(obs.keys())}; set legacy_architectures.<expert>.obs_groups)"
        )
    expected = sd["mlp.0.weight"].shape[1]
    got = sum(obs[g].shape[-1] for g in groups)
    if expected != got:
        raise CheckpointError(
            f"{where}: its {part} takes {expected} observation values but the env groups {groups} "
            f"provide {got}"
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
