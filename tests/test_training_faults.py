"""Faults a long training run meets: NaN, stop signals, crashes, full disks, resumes, concurrent launches.

Each test drives the user's command (``scripts/train.py``) in a fresh interpreter, with real MuJoCo and rsl_rl.
"""

from __future__ import annotations

import errno
import glob
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from helpers import REPO_ROOT, SMALL, read_events, run_script

from rsl_rl_moe.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

TRAIN = ["--config-name=train", "env=combo_go2Piper_locomotion", *SMALL, "env.episode_length_s=0.5"]


def checkpoints(run_dir) -> dict[int, str]:
    return {int(os.path.basename(p)[6:-3]): p for p in glob.glob(os.path.join(run_dir, "model_*.pt"))}


def assert_finite_checkpoint(path: str) -> None:
    payload = load_checkpoint(path)
    for part in ("actor_state_dict", "critic_state_dict"):
        assert all(torch.isfinite(v).all() for v in payload[part].values() if v.is_floating_point()), path


def test_a_non_finite_loss_stops_training_in_one_line_and_keeps_the_last_good_checkpoint(tmp_path):
    result = run_script(
        "train.py",
        [
            *TRAIN,
            "env.class_name=tests.faulty_envs:RewardBlowsUp",
            "runner.max_iterations=20",
            "runner.save_interval=2",
            f"hydra.run.dir={tmp_path}",
        ],
    )
    assert result.returncode == 3, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    # the rewards turn inf in iteration 4 (steps 33..40 at 8 steps per iteration)
    assert "training stopped at iteration 4: non-finite" in errors[0] and "model_2.pt" in errors[0]
    saved = checkpoints(tmp_path)
    assert sorted(saved) == [0, 2]  # the periodic ones; nothing after the fault
    for path in saved.values():
        assert_finite_checkpoint(path)


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stop_signal_saves_the_last_finished_iteration(tmp_path, signum, code):
    process = subprocess.Popen(
        [
            sys.executable,
            os.path.join(REPO_ROOT, "scripts", "train.py"),
            *TRAIN,
            "runner.max_iterations=1000",
            "runner.save_interval=1000",
            f"hydra.run.dir={tmp_path}",
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in process.stdout:  # wait for the third finished iteration
        if line.startswith("it     3/"):
            break
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr[-3000:]
    assert "Traceback" not in stderr and "training ended early" in stderr
    last = max(checkpoints(tmp_path))
    assert last >= 2
    payload = load_checkpoint(checkpoints(tmp_path)[last])
    assert payload["iter"] == last and "optimizer_state_dict" in payload
    assert not glob.glob(os.path.join(tmp_path, ".tmp_*"))


def test_an_exception_in_a_rollout_saves_the_last_finished_iteration(tmp_path):
    result = run_script(
        "train.py",
        [
            *TRAIN,
            "env.class_name=tests.faulty_envs:RaisesMidRun",
            "runner.max_iterations=20",
            "runner.save_interval=100",
            f"hydra.run.dir={tmp_path}",
        ],
    )
    assert result.returncode == 1 and "a bug in the env's step" in result.stderr
    assert "training ended early (RuntimeError: a bug in the env's step): saved" in result.stderr
    assert sorted(checkpoints(tmp_path)) == [0, 3]  # step 40 is in iteration 4: iterations 0..3 finished
    assert_finite_checkpoint(checkpoints(tmp_path)[3])


def test_resume_continues_after_the_saved_iteration(tmp_path):
    first = run_script("train.py", [*TRAIN, "runner.max_iterations=3", f"hydra.run.dir={tmp_path}/a"])
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = run_script(
        "train.py",
        [
            *TRAIN,
            "runner.max_iterations=2",
            "resume=true",
            f"ckpt_path={tmp_path}/a/model_2.pt",
            f"hydra.run.dir={tmp_path}/b",
        ],
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "continuing with iteration 3" in resumed.stdout and "it     5/5" in resumed.stdout
    assert sorted(checkpoints(tmp_path / "b")) == [4]
    steps = [event.step for event in read_events(str(tmp_path / "b")).Scalars("Loss/surrogate")]
    assert steps == [3, 4]


def test_a_killed_save_leaves_no_temp_file_behind(tmp_path):
    dead_pid = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    from rsl_rl_moe.checkpoint import _HOST

    stale = tmp_path / f".tmp_{_HOST}_{dead_pid}_abc.pt"
    stale.write_bytes(b"half a checkpoint")
    live = tmp_path / f".tmp_{_HOST}_{os.getppid()}_abc.pt"  # a save in progress in a live process: kept
    live.write_bytes(b"being written")
    elsewhere = tmp_path / f".tmp_0badc0de_{dead_pid}_abc.pt"  # another machine's (a shared disk): not ours to judge
    elsewhere.write_bytes(b"being written elsewhere")
    old_version = tmp_path / ".tmp_abc.pt"  # no host / pid: stale once older than an hour
    old_version.write_bytes(b"half a checkpoint")
    os.utime(old_version, (time.time() - 7200, time.time() - 7200))
    save_checkpoint(str(tmp_path / "model_1.pt"), {"iter": 1})
    assert not stale.exists() and not old_version.exists() and live.exists() and elsewhere.exists()
    assert load_checkpoint(str(tmp_path / "model_1.pt"))["iter"] == 1


def test_a_full_disk_is_one_clear_error_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import rsl_rl_moe.checkpoint as checkpoint

    path = str(tmp_path / "model_1.pt")
    save_checkpoint(path, {"iter": 1})

    def disk_full(payload, f):  # what the OS does when the device fills up mid-write
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", disk_full)
    with pytest.raises(CheckpointError, match="no space left on the device writing .*model_1.pt"):
        save_checkpoint(path, {"iter": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["iter"] == 1
    assert os.listdir(tmp_path) == ["model_1.pt"]


def test_concurrent_launches_get_their_own_run_folders():
    """Two runs of the same command started at the same time never share a folder (the default run folder)."""
    experiment = f"pytest_concurrent_{os.getpid()}"
    logs = os.path.join(REPO_ROOT, "logs", experiment)
    command = [
        sys.executable,
        os.path.join(REPO_ROOT, "scripts", "train.py"),
        *TRAIN,
        "runner.max_iterations=1",
        f"experiment_name={experiment}",
    ]
    try:
        processes = [
            subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        outputs = [p.communicate(timeout=300) for p in processes]
        assert [p.returncode for p in processes] == [0, 0], outputs[0][1][-2000:] + outputs[1][1][-2000:]
        folders = sorted(os.listdir(logs))
        assert len(folders) == 2, folders
        for folder in folders:
            assert sorted(checkpoints(os.path.join(logs, folder))) == [0]
    finally:
        shutil.rmtree(logs, ignore_errors=True)


def test_a_run_folder_that_is_taken_is_refused_before_anything_is_written(tmp_path):
    (tmp_path / ".run_owner").write_text("another-host 123\n")
    result = run_script("train.py", [*TRAIN, "runner.max_iterations=1", f"hydra.run.dir={tmp_path}"])
    assert result.returncode == 2 and "belongs to another run" in result.stderr
    assert not checkpoints(tmp_path) and not (tmp_path / "config.yaml").exists()


def expert_with_a_nan_bias(tmp_path) -> str:
    """The shipped base expert with one NaN in its last actor bias (the issue's reproduction)."""
    payload = load_checkpoint(os.path.join(REPO_ROOT, "resources/checkpoints/base_expert.pt"))
    payload["actor_state_dict"]["mlp.6.bias"][3] = float("nan")
    path = str(tmp_path / "nan_expert.pt")
    save_checkpoint(path, payload)
    return path


def test_an_expert_with_a_nan_weight_is_refused_naming_the_expert_and_the_tensor(tmp_path):
    path = expert_with_a_nan_bias(tmp_path)
    result = run_script(
        "train.py",
        [
            "--config-name=train_moe_example",
            "env.num_envs=2",
            f"runner.alg.actor_critic.base_ckpt_path={path}",
            f"hydra.run.dir={tmp_path}/run",
        ],
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert (
        "expert 'base'" in result.stderr
        and "actor['mlp.6.bias'] (1 of 18 values non-finite, e.g. nan)" in result.stderr
    )
    assert not checkpoints(tmp_path / "run")


@pytest.mark.parametrize("script", ["play.py", "evaluate.py"])
def test_a_policy_with_a_nan_weight_is_not_played_evaluated_or_exported(tmp_path, script):
    path = expert_with_a_nan_bias(tmp_path)
    result = run_script(
        script,
        [
            "--config-name=train",
            "env=combo_go2Piper_locomotion",
            f"ckpt_path={path}",
            "play.num_envs=1",
            "evaluate.num_envs=1",
            f"hydra.run.dir={tmp_path}/run",
        ],
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "non-finite weights: actor_state_dict['mlp.6.bias']" in result.stderr
    assert not os.path.exists(tmp_path / "exported")
