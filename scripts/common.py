"""Glue shared by the scripts: hydra config -> env, rsl_rl train config, runner.

The only place (with config/) that knows both ``legged_gym`` and ``rsl_rl_moe``.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
from contextlib import contextmanager

# Before torch loads OpenMP: idle OpenMP workers sleep instead of spinning, so two runs on one machine do not
# take each other's cores (README, "Two runs on one machine"); export OMP_WAIT_POLICY=ACTIVE to opt out.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402
from rsl_rl.utils import resolve_callable  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from legged_gym.utils.sequence_sampler import SequenceFileError  # noqa: E402
from rsl_rl_moe.checkpoint import CheckpointError  # noqa: E402
from rsl_rl_moe.distributed import (  # noqa: E402
    ProcessInfo,
    broadcast_object,
    device_for_rank,
    init_process_group,
    process_info,
)
from rsl_rl_moe.finite import NonFiniteError  # noqa: E402
from rsl_rl_moe.modules.experts import load_expert  # noqa: E402
from rsl_rl_moe.runners import Runner, with_described_experts  # noqa: E402
from rsl_rl_moe.runners.stopping import TrainingStopped, exit_code as stop_exit_code  # noqa: E402
from rsl_rl_moe.runners.threads import torch_threads  # noqa: E402

USER_ERRORS = (CheckpointError, SequenceFileError, FileNotFoundError, ValueError)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def check_device(device: str) -> None:
    """Fail early and clearly on a CUDA device this machine does not have."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but torch sees no CUDA device here: use device=cpu")


def env_config(cfg: DictConfig) -> dict:
    """The resolved ``env`` section as a plain dict."""
    return OmegaConf.to_container(cfg.env, resolve=True)


def quiet_env_config(cfg: DictConfig, num_envs: int) -> dict:
    """The env config for play and evaluation: ``num_envs`` envs, no observation noise, no randomisation or pushes."""
    env_cfg = env_config(cfg)
    env_cfg["num_envs"] = int(num_envs)
    env_cfg["observations"]["add_noise"] = False
    env_cfg["domain_rand"]["enabled"] = False
    return env_cfg


def make_env(env_cfg: dict):
    """Instantiate ``env_cfg["class_name"]`` (any rsl_rl VecEnv taking its config dict), with the partner of
    ``env_cfg["partner"]`` attached if one is configured (:func:`attach_partner`)."""
    env = resolve_callable(env_cfg["class_name"])(env_cfg)
    attach_partner(env, env_cfg)
    return env


def attach_partner(env, env_cfg: dict) -> None:
    """Load the expert at ``env_cfg["partner"]["ckpt_path"]`` (``env.partner``) and let it write the actions of its
    ``limbs`` in episodes of its ``tasks`` (``env.set_partner``). Nothing is loaded without a path, or when the
    partner can never act (:func:`partner_may_act`): evaluating the base expert on locomotion needs no arm file."""
    partner_cfg = env_cfg.get("partner") or {}
    path = partner_cfg.get("ckpt_path")
    if not path or not partner_may_act(partner_cfg, env_cfg):
        return
    if not callable(getattr(env, "set_partner", None)):
        raise ValueError(f"env.partner.ckpt_path={path}: {type(env).__name__} has no set_partner(policy, limbs, tasks)")
    expert = load_expert("partner", path, env.get_observations(), env.num_actions, "env.partner.ckpt_path",
                         device=env.device, expected_task=partner_cfg.get("expected_task"),
                         expected_task_override="env.partner.expected_task")
    expert.actor.eval().requires_grad_(False)
    env.set_partner(expert.actor, partner_cfg["limbs"], list(partner_cfg["tasks"]))


def partner_may_act(partner_cfg: dict, env_cfg: dict) -> bool:
    """Some task of ``partner_cfg["tasks"]`` has a positive probability in ``env_cfg["tasks"]`` or in a curriculum
    stage of ``env_cfg["curriculum"]``."""
    tables = [env_cfg["tasks"]["probabilities"]]
    tables += [stage.get("env", {}).get("tasks", {}).get("probabilities", {}) for stage in env_cfg.get("curriculum") or []]
    return any(float(table.get(task, 0.0)) > 0.0 for table in tables for task in partner_cfg["tasks"])


def make_train_cfg(cfg: DictConfig) -> dict:
    """Translate ``cfg.runner`` (hydra layout: runner.alg.actor_critic.{actor,critic}) to rsl_rl's flat dict.

    Only ``actor_critic.actor`` and ``actor_critic.critic`` become models; other keys of ``actor_critic``
    (e.g. the expert paths of ppo_moe.yaml) are settings the two share through interpolation.
    ``runner.class_name`` and ``runner.max_iterations`` are read by the scripts, not by rsl_rl. The task's
    curriculum (``env.curriculum``: its stages change env and algorithm settings) becomes ``curriculum``, and its
    ``env.symmetry`` (when augmentation or the mirror loss is on) rsl_rl's ``algorithm.symmetry_cfg``. With a partner
    that can act (``env.partner``), an ``MLPModel`` actor becomes an
    :class:`~rsl_rl_moe.modules.own_actions.OwnActionsMLPModel`: PPO then leaves out the entries the partner writes.
    """
    runner = OmegaConf.to_container(cfg.runner, resolve=True)
    for key in ("class_name", "max_iterations"):
        runner.pop(key)
    alg = runner.pop("alg")
    actor_critic = alg.pop("actor_critic")
    symmetry = OmegaConf.to_container(cfg.env.symmetry, resolve=True) if "symmetry" in cfg.env else {}
    if symmetry.get("use_data_augmentation") or symmetry.get("mirror_loss_coeff", 0.0) > 0.0:
        if alg.get("symmetry_cfg"):
            raise ValueError("runner.alg.symmetry_cfg and env.symmetry are both set: use env.symmetry (or turn it off "
                             "with env.symmetry.use_data_augmentation=false)")
        alg["symmetry_cfg"] = {**symmetry, "use_mirror_loss": symmetry.get("mirror_loss_coeff", 0.0) > 0.0}
    env_cfg = env_config(cfg)
    partner = env_cfg.get("partner") or {}
    if partner.get("ckpt_path") and partner_may_act(partner, env_cfg) and \
            actor_critic["actor"]["class_name"] in ("MLPModel", "rsl_rl.models:MLPModel"):
        actor_critic["actor"]["class_name"] = "rsl_rl_moe.modules.own_actions:OwnActionsMLPModel"
    return {
        **runner,
        "algorithm": alg,
        "actor": actor_critic["actor"],
        "critic": actor_critic["critic"],
        "run_name": cfg.run_name,
        "curriculum": OmegaConf.to_container(cfg.env.curriculum, resolve=True) if "curriculum" in cfg.env else [],
    }


def make_runner(cfg: DictConfig, env, log_dir: str | None, ckpt_path: str | None = None) -> Runner:
    """The runner class named by ``runner.class_name`` (a :class:`Runner`), built on ``env``. Give the checkpoint
    you will load as ``ckpt_path``: a mixture checkpoint then rebuilds its experts from the descriptions it carries,
    so the expert files need not exist (:func:`rsl_rl_moe.runners.with_described_experts`)."""
    check_device(cfg.device)
    runner_class = resolve_callable(cfg.runner.class_name)
    train_cfg = make_train_cfg(cfg)
    if ckpt_path:
        train_cfg = with_described_experts(train_cfg, ckpt_path)
    return runner_class(env, train_cfg, log_dir=log_dir, device=cfg.device, env_description=env.description)


def rollout_threads(cfg: DictConfig):
    """Context for evaluation rollouts: torch on ``runner.rollout_torch_threads`` threads, as in training
    rollouts, so torch's idle workers leave the cores to the simulator (:mod:`rsl_rl_moe.runners.threads`)."""
    return torch_threads(cfg.runner.get("rollout_torch_threads"))


EXIT_USER_ERROR = 2
"""Exit code of a bad override, path or file (nothing was run)."""
EXIT_NON_FINITE = 3
"""Exit code of a training stopped by a NaN / inf (nothing saved after the last good checkpoint)."""


def run_id() -> str:
    """Part of the run folder name that two runs started in the same second on one machine never share: the
    process id (``hydra.run.dir`` in ``config/train.yaml``; :func:`claim_run_dir` catches the rest)."""
    return str(os.getpid())


def run_dir_of_this_rank(run_dir: str) -> str:
    """``hydra.run.dir`` of this process: ``run_dir`` in a single process and on global rank 0 of a torchrun job;
    a private temp folder on the other ranks (hydra writes its files there; they write nothing else, and take
    rank 0's run folder from :func:`join_processes`)."""
    info = process_info()
    if not info.is_distributed or info.rank == 0:
        return run_dir
    return os.path.join(tempfile.gettempdir(), f"go2_piper_moe_rank{info.rank}_{os.getpid()}")


OmegaConf.register_new_resolver("run_id", run_id, replace=True)
OmegaConf.register_new_resolver("run_dir_of_this_rank", run_dir_of_this_rank, replace=True)


def join_processes(cfg: DictConfig, run_dir: str) -> tuple[ProcessInfo, str]:
    """Under torchrun, make this process one part of the job before anything is built, and return
    ``(its place, the run folder of rank 0)``; in a single process: ``(one process, run_dir)``, cfg unchanged.

    In ``cfg``: ``device=cuda`` becomes ``cuda:<LOCAL_RANK>``; ``seed`` (and so the env's) becomes ``seed + RANK``
    (each rank's envs and action noise differ); ``env.nthread`` (0: all cores) becomes the machine's cores divided
    among its processes, as do torch's threads. The process group is joined (gloo on CPU, NCCL on CUDA).
    """
    info = process_info()
    if not info.is_distributed:
        return info, run_dir
    cfg.device = device_for_rank(cfg.device, info)
    init_process_group(cfg.device, info)
    cores = max(1, (os.cpu_count() or 1) // info.local_world_size)
    torch.set_num_threads(cores)
    if int(cfg.env.get("nthread", 0)) == 0:
        cfg.env.nthread = cores
    cfg.seed = int(cfg.seed) + info.rank
    return info, broadcast_object(run_dir)


def leave_processes() -> None:
    """Leave the torchrun job's process group (no-op in a single process)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def claim_run_dir(run_dir: str) -> None:
    """Mark ``run_dir`` as this run's (an exclusive create of ``<run_dir>/.run_owner``): a second run that resolves
    the same folder (another machine on a shared disk) stops before writing anything."""
    try:
        fd = os.open(os.path.join(run_dir, ".run_owner"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        raise ValueError(f"run folder {run_dir!r} belongs to another run: give a different run_name=... or hydra.run.dir=...") from None
    with os.fdopen(fd, "w") as f:
        f.write(f"{os.uname().nodename} {os.getpid()}\n")


@contextmanager
def user_errors():
    """Turn the errors a user can fix (bad path, bad file, bad size) into a one-line message and exit code 2,
    a training stopped by a NaN / inf into one line and exit code 3, and a stop signal (the runner has saved and
    said so) into exit code 128 + the signal number, without a traceback."""
    try:
        yield
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except NonFiniteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_NON_FINITE)
    except (TrainingStopped, KeyboardInterrupt) as exc:
        sys.exit(stop_exit_code(exc))
