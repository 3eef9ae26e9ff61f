"""Each target metric of the evaluation protocol over a training: evaluate the run's checkpoints, plot them
against env steps and wall-clock time, with the targets.

    python scripts/expert_curves.py logs/combo_go2Piper_locomotion/<run> --every 100
    python scripts/expert_curves.py logs/combo_go2Piper_reaching/<run> --every 50 --out arm_curves.png

The saved checkpoints at multiples of ``--every`` iterations (and the last) are evaluated with
``scripts/evaluate.py``'s protocol (``evaluate.*`` of the run's own config.yaml: fixed seed, no noise), on the
tasks the run's env is evaluated on. Env steps (all processes) and wall-clock time at an iteration (from the start
of iteration 0) are read from the run's TensorBoard events. Writes the PNG (default ``<run>/eval/curves.png``: the
reward, then one row per metric with a target, dashed: the bound) and its figures next to it (``curves.json``).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from evaluate import evaluate_checkpoint  # noqa: E402  (common, imported by it, sets up the process first)
from omegaconf import OmegaConf  # noqa: E402
from plot_training import load_events, read_scalar, steps_per_iteration  # noqa: E402

from legged_gym.utils.evaluation import LOCOMOTION_SECTION, TARGETS  # noqa: E402


def checkpoints(run_dir: str, every: int, up_to: int | None = None) -> list[tuple[int, str]]:
    """``[(iteration, path)]`` of the run's ``model_<iteration>.pt`` files at multiples of ``every``, and the last
    (of those at or before iteration ``up_to``, if given)."""
    found = sorted(
        (int(m.group(1)), path)
        for path in glob.glob(os.path.join(run_dir, "model_*.pt"))
        if (m := re.fullmatch(r"model_(\d+)\.pt", os.path.basename(path)))
        and (up_to is None or int(m.group(1)) <= up_to)
    )
    if not found:
        raise SystemExit(f"error: no model_<iteration>.pt in {run_dir}")
    return [(it, path) for k, (it, path) in enumerate(found) if it % every == 0 or k == len(found) - 1]


def wall_clock(events, tag: str) -> tuple[np.ndarray, np.ndarray]:
    """(iterations of ``tag``'s events, wall-clock seconds at each since the start of iteration 0)."""
    iterations, wall, _ = read_scalar(events, tag)
    first_iteration = sum(read_scalar(events, t)[2][0] for t in ("Perf/collection_time", "Perf/learning_time"))
    return iterations, wall + first_iteration


def evaluate_run(run_dir: str, every: int, num_envs: int | None, up_to: int | None = None) -> list[dict]:
    """``[{"iteration", "env_steps", "wall_s", "results"}]`` for the checkpoints of :func:`checkpoints`."""
    cfg = OmegaConf.load(os.path.join(run_dir, "config.yaml"))
    if num_envs:
        cfg.evaluate.num_envs = num_envs
    events = load_events(run_dir)
    iterations, wall = wall_clock(events, "Perf/total_fps")
    iteration_steps = steps_per_iteration(events, cfg)
    rows = []
    for iteration, path in checkpoints(run_dir, every, up_to):
        cfg.ckpt_path = path
        results = evaluate_checkpoint(cfg)
        done = iterations <= iteration
        rows.append(
            {
                "iteration": iteration,
                "env_steps": (iteration + 1) * iteration_steps,
                "wall_s": float(wall[done][-1]) if done.any() else 0.0,
                "results": results,
            }
        )
        summary = ", ".join(
            f"{key} {section[key]:.3g}"
            for name, section in results.items()
            for key in TARGETS.get(name, {})
            if key in section
        )
        print(f"iteration {iteration}: {summary}", flush=True)
    return rows


def plot(run_dir: str, rows: list[dict], out: str) -> None:
    """Reward (TensorBoard) and each target metric against env steps (left) and wall-clock minutes (right)."""
    base_moves = any(LOCOMOTION_SECTION in row["results"] for row in rows)  # base drift is a target of a standing base
    metrics = [
        (section, key)
        for section, targets in TARGETS.items()
        for key in targets
        if any(key in row["results"].get(section, {}) for row in rows) and not (base_moves and key == "base_drift_m")
    ]
    fig, axes = plt.subplots(len(metrics) + 1, 2, figsize=(10, 2.2 * (len(metrics) + 1)), squeeze=False)
    cfg = OmegaConf.load(os.path.join(run_dir, "config.yaml"))
    events = load_events(run_dir)
    iterations, wall = wall_clock(events, "Train/mean_reward")
    reward = read_scalar(events, "Train/mean_reward")[2]
    steps = (iterations + 1) * steps_per_iteration(events, cfg) / 1e6
    axes[0, 0].plot(steps, reward)
    axes[0, 1].plot(wall / 60.0, reward)
    axes[0, 0].set_ylabel("mean reward")
    env_steps = np.array([row["env_steps"] for row in rows]) / 1e6
    minutes = np.array([row["wall_s"] for row in rows]) / 60.0
    for row_axes, (section, key) in zip(axes[1:], metrics):
        values = np.array([row["results"].get(section, {}).get(key, np.nan) for row in rows], dtype=float)
        op, bound = TARGETS[section][key]
        for ax, x in zip(row_axes, (env_steps, minutes)):
            ax.plot(x, values, marker="o", ms=3)
            ax.axhline(bound, color="grey", ls="--", lw=0.8)
        row_axes[0].set_ylabel(f"{key}\n({section}, {op} {bound:g})", fontsize=8)
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("env steps [millions]")
    axes[-1, 1].set_xlabel("wall-clock time [min]")
    fig.suptitle(f"{cfg.env.name}: {os.path.basename(os.path.normpath(run_dir))} (dashed: targets)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--every", type=int, default=100, help="evaluate checkpoints at multiples of this iteration")
    parser.add_argument(
        "--num-envs", type=int, default=None, help="evaluation envs (default: the run's evaluate.num_envs)"
    )
    parser.add_argument("--up-to", type=int, default=None, help="only checkpoints up to this iteration")
    parser.add_argument("--out", default=None, help="PNG path (default: <run>/eval/curves.png)")
    args = parser.parse_args()
    if args.every < 1:
        raise SystemExit(f"error: --every={args.every}: must be >= 1")
    rows = evaluate_run(args.run_dir, args.every, args.num_envs, args.up_to)
    out = args.out or os.path.join(args.run_dir, "eval", "curves.png")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(os.path.splitext(out)[0] + ".json", "w") as f:
        json.dump(rows, f, indent=1)
    plot(args.run_dir, rows, out)


if __name__ == "__main__":
    sys.exit(main())
