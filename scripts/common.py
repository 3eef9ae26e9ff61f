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

APP_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
"""The app's folder: ``scripts/``, ``config/`` and the shipped experts ``resources/checkpoints/*.pt``. The repository
root in a checkout; ``<site-packages>/go2_piper_moe`` in an installed copy (``setup.py`` installs the same layout)."""
if os.path.isfile(os.path.join(APP_ROOT, "legged_gym", "__init__.py")):
    sys.path.insert(0, APP_ROOT)  # run from a checkout: the packages sit next to scripts/

from legged_gym import resolve_path  # noqa: E402
from legged_gym.envs.legged_robot import LIMB_COLUMNS  # noqa: E402
from legged_gym.robots.go2_piper import NUM_ACTIONS  # noqa: E402
from legged_gym.utils.sequence_sampler import SequenceFileError  # noqa: E402
from rsl_rl_moe.checkpoint import CheckpointError, upgrade_model_cfg  # noqa: E402
from rsl_rl_moe.distributed import (  # noqa: E402
    ProcessInfo,
    broadcast_object,
    device_for_rank,
    init_process_group,
    process_info,
)
from rsl_rl_moe.finite import NonFiniteError  # noqa: E402
from rsl_rl_moe.modules.actor_critic_moe import ExpertMixture  # noqa: E402
from rsl_rl_moe.modules.experts import Expert, ExpertSources, load_expert, load_experts  # noqa: E402
from rsl_rl_moe.runners import Runner, with_described_experts  # noqa: E402
from rsl_rl_moe.runners.stopping import TrainingStopped  # noqa: E402
from rsl_rl_moe.runners.stopping import exit_code as stop_exit_code  # noqa: E402
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


def app_path(path: str | None) -> str | None:
    """The checkpoint file to open for a configured path (experts, ``env.partner.ckpt_path``): the path itself when
    absolute or found from the current folder, else the app's copy under :data:`APP_ROOT` (so the shipped
    ``resources/checkpoints/*.pt`` load from any folder, installed or not), else as typed, for the error message
    (``legged_gym.resolve_path``)."""
    return resolve_path(path, APP_ROOT)


def with_app_paths(sources: dict) -> dict:
    """``sources`` (an ``ExpertSources`` as a dict) with its expert files found by :func:`app_path`."""
    return {**sources, "experts": {name: app_path(path) for name, path in (sources.get("experts") or {}).items()}}


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
    expert = load_expert(
        "partner",
        app_path(path),
        env.get_observations(),
        env.num_actions,
        "env.partner.ckpt_path",
        device=env.device,
        expected_task=partner_cfg.get("expected_task"),
        expected_task_override="env.partner.expected_task",
    )
    expert.actor.eval().requires_grad_(False)
    env.set_partner(expert.actor, partner_cfg["limbs"], list(partner_cfg["tasks"]))


def partner_may_act(partner_cfg: dict, env_cfg: dict) -> bool:
    """Some task of ``partner_cfg["tasks"]`` has a positive probability in ``env_cfg["tasks"]`` or in a curriculum
    stage of ``env_cfg["curriculum"]``."""
    tables = [env_cfg["tasks"]["probabilities"]]
    tables += [
        stage.get("env", {}).get("tasks", {}).get("probabilities", {}) for stage in env_cfg.get("curriculum") or []
    ]
    return any(float(table.get(task, 0.0)) > 0.0 for table in tables for task in partner_cfg["tasks"])


EXPERT_SETTINGS = "runner.alg.actor_critic"
"""Where the config holds a mixture's experts, in the user guide's spelling (``config/runner/alg/ppo_moe.yaml``):
``base_ckpt_path``, ``arm_ckpt_path``, ``expert_ckpt_paths.<name>``, ``freeze_experts``, ``legacy_architectures``,
``expert_tasks``, ``expert_obs``, and the actor's ``action_maps``."""


def expert_message_names(prefix: str = EXPERT_SETTINGS) -> dict[str, str]:
    """The overrides that set each argument of the library's ``ExpertSources`` (and the mixture actor's
    ``action_maps`` / ``action_groups``), for its messages (``ExpertSources.message_names``): a missing file is
    reported as ``runner.alg.actor_critic.base_ckpt_path=...``, not as the library's ``experts['base']``."""
    return {
        "experts": f"{prefix}.expert_ckpt_paths",
        "experts.base": f"{prefix}.base_ckpt_path",
        "experts.arm": f"{prefix}.arm_ckpt_path",
        "freeze": f"{prefix}.freeze_experts",
        "legacy_architectures": f"{prefix}.legacy_architectures",
        "tasks": f"{prefix}.expert_tasks",
        "obs_maps": f"{prefix}.expert_obs",
        "action_maps": f"{prefix}.action_maps",
        "action_groups": f"{prefix}.actor.action_groups",
    }


def expert_sources(actor_critic: dict, prefix: str = EXPERT_SETTINGS) -> dict:
    """The library's ``ExpertSources`` (as the dict a train config holds) from the user guide's keys of
    ``actor_critic`` (``cfg.runner.alg.actor_critic`` as a dict): experts ``base`` (``base_ckpt_path``) and ``arm``
    (``arm_ckpt_path``), left out when null, then ``expert_ckpt_paths`` in order; ``freeze_experts`` (default true),
    ``legacy_architectures``, ``expert_tasks``, ``expert_obs``; messages name these overrides
    (:func:`expert_message_names`).

    Raises:
        ValueError: an expert named twice (``base_ckpt_path`` and ``expert_ckpt_paths.base``).
    """
    experts = {}
    for name in ("base", "arm"):
        if actor_critic.get(f"{name}_ckpt_path"):
            experts[name] = actor_critic[f"{name}_ckpt_path"]
    for name, path in (actor_critic.get("expert_ckpt_paths") or {}).items():
        if name in experts:
            raise ValueError(
                f"expert {name!r} is given twice: `{prefix}.{name}_ckpt_path` and `{prefix}.expert_ckpt_paths.{name}`"
            )
        experts[name] = path
    return {
        "experts": experts,
        "freeze": actor_critic.get("freeze_experts", True),
        "legacy_architectures": actor_critic.get("legacy_architectures") or {},
        "tasks": actor_critic.get("expert_tasks") or {},
        "obs_maps": actor_critic.get("expert_obs") or {},
        "message_names": expert_message_names(prefix),
    }


def load_configured_experts(cfg: DictConfig, env, names: tuple[str, ...] | None = None) -> list[Expert]:
    """The experts ``cfg.runner.alg.actor_critic`` configures (:func:`expert_sources`), loaded for ``env``, in gate
    order; only ``names`` (in that order) if given, e.g. ``("base", "arm")``.

    Raises:
        ValueError: a name of ``names`` that is not configured (naming the override that sets it).
    """
    sources = expert_sources(OmegaConf.to_container(cfg.runner.alg.actor_critic, resolve=True))
    if names is not None:
        message_names = sources["message_names"]
        missing = [name for name in names if not sources["experts"].get(name)]
        if missing:
            overrides = [message_names.get(f"experts.{name}", f"{message_names['experts']}.{name}") for name in missing]
            raise ValueError(f"experts {missing} are not configured: set " + ", ".join(f"`{o}=...`" for o in overrides))
        sources["experts"] = {name: sources["experts"][name] for name in names}
        sources["obs_maps"] = {name: m for name, m in sources["obs_maps"].items() if name in names}
    return load_experts(ExpertSources.from_dict(with_app_paths(sources)), env.get_observations(), env.num_actions)


def is_mixture(model_cfg: dict) -> bool:
    """The model config builds a mixture of experts (its class is an ``ExpertMixture``: MoEActor, MoECritic)."""
    cls = resolve_callable(model_cfg["class_name"])
    return isinstance(cls, type) and issubclass(cls, ExpertMixture)


def mixture_models(actor_critic: dict) -> dict[str, dict]:
    """``actor_critic``'s ``actor`` and ``critic`` configs as the library takes them: configs of older versions (a
    run's own ``config.yaml``) upgraded (``rsl_rl_moe.checkpoint.upgrade_model_cfg``), and every mixture given the
    one ``expert_sources`` of :func:`expert_sources` (both models the same experts)."""
    models = {part: upgrade_model_cfg(actor_critic[part]) for part in ("actor", "critic")}
    mixtures = [model for model in models.values() if is_mixture(model)]
    if mixtures:
        sources = expert_sources(actor_critic)
        for model in mixtures:
            model.setdefault("expert_sources", sources)  # an older run's config: its models' own, upgraded
            model["expert_sources"].setdefault("message_names", expert_message_names())
    return models


def make_train_cfg(cfg: DictConfig) -> dict:
    """Translate ``cfg.runner`` (hydra layout: runner.alg.actor_critic.{actor,critic}) to rsl_rl's flat dict.

    Only ``actor_critic.actor`` and ``actor_critic.critic`` become models; other keys of ``actor_critic``
    (the experts of ppo_moe.yaml, in the user guide's spelling) become the one ``expert_sources`` both mixture models
    get (:func:`mixture_models`).
    ``runner.class_name`` and ``runner.max_iterations`` are read by the scripts, not by rsl_rl. The task's
    curriculum (``env.curriculum``: its stages change env and algorithm settings) becomes ``curriculum``, and its
    ``env.symmetry`` (when augmentation or the mirror loss is on) rsl_rl's ``algorithm.symmetry_cfg``. With a partner
    that can act (``env.partner``), an ``MLPModel`` actor becomes an
    :class:`~rsl_rl_moe.modules.own_actions.OwnActionsMLPModel`: PPO then leaves out the entries the partner writes.
    ``env.algorithm.entropy_limbs`` (e.g. ``[arm]``) limits the actor's entropy bonus to those limbs' entries
    (:func:`with_entropy_limbs`).
    """
    runner = OmegaConf.to_container(cfg.runner, resolve=True)
    for key in ("class_name", "max_iterations"):
        runner.pop(key)
    alg = runner.pop("alg")
    actor_critic = alg.pop("actor_critic")
    actor_critic.update(mixture_models(actor_critic))
    symmetry = OmegaConf.to_container(cfg.env.symmetry, resolve=True) if "symmetry" in cfg.env else {}
    if symmetry.get("use_data_augmentation") or symmetry.get("mirror_loss_coeff", 0.0) > 0.0:
        if alg.get("symmetry_cfg"):
            raise ValueError(
                "runner.alg.symmetry_cfg and env.symmetry are both set: use env.symmetry (or turn it off "
                "with env.symmetry.use_data_augmentation=false)"
            )
        alg["symmetry_cfg"] = {**symmetry, "use_mirror_loss": symmetry.get("mirror_loss_coeff", 0.0) > 0.0}
    env_cfg = env_config(cfg)
    partner = env_cfg.get("partner") or {}
    if (
        partner.get("ckpt_path")
        and partner_may_act(partner, env_cfg)
        and actor_critic["actor"]["class_name"] in PLAIN_MLP_MODELS
    ):
        actor_critic["actor"]["class_name"] = OWN_ACTIONS_MODEL
    entropy_limbs = (env_cfg.get("algorithm") or {}).get("entropy_limbs")
    if entropy_limbs is not None:
        actor_critic["actor"] = with_entropy_limbs(actor_critic["actor"], entropy_limbs)
    return {
        **runner,
        "algorithm": alg,
        "actor": actor_critic["actor"],
        "critic": actor_critic["critic"],
        "run_name": cfg.run_name,
        "curriculum": OmegaConf.to_container(cfg.env.curriculum, resolve=True) if "curriculum" in cfg.env else [],
    }


OWN_ACTIONS_MODEL = "rsl_rl_moe.modules.own_actions:OwnActionsMLPModel"
PLAIN_MLP_MODELS = ("MLPModel", "rsl_rl.models:MLPModel")
MLP_MODELS = (*PLAIN_MLP_MODELS, OWN_ACTIONS_MODEL)


def with_entropy_limbs(actor: dict, limbs: list[str]) -> dict:
    """The MLP ``actor`` config as an :class:`~rsl_rl_moe.modules.own_actions.OwnActionsMLPModel` whose entropy bonus
    counts only the action entries of ``limbs`` (names of ``legged_gym.envs.legged_robot.LIMB_COLUMNS``): an expert
    whose job is one limb explores that limb, and the std of the others moves only with the surrogate loss."""
    if isinstance(limbs, str) or not limbs or set(limbs) - set(LIMB_COLUMNS):
        raise ValueError(
            f"env.algorithm.entropy_limbs={limbs}: must be a non-empty list of limbs among {list(LIMB_COLUMNS)}, "
            "e.g. [arm], or null for all"
        )
    if actor["class_name"] not in MLP_MODELS:
        raise ValueError(f"env.algorithm.entropy_limbs needs an MLPModel actor, not {actor['class_name']}")
    weights = torch.zeros(NUM_ACTIONS)
    for limb in limbs:
        weights[LIMB_COLUMNS[limb]] = 1.0
    return {**actor, "class_name": OWN_ACTIONS_MODEL, "entropy_action_weights": weights.tolist()}


def make_runner(cfg: DictConfig, env, log_dir: str | None, ckpt_path: str | None = None) -> Runner:
    """The runner class named by ``runner.class_name`` (a :class:`Runner`), built on ``env``. Give the checkpoint
    you will load as ``ckpt_path``: a mixture checkpoint then rebuilds its experts from the descriptions it carries,
    so the expert files need not exist (:func:`rsl_rl_moe.runners.with_described_experts`)."""
    check_device(cfg.device)
    runner_class = resolve_callable(cfg.runner.class_name)
    train_cfg = make_train_cfg(cfg)
    if ckpt_path:
        train_cfg = with_described_experts(train_cfg, ckpt_path)
        # experts described as the pre-ExpertSources keyword `expert_models`: into expert_sources.models
        train_cfg.update({part: upgrade_model_cfg(train_cfg[part]) for part in ("actor", "critic")})
    for part in ("actor", "critic"):  # the expert files of a mixture, found from any folder
        if train_cfg[part].get("expert_sources"):
            train_cfg[part] = {**train_cfg[part], "expert_sources": with_app_paths(train_cfg[part]["expert_sources"])}
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

    In ``cfg``: ``device=cuda`` and ``env.sim_device=cuda`` become ``cuda:<LOCAL_RANK>``; ``seed`` (and so the
    env's) becomes ``seed + RANK`` (each rank's envs and action noise differ); ``env.nthread`` (0: all cores) becomes
    the machine's cores divided among its processes, as do torch's threads. The process group is joined (gloo on
    CPU, NCCL on CUDA).
    """
    info = process_info()
    if not info.is_distributed:
        return info, run_dir
    cfg.device = device_for_rank(cfg.device, info)
    cfg.env.sim_device = device_for_rank(cfg.env.sim_device, info, setting="env.sim_device")
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
        raise ValueError(
            f"run folder {run_dir!r} belongs to another run: give a different run_name=... or hydra.run.dir=..."
        ) from None
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
