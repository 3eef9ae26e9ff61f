"""Compare policies on the multi-task env: each expert alone, a fixed 50/50 blend, learned gates, PPO from scratch,
and a privileged task-switch reference (hard routing by the true task id).

    python scripts/compare_moe.py --config-name=train_moe_example \
        +compare.runs='{scalar_gate: .../model_150.pt, per_limb_gate: .../model_150.pt, ppo_scratch: .../model_150.pt}'

Every policy runs the same seeded, noise-free envs (``evaluate.num_envs`` x ``evaluate.duration_s``)
of the config's env (``combo_go2Piper_loco_reach`` for train_moe_example). Fixed blends use the
experts named by ``runner.alg.actor_critic.{base,arm}_ckpt_path``: a = w_base a_base + w_arm a_arm.
A learned policy is rebuilt from the ``config.yaml`` of its own run folder, so its model settings
(per-limb groups, a plain MLP, ...) come with it. Prints return per env-second, per task and
the mean over tasks, and the per-task metrics of :func:`legged_gym.utils.rollout.task_metrics`; writes
``compare.json`` to the current folder (``compare.out``).
"""

from __future__ import annotations

import json
import os
import sys

import common  # noqa: F401  (first: it sets OpenMP's wait policy before torch loads)
import hydra
import numpy as np
import torch
from common import (
    load_configured_experts,
    make_env,
    make_runner,
    quiet_env_config,
    rollout_threads,
    seed_everything,
    user_errors,
)
from omegaconf import DictConfig, OmegaConf
from validation import validate_config

from legged_gym.envs.commands import MOVES_ARM, MOVES_BASE
from legged_gym.envs.legged_robot import LIMB_COLUMNS
from legged_gym.utils.rollout import num_policy_steps, record_rollout, task_metrics

FIXED_BLENDS = {"base_expert_alone": (1.0, 0.0), "arm_expert_alone": (0.0, 1.0), "fixed_50_50": (0.5, 0.5)}
BLEND_SWEEP = {"fixed_75_25": (0.75, 0.25), "fixed_25_75": (0.25, 0.75)}
"""With ``+compare.sweep=true``: more fixed (w_base, w_arm) blends, to see the return between the two experts."""


def configured_experts(cfg: DictConfig, env) -> list:
    """The base and arm experts named by ``runner.alg.actor_critic.{base,arm}_ckpt_path``, in that order."""
    return load_configured_experts(cfg, env, ("base", "arm"))


def fixed_blend(cfg: DictConfig, env, weights: tuple[float, float]):
    """Policy obs -> sum_i w_i * (expert i's action mean), with the configured base and arm experts."""
    experts = configured_experts(cfg, env)
    return lambda obs: sum(w * e.actor(obs) for w, e in zip(weights, experts))


def from_base_expert(task_ids: torch.Tensor, num_actions: int) -> torch.Tensor:
    """``(N, num_actions)`` bool: the action entries the task-switch reference takes from the base expert, for
    envs of ``task_ids`` (N,) (indices into ``legged_gym.envs.commands.TASK_NAMES``), on their device: the legs
    (``LIMB_COLUMNS["legs"]``) where the task moves the base, the arm where it does not move the arm."""
    device = task_ids.device
    legs = torch.zeros(num_actions, dtype=torch.bool, device=device)
    legs[LIMB_COLUMNS["legs"]] = True
    moves_base, moves_arm = MOVES_BASE.to(device)[task_ids], MOVES_ARM.to(device)[task_ids]
    return torch.where(legs, moves_base[:, None], ~moves_arm[:, None])


def task_switch_reference(cfg: DictConfig, env):
    """Privileged reference, not a baseline: hard routing by the env's task id (obs group ``task_id``).
    Locomotion -> base expert; reaching -> arm expert; loco_reach -> legs from the base expert, arm from
    the arm expert (:func:`from_base_expert`). Shows what a gate that recognised the task perfectly would get
    from these experts."""
    base, arm = configured_experts(cfg, env)

    def policy(obs):
        from_base = from_base_expert(obs["task_id"].long().squeeze(-1), env.num_actions)
        return torch.where(from_base, base.actor(obs), arm.actor(obs))

    return policy


def learned(path: str, env):
    """The inference policy of checkpoint ``path``, built from its run folder's config.yaml, on the env's device."""
    run_cfg = OmegaConf.load(os.path.join(os.path.dirname(os.path.abspath(path)), "config.yaml"))
    runner = make_runner(run_cfg, env, log_dir=None, ckpt_path=path)
    runner.load(path)
    return runner.get_inference_policy(device=env.device)


def evaluate(policy, env, duration_s: float) -> dict:
    """Return per env-second by task (the task during each step) and their mean over tasks ("all": the
    tasks weigh equally, so a policy whose falls re-draw tasks does not shift the mix), plus per-task metrics."""
    rewards = []
    arrays = record_rollout(
        env,
        policy,
        num_policy_steps(duration_s, env.dt),
        each_step=lambda _, step: rewards.append(step.rewards.cpu().numpy().copy()),
    )
    rewards = np.stack(rewards)
    per_second = {
        task: float(rewards[arrays["step_task_ids"] == k].mean() / env.dt)
        for k, task in enumerate(env.task_names)
        if (arrays["step_task_ids"] == k).any()
    }
    return {
        "return_per_s": {"all": float(np.mean(list(per_second.values()))), **per_second},
        "metrics": task_metrics(arrays, env.task_names),
    }


@hydra.main(config_path="../config", config_name="train_moe_example", version_base=None)
def main(cfg: DictConfig) -> None:
    with user_errors():
        validate_config(cfg)
        runs = dict(cfg.get("compare", {}).get("runs", {}))
        results = {}
        blends = {**FIXED_BLENDS, **(BLEND_SWEEP if cfg.get("compare", {}).get("sweep", False) else {})}
        candidates = [(name, lambda env, w=w: fixed_blend(cfg, env, w)) for name, w in blends.items()]
        candidates += [("task_switch_reference", lambda env: task_switch_reference(cfg, env))]
        candidates += [(name, lambda env, p=path: learned(p, env)) for name, path in runs.items()]
        for name, build in candidates:
            seed_everything(cfg.evaluate.seed)
            env_cfg = quiet_env_config(cfg, cfg.evaluate.num_envs)
            env_cfg["seed"] = int(cfg.evaluate.seed)
            env = make_env(env_cfg)
            with rollout_threads(cfg):
                results[name] = evaluate(build(env), env, cfg.evaluate.duration_s)
            r = results[name]["return_per_s"]
            print(
                f"{name:<25} return/s all {r['all']:6.3f} | "
                + " | ".join(f"{k} {v:6.3f}" for k, v in r.items() if k != "all"),
                flush=True,
            )
        print(f"\n{'policy':<25}{'task':<12}{'lin vel RMS':>12}{'yaw RMS':>9}{'EE median':>11}{'falls':>6}")
        for name, result in results.items():
            for task, m in result["metrics"].items():
                print(
                    f"{name:<25}{task:<12}{m['lin_vel_rms']:>10.3f}  {m['yaw_rate_rms']:>7.3f}  "
                    f"{m['ee_error_median_cm']:>7.1f}cm{m['falls']:>6}"
                )
        out = cfg.get("compare", {}).get("out", "compare.json")
        with open(out, "w") as f:
            json.dump({"evaluate": OmegaConf.to_container(cfg.evaluate), "runs": runs, "results": results}, f, indent=2)
        print(f"\nwrote {out}")


if __name__ == "__main__":
    sys.argv += ["hydra.output_subdir=null", "hydra.run.dir=.", "hydra/job_logging=disabled"]
    main()
