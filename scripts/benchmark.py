"""Throughput figures, measured in one run on this machine (no thresholds asserted here).

    python scripts/benchmark.py                        # env.step vs raw mujoco.batch at N=256,1024; training
    python scripts/benchmark.py --num-envs 1024 --train-iterations 5
    python scripts/benchmark.py --sections moe-diagnostics   # MoE diagnostics overhead (a few minutes)
    python scripts/benchmark.py --sections two-runs          # two trainings at once, per OpenMP wait policy
    python scripts/benchmark.py --sim-device cuda:0          # MuJoCo Warp on a GPU: scripts/benchmark_warp.py

Prints:
- raw ``mujoco.batch`` policy steps/s of the same model (the env's per-env randomised parameters
  included) replaying the env's controls from the same states, alternating with the env every ``--chunk`` steps,
- ``env.step`` env-steps/s and its ratio to the raw rate (target >= 0.90 on 2 cores), under
  ``torch.inference_mode()`` with torch on ``runner.rollout_torch_threads`` threads, as in training
  rollouts, and on torch's default count,
- full training-iteration throughput (collect + learn) with the default train config
  (target >= 12,000 env-steps/s on 2 cores) and the process's peak RSS (target < 4 GB at N=1024);
- ``moe-diagnostics`` (not run by default): train_moe_example iterations with the diagnostics at their
  configured cadence against all of them off (``gate_logging`` and ``diagnostics`` disabled), alternating
  blocks of iterations of the two runners in one process. An iteration's time is rsl_rl's collect + learn
  time plus the logger call (where the per-iteration scalars are computed); learn() start-up and checkpoint
  saving are left out. Reports the overhead A/B and, timed inside the diagnosed runner, the always-on
  statistics (gate-weight recording, moe/* scalars, norm monitoring, selection heatmaps; target <= 1%) and
  the periodic gradient analysis (conflict computations with their heatmaps, amortised; target <= 5%).
  The default 5 blocks of ``conflict_interval`` iterations span one ``image_interval`` (50 iterations), so
  images are amortised as in training (rsl_rl repeats the last iteration number at each learn() call).
  Experts: resources/checkpoints/{base,arm}_expert.pt when present, else two default-size experts trained
  for one iteration into a temp folder (enough for timing: the cost does not depend on their skill).
- ``two-runs`` (not run by default): the training section in a child process alone, then in two child processes
  at once, for each OpenMP wait policy: ``PASSIVE`` (the scripts' default, ``scripts/common.py``) and libgomp's
  own default (the variable unset: the child imports torch before the scripts can set it). Reports each
  child's env-steps/s and its ratio to the lone run of the same policy.

With ``--sim-device cuda:N`` (or ``warp-cpu``: the same code on Warp's CPU device) physics and learner run on that
device and the sections are those of ``scripts/benchmark_warp.py`` (stepping against a bare MuJoCo Warp backend and
the device memory per env, training, ``experts``: the shipped experts evaluated on both backends), with their own
defaults; ``moe-diagnostics`` and ``two-runs`` run as above on the device.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict

import mujoco  # noqa: E402
import mujoco.batch  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import env_config, make_env, make_runner, seed_everything  # first: sets OpenMP's wait policy
from hydra import compose, initialize_config_dir  # noqa: E402

from rsl_rl_moe.runners.threads import torch_threads  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(REPO_ROOT, "config")
SECTIONS = ("stepping", "training", "moe-diagnostics", "two-runs", "experts")
DEFAULTS = {
    "cpu": {"num_envs": [256, 1024], "steps": 200, "repeats": 5, "train_envs": 1024, "train_iterations": 5,
            "sections": ["stepping", "training"]},
    "warp": {"num_envs": [4096, 8192, 16384], "steps": 50, "repeats": 2, "train_envs": 4096, "train_iterations": 3,
             "sections": ["stepping", "training", "experts"]},
}  # fmt: skip
"""Option defaults with ``--sim-device cpu`` and with a Warp device (``cuda:N``, ``warp-cpu``)."""
WAIT_POLICIES = ("PASSIVE", "unset")
"""OpenMP wait policies of the two-runs section: the scripts' default, and libgomp's own (variable unset)."""


def defaults_help(key: str) -> str:
    """``default: <cpu value> (cpu), <Warp value> (Warp device)`` for an option's help."""

    def shown(value) -> str:
        return " ".join(map(str, value)) if isinstance(value, list) else str(value)

    return f"default: {shown(DEFAULTS['cpu'][key])} (cpu), {shown(DEFAULTS['warp'][key])} (Warp device)"


def compose_cfg(overrides: list[str], config_name: str = "train"):
    with initialize_config_dir(config_dir=os.path.abspath(CONFIG_DIR), version_base=None):
        return compose(config_name=config_name, overrides=overrides)


def raw_batch_like(env) -> mujoco.batch.Batch:
    """A fresh ``Batch`` of the env's model with the env's per-env (randomised) model parameters:
    every field the env's batch holds per simulation (friction, trunk mass and the constants
    ``set_const`` derived from it, PD gains) is copied, so both step the same physics."""
    batch = mujoco.batch.Batch(env.robot.model, env.num_envs, nthread=0)
    batch.reset()
    for name in mujoco.batch.MODEL_FIELDS:
        values = env.sim.batch.expanded(name)
        if values is not None:
            batch.expand(name)[:] = values
    return batch


class RawBatch:
    """Bare ``mujoco.batch`` stepping of the env's model with its per-env parameters (:func:`raw_batch_like`),
    ``decimation`` physics steps per policy step: the raw side of :func:`env_and_raw_seconds` on a CPU sim device."""

    def __init__(self, env):
        self.batch = raw_batch_like(env)
        self.ctrl = self.batch.bind("ctrl")
        self.nstep = env.decimation

    @staticmethod
    def state_of(env) -> np.ndarray:
        """A copy of the env simulator's full state rows (N, ...)."""
        return env.sim.batch.state.copy()

    def start_from(self, state: np.ndarray, controls: list[torch.Tensor]) -> list[np.ndarray]:
        """Take ``state`` (:meth:`state_of`); return ``controls`` (N, nu) as :meth:`step` takes them (float64)."""
        self.batch.state[:] = state
        return [control.numpy().astype(np.float64) for control in controls]

    def step(self, control: np.ndarray) -> None:
        self.ctrl[:] = control
        self.batch.step(nstep=self.nstep)


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (a CUDA device; no-op on the CPU): call around timed loops."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def env_and_raw_seconds(env, raw, actions: torch.Tensor, chunk: int) -> tuple[float, float]:
    """Seconds of ``env.step`` over ``actions`` (T, N, A), and of bare stepping of the same physics by ``raw``
    (:class:`RawBatch`, or ``benchmark_warp.RawWarp`` on a Warp sim device).

    The steps run in chunks of ``chunk``: each chunk first runs ``env.step`` (resets, rewards, observations
    included) while the controls it sends to the simulator are recorded; then ``raw`` (a fresh simulator of the
    same model with the env's randomised per-env parameters) starts from the env's state at the start of the chunk
    and replays those controls. Both thus step the same kind of motion (a robot standing still is cheaper to
    simulate than one that moves), and alternating every chunk (a fraction of a second) makes drifts in the
    machine's speed hit both sides alike. On CUDA the device is synchronised around each timed loop.
    """
    env_seconds = raw_seconds = 0.0
    step_fn = env.sim.step
    actions = list(actions.unbind(0))
    controls = []  # what env.step sends to the simulator in the current chunk

    def recording_step(ctrl, nstep):
        controls.append(ctrl.clone())  # one cheap op inside the timed env.step
        step_fn(ctrl, nstep)

    for first in range(0, len(actions), chunk):
        state0 = raw.state_of(env)
        controls.clear()
        env.sim.step = recording_step
        try:
            synchronize(env.device)
            start = time.perf_counter()
            for action in actions[first : first + chunk]:
                env.step(action)
            synchronize(env.device)
            env_seconds += time.perf_counter() - start
        finally:
            env.sim.step = step_fn
        replay = raw.start_from(state0, controls)
        synchronize(env.device)
        start = time.perf_counter()
        for control in replay:
            raw.step(control)
        synchronize(env.device)
        raw_seconds += time.perf_counter() - start
    return env_seconds, raw_seconds


def stepping_seconds(env, raw, args) -> tuple[np.ndarray, np.ndarray]:
    """``(env seconds, raw seconds)``, each (``args.repeats``,), of :func:`env_and_raw_seconds` under
    ``torch.inference_mode()`` (as rsl_rl's rollout loop runs it). Each repeat draws fresh random actions (seed =
    the repeat's index) and runs 10 warm-up env steps before its ``args.steps`` timed ones."""
    seconds = []
    with torch.inference_mode():
        for seed in range(args.repeats):
            gen = torch.Generator().manual_seed(seed)
            actions = 0.3 * torch.randn(args.steps + 10, env.num_envs, env.num_actions, generator=gen)
            actions = actions.to(env.device)
            for action in actions[:10]:
                env.step(action)
            seconds.append(env_and_raw_seconds(env, raw, actions[10:], args.chunk))
    return np.array(seconds).T


def expert_paths(folder: str) -> tuple[dict[str, str], str]:
    """``{"base": path, "arm": path}`` and where they come from: the shipped experts, or default-size experts
    trained for one iteration (64 envs) into ``folder``."""
    shipped = {
        name: os.path.join(REPO_ROOT, "resources", "checkpoints", f"{name}_expert.pt") for name in ("base", "arm")
    }
    if all(os.path.isfile(p) for p in shipped.values()):
        return shipped, "shipped experts resources/checkpoints/{base,arm}_expert.pt"
    paths = {}
    for name, env_name in (("base", "combo_go2Piper_locomotion"), ("arm", "combo_go2Piper_reaching")):
        cfg = compose_cfg([f"env={env_name}", "env.num_envs=64", "env.partner.ckpt_path=null"])
        run_dir = os.path.join(folder, name)
        runner = make_runner(cfg, make_env(env_config(cfg)), log_dir=run_dir)
        runner.learn(1)
        paths[name] = os.path.join(run_dir, "model_0.pt")
    return paths, f"default-size experts trained for 1 iteration into {folder} (no shipped experts found)"


class Stopwatch:
    """Wall time and call count per key, of the callables wrapped with :meth:`wrap`."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def wrap(self, fn, key: str):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[key] += time.perf_counter() - start
                self.calls[key] += 1

        return wrapper


def iteration_clock(runner) -> list[tuple[float, float, float]]:
    """Per-iteration ``(collect, learn, logger)`` seconds of ``runner``: rsl_rl's own collect and learn times, and
    the logger call's."""
    parts = []
    log = runner.logger.log

    def timed_log(*args, collect_time: float, learn_time: float, **kwargs):
        start = time.perf_counter()
        log(*args, collect_time=collect_time, learn_time=learn_time, **kwargs)
        parts.append((collect_time, learn_time, time.perf_counter() - start))

    runner.logger.log = timed_log
    return parts


def instrument_diagnostics(runner) -> Stopwatch:
    """A stopwatch on each diagnostics part of a MoERunner (instance attributes replaced by timed wrappers)."""
    watch = Stopwatch()
    runner.gate_tracker.record = watch.wrap(runner.gate_tracker.record, "gate-weight recording")
    sources = runner.logger.scalar_sources
    sources[sources.index(runner.gate_scalars)] = watch.wrap(runner.gate_scalars, "moe/* scalars")
    diagnostics = runner.diagnostics
    diagnostics._conflicts = watch.wrap(diagnostics._conflicts, "gradient conflict")
    diagnostics._conflict_images = watch.wrap(diagnostics._conflict_images, "cosine heatmaps")
    diagnostics._selection_images = watch.wrap(diagnostics._selection_images, "selection heatmaps")
    diagnostics.update = watch.wrap(diagnostics.update, "diagnostics.update")
    runner.alg.around_update_hooks.append(lambda update: watch.wrap(update, "ppo update")())  # innermost: PPO alone
    return watch


def moe_diagnostics_overhead(args) -> None:
    """Per-iteration time with the diagnostics at their configured cadence against all off (see module doc)."""
    with tempfile.TemporaryDirectory() as folder:
        experts, source = expert_paths(folder)
        common = [f"env.num_envs={args.moe_envs}", "runner.save_interval=1000000",
                  f"runner.alg.actor_critic.base_ckpt_path={experts['base']}",
                  f"runner.alg.actor_critic.arm_ckpt_path={experts['arm']}", *args.overrides]  # fmt: skip
        off = ["runner.gate_logging.enabled=false", "runner.diagnostics.enabled=false"]
        runners = {}
        for name, overrides in (("off", off), ("on", [])):
            cfg = compose_cfg([*common, *overrides], config_name="train_moe_example")
            runners[name] = make_runner(cfg, make_env(env_config(cfg)), log_dir=os.path.join(folder, name))
        cadence = compose_cfg(common, config_name="train_moe_example").runner.diagnostics
        for runner in runners.values():
            runner.learn(1)  # warm-up
        clocks = {name: iteration_clock(runner) for name, runner in runners.items()}
        watch = instrument_diagnostics(runners["on"])
        block = cadence.conflict_interval or 10
        for _ in range(args.moe_blocks):
            for runner in runners.values():
                runner.learn(block)
    iterations = args.moe_blocks * block
    totals = {name: [sum(parts) for parts in clock] for name, clock in clocks.items()}  # seconds per iteration
    mean = {name: statistics.mean(t) for name, t in totals.items()}
    on_total = sum(totals["on"])
    seconds = watch.seconds
    always_on = (seconds["gate-weight recording"] + seconds["moe/* scalars"]
                 + seconds["diagnostics.update"] - seconds["ppo update"] - seconds["gradient conflict"])  # fmt: skip
    conflict = seconds["gradient conflict"]

    def share(value: float) -> str:
        return f"{1000 * value / iterations:6.1f} ms per iteration = {100 * value / on_total:5.2f}%"

    print(f"\n== MoE diagnostics overhead: train_moe_example, N={args.moe_envs}, {iterations} iterations per runner "
          f"in {args.moe_blocks} alternating blocks ==")  # fmt: skip
    print(f"experts: {source}")
    print(f"diagnostics: {dict(cadence)}")
    for name in ("off", "on"):
        print(f"{'all off' if name == 'off' else 'diagnostics on'}: {mean[name]:.3f} s per iteration "
              f"(median {statistics.median(totals[name]):.3f} s)")  # fmt: skip
    median_ratio = statistics.median(totals["on"]) / statistics.median(totals["off"])
    print(
        f"A/B overhead: {100 * (mean['on'] / mean['off'] - 1):+.1f}% (medians {100 * (median_ratio - 1):+.1f}%; "
        f"noise of a few % on a busy machine)"
    )
    print("timed inside the diagnosed runner:")
    print(f"  always-on statistics        {share(always_on)} (target <= 1%)")
    for key in ("gate-weight recording", "moe/* scalars", "selection heatmaps"):
        print(f"    {key:26} {share(seconds[key])}")
    rest = always_on - sum(seconds[key] for key in ("gate-weight recording", "moe/* scalars", "selection heatmaps"))
    print(f"    {'norms, logits, checksums':26} {share(rest)}")
    computations = watch.calls["gradient conflict"]
    print(
        f"  periodic gradient analysis  {share(conflict)} amortised (target <= 5%): "
        f"{computations} computations, {conflict / max(computations, 1):.2f} s each"
    )
    print(f"    {'of which cosine heatmaps':26} {share(seconds['cosine heatmaps'])}")


def stepping_rates(args) -> None:
    """env.step against raw stepping (:func:`stepping_seconds`), with torch on ``runner.rollout_torch_threads``
    threads (as during training rollouts) and on torch's default thread count. Each repeat gives one ratio: raw
    seconds over env seconds, summed over its interleaved chunks (:func:`env_and_raw_seconds`)."""
    print("\n== env.step vs raw mujoco.batch (policy steps of `decimation` physics steps) ==")
    default_threads = torch.get_num_threads()
    print(
        f"({args.repeats} repeats of {args.steps} steps, env and raw alternating every {args.chunk} steps; "
        "medians, ratio range in brackets)"
    )
    print(f"{'N':>6} {'torch threads':>13} {'raw batch steps/s':>18} {'env.step steps/s':>17} {'ratio':>6}  range")
    for n in args.num_envs:
        cfg = compose_cfg([f"env.num_envs={n}", *args.overrides])
        for threads in dict.fromkeys([cfg.runner.rollout_torch_threads or default_threads, default_threads]):
            env = make_env(env_config(cfg))
            with torch_threads(threads):
                env_seconds, raw_seconds = stepping_seconds(env, RawBatch(env), args)
            ratios = raw_seconds / env_seconds
            rate = args.steps * n
            print(
                f"{n:>6} {threads:>13} {np.median(rate / raw_seconds):>18,.0f} {np.median(rate / env_seconds):>17,.0f} "
                f"{np.median(ratios):>6.2f}  [{ratios.min():.2f}, {ratios.max():.2f}]"
            )
            del env


def training_rate(args) -> float:
    """Full training iterations (collect + learn) with the default train config at ``args.train_envs`` envs: one
    warm-up iteration, then ``args.train_iterations`` timed ones. Prints env-steps/s, rsl_rl's collect / learn split
    and the peak RSS; returns the env-steps/s."""
    overrides = [f"env.num_envs={args.train_envs}", *args.overrides]
    print(f"\n== training iteration (collect + learn), default config, N={args.train_envs} ==")
    print(f"overrides: {' '.join(overrides)}")
    cfg = compose_cfg(overrides)
    env = make_env(env_config(cfg))
    runner = make_runner(cfg, env, log_dir=None)
    runner.learn(1)
    clock = iteration_clock(runner)
    synchronize(env.device)
    start = time.perf_counter()
    runner.learn(args.train_iterations)
    synchronize(env.device)
    elapsed = time.perf_counter() - start
    steps = args.train_iterations * cfg.runner.num_steps_per_env * args.train_envs
    collect, learn, _ = np.mean(clock, axis=0)
    peak_rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(
        f"{steps / elapsed:,.0f} env-steps/s over {args.train_iterations} iterations "
        f"({elapsed / args.train_iterations:.2f} s each: collect {collect:.2f} s, learn {learn:.2f} s)"
    )
    print(f"peak RSS of this process: {peak_rss_gb:.2f} GB")
    return steps / elapsed


def training_child(args, policy: str) -> list[str]:
    """Command of a child process running this script's training section under OpenMP wait ``policy``."""
    argv = [
        os.path.abspath(__file__),
        "--sections",
        "training",
        "--train-envs",
        str(args.train_envs),
        "--train-iterations",
        str(args.train_iterations),
        *args.overrides,
    ]
    if policy == "unset":  # torch (and so libgomp) loaded before scripts/common.py could set the variable
        code = (
            f"import os, sys, runpy, torch; sys.argv = {argv!r}; sys.path.insert(0, os.path.dirname(sys.argv[0])); "
            "runpy.run_path(sys.argv[0], run_name='__main__')"
        )
        return [sys.executable, "-c", code]
    return [sys.executable, *argv]


def child_rates(commands: list[list[str]], env: dict) -> list[float]:
    """Start ``commands`` together; the env-steps/s each printed for its training section."""
    processes = [
        subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for c in commands
    ]
    outputs = [p.communicate()[0] for p in processes]
    rates = []
    for output in outputs:
        found = re.search(r"([\d,]+) env-steps/s", output)
        if found is None:
            raise RuntimeError(f"a training child printed no rate:\n{output[-2000:]}")
        rates.append(float(found.group(1).replace(",", "")))
    return rates


def two_runs(args) -> None:
    print(
        f"\n== two trainings at once (N={args.train_envs}, {args.train_iterations} iterations each), per OpenMP wait "
        "policy: env-steps/s of each run, and its ratio to one run alone =="
    )
    print(f"{'OMP_WAIT_POLICY':>16} {'alone':>10} {'run 1 of 2':>12} {'run 2 of 2':>12} {'ratio':>12}")
    for policy in WAIT_POLICIES:
        env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
        if policy != "unset":
            env["OMP_WAIT_POLICY"] = policy
        (alone,) = child_rates([training_child(args, policy)], env)
        pair = child_rates([training_child(args, policy)] * 2, env)
        ratios = ", ".join(f"{rate / alone:.2f}" for rate in pair)
        print(f"{policy:>16} {alone:>10,.0f} {pair[0]:>12,.0f} {pair[1]:>12,.0f} {ratios:>12}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--sim-device",
        default="cpu",
        help="cpu (mujoco.batch), or a MuJoCo Warp device: cuda:N, or warp-cpu (the same code on the CPU, slow): "
        "then scripts/benchmark_warp.py's sections run, physics and learner on that device",
    )
    parser.add_argument("--num-envs", type=int, nargs="+", help=defaults_help("num_envs"))
    parser.add_argument("--steps", type=int, help="policy steps per stepping measurement; " + defaults_help("steps"))
    parser.add_argument("--repeats", type=int, help="env.step / raw measurements per row; " + defaults_help("repeats"))
    parser.add_argument("--chunk", type=int, default=20, help="policy steps between env.step / raw alternations")
    parser.add_argument("--train-envs", type=int, help=defaults_help("train_envs"))
    parser.add_argument(
        "--train-iterations", type=int, help="timed iterations after one warm-up; " + defaults_help("train_iterations")
    )
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, help=defaults_help("sections"))
    parser.add_argument("--moe-envs", type=int, default=512, help="envs of the moe-diagnostics section")
    parser.add_argument(
        "--moe-blocks",
        type=int,
        default=5,
        help="moe-diagnostics: alternating blocks of conflict_interval iterations per runner",
    )
    parser.add_argument("--eval-envs", type=int, default=64, help="envs of each evaluation of the experts section")
    parser.add_argument("overrides", nargs="*", help="hydra overrides, e.g. env=combo_go2Piper_reaching")
    args = parser.parse_args()
    warp = args.sim_device != "cpu"
    for key, value in DEFAULTS["warp" if warp else "cpu"].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if "experts" in args.sections and not warp:
        parser.error("the experts section compares mujoco.batch with MuJoCo Warp: give --sim-device cuda:N or warp-cpu")
    seed_everything(0)
    print(
        f"torch threads {torch.get_num_threads()}, mujoco {mujoco.__version__}, os.cpu_count() {os.cpu_count()}, "
        f"load average {os.getloadavg()[0]:.1f}, OMP_WAIT_POLICY {os.environ.get('OMP_WAIT_POLICY', 'unset')}"
    )
    print("command: " + " ".join(shlex.quote(arg) for arg in ["python", *sys.argv]))
    sections = {
        "stepping": stepping_rates,
        "training": training_rate,
        "moe-diagnostics": moe_diagnostics_overhead,
        "two-runs": two_runs,
    }
    if warp:
        import benchmark_warp  # needs mujoco_warp; imports this file's helpers as the module `benchmark`

        benchmark_warp.describe(args)
        args.overrides = [*benchmark_warp.device_overrides(args.sim_device), *args.overrides]
        sections |= {
            "stepping": benchmark_warp.stepping_rates,
            "training": benchmark_warp.training,
            "experts": benchmark_warp.expert_evaluations,
        }
    for name in SECTIONS:
        if name in args.sections:
            sections[name](args)


if __name__ == "__main__":
    main()
