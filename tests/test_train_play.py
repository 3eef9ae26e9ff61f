"""End to end through the user's commands: train 2 iterations, resume, play, and the errors users hit."""

import json
import os

import pytest
import torch
from helpers import SMALL, read_events, run_script

from rsl_rl_moe.checkpoint import is_self_describing


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run_dir = str(tmp_path_factory.mktemp("run"))
    result = run_script(
        "train.py",
        [
            "--config-name=train",
            "env=combo_go2Piper_locomotion",
            "runner.max_iterations=2",
            *SMALL,
            "env.episode_length_s=0.1",
            f"hydra.run.dir={run_dir}",
        ],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir, result.stdout


def test_training_writes_checkpoint_config_and_tensorboard(trained_run):
    run_dir, stdout = trained_run
    assert "it     2/2" in stdout and "steps/s" in stdout and "ETA" in stdout
    assert os.path.isfile(os.path.join(run_dir, "config.yaml"))
    ckpt = torch.load(os.path.join(run_dir, "model_1.pt"), weights_only=True)
    assert is_self_describing(ckpt)
    model = ckpt["infos"]["model"]
    assert model["num_actions"] == 18 and model["obs_group_dims"]["policy"] == 69
    assert model["actor"]["hidden_dims"] == [256, 128, 64]
    assert ckpt["infos"]["env"]["action_joints"][12] == "joint1"
    events = read_events(run_dir)
    tags = events.Tags()["scalars"]
    assert {"Loss/surrogate", "Perf/total_fps", "Episode/rew_tracking_lin_vel"} <= set(tags)
    assert len(events.Scalars("Loss/surrogate")) == 2
    legs, arm = (events.Scalars(f"Policy/std/{limb}")[-1].value for limb in ("legs", "arm"))  # each limb's exploration
    assert (12 * legs + 6 * arm) / 18 == pytest.approx(events.Scalars("Policy/mean_std")[-1].value, rel=1e-5)


def test_resume_continues_from_the_checkpoint(trained_run, tmp_path):
    run_dir, _ = trained_run
    result = run_script(
        "train.py",
        [
            "--config-name=train",
            "runner.max_iterations=1",
            *SMALL,
            "resume=true",
            f"ckpt_path={run_dir}/model_1.pt",
            f"hydra.run.dir={tmp_path}",
        ],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resumed from" in result.stdout and "it     3/3" in result.stdout  # model_1 finished iteration 1
    assert os.path.isfile(tmp_path / "model_2.pt")


def test_expert_curves_evaluate_the_checkpoints_against_the_targets(trained_run):
    run_dir, _ = trained_run
    result = run_script("expert_curves.py", [run_dir, "--every", "1", "--num-envs", "2"])
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.load(open(os.path.join(run_dir, "eval", "curves.json")))
    saved = sorted(int(name[6:-3]) for name in os.listdir(run_dir) if name.startswith("model_"))
    assert [row["iteration"] for row in rows] == saved and rows[-1]["env_steps"] == 2 * 16 * 8
    assert {"falls", "lin_vel_rms_steady_mps"} <= set(rows[-1]["results"]["locomotion"])
    assert rows[-1]["wall_s"] > 0 and os.path.getsize(os.path.join(run_dir, "eval", "curves.png")) > 10_000


def test_play_reports_metrics_plots_and_exports(trained_run):
    run_dir, _ = trained_run
    result = run_script(
        "play.py",
        [
            "--config-name=train",
            "env=combo_go2Piper_locomotion",
            f"ckpt_path={run_dir}/model_1.pt",
            "play.num_envs=2",
            "play.duration_s=1",
        ],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.load(open(os.path.join(run_dir, "play", "metrics.json")))
    assert metrics["locomotion"]["env_steps"] == 2 * 50
    for name in ("velocity_tracking.png", "ee_tracking.png"):
        assert os.path.getsize(os.path.join(run_dir, "play", name)) > 10_000
    assert os.path.isfile(os.path.join(run_dir, "exported", "policy.pt"))
    assert os.path.isfile(os.path.join(run_dir, "exported", "policy.onnx"))
    assert "max |ONNX - PyTorch|" in result.stdout


def test_play_rejects_a_checkpoint_of_another_size(trained_run, tmp_path):
    run_dir, _ = trained_run
    ckpt = torch.load(os.path.join(run_dir, "model_1.pt"), weights_only=True)
    ckpt["infos"]["model"]["num_actions"] = 12
    torch.save(ckpt, tmp_path / "other_robot.pt")
    result = run_script("play.py", ["--config-name=train", f"ckpt_path={tmp_path}/other_robot.pt", "play.num_envs=1"])
    assert result.returncode == 2 and "trained with 12 actions, this env has 18" in result.stderr


def test_play_names_the_settings_a_checkpoint_was_trained_with_and_plays_it_with_its_run_config(trained_run):
    run_dir, _ = trained_run
    other = ["runner.alg.actor_critic.actor.hidden_dims=[32]", "play.num_envs=1", "play.duration_s=0.2"]
    result = run_script("play.py", ["--config-name=train", f"ckpt_path={run_dir}/model_1.pt", *other])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "actor.hidden_dims: [256, 128, 64] in the checkpoint, [32] here" in result.stderr
    hint = f"--config-path={run_dir} --config-name=config"
    assert hint in result.stderr
    result = run_script(
        "play.py", [*hint.split(), f"ckpt_path={run_dir}/model_1.pt", "play.num_envs=1", "play.duration_s=0.2"]
    )
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.parametrize(
    "args, message",
    [
        (["ckpt_path=/nowhere/model.pt"], "checkpoint not found: '/nowhere/model.pt' (set with `ckpt_path=...`)"),
        ([], "play needs a policy: add ckpt_path="),
    ],
)
def test_play_checkpoint_errors(args, message):
    result = run_script("play.py", ["--config-name=train", "play.num_envs=1", *args])
    assert result.returncode == 2 and message in result.stderr
    assert "Traceback" not in result.stderr


def test_train_errors_are_one_clear_line(tmp_path):
    bad_file = run_script(
        "train.py",
        [
            "--config-name=train",
            "env=combo_go2Piper_reaching",
            "env.num_envs=2",
            "env.tasks.reaching.sequence_sampler.file_path=data/missing.pkl",
            f"hydra.run.dir={tmp_path}/a",
        ],
    )
    assert bad_file.returncode == 2 and "data/missing.pkl" in bad_file.stderr and "not found" in bad_file.stderr
    gpu_sim = run_script(
        "train.py", ["--config-name=train", "env.num_envs=2", "env.sim_device=cuda:0", f"hydra.run.dir={tmp_path}/b"]
    )
    assert gpu_sim.returncode == 2 and "env.sim_device='cuda:0'" in gpu_sim.stderr  # no GPU here: names the override
    typo = run_script("train.py", ["--config-name=train", "env.num_envz=2", f"hydra.run.dir={tmp_path}/c"])
    assert typo.returncode != 0 and "num_envz" in typo.stderr
