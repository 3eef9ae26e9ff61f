"""Throughput figures, measured in one run on this machine (no thresholds asserted here).

    python scripts/benchmark.py                        # env.step vs raw mujoco.batch at N=256,1024; training
    python scripts/benchmark.py --num-envs 1024 --train-iterations 5

Prints:
- raw ``mujoco.batch`` policy steps/s of the same model replaying the env's controls,
- ``env.step`` env-steps/s and its ratio to the raw rate (target >= 0.90 on 2 cores),
- full training-iteration throughput (collect + learn) with the default train config
  (target >= 12,000 env-steps/s on 2 cores) and the process's peak RSS (target < 4 GB at N=1024).
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import mujoco
import mujoco.batch
import numpy as np
import torch
from hydra import compose, initialize_config_dir

from common import env_config, make_env, make_runner, seed_everything

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "config")


def compose_cfg(overrides: list[str]):
    with initialize_config_dir(config_dir=os.path.abspath(CONFIG_DIR), version_base=None):
        return compose(config_name="train", overrides=overrides)


def env_and_raw_rates(env, steps: int) -> tuple[float, float]:
    """env-steps/s of ``env.step`` and of bare ``mujoco.batch`` replaying the same controls.

    ``env.step`` runs with small random actions (resets, rewards, observations included) while
    the controls it sends to the simulator are recorded; a fresh ``Batch`` of the nominal model
    then starts from the same initial states and replays those controls, so both step the same
    kind of motion (a robot standing still is cheaper to simulate than one that moves).
    """
    gen = torch.Generator().manual_seed(0)
    actions = 0.3 * torch.randn(steps + 10, env.num_envs, env.num_actions, generator=gen)
    for k in range(10):
        env.step(actions[k])
    qpos0, qvel0 = env.sim.qpos.double().numpy().copy(), env.sim.qvel.double().numpy().copy()
    controls = []
    step_fn = env.sim.step

    def recording_step(ctrl, nstep):
        controls.append(ctrl.numpy().astype(np.float64))
        step_fn(ctrl, nstep)

    env.sim.step = recording_step
    start = time.perf_counter()
    for k in range(10, steps + 10):
        env.step(actions[k])
    env_rate = steps * env.num_envs / (time.perf_counter() - start)
    env.sim.step = step_fn

    batch = mujoco.batch.Batch(env.robot.model, env.num_envs, nthread=0)
    batch.reset()
    batch.bind("qpos")[:] = qpos0
    batch.bind("qvel")[:] = qvel0
    batch.forward()
    ctrl = batch.bind("ctrl")
    start = time.perf_counter()
    for control in controls:
        ctrl[:] = control
        batch.step(nstep=env.decimation)
    raw_rate = steps * env.num_envs / (time.perf_counter() - start)
    return env_rate, raw_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-envs", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--steps", type=int, default=200, help="policy steps per stepping measurement")
    parser.add_argument("--train-envs", type=int, default=1024)
    parser.add_argument("--train-iterations", type=int, default=5, help="timed iterations after one warm-up")
    parser.add_argument("overrides", nargs="*", help="hydra overrides, e.g. env=combo_go2Piper_reaching")
    args = parser.parse_args()
    seed_everything(0)
    print(f"torch threads {torch.get_num_threads()}, mujoco {mujoco.__version__}")

    print("\n== env.step vs raw mujoco.batch (policy steps of `decimation` physics steps) ==")
    print(f"{'N':>6} {'raw batch steps/s':>18} {'env.step steps/s':>17} {'ratio':>6}")
    for n in args.num_envs:
        cfg = compose_cfg([f"env.num_envs={n}", *args.overrides])
        env = make_env(env_config(cfg))
        stepped, raw = env_and_raw_rates(env, args.steps)
        print(f"{n:>6} {raw:>18,.0f} {stepped:>17,.0f} {stepped / raw:>6.2f}")
        del env

    print(f"\n== training iteration (collect + learn), default config, N={args.train_envs} ==")
    cfg = compose_cfg([f"env.num_envs={args.train_envs}", *args.overrides])
    env = make_env(env_config(cfg))
    runner = make_runner(cfg, env, log_dir=None)
    runner.learn(1)
    start = time.perf_counter()
    runner.learn(args.train_iterations)
    elapsed = time.perf_counter() - start
    steps = args.train_iterations * cfg.runner.num_steps_per_env * args.train_envs
    peak_rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"{steps / elapsed:,.0f} env-steps/s over {args.train_iterations} iterations ({elapsed / args.train_iterations:.2f} s each)")
    print(f"peak RSS of this process: {peak_rss_gb:.2f} GB")


if __name__ == "__main__":
    main()
