"""Self-describing, atomically written rsl_rl checkpoints.

A checkpoint is the dict ``rsl_rl.runners.OnPolicyRunner.save`` writes
(``actor_state_dict``, ``critic_state_dict``, ``optimizer_state_dict``, ``iter``, ``infos``)
where ``infos`` carries everything needed to rebuild the models from the file alone::

    infos = {
        "format": "rsl_rl_moe.checkpoint",   # marks a file written by this package
        "format_version": 1,
        "rsl_rl_version": "5.5.1",
        "model": {
            "actor": {"class_name": "rsl_rl.models:MLPModel", "hidden_dims": [...], ...},   # actor cfg
            "critic": {...},                                                               # critic cfg
            "obs_groups": {"actor": ["policy"], "critic": ["policy", "critic"]},
            "obs_group_dims": {"policy": 66, "critic": 21},   # width of every env group
            "num_actions": 18,
        },
        "env": {...},   # free-form env description (robot name, action / observation names)
        ...             # extra, user-defined entries (e.g. diagnostics tracker state)
    }

Everything in a checkpoint is plain tensors, numbers, strings, lists and dicts, so it loads
with ``torch.load(path, weights_only=True)``.

Model configs written by older versions (a checkpoint's ``infos["model"]``, a run's ``config.yaml``) are brought to
today's spelling by :func:`upgrade_model_cfg` / :func:`upgrade_model_description`: the mixture actor's old class
name ``ActorCriticMoE`` becomes ``MoEActor``, and the expert keyword arguments of the MoE models (``base_ckpt_path``,
``arm_ckpt_path``, ``expert_ckpt_paths``, ``freeze_experts``, ``legacy_architectures``, ``expert_tasks``,
``expert_obs``, ``expert_models``) become one ``expert_sources`` (:class:`rsl_rl_moe.modules.ExpertSources`).
"""

from __future__ import annotations

import copy
import errno
import hashlib
import os
import socket
import tempfile
import time
from importlib import metadata

import torch

CHECKPOINT_FORMAT = "rsl_rl_moe.checkpoint"
CHECKPOINT_FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable, or not what the caller needs."""


def rsl_rl_version() -> str:
    """Installed rsl-rl-lib version string, e.g. ``"5.5.1"``."""
    return metadata.version("rsl-rl-lib")


def make_infos(model: dict, env: dict | None = None, **extra) -> dict:
    """Build the ``infos`` entry of a self-describing checkpoint.

    Args:
        model: ``{"actor": cfg, "critic": cfg, "obs_groups": ..., "obs_group_dims": ..., "num_actions": int}``.
        env: free-form env description.
        extra: further entries stored as they are.
    """
    missing = {"actor", "critic", "obs_groups", "obs_group_dims", "num_actions"} - set(model)
    if missing:
        raise ValueError(f"model description lacks {sorted(missing)}")
    return {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "rsl_rl_version": rsl_rl_version(),
        "model": model,
        "env": env or {},
        **extra,
    }


def save_checkpoint(path: str, payload: dict) -> None:
    """Write ``payload`` to ``path`` atomically: a temp file in the same folder, fsync, rename.

    A run killed while saving leaves the previous file at ``path`` intact, and its temp file
    (``.tmp_<pid>_*.pt``) is removed by the next save into that folder (:func:`remove_stale_temp_files`).

    Raises:
        CheckpointError: the disk (or quota) is full; nothing is left behind and the previous file is intact.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    remove_stale_temp_files(folder)
    fd, tmp_path = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{_HOST}_{os.getpid()}_", suffix=".pt", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp_path, path)
    except BaseException as exc:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        if _is_disk_full(exc):
            raise CheckpointError(
                f"no space left on the device writing {path!r}: free some space (the previous checkpoints are intact)"
            ) from exc
        raise


TEMP_PREFIX = ".tmp_"
_HOST = hashlib.blake2b(socket.gethostname().encode(), digest_size=4).hexdigest()
"""This machine in temp-file names (``.tmp_<host>_<pid>_*.pt``): only its own processes' files are judged."""
LEGACY_TEMP_AGE_S = 3600.0
"""Temp files without host and pid (older versions) count as stale after this many seconds."""


def remove_stale_temp_files(folder: str) -> list[str]:
    """Remove the temp files of :func:`save_checkpoint` in ``folder`` whose writing process is gone (a save that was
    killed); returns their paths. Files of a live process on this machine, of other machines (a shared disk) and
    recent files of older versions are kept; what cannot be removed is left (cleaning is best effort)."""
    removed = []
    for name in os.listdir(folder):
        if not (name.startswith(TEMP_PREFIX) and name.endswith(".pt")):
            continue
        path = os.path.join(folder, name)
        parts = name[len(TEMP_PREFIX) :].split("_")
        try:
            if len(parts) >= 3 and parts[1].isdigit():
                if parts[0] != _HOST or _process_alive(int(parts[1])):
                    continue
            elif time.time() - os.path.getmtime(path) < LEGACY_TEMP_AGE_S:
                continue
            os.remove(path)
            removed.append(path)
        except OSError:
            pass
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _is_disk_full(exc: BaseException) -> bool:
    """True for "no space left" / "quota exceeded", however torch's writer wrapped it."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def load_checkpoint(path: str, override_hint: str = "ckpt_path", map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True`` and clear errors.

    Args:
        path: file to read.
        override_hint: the config override that sets this path, named in error messages.
        map_location: device for the tensors.

    Raises:
        CheckpointError: the file is missing, is a folder, or cannot be unpickled as a torch checkpoint.
    """
    if not path:
        raise CheckpointError(f"no checkpoint path given: set it with `{override_hint}=<path to a .pt file>`")
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint not found: {path!r} (set with `{override_hint}=...`)")
    if os.path.isdir(path):
        raise CheckpointError(f"checkpoint path is a folder, not a file: {path!r} (set with `{override_hint}=...`)")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for truncated / foreign files
        raise CheckpointError(
            f"cannot read checkpoint {path!r} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            f"is it a complete torch checkpoint? (set with `{override_hint}=...`)"
        ) from exc
    if not isinstance(payload, dict):
        raise CheckpointError(f"checkpoint {path!r} holds a {type(payload).__name__}, expected a dict of state dicts")
    return payload


def is_self_describing(payload: dict) -> bool:
    """True if ``payload`` was written by this package (carries its model description)."""
    infos = payload.get("infos")
    return isinstance(infos, dict) and infos.get("format") == CHECKPOINT_FORMAT


def entry_name(name: str, *keys: str) -> str:
    """How messages name an entry of a named setting, in that name's style: ``entry_name("obs_maps['go2']",
    "policy")`` is ``obs_maps['go2']['policy']`` (a Python argument), ``entry_name("runner.x.expert_obs.go2",
    "policy")`` is ``runner.x.expert_obs.go2.policy`` (a config override)."""
    for key in keys:
        name = f"{name}[{key!r}]" if name.endswith("]") else f"{name}.{key}"
    return name


LEGACY_CLASS_NAMES = {
    "rsl_rl_moe.modules:ActorCriticMoE": "rsl_rl_moe.modules:MoEActor",
    "rsl_rl_moe.modules.ActorCriticMoE": "rsl_rl_moe.modules.MoEActor",
    "rsl_rl_moe.modules.actor_critic_moe:ActorCriticMoE": "rsl_rl_moe.modules.actor_critic_moe:MoEActor",
    "rsl_rl_moe.modules.actor_critic_moe.ActorCriticMoE": "rsl_rl_moe.modules.actor_critic_moe.MoEActor",
}
"""Model class names of older versions -> today's. ``ActorCriticMoE`` was a second name of the mixture *actor*."""

LEGACY_EXPERT_KWARGS = (
    "base_ckpt_path",
    "arm_ckpt_path",
    "expert_ckpt_paths",
    "freeze_experts",
    "legacy_architectures",
    "expert_tasks",
    "expert_obs",
    "expert_models",
    "override_prefix",
)
"""Keyword arguments the MoE actor and critic took before :class:`~rsl_rl_moe.modules.ExpertSources`."""


def upgrade_model_cfg(cfg: dict) -> dict:
    """A model config (``class_name`` and keyword arguments, as in a train config, a run's ``config.yaml`` or a
    checkpoint's ``infos["model"]``) of an older version in today's spelling; a copy, unchanged if already current.

    - ``class_name`` ``...:ActorCriticMoE`` becomes ``...:MoEActor`` (:data:`LEGACY_CLASS_NAMES`);
    - the MoE models' expert arguments (:data:`LEGACY_EXPERT_KWARGS`) become ``expert_sources``:
      ``{"experts": {"base": base_ckpt_path, "arm": arm_ckpt_path, **expert_ckpt_paths}`` (in that order, empty
      paths left out), ``"freeze": freeze_experts``, ``"legacy_architectures"``, ``"tasks": expert_tasks``,
      ``"obs_maps": expert_obs``, ``"models": expert_models}``. ``override_prefix`` (a prefix for messages) is
      dropped: messages then name the library's arguments. ``expert_models`` next to an ``expert_sources`` (an older
      caller adding a checkpoint's descriptions) is folded into it.

    Raises:
        ValueError: an expert named twice (``base_ckpt_path`` and ``expert_ckpt_paths.base``), or old expert
            arguments next to ``expert_sources``.
    """
    cfg = copy.deepcopy(dict(cfg))
    name = cfg.get("class_name")
    if isinstance(name, str) and name in LEGACY_CLASS_NAMES:
        cfg["class_name"] = LEGACY_CLASS_NAMES[name]
    legacy = {key: cfg.pop(key) for key in LEGACY_EXPERT_KWARGS if key in cfg}
    if not legacy:
        return cfg
    models = legacy.pop("expert_models", None)
    if "expert_sources" in cfg:
        if legacy:
            raise ValueError(
                f"a model config holds both expert_sources and the older expert arguments {sorted(legacy)}: keep "
                f"expert_sources"
            )
        if models:
            cfg["expert_sources"] = {**cfg["expert_sources"], "models": models}
        return cfg
    experts = {}
    for expert in ("base", "arm"):
        path = legacy.get(f"{expert}_ckpt_path")
        if path:
            experts[expert] = path
    for expert, path in (legacy.get("expert_ckpt_paths") or {}).items():
        if expert in experts:
            raise ValueError(f"expert {expert!r} is given twice: as {expert}_ckpt_path and in expert_ckpt_paths")
        experts[expert] = path
    cfg["expert_sources"] = {
        "experts": experts,
        "freeze": legacy.get("freeze_experts", True),
        "legacy_architectures": legacy.get("legacy_architectures") or {},
        "tasks": legacy.get("expert_tasks") or {},
        "obs_maps": legacy.get("expert_obs") or {},
        "models": models or None,
    }
    return cfg


def upgrade_model_description(model: dict) -> dict:
    """A checkpoint's ``infos["model"]`` with its ``actor`` and ``critic`` configs upgraded
    (:func:`upgrade_model_cfg`)."""
    return {**model, **{part: upgrade_model_cfg(model[part]) for part in ("actor", "critic") if part in model}}
