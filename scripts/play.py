"""Run a trained policy without noise or randomisation; print task metrics, save plots, export.

    python scripts/play.py --config-name=train env=combo_go2Piper_locomotion ckpt_path=logs/.../model_500.pt
    python scripts/play.py --config-name=train_moe_example ckpt_path=logs/.../model_150.pt
    python scripts/play.py ... play.num_envs=16 play.duration_s=30 play.video=true

Writes next to the checkpoint: ``play/`` (PNG plots, metrics.json, video.mp4 when play.video=true)
and ``exported/`` (policy.pt TorchScript, policy.onnx) when play.export=true.
A mixture-of-experts policy also gets ``play/expert_weights.png``: env 0's gate weights over time,
its task shaded, its command changes marked; the same plot is drawn next to the robot in the
video, and in a live window when a display is present (``play.live_plot``).
"""

from __future__ import annotations

import json
import logging
import os
import sys

if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
    os.environ["MUJOCO_GL"] = "egl"  # headless: offscreen rendering for play.video (read when mujoco is imported)

import common  # noqa: F401  (first: it sets OpenMP's wait policy before torch loads)
import hydra  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import make_env, make_runner, quiet_env_config, seed_everything, user_errors  # noqa: E402
from omegaconf import DictConfig  # noqa: E402
from validation import validate_config  # noqa: E402

from legged_gym.utils.plotting import plot_tracking  # noqa: E402
from legged_gym.utils.rollout import (  # noqa: E402
    num_policy_steps,
    record_rollout,
    task_metrics,  # noqa: E402
)
from rsl_rl_moe.checkpoint import CheckpointError  # noqa: E402
from rsl_rl_moe.diagnostics import GateTimeline, open_live_figure  # noqa: E402
from rsl_rl_moe.modules import MoEActor  # noqa: E402

EXPORT_TOLERANCE = 1e-4
"""Largest |exported - PyTorch| action difference accepted by the export check (float32 rounding is ~1e-6)."""


def export_policy(runner, obs, out_dir: str) -> None:
    """TorchScript + ONNX export of the whole policy (a MoE's gate, experts and blend included), checked
    against PyTorch on ``obs`` (ONNX: batch size 1, row by row), all on the CPU, where the exported files run
    (the runner's policy moves there).

    The exported input is the policy's observation groups concatenated: ``input_groups`` for a MoE actor
    (its groups, then any other group an expert reads), ``obs_groups`` for an rsl_rl model.
    """
    for name in ("onnxscript", "onnx_ir", "torch.onnx"):
        logging.getLogger(name).setLevel(logging.WARNING)
    runner.export_policy_to_jit(out_dir, "policy.pt")
    runner.export_policy_to_onnx(out_dir, "policy.onnx")
    policy = runner.get_inference_policy(device="cpu")
    obs = obs.cpu()
    input_groups = policy.input_groups if isinstance(policy, MoEActor) else policy.obs_groups
    actor_obs = torch.cat([obs[g] for g in input_groups], dim=-1)
    with torch.inference_mode():
        reference = policy(obs).numpy()
    jit_out = torch.jit.load(os.path.join(out_dir, "policy.pt"))(actor_obs).detach().numpy()
    import onnxruntime

    session = onnxruntime.InferenceSession(os.path.join(out_dir, "policy.onnx"))
    input_name = session.get_inputs()[0].name
    onnx_out = np.concatenate([session.run(None, {input_name: row[None]})[0] for row in actor_obs.numpy()])
    jit_error, onnx_error = np.abs(jit_out - reference).max(), np.abs(onnx_out - reference).max()
    print(
        f"exported to {out_dir}: max |TorchScript - PyTorch| = {jit_error:.2e}, max |ONNX - PyTorch| = {onnx_error:.2e}"
    )
    if not (np.isfinite(reference).all() and max(jit_error, onnx_error) <= EXPORT_TOLERANCE):  # NaN fails too
        raise ValueError(
            f"the exported policies in {out_dir} do not reproduce PyTorch's actions within {EXPORT_TOLERANCE} "
            f"(TorchScript {jit_error:.2e}, ONNX {onnx_error:.2e}); do not deploy them"
        )


def save_plots(arrays: dict[str, np.ndarray], dt: float, out_dir: str, env_index: int = 0) -> None:
    time_s = np.arange(len(arrays["velocity"])) * dt
    plot_tracking(
        time_s,
        arrays["velocity_cmd"][:, env_index],
        arrays["velocity"][:, env_index],
        ["vx [m/s]", "vy [m/s]", "yaw rate [rad/s]"],
        f"base velocity, env {env_index}",
        os.path.join(out_dir, "velocity_tracking.png"),
    )
    plot_tracking(
        time_s,
        arrays["ee_target"][:, env_index],
        arrays["ee_pos"][:, env_index],
        ["x [m]", "y [m]", "z [m]"],
        f"end-effector position (base-yaw frame), env {env_index}",
        os.path.join(out_dir, "ee_tracking.png"),
    )


@hydra.main(config_path="../config", config_name="train", version_base=None)
def main(cfg: DictConfig) -> None:
    with user_errors():
        validate_config(cfg)
        if not cfg.ckpt_path:
            raise CheckpointError("play needs a policy: add ckpt_path=<path to model_N.pt>")
        seed_everything(cfg.seed)
        env = make_env(quiet_env_config(cfg, cfg.play.num_envs))
        runner = make_runner(cfg, env, log_dir=None, ckpt_path=cfg.ckpt_path)
        runner.load(cfg.ckpt_path)
        policy = runner.get_inference_policy(device=env.device)
        run_dir = os.path.dirname(os.path.abspath(cfg.ckpt_path))
        out_dir = os.path.join(run_dir, "play")
        os.makedirs(out_dir, exist_ok=True)

        recorder = None
        if cfg.play.video:
            from legged_gym.utils.video import VideoRecorder

            recorder = VideoRecorder(env.robot.model, os.path.join(out_dir, "video.mp4"), fps=1.0 / env.dt)

        timeline, live, act = None, None, policy
        if isinstance(policy, MoEActor):
            timeline = GateTimeline(policy.expert_names, policy.action_group_names, env.dt, cfg.play.duration_s,
                                    phase_label="task", phase_names=env.task_names)  # fmt: skip
            live = open_live_figure("expert weights, env 0") if cfg.play.live_plot else None

            def act(obs):  # the weights and the task / commands of the obs they were computed from, before env.step
                actions = policy(obs)
                timeline.add(policy.last_gate_weights[0], *env.commands.describe(0))
                return actions

        live_every = max(1, round(cfg.play.live_plot_period_s / env.dt))
        num_steps = num_policy_steps(cfg.play.duration_s, env.dt)

        def show(step: int, _) -> None:
            if recorder is not None:
                overlay = None if timeline is None else timeline.image(recorder.height, recorder.width)
                recorder.add_frame(env.sim.mjdata(0), overlay)
            if live is not None and step % live_every == 0:
                live.refresh(timeline.draw)
            if (step + 1) % max(1, num_steps // 5) == 0:
                print(f"played {step + 1}/{num_steps} steps", flush=True)

        arrays = record_rollout(env, act, num_steps, each_step=show)
        if recorder is not None:
            recorder.close()
            print(f"video: {recorder.path}")
        if live is not None:
            live.close()

        metrics = task_metrics(arrays, env.task_names)
        print(f"\n{'task':<12}{'lin vel RMS':>13}{'yaw RMS':>10}{'EE mean':>10}{'EE median':>11}{'falls':>7}")
        for task, m in metrics.items():
            print(
                f"{task:<12}{m['lin_vel_rms']:>11.3f}m/s{m['yaw_rate_rms']:>8.3f}/s"
                f"{m['ee_error_mean_cm']:>8.1f}cm{m['ee_error_median_cm']:>9.1f}cm{m['falls']:>7}"
            )
        with open(os.path.join(out_dir, "metrics.json"), "w") as f:
            json.dump(metrics, f, indent=2)
        save_plots(arrays, env.dt, out_dir)
        if timeline is not None:
            timeline.save_png(os.path.join(out_dir, "expert_weights.png"))
        print(f"plots and metrics: {out_dir}")
        if cfg.play.export:
            export_policy(runner, env.get_observations(), os.path.join(run_dir, "exported"))


if __name__ == "__main__":
    # play writes next to the checkpoint: no run folder, no .hydra/ or log file from hydra
    sys.argv += ["hydra.output_subdir=null", "hydra.run.dir=.", "hydra/job_logging=disabled"]
    main()
