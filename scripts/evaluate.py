"""Evaluation protocol: fixed, seeded, noise-free episodes; prints a table and writes eval/<env>.json.

    python scripts/evaluate.py --config-name=train env=combo_go2Piper_locomotion ckpt_path=.../model_500.pt
    python scripts/evaluate.py --config-name=train env=combo_go2Piper_reaching ckpt_path=.../model_300.pt

Locomotion: velocity tracking (all steps and steady state), falls, gait (airborne share per foot at
|v_cmd| >= 0.5 m/s, stance-foot slip, trunk height). Reaching: end-effector error 1 s after each
target change on sampled targets, then on ``evaluate.sequence_file`` (data/tossing.pkl), and base
drift. Definitions: legged_gym/utils/evaluation.py.

``evaluate.tasks=[loco_reach]`` evaluates only those tasks' episodes; with ``env.partner.ckpt_path=<other expert>``
another expert writes some limbs (``env.partner.limbs``), e.g. the per-limb composition of the two experts:

    python scripts/evaluate.py --config-name=train env=combo_go2Piper_loco_reach 'evaluate.tasks=[loco_reach]' \
        ckpt_path=resources/checkpoints/base_expert.pt env.partner.ckpt_path=resources/checkpoints/arm_expert.pt
"""

from __future__ import annotations

import json
import os
import sys

import common  # noqa: F401  (first: it sets OpenMP's wait policy before torch loads)
import hydra
from common import make_env, make_runner, quiet_env_config, rollout_threads, seed_everything, user_errors
from omegaconf import DictConfig, OmegaConf
from validation import validate_config

from legged_gym.envs.commands import LOCOMOTION, REACHING, TASK_NAMES, TASKS_MOVING_ARM, TASKS_MOVING_BASE
from legged_gym.utils.evaluation import (
    LOCOMOTION_SECTION,
    REACHING_SAMPLED_SECTION,
    REACHING_SEQUENCE_SECTION,
    TARGETS,
    locomotion_metrics,
    reaching_metrics,
    target_verdicts,
)
from legged_gym.utils.rollout import num_policy_steps, record_rollout
from rsl_rl_moe.checkpoint import CheckpointError


def rollout(cfg: DictConfig, env_cfg: dict) -> tuple[dict, object]:
    """Run the checkpoint's policy (on the env's device) for ``evaluate.duration_s`` in a fresh env; returns
    (arrays, env)."""
    env_cfg["seed"] = int(cfg.evaluate.seed)
    seed_everything(cfg.evaluate.seed)
    env = make_env(env_cfg)
    runner = make_runner(cfg, env, log_dir=None, ckpt_path=cfg.ckpt_path)
    runner.load(cfg.ckpt_path)
    with rollout_threads(cfg):
        policy = runner.get_inference_policy(device=env.device)
        arrays = record_rollout(env, policy, num_policy_steps(cfg.evaluate.duration_s, env.dt))
    return arrays, env


def evaluated_task_probabilities(cfg: DictConfig) -> dict[str, float]:
    """``{task: probability}`` of the evaluation's episodes: equal among ``evaluate.tasks`` (by default the env's
    ``evaluation_tasks``), or the env's own task mix when that is null."""
    probabilities = {task: float(cfg.env.tasks.probabilities.get(task, 0.0)) for task in TASK_NAMES}
    tasks = cfg.evaluate.get("tasks")
    if not tasks:
        return probabilities
    if isinstance(tasks, str) or sorted(set(tasks) - set(TASK_NAMES)):
        raise ValueError(
            f"evaluate.tasks={tasks}: must be a list of task names among {list(TASK_NAMES)}, "
            "e.g. 'evaluate.tasks=[loco_reach]'"
        )
    return {task: float(task in tasks) for task in TASK_NAMES}


def evaluation_env_config(cfg: DictConfig, probabilities: dict[str, float]) -> dict:
    """The quiet env config of the evaluation (:func:`common.quiet_env_config`) with its task probabilities."""
    env_cfg = quiet_env_config(cfg, cfg.evaluate.num_envs)
    env_cfg["tasks"]["probabilities"] = dict(probabilities)
    return env_cfg


def moves_base(probabilities: dict[str, float]) -> bool:
    """Some evaluated episodes command base velocities (:data:`TASKS_MOVING_BASE`): the locomotion section."""
    return any(probabilities.get(task, 0.0) > 0 for task in TASKS_MOVING_BASE)


def moves_arm(probabilities: dict[str, float]) -> bool:
    """Some evaluated episodes command end-effector targets (:data:`TASKS_MOVING_ARM`): the reaching sections."""
    return any(probabilities.get(task, 0.0) > 0 for task in TASKS_MOVING_ARM)


def partner_acts(cfg: DictConfig) -> bool:
    """A partner is configured (``env.partner.ckpt_path``) and drives some of the evaluated tasks' episodes."""
    partner = cfg.env.get("partner")
    probabilities = evaluated_task_probabilities(cfg)
    return bool(partner and partner.ckpt_path and any(probabilities.get(task, 0.0) > 0 for task in partner.tasks))


def result_name(cfg: DictConfig) -> str:
    """``<env name>[_<evaluated tasks>][_partner_<limbs>]``: the name of the JSON file of the results (tasks named
    when they are not the env's ``evaluation_tasks``, the partner only where it acts)."""
    name = cfg.env.name
    tasks = cfg.evaluate.get("tasks")
    if tasks and list(tasks) != list(cfg.env.get("evaluation_tasks") or []):
        name += "_" + "_".join(tasks)
    if partner_acts(cfg):
        name += f"_partner_{cfg.env.partner.limbs}"
    return name


def verdicts(cfg: DictConfig, section: str, metrics: dict) -> dict[str, bool]:
    """The targets met by ``metrics`` (:func:`target_verdicts`); base drift only where the base stands (no
    episodes of a task that moves the base evaluated)."""
    met = target_verdicts(section, metrics)
    if moves_base(evaluated_task_probabilities(cfg)):
        met.pop("base_drift_m", None)
    return met


def print_table(title: str, metrics: dict, verdicts: dict[str, bool]) -> None:
    """One line per metric; a metric with a target (legged_gym.utils.evaluation.TARGETS) ends in ``meets`` / ``MISSES``
    and the bound."""
    print(f"\n{title}")
    for key, value in metrics.items():
        shown = f"{value:.4g}" if isinstance(value, float) else f"{value}"
        verdict = ""
        if key in verdicts:
            op, bound = TARGETS[title.split()[0]][key]
            verdict = f"  {'meets' if verdicts[key] else 'MISSES'} {op} {bound:g}"
        print(f"  {key:<28} {shown}{verdict}")


def evaluate_checkpoint(cfg: DictConfig) -> dict[str, dict]:
    """Run the protocol on ``cfg.ckpt_path``: ``{"locomotion" | "reaching_sampled" | "reaching_sequence": metrics}``,
    the sections the evaluated tasks call for."""
    ev = cfg.evaluate
    results = {}
    probabilities = evaluated_task_probabilities(cfg)
    if moves_base(probabilities):
        env_cfg = evaluation_env_config(cfg, probabilities)
        env_cfg["tasks"][LOCOMOTION]["resampling_time_s"] = float(ev.command_resampling_s)
        arrays, env = rollout(cfg, env_cfg)
        results[LOCOMOTION_SECTION] = locomotion_metrics(
            arrays, env.dt, env.reward_cfg["base_height_target"], ev.settle_s, ev.fast_speed
        )
    if moves_arm(probabilities):
        arrays, env = rollout(cfg, evaluation_env_config(cfg, probabilities))
        results[REACHING_SAMPLED_SECTION] = reaching_metrics(arrays, env.dt, ev.settle_s)
        if ev.sequence_file:
            env_cfg = evaluation_env_config(cfg, probabilities)
            env_cfg["tasks"][REACHING]["sequence_sampler"]["file_path"] = ev.sequence_file
            arrays, env = rollout(cfg, env_cfg)
            results[REACHING_SEQUENCE_SECTION] = reaching_metrics(arrays, env.dt, ev.settle_s)
    return results


@hydra.main(config_path="../config", config_name="train", version_base=None)
def main(cfg: DictConfig) -> None:
    with user_errors():
        validate_config(cfg)
        if not cfg.ckpt_path:
            raise CheckpointError("evaluate needs a policy: add ckpt_path=<path to model_N.pt>")
        ev = cfg.evaluate
        results = evaluate_checkpoint(cfg)
        met = {title: verdicts(cfg, title, metrics) for title, metrics in results.items()}
        for title, metrics in results.items():
            print_table(f"{title} ({ev.num_envs} envs x {ev.duration_s} s, seed {ev.seed})", metrics, met[title])
        out_dir = os.path.join(os.path.dirname(os.path.abspath(cfg.ckpt_path)), "eval")
        os.makedirs(out_dir, exist_ok=True)
        out_path = os.path.join(out_dir, f"{result_name(cfg)}.json")
        with open(out_path, "w") as f:
            partner = OmegaConf.to_container(cfg.env.partner) if partner_acts(cfg) else None
            json.dump(
                {
                    "ckpt_path": cfg.ckpt_path,
                    "partner": partner,
                    "evaluate": OmegaConf.to_container(ev, resolve=True),
                    "results": results,
                    "targets_met": met,
                },
                f,
                indent=2,
            )
        print(f"\nwrote {out_path}")


if __name__ == "__main__":
    sys.argv += ["hydra.output_subdir=null", "hydra.run.dir=.", "hydra/job_logging=disabled"]
    main()
