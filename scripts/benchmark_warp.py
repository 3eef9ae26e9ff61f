"""GPU figures of the MuJoCo Warp backend: the sections of ``scripts/benchmark.py --sim-device cuda:N``.

    python scripts/benchmark.py --sim-device cuda:0      # all blocks, ~6 minutes on one H200 (warm kernel cache)
    python scripts/benchmark.py --sim-device warp-cpu --num-envs 8 --steps 5 --repeats 1 --train-envs 16 \\
        --train-iterations 1 --eval-envs 2 evaluate.duration_s=1   # the same code on Warp's CPU device (minutes)

Prints, each block headed by the settings that produced it and ended by a summary line:

- ``stepping``: at each N of ``--num-envs`` (default 4096 8192 16384), ``env.step`` with random actions under
  ``torch.inference_mode()`` against a bare :class:`~legged_gym.sim.mujoco_warp.MujocoWarpBackend` of the same
  model and N with the env's per-env friction, added mass and PD gains, stepping ``decimation`` physics steps per
  policy step, alternating every ``--chunk`` steps and replaying the env's controls from its states
  (``benchmark.env_and_raw_seconds``): policy steps/s and env-steps/s of each and their ratio (target >= 0.8).
  Then the device memory per env: the device memory in use (``torch.cuda.mem_get_info``, which sees Warp's
  allocations; torch's allocator alone does not) added by building the env, over N [KiB/env] ("n/a (CPU)" on
  Warp's CPU device). The first size also carries one-off costs (Warp's kernel modules): the summary gives the
  marginal figure between the smallest and the largest N too.
- ``training``: full training iterations (collect + learn) with the default train config, physics and learner on
  the device, at ``--train-envs`` envs (default 4096): env-steps/s and rsl_rl's collect / learn split (goal on
  one H200: >= 300,000 env-steps/s).
- ``experts``: the shipped experts (resources/checkpoints/{base,arm}_expert.pt) through scripts/evaluate.py's
  protocol at ``--eval-envs`` envs (default 64) on ``mujoco.batch`` (float64, CPU) and on the Warp device
  (float32), key metrics side by side: locomotion steady-state planar and yaw-rate RMS errors and falls; reaching
  median end-effector error, share within 5 cm, base drift and falls. Do they still walk in float32?

Warp compiles its kernels on first use (minutes for a cold cache) into its kernel cache (``WARP_CACHE_PATH``, or
Warp's default, shared with training); every timed loop runs after a warm-up, with the device synchronised around
it.
"""

from __future__ import annotations

import contextlib
import gc
import io
import os
import time
from importlib.metadata import version

import numpy as np
import torch
import warp as wp
from benchmark import REPO_ROOT, compose_cfg, stepping_seconds, training_rate
from common import env_config, make_env
from evaluate import evaluate_checkpoint, verdicts
from validation import validate_config

from legged_gym.sim import make_backend
from legged_gym.utils.evaluation import (
    LOCOMOTION_SECTION,
    REACHING_SAMPLED_SECTION,
    REACHING_SEQUENCE_SECTION,
)

wp.config.log_level = wp.LOG_WARNING  # no line per kernel module loaded
STEPPING_TARGET = 0.8
"""Target of env.step's rate over the bare backend's."""
TRAINING_GOAL = 300_000
"""[env-steps/s] goal of training on one H200 at the default GPU config."""
EXPERTS = (("base_expert.pt", "combo_go2Piper_locomotion"), ("arm_expert.pt", "combo_go2Piper_reaching"))
"""The shipped experts (in resources/checkpoints/) and the env each is evaluated on."""
REACHING_KEYS = ("ee_error_median_cm", "reached_share", "base_drift_m", "falls")
KEY_METRICS = {
    LOCOMOTION_SECTION: ("lin_vel_rms_steady_mps", "yaw_rate_rms_steady_radps", "falls"),
    REACHING_SAMPLED_SECTION: REACHING_KEYS,
    REACHING_SEQUENCE_SECTION: REACHING_KEYS,
}
"""Metrics shown per evaluation section (legged_gym.utils.evaluation; ``reached_share``: within 5 cm)."""


def torch_device(sim_device: str) -> torch.device:
    """The torch device of a Warp sim device: ``cuda:N``, or the CPU for ``warp-cpu``."""
    return torch.device("cpu" if sim_device == "warp-cpu" else sim_device)


def device_overrides(sim_device: str) -> list[str]:
    """Hydra overrides that put the physics (``env.sim_device``) and the learner (``device``) on ``sim_device``."""
    return [f"env.sim_device={sim_device}", f"device={torch_device(sim_device)}"]


def used_memory(device: torch.device) -> int | None:
    """[bytes] in use on CUDA ``device`` by every allocator and process (``torch.cuda.mem_get_info``), after the
    queued work and a release of what torch caches and Python no longer references; None on the CPU."""
    if device.type != "cuda":
        return None
    gc.collect()
    torch.cuda.synchronize(device)  # also lets Warp's memory pool return freed blocks (release threshold 0)
    torch.cuda.empty_cache()
    free, total = torch.cuda.mem_get_info(device)
    return total - free


class RawWarp:
    """Bare :class:`MujocoWarpBackend` stepping of the env's model and N with the env's per-env friction, added
    trunk mass and PD gains (through the backend's setters), ``decimation`` physics steps per policy step: the raw
    side of ``benchmark.env_and_raw_seconds`` on a Warp sim device. Construction runs one step, so that the step's
    CUDA graph is captured before any timing."""

    def __init__(self, env, sim_device: str):
        self.sim = make_backend(env.robot.model, env.num_envs, sim_device)
        self.ids = torch.arange(env.num_envs, device=env.device)
        self.sim.set_friction(self.ids, env.friction)
        self.sim.set_added_mass(self.ids, env.added_mass)
        self.sim.set_actuator_gains(self.ids, env.kp, env.kd)
        self.nstep = env.decimation
        self.step(env.sim.qpos[:, 7:].clone())

    @staticmethod
    def state_of(env) -> tuple[torch.Tensor, torch.Tensor]:
        """Copies of the env simulator's ``(qpos, qvel)``."""
        return env.sim.qpos.clone(), env.sim.qvel.clone()

    def start_from(self, state: tuple[torch.Tensor, torch.Tensor], controls: list[torch.Tensor]) -> list[torch.Tensor]:
        """Reset every world to ``state`` (:meth:`state_of`); ``controls`` are stepped as they are."""
        qpos, qvel = state
        self.sim.reset(self.ids, qpos, qvel, qpos[:, 7:])
        return controls

    def step(self, control: torch.Tensor) -> None:
        self.sim.step(control, self.nstep)


def describe(args) -> None:
    """One line: the device, the versions and the kernel cache."""
    device = torch_device(args.sim_device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "Warp's CPU device (slow: a code-path test)"
    cache = os.environ.get("WARP_CACHE_PATH", "unset (Warp's default)")
    print(
        f"sim device {args.sim_device}: {name}; torch {torch.__version__}, warp {wp.__version__}, "
        f"mujoco_warp {version('mujoco-warp')}, WARP_CACHE_PATH {cache}"
    )


def stepping_rates(args) -> None:
    """env.step against the bare backend at each ``args.num_envs`` (policy steps/s, env-steps/s, ratio), then the
    device memory per env (see the module doc)."""
    device = torch_device(args.sim_device)
    print(f"\n== env.step vs bare MujocoWarpBackend on {args.sim_device} (policy steps of `decimation` substeps) ==")
    print(
        f"(steps/s: policy steps of all N envs per second, env-steps/s: times N; {args.repeats} repeats of "
        f"{args.steps} steps after 10 warm-up ones, env and bare alternating every "
        f"{args.chunk} steps; medians, ratio range in brackets; overrides: {' '.join(args.overrides)}; the first "
        "build loads or compiles Warp's kernels: minutes on a cold cache)"
    )
    print(
        f"{'N':>6} {'bare steps/s':>12} {'bare env-steps/s':>16} {'env steps/s':>11} {'env env-steps/s':>15} "
        f"{'ratio':>6}  {'range':<14}{'build [s]':>9}"
    )
    ratios, memory = {}, {}
    for n in args.num_envs:
        cfg = compose_cfg([f"env.num_envs={n}", *args.overrides])
        before = used_memory(device)
        start = time.perf_counter()
        env = make_env(env_config(cfg))
        built = time.perf_counter() - start
        after = used_memory(device)
        memory[n] = None if after is None else after - before
        env_seconds, raw_seconds = stepping_seconds(env, RawWarp(env, args.sim_device), args)
        ratio = raw_seconds / env_seconds
        ratios[n] = np.median(ratio)
        raw_rate, env_rate = np.median(args.steps / raw_seconds), np.median(args.steps / env_seconds)
        spread = f"[{ratio.min():.2f}, {ratio.max():.2f}]"
        print(
            f"{n:>6} {raw_rate:>12,.1f} {raw_rate * n:>16,.0f} {env_rate:>11,.1f} {env_rate * n:>15,.0f} "
            f"{ratios[n]:>6.2f}  {spread:<14}{built:>9.1f}",
            flush=True,
        )
        del env
    met = "met" if min(ratios.values()) >= STEPPING_TARGET else "MISSED"
    shown = ", ".join(f"{ratio:.2f} (N={n})" for n, ratio in ratios.items())
    print(f"summary: env.step / bare Warp stepping {shown}; target >= {STEPPING_TARGET}: {met}")
    memory_per_env(args.sim_device, memory)


def memory_per_env(sim_device: str, memory: dict[int, int | None]) -> None:
    """Print the device memory each env's construction added (``memory``: N -> bytes, None on the CPU)."""
    print(f"\n== device memory per env on {sim_device}: in use after building the env minus before, over N ==")
    if None in memory.values():
        print("n/a (CPU)")
        return
    print(f"{'N':>6} {'env [GiB]':>10} {'per env [KiB]':>14}")
    for n, used in memory.items():
        print(f"{n:>6} {used / 2**30:>10.2f} {used / n / 2**10:>14.1f}")
    small, large = min(memory), max(memory)
    summary = f"summary: {memory[large] / large / 2**10:.1f} KiB per env at N={large}"
    if large > small:
        marginal = (memory[large] - memory[small]) / (large - small)
        summary += f"; marginal (N={small} -> {large}): {marginal / 2**10:.1f} KiB per env"
    print(summary)


def training(args) -> None:
    """``benchmark.training_rate`` on the device, with its summary against :data:`TRAINING_GOAL`."""
    rate = training_rate(args)
    print(f"summary: {rate:,.0f} env-steps/s at N={args.train_envs} (goal on one H200: >= {TRAINING_GOAL:,})")


def expert_evaluations(args) -> None:
    """Each shipped expert through scripts/evaluate.py's protocol on mujoco.batch and on the Warp device; the key
    metrics side by side and, in the summary, the targets each device meets (see the module doc)."""
    devices = ("cpu", args.sim_device)
    print(f"\n== shipped experts on mujoco.batch (float64, cpu) vs MuJoCo Warp (float32, {args.sim_device}) ==")
    met = dict.fromkeys(devices, 0)
    targets = 0
    for ckpt, env_name in EXPERTS:
        path = os.path.join(REPO_ROOT, "resources", "checkpoints", ckpt)
        user = [o for o in args.overrides if o not in device_overrides(args.sim_device)]  # main prepends those
        common = [f"env={env_name}", f"ckpt_path={path}", f"evaluate.num_envs={args.eval_envs}", *user]
        results, cfgs = {}, {}
        for device in devices:
            cfgs[device] = compose_cfg([*common, *device_overrides(device)])
            validate_config(cfgs[device])
            with contextlib.redirect_stdout(io.StringIO()):  # rsl_rl prints the models it builds
                results[device] = evaluate_checkpoint(cfgs[device])
        ev = cfgs["cpu"].evaluate
        print(f"\n{ckpt} on {env_name}: {ev.num_envs} envs x {ev.duration_s} s, seed {ev.seed}, as")
        for device in devices:
            print(f"  python scripts/evaluate.py --config-name=train {' '.join([*common, *device_overrides(device)])}")
        print(f"  {'section':<18} {'metric':<26} {'cpu':>10} {args.sim_device:>10}")
        for section, metrics in results["cpu"].items():
            for key in KEY_METRICS[section]:
                values = (f"{results[device][section][key]:>10.4g}" for device in devices)
                print(f"  {section:<18} {key:<26} {' '.join(values)}")
            for device in devices:
                met[device] += sum(verdicts(cfgs[device], section, results[device][section]).values())
            targets += len(verdicts(cfgs["cpu"], section, metrics))
    shown = ", ".join(f"{device} {met[device]}/{targets}" for device in devices)
    print(f"summary: targets met (scripts/evaluate.py's, all sections): {shown}")
