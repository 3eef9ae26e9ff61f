"""Training curves of a run folder as PNG: mean reward and a tracking metric against env steps and wall time.

python scripts/plot_training.py logs/<exp>/<run> --metric Task/locomotion/lin_vel_error --out curves.png
python scripts/plot_training.py <stage1_run> <stage2_run> ... --out curves.png   # resumed stages, chained
"""

from __future__ import annotations

import argparse
import glob
import os
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def read_scalar(events: EventAccumulator, tag: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(iterations, wall-clock seconds since the first event, values) of ``tag``."""
    scalars = events.Scalars(tag)
    wall = np.array([s.wall_time for s in scalars])
    return np.array([s.step for s in scalars]), wall - wall[0], np.array([s.value for s in scalars])


def read_stages(run_dirs: list[str], tag: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[float]]:
    """``tag`` over the stages of one training (each later run resumed from a checkpoint of the previous):
    (iterations, wall-clock seconds since the start of the first stage, values, wall time at each stage start).
    A stage's events from the iteration its successor resumed at onwards are dropped (the successor redid them)."""
    stages = [read_scalar(load_events(d), tag) for d in run_dirs]
    iterations, wall, values, starts, offset = [], [], [], [], 0.0
    for k, (it, w, v) in enumerate(stages):
        keep = it < stages[k + 1][0][0] if k + 1 < len(stages) else np.ones(len(it), dtype=bool)
        starts.append(offset)
        iterations.append(it[keep])
        wall.append(w[keep] + offset)
        values.append(v[keep])
        offset = wall[-1][-1] if keep.any() else offset
    return np.concatenate(iterations), np.concatenate(wall), np.concatenate(values), starts


def steps_per_iteration(events: EventAccumulator, cfg) -> int:
    """Env steps one iteration collected, over all processes: ``env.num_envs`` (per process) x
    ``runner.num_steps_per_env`` x the number of processes, which rsl_rl's ``Perf/total_fps`` x (collection +
    learning time) gives (a torchrun run's config does not record it)."""
    per_process = cfg.env.num_envs * cfg.runner.num_steps_per_env
    fps = np.array([s.value for s in events.Scalars("Perf/total_fps")])
    seconds = sum(
        np.array([s.value for s in events.Scalars(tag)]) for tag in ("Perf/collection_time", "Perf/learning_time")
    )
    processes = max(1, round(float(np.median(fps * seconds)) / per_process))
    return processes * per_process


def load_events(run_dir: str) -> EventAccumulator:
    files = glob.glob(os.path.join(run_dir, "events.out.tfevents.*"))
    if not files:
        raise SystemExit(f"error: no TensorBoard event file in {run_dir}")
    events = EventAccumulator(files[0], size_guidance={"scalars": 0})
    events.Reload()
    return events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "run_dirs",
        nargs="+",
        help="run folder(s); several: stages of one training, in order "
        "(each resumed from a checkpoint of the previous)",
    )
    parser.add_argument("--metric", action="append", default=[], help="TensorBoard tag(s) to plot besides the reward")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    cfg = OmegaConf.load(os.path.join(args.run_dirs[0], "config.yaml"))
    iteration_steps = steps_per_iteration(load_events(args.run_dirs[0]), cfg)
    tags = ["Train/mean_reward", *args.metric]
    fig, axes = plt.subplots(len(tags), 2, figsize=(10, 2.8 * len(tags)), squeeze=False)
    for row, tag in enumerate(tags):
        iterations, wall, values, starts = read_stages(args.run_dirs, tag)
        env_steps = (iterations + 1) * iteration_steps / 1e6
        axes[row, 0].plot(env_steps, values)
        axes[row, 1].plot(wall / 60.0, values)
        for start in starts[1:]:  # stage boundaries
            axes[row, 1].axvline(start / 60.0, color="grey", lw=0.8, ls="--")
            axes[row, 0].axvline(env_steps[np.searchsorted(wall, start, side="right")], color="grey", lw=0.8, ls="--")
        axes[row, 0].set_ylabel(tag)
        for ax in axes[row]:
            ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("env steps [millions]")
    axes[-1, 1].set_xlabel("wall-clock time [min]")
    names = " -> ".join(os.path.basename(os.path.normpath(d)) for d in args.run_dirs)
    title = f"{cfg.env.name}: {names}" + (" (dashed: stage boundaries)" if len(args.run_dirs) > 1 else "")
    fig.suptitle("\n".join(textwrap.wrap(title, 100)), fontsize=9)
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
