"""Convert rsl_rl checkpoints of every generation (1.x to 5.x) to rsl_rl 5.5 ``MLPModel`` experts.

An expert file that does not carry this package's model description (``infos["model"]``) is read here: its
generation is told from its keys, and its actor and critic become 5.5 ``MLPModel`` state dicts whose outputs equal
the original ones: ``act_inference`` (the action mean) and ``evaluate`` (the value), normalisers included.

Layouts, read from the tagged sources of github.com/leggedrobotics/rsl_rl (``runners/on_policy_runner.py``
``save()``, ``modules/actor_critic.py``, the normaliser module, ``algorithms/ppo.py`` ``save()``):

============================  =================================================================================
generation (tags read)        checkpoint layout
============================  =================================================================================
1.x (v1.0.2)                  ``model_state_dict``: ``actor.N.*``, ``critic.N.*`` (``nn.Sequential``, Linear at
                              even N), ``std``. No normaliser.
2.x (v2.0.0 ... v2.3.3)       as 1.x (``log_std`` instead of ``std`` with ``noise_std_type="log"``, from
                              v2.2.3). With ``empirical_normalization`` the runner, not the model, normalises
                              and ``save()`` adds top-level ``obs_norm_state_dict`` and
                              ``critic_obs_norm_state_dict`` (v2.0-v2.2) / ``privileged_obs_norm_state_dict``
                              (v2.3): ``{_mean, _var, _std}`` (+ ``count`` from v2.1.1), shape ``(1, D)``. The
                              critic reads the env's ``critic`` group through the critic normaliser, or, with no
                              such group, the actor's already normalised observations (its own normaliser then
                              keeps its initial 0 / 1 statistics).
3.x (v3.0.0 ... v3.3.0)       ``model_state_dict``: ``actor.N.*``, ``critic.N.*``, ``std`` / ``log_std``, and,
                              with ``actor_obs_normalization`` / ``critic_obs_normalization``, the normalisers
                              inside it: ``actor_obs_normalizer.{_mean,_var,_std,count}``,
                              ``critic_obs_normalizer.*``. From v3.1.0 ``state_dependent_std`` drops ``std``.
4.x (v4.0.0, v4.0.1)          ``actor_state_dict``: ``obs_normalizer.*``, ``mlp.N.*``, ``std`` / ``log_std``;
                              ``critic_state_dict``: ``obs_normalizer.*``, ``mlp.N.*``.
5.x (v5.0.0 ... v5.4.2)       as 4.x with ``distribution.std_param`` / ``distribution.log_std_param``.
============================  =================================================================================

Every generation normalises with ``(x - _mean) / (_std + 1e-2)``, no clipping (``EmpiricalNormalization``,
``eps=1e-2``), exactly as 5.5.1 does: statistics are copied unchanged (``count``, absent before v2.1.1, becomes 0;
experts' normalisers are never updated). The action std maps to ``GaussianDistribution`` with the same
``std_type`` (``std`` -> ``distribution.std_param``, ``log_std`` -> ``distribution.log_std_param``).

What no file stores, the caller states (``legacy_architectures.<expert>``): the activation, and the env groups each
part reads. The activation is a 5.5 name, plus ``celu``: rsl_rl 1.x built ``nn.ReLU`` from ``"crelu"``, v2.2 and
later (like 5.5) ``nn.CELU``, so ``crelu`` is refused for a file that may be 1.x (``relu`` or ``celu`` say which).

Refused, naming what was found: recurrent / CNN / student-teacher models (keys other than the above), a
state-dependent std (no std parameter), normaliser state missing a field or of another width, a 2.x file with one
of its two normalisers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from rsl_rl.utils import resolve_nn_activation

from rsl_rl_moe.checkpoint import CheckpointError, entry_name

EPS = 1e-2
"""Normaliser eps of every rsl_rl generation (1.x has none) and of 5.5.1: outputs ``(x - mean) / (std + EPS)``."""

_NORM_FIELDS = ("_mean", "_var", "_std")
_LINEAR = re.compile(r"^(\d+)\.(weight|bias)$")
_STD_KEYS = {  # key in the file -> (5.5 std_type, 5.5 key)
    "std": ("scalar", "distribution.std_param"),
    "log_std": ("log", "distribution.log_std_param"),
    "distribution.std_param": ("scalar", "distribution.std_param"),
    "distribution.log_std_param": ("log", "distribution.log_std_param"),
}
_ARCH_HINT = "(optionally also actor_hidden_dims, critic_hidden_dims, obs_groups)"


def _refuse(message: str) -> CheckpointError:
    return CheckpointError(" ".join(message.split("\n")))


@dataclass
class Part:
    """One network of the file: its Linear layers and observation normaliser."""

    mlp: dict[str, torch.Tensor]
    """5.5 keys ``mlp.N.weight`` / ``mlp.N.bias``."""
    hidden_dims: list[int]
    out_dim: int
    in_dim: int
    normalizer: dict[str, torch.Tensor] | None
    """``{_mean, _var, _std, count}`` applied to its input, or None."""


@dataclass
class ImportedCheckpoint:
    """An rsl_rl checkpoint read into generation-independent parts (see the module docstring)."""

    generation: str
    """E.g. ``"rsl_rl 2.x (empirical normalisation)"``; ``Expert.source`` is this plus ``" (converted)"``."""
    actor: Part
    critic: Part
    std_type: str
    """``"scalar"`` or ``"log"``."""
    std: torch.Tensor
    """The action std parameter ``(A,)`` as stored (log space when ``std_type == "log"``)."""
    crelu_ambiguous: bool
    """The file may be rsl_rl 1.x, whose ``crelu`` was ``nn.ReLU`` (2.2 and later: ``nn.CELU``, as in 5.5)."""
    notes: str = ""

    def summary(self) -> str:
        """One line: layer shapes, std, normalisers."""

        def shapes(part: Part) -> list[tuple[int, ...]]:
            return [tuple(part.mlp[k].shape) for k in sorted(part.mlp, key=_layer_index) if k.endswith("weight")]

        def norm(part: Part) -> str:
            return "normalised" if part.normalizer is not None else "no normaliser"

        std = "std" if self.std_type == "scalar" else "log_std"
        return (
            f"actor layers {shapes(self.actor)} (out, in), {norm(self.actor)}; critic layers {shapes(self.critic)}, "
            f"{norm(self.critic)}; {std} ({self.std.numel()},){self.notes}"
        )


def read_rsl_rl_checkpoint(payload: dict, where: str) -> ImportedCheckpoint:
    """Tell the rsl_rl generation of ``payload`` from its keys and read its actor, critic, std and normalisers.

    Raises:
        CheckpointError: (one line) a layout that cannot be converted exactly, naming what was found or is missing.
    """
    top = sorted(payload)
    if "actor_state_dict" in payload:
        return _read_4x_5x(payload, where)
    if "model_state_dict" in payload:
        return _read_1x_3x(payload, where)
    raise _refuse(
        f"{where}: unsupported checkpoint layout: top-level keys {top}; expected a self-describing checkpoint "
        f"(rsl_rl_moe.checkpoint) or an rsl_rl one (`model_state_dict`: 1.x-3.x; `actor_state_dict` + "
        f"`critic_state_dict`: 4.x/5.x)"
    )


def convert(imported: ImportedCheckpoint, architecture: dict, where: str, override: str) -> tuple[dict, dict, dict]:
    """5.5 ``MLPModel`` description and state dicts of an imported checkpoint.

    Args:
        imported: from :func:`read_rsl_rl_checkpoint`.
        architecture: ``{"activation": ...}`` plus optionally ``actor_hidden_dims`` / ``critic_hidden_dims`` (checked
            against the weights) and ``obs_groups`` (default ``{"actor": ["policy"], "critic": <actor groups>}``).
        where: description of the file, used in messages.
        override: how messages name the setting of ``architecture`` (a config override or an argument name).

    Returns:
        ``(model description, actor state dict, critic state dict)``; the description has the shape of
        ``infos["model"]`` in a self-describing checkpoint (without ``obs_group_dims``).
    """
    if "activation" not in architecture:
        raise _refuse(
            f"{where}: `{override}` is {architecture} without `activation`, which the file does not store: "
            f"add `{entry_name(override, 'activation')}=elu` (or the activation it was trained with)"
        )
    activation = _activation(str(architecture["activation"]), imported, where, override)
    for name, part in (("actor", imported.actor), ("critic", imported.critic)):
        given = architecture.get(f"{name}_hidden_dims")
        if given is not None and list(given) != part.hidden_dims:
            raise _refuse(
                f"{where}: {name}_hidden_dims is {list(given)} in the config but {part.hidden_dims} in the file"
            )
    actor_groups = list((architecture.get("obs_groups") or {}).get("actor", ["policy"]))
    critic_groups = list((architecture.get("obs_groups") or {}).get("critic", actor_groups))
    std_key = _STD_KEYS["std" if imported.std_type == "scalar" else "log_std"][1]
    actor_sd = {**imported.actor.mlp, **_normalizer_sd(imported.actor), std_key: imported.std}
    critic_sd = {**imported.critic.mlp, **_normalizer_sd(imported.critic)}
    model = {
        "actor": {
            "class_name": "rsl_rl.models:MLPModel",
            "hidden_dims": imported.actor.hidden_dims,
            "activation": activation,
            "obs_normalization": imported.actor.normalizer is not None,
            "distribution_cfg": {"class_name": "GaussianDistribution", "init_std": 1.0, "std_type": imported.std_type},
        },
        "critic": {
            "class_name": "rsl_rl.models:MLPModel",
            "hidden_dims": imported.critic.hidden_dims,
            "activation": activation,
            "obs_normalization": imported.critic.normalizer is not None,
        },
        "obs_groups": {"actor": actor_groups, "critic": critic_groups},
        "num_actions": imported.actor.out_dim,
    }
    return model, actor_sd, critic_sd


def missing_architecture_error(imported: ImportedCheckpoint, where: str, override: str) -> CheckpointError:
    """The refusal for a converted file loaded without ``legacy_architectures.<expert>``."""
    return _refuse(
        f"{where} is an {imported.generation} checkpoint ({imported.summary()}); its activation is not stored in "
        f"the file: state it with `{override}={{activation: elu}}` {_ARCH_HINT}"
    )


# --- rsl_rl 1.x-3.x: model_state_dict (+ 2.x top-level normalisers) ---------------------------------------------


def _read_1x_3x(payload: dict, where: str) -> ImportedCheckpoint:
    sd = payload["model_state_dict"]
    if not isinstance(sd, dict):
        raise _refuse(f"{where}: `model_state_dict` is a {type(sd).__name__}, expected a state dict")
    groups, std_keys = _split(
        sd,
        ("actor", "critic", "actor_obs_normalizer", "critic_obs_normalizer"),
        ("std", "log_std"),
        where,
        "model_state_dict",
        "a recurrent (memory_a / memory_c), CNN or student-teacher policy is not converted",
    )
    std_type, std = _std(std_keys, where, "model_state_dict", "rsl_rl 3.1+ `state_dependent_std=True`")
    actor = _part(groups.get("actor"), "actor", where, "model_state_dict")
    critic = _part(groups.get("critic"), "critic", where, "model_state_dict")
    critic_norm_key = next(
        (k for k in ("critic_obs_norm_state_dict", "privileged_obs_norm_state_dict") if k in payload), None
    )
    in_model = [k for k in ("actor_obs_normalizer", "critic_obs_normalizer") if k in groups]
    notes = ""
    if "obs_norm_state_dict" in payload or critic_norm_key is not None:
        if in_model:
            raise _refuse(
                f"{where}: holds both 2.x top-level normalisers "
                f"({sorted(k for k in payload if k.endswith('norm_state_dict'))}) and 3.x ones inside "
                f"model_state_dict ({in_model}): not an rsl_rl layout"
            )
        if "obs_norm_state_dict" not in payload or critic_norm_key is None:
            found = "obs_norm_state_dict" if critic_norm_key is None else critic_norm_key
            raise _refuse(
                f"{where} is an rsl_rl 2.x checkpoint with `{found}` but without "
                + (
                    "`critic_obs_norm_state_dict` (2.0-2.2) or `privileged_obs_norm_state_dict` (2.3)"
                    if critic_norm_key is None
                    else "`obs_norm_state_dict`"
                )
                + ": the runner saves both; the missing normaliser cannot be rebuilt"
            )
        generation = "rsl_rl 2.x (empirical normalisation)"
        actor.normalizer = _normalizer(payload["obs_norm_state_dict"], actor.in_dim, where, "obs_norm_state_dict")
        critic_norm = _normalizer(payload[critic_norm_key], critic.in_dim, where, critic_norm_key)
        if _untouched(critic_norm) and critic.in_dim == actor.in_dim:
            # 2.x without an env `critic` group: the critic read the actor's normalised observations
            critic_norm = dict(actor.normalizer)
            notes = f"; critic reads the actor's normalised observations ({critic_norm_key} never updated)"
        critic.normalizer = critic_norm
        crelu_ambiguous = False  # 2.0-2.1 mapped "crelu" to the missing nn.CReLU: only 2.2+ files can use it
    elif in_model:
        generation = "rsl_rl 3.x"
        if "actor_obs_normalizer" in groups:
            actor.normalizer = _normalizer(groups["actor_obs_normalizer"], actor.in_dim, where, "actor_obs_normalizer")
        if "critic_obs_normalizer" in groups:
            critic.normalizer = _normalizer(
                groups["critic_obs_normalizer"], critic.in_dim, where, "critic_obs_normalizer"
            )
        crelu_ambiguous = False
    else:
        generation = "rsl_rl 1.x-3.x (no observation normaliser)"
        crelu_ambiguous = std_type == "scalar"  # log_std exists from v2.2.3 only
    _check_std(std, actor, where)
    return ImportedCheckpoint(generation, actor, critic, std_type, std, crelu_ambiguous, notes)


# --- rsl_rl 4.x / 5.x: actor_state_dict + critic_state_dict ------------------------------------------------------


def _read_4x_5x(payload: dict, where: str) -> ImportedCheckpoint:
    if not isinstance(payload.get("critic_state_dict"), dict):
        raise _refuse(
            f"{where}: has `actor_state_dict` but no `critic_state_dict` (top-level keys {sorted(payload)}): an "
            f"rsl_rl 4.x/5.x runner file holds both, and the expert's critic is needed"
        )
    hint = "a recurrent (rnn) or CNN model is not converted, only MLPModel"
    actor_groups, std_keys = _split(
        payload["actor_state_dict"], ("mlp", "obs_normalizer"), tuple(_STD_KEYS), where, "actor_state_dict", hint
    )
    critic_groups, _ = _split(
        payload["critic_state_dict"], ("mlp", "obs_normalizer"), (), where, "critic_state_dict", hint
    )
    std_type, std = _std(
        std_keys,
        where,
        "actor_state_dict",
        "4.x `state_dependent_std=True`, 5.x HeteroscedasticGaussianDistribution / BetaDistribution",
    )
    is_5x = any(k.startswith("distribution.") for k in std_keys)
    generation = "rsl_rl 5.x (no model description)" if is_5x else "rsl_rl 4.x"
    parts = []
    for name, groups in (("actor", actor_groups), ("critic", critic_groups)):
        part = _part(groups.get("mlp"), "mlp", where, f"{name}_state_dict")
        if "obs_normalizer" in groups:
            part.normalizer = _normalizer(
                groups["obs_normalizer"], part.in_dim, where, f"{name}_state_dict obs_normalizer"
            )
        parts.append(part)
    _check_std(std, parts[0], where)
    return ImportedCheckpoint(generation, parts[0], parts[1], std_type, std, False)


# --- shared pieces ------------------------------------------------------------------------------------------------


def _layer_index(key: str) -> int:
    return int(key.split(".")[1])


def _split(
    sd: dict, prefixes: tuple[str, ...], exact: tuple[str, ...], where: str, container: str, hint: str
) -> tuple[dict[str, dict], dict[str, torch.Tensor]]:
    """``{prefix: {rest of key: tensor}}`` and ``{exact key: tensor}``; any other key is refused."""
    groups: dict[str, dict] = {}
    found: dict[str, torch.Tensor] = {}
    other = []
    for key, value in sd.items():
        if key in exact:
            found[key] = value
            continue
        prefix = next((p for p in prefixes if key.startswith(p + ".")), None)
        if prefix is None:
            other.append(key)
        else:
            groups.setdefault(prefix, {})[key[len(prefix) + 1 :]] = value
    if other:
        other.sort()
        raise _refuse(
            f"{where}: {container} holds keys this importer does not convert: {other[:4]}"
            f"{' ...' if len(other) > 4 else ''} ({hint})"
        )
    return groups, found


def _std(found: dict[str, torch.Tensor], where: str, container: str, state_dependent: str) -> tuple[str, torch.Tensor]:
    if len(found) > 1:
        raise _refuse(f"{where}: {container} holds more than one action std parameter: {sorted(found)}")
    if not found:
        raise _refuse(
            f"{where}: {container} has no action std parameter (std / log_std / distribution.std_param): a "
            f"state-dependent std ({state_dependent}), which is not converted"
        )
    key, value = next(iter(found.items()))
    return _STD_KEYS[key][0], value


def _part(params: dict | None, name: str, where: str, container: str) -> Part:
    """Validate ``N.weight`` / ``N.bias`` of an MLP (Linear at 0, 2, 4, ..., activations between)."""
    if not params:
        raise _refuse(f"{where}: {container} has no `{name}.N.weight` layers")
    bad = sorted(k for k in params if not _LINEAR.match(k))
    if bad:
        raise _refuse(
            f"{where}: {container} holds {name} keys that are not Linear layers: {[f'{name}.{k}' for k in bad[:4]]}"
        )
    indices = sorted({int(k.split(".")[0]) for k in params})
    complete = all(f"{i}.weight" in params and f"{i}.bias" in params for i in indices)
    if indices != list(range(0, 2 * len(indices), 2)) or not complete or len(indices) < 2:
        raise _refuse(
            f"{where}: {container} has {name} layers at {indices} ({sorted(params)[:6]}); expected Linear layers at "
            f"0, 2, 4, ... (one activation between), each with weight and bias, and at least one hidden layer"
        )
    widths = []
    for n, i in enumerate(indices):
        w, b = params[f"{i}.weight"], params[f"{i}.bias"]
        if w.dim() != 2 or tuple(b.shape) != (w.shape[0],) or (n and w.shape[1] != widths[-1]):
            raise _refuse(
                f"{where}: {container} {name}.{i} has weight {tuple(w.shape)} and bias {tuple(b.shape)}, which do not "
                f"follow the previous layer ({widths[-1] if widths else 'input'} outputs)"
            )
        widths.append(int(w.shape[0]))
    mlp = {f"mlp.{k}": v for k, v in params.items()}
    return Part(mlp, widths[:-1], widths[-1], int(params["0.weight"].shape[1]), None)


def _normalizer(state, width: int, where: str, name: str) -> dict[str, torch.Tensor]:
    """``{_mean, _var, _std, count}`` of width ``width``; a missing ``count`` (before rsl_rl 2.1.1) becomes 0."""
    if not isinstance(state, dict):
        raise _refuse(f"{where}: {name} is a {type(state).__name__}, expected a normaliser state dict")
    missing = [f for f in _NORM_FIELDS if f not in state]
    extra = sorted(set(state) - set(_NORM_FIELDS) - {"count"})
    if missing or extra:
        raise _refuse(
            f"{where}: {name} has fields {sorted(state)}; an rsl_rl EmpiricalNormalization has "
            f"{list(_NORM_FIELDS)} (+ count)" + (f": missing {missing}" if missing else f": unknown {extra}")
        )
    for field in _NORM_FIELDS:
        if tuple(state[field].shape) != (1, width):
            raise _refuse(
                f"{where}: {name}.{field} has shape {tuple(state[field].shape)} but the network it feeds takes "
                f"{width} inputs (expected (1, {width}))"
            )
    count = state.get("count", torch.tensor(0, dtype=torch.long))
    count = torch.as_tensor(count, dtype=torch.long).reshape(())
    return {**{f: state[f] for f in _NORM_FIELDS}, "count": count}


def _untouched(norm: dict[str, torch.Tensor]) -> bool:
    """Statistics still at their initial values (mean 0, var 1, std 1, count 0): never updated."""
    return (
        bool((norm["_mean"] == 0).all() and (norm["_var"] == 1).all() and (norm["_std"] == 1).all())
        and int(norm["count"]) == 0
    )


def _normalizer_sd(part: Part) -> dict[str, torch.Tensor]:
    return {} if part.normalizer is None else {f"obs_normalizer.{k}": v for k, v in part.normalizer.items()}


def _check_std(std: torch.Tensor, actor: Part, where: str) -> None:
    if tuple(std.shape) != (actor.out_dim,):
        raise _refuse(
            f"{where}: the action std has shape {tuple(std.shape)} but the actor outputs {actor.out_dim} values; "
            f"expected ({actor.out_dim},)"
        )


def _activation(name: str, imported: ImportedCheckpoint, where: str, override: str) -> str:
    """The 5.5 activation name that builds the module the file was trained with."""
    name = name.lower()  # as rsl_rl 3.x-5.x read it
    if name == "celu":
        name = "crelu"  # 5.5 (and rsl_rl 2.2+) builds nn.CELU from "crelu"
    elif name == "crelu" and imported.crelu_ambiguous:
        raise _refuse(
            f"{where}: activation `crelu` is ambiguous for an {imported.generation} file: rsl_rl 1.x built nn.ReLU "
            f"from that name, 2.2 and later nn.CELU; state `{entry_name(override, 'activation')}=relu` or "
            f"`{entry_name(override, 'activation')}=celu`"
        )
    try:
        resolve_nn_activation(name)
    except (ValueError, KeyError) as exc:
        raise _refuse(
            f"{where}: `{entry_name(override, 'activation')}={name}` is not an activation rsl_rl 5.5 knows ({exc})"
        ) from exc
    return name
