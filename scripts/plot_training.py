"""Training curves of a run folder as PNG: mean reward and a tracking metric against env steps and wall time.

    python scripts/plot_training.py logs/<exp>/<run> --metric Task/locomotion/lin_vel_error --out curves.png
"""

from __future__ import annotations

import argparse
import glob
import os

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--metric", action="append", default=[], help="TensorBoard tag(s) to plot besides the reward")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    files = glob.glob(os.path.join(args.run_dir, "events.out.tfevents.*"))
    if not files:
        raise SystemExit(f"error: no TensorBoard event file in {args.run_dir}")
    events = EventAccumulator(files[0], size_guidance={"scalars": 0})
    events.Reload()
    cfg = OmegaConf.load(os.path.join(args.run_dir, "config.yaml"))
    steps_per_iteration = cfg.env.num_envs * cfg.runner.num_steps_per_env
    tags = ["Train/mean_reward", *args.metric]
    fig, axes = plt.subplots(len(tags), 2, figsize=(10, 2.8 * len(tags)), squeeze=False)
    for row, tag in enumerate(tags):
        iterations, wall, values = read_scalar(events, tag)
        axes[row, 0].plot((iterations + 1) * steps_per_iteration / 1e6, values)
        axes[row, 1].plot(wall / 60.0, values)
        axes[row, 0].set_ylabel(tag)
        for ax in axes[row]:
            ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("env steps [millions]")
    axes[-1, 1].set_xlabel("wall-clock time [min]")
    fig.suptitle(f"{cfg.env.name}: {os.path.basename(os.path.normpath(args.run_dir))}")
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
