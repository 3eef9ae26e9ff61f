"""Glue shared by the scripts: hydra config -> env, rsl_rl train config, runner.

The only place (with config/) that knows both ``legged_gym`` and ``rsl_rl_moe``.
"""

from __future__ import annotations

import os
import random
import sys
from contextlib import contextmanager

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from rsl_rl.utils import resolve_callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from legged_gym.utils.sequence_sampler import SequenceFileError  # noqa: E402
from rsl_rl_moe.checkpoint import CheckpointError  # noqa: E402
from rsl_rl_moe.runners import Runner, with_described_experts  # noqa: E402
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
    """Instantiate ``env_cfg["class_name"]`` (any rsl_rl VecEnv taking its config dict)."""
    return resolve_callable(env_cfg["class_name"])(env_cfg)


def make_train_cfg(cfg: DictConfig) -> dict:
    """Translate ``cfg.runner`` (hydra layout: runner.alg.actor_critic.{actor,critic}) to rsl_rl's flat dict.

    Only ``actor_critic.actor`` and ``actor_critic.critic`` become models; other keys of ``actor_critic``
    (e.g. the expert paths of ppo_moe.yaml) are settings the two share through interpolation.
    ``runner.class_name`` and ``runner.max_iterations`` are read by the scripts, not by rsl_rl.
    """
    runner = OmegaConf.to_container(cfg.runner, resolve=True)
    for key in ("class_name", "max_iterations"):
        runner.pop(key)
    alg = runner.pop("alg")
    actor_critic = alg.pop("actor_critic")
    return {
        **runner,
        "algorithm": alg,
        "actor": actor_critic["actor"],
        "critic": actor_critic["critic"],
        "run_name": cfg.run_name,
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


@contextmanager
def user_errors():
    """Turn the errors a user can fix (bad path, bad file, bad size) into a one-line message and exit code 2."""
    try:
        yield
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
