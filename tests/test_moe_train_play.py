"""The mixture of experts through the user's commands: two experts trained with train.py, a gate trained
over them with ``--config-name=train_moe_example``, play with the expert-weight plot and export, and the
error for a missing expert."""

import json
import os
import re

import pytest
import torch
from helpers import SMALL, read_events, run_script

from rsl_rl_moe.checkpoint import is_self_describing

TINY_EXPERT = [
    *SMALL,
    "runner.max_iterations=1",
    "env.episode_length_s=0.1",
    "runner.alg.actor_critic.actor.hidden_dims=[32]",
    "runner.alg.actor_critic.critic.hidden_dims=[32]",
]
TINY_GATES = [
    "runner.alg.actor_critic.actor.obs_moe.hidden_dims=[16]",
    "runner.alg.actor_critic.critic.obs_moe.hidden_dims=[16]",
    "runner.alg.actor_critic.critic.residual_hidden_dims=[16]",
]
TINY_MOE = [
    *SMALL,
    *TINY_GATES,
    "runner.max_iterations=2",
    "env.episode_length_s=0.1",
    "runner.diagnostics.conflict_interval=1",
    "runner.diagnostics.monitor_norm_freq=1",
    "runner.diagnostics.image_interval=1",
]
TASKS = ("locomotion", "reaching", "loco_reach")


@pytest.fixture(scope="module")
def experts(tmp_path_factory) -> dict[str, str]:
    """``{"base": path, "arm": path}``: a locomotion and a reaching expert, 1 iteration each."""
    paths = {}
    for name, env in (("base", "combo_go2Piper_locomotion"), ("arm", "combo_go2Piper_reaching")):
        run_dir = str(tmp_path_factory.mktemp(f"{name}_expert"))
        result = run_script("train.py", ["--config-name=train", f"env={env}", *TINY_EXPERT, f"hydra.run.dir={run_dir}"])
        assert result.returncode == 0, result.stderr[-3000:]
        paths[name] = os.path.join(run_dir, "model_0.pt")
    return paths


def expert_overrides(experts: dict[str, str]) -> list[str]:
    """The overrides the user guide writes for the expert checkpoints."""
    return [
        f"runner.alg.actor_critic.base_ckpt_path={experts['base']}",
        f"runner.alg.actor_critic.arm_ckpt_path={experts['arm']}",
    ]


@pytest.fixture(scope="module")
def moe_run(experts, tmp_path_factory) -> str:
    run_dir = str(tmp_path_factory.mktemp("moe"))
    result = run_script(
        "train.py",
        ["--config-name=train_moe_example", *expert_overrides(experts), *TINY_MOE, f"hydra.run.dir={run_dir}"],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "it     2/2" in result.stdout
    return run_dir


def test_moe_checkpoint_keeps_the_experts_bit_identical(moe_run, experts):
    ckpt = torch.load(os.path.join(moe_run, "model_1.pt"), weights_only=True)
    assert is_self_describing(ckpt)
    assert ckpt["infos"]["model"]["actor"]["class_name"] == "rsl_rl_moe.modules:MoEActor"
    assert ckpt["infos"]["gate_selection"]["task_names"] == list(TASKS)
    for name, path in experts.items():
        expert = torch.load(path, weights_only=True)
        for part in ("actor", "critic"):
            for key, value in expert[f"{part}_state_dict"].items():
                assert torch.equal(ckpt[f"{part}_state_dict"][f"experts.{name}.{key}"], value), (name, part, key)


def test_moe_training_logs_gate_weights_per_task(moe_run):
    events = read_events(moe_run)
    tags = set(events.Tags()["scalars"])
    for task in TASKS:
        weights = [events.Scalars(f"moe/{task}/weight/{expert}") for expert in ("base", "arm")]
        assert [len(w) for w in weights] == [2, 2]
        for base, arm in zip(*weights):
            assert base.value + arm.value == pytest.approx(1.0, abs=1e-5)
        assert f"Task/{task}/return" in tags and f"Task/{task}/terminated" in tags
        assert f"moe/selection/{task}/w8/mean_sample_entropy" in tags
    assert {"Loss/moe_weight_regularization", "moe/selection/w1000/js/locomotion__reaching"} <= tags


def test_moe_training_writes_diagnostics_every_iteration(moe_run):
    events = read_events(moe_run)
    for tag in ("conflict/gate/cos/locomotion__reaching", "conflict/gate/noise_floor/reaching",
                "conflict/critic/mean_cosine", "conflict/std/max_negative_cosine",
                "term_conflict/gate/cos/surrogate__moe_router_z",
                "term_conflict/gate/norm_share/moe_weight_regularization", "norm/gate/_total_norm",
                "norm/critic/_total_norm", "norm/base_actor/_total_norm", "norm/arm_critic/_total_norm",
                "grad/gate/_total_norm", "grad/std/_total_norm",
                "grad/critic/_total_norm", "logits/gate/abs_max", "logits/critic_gate/std", "obs_norm/gate/count",
                "obs_norm/critic/min_std"):  # fmt: skip
        assert [s.step for s in events.Scalars(tag)] == [0, 1], tag
    images = set(events.Tags()["images"])
    assert {
        "images/conflict/gate",
        "images/conflict/critic",
        "images/term_conflict/gate",
        "images/selection/w8",
    } <= images
    pngs = set(os.listdir(os.path.join(moe_run, "diagnostics")))
    assert {
        f"{name}_it{it}.png" for name in ("conflict_gate", "conflict_std", "term_conflict_gate") for it in (0, 1)
    } <= pngs


def test_play_moe_plots_expert_weights_and_exports_the_blend(moe_run, experts):
    result = run_script(
        "play.py",
        [
            "--config-name=train_moe_example",
            *expert_overrides(experts),
            *TINY_GATES,
            f"ckpt_path={moe_run}/model_1.pt",
            "play.num_envs=3",
            "play.duration_s=1",
            "play.live_plot=false",
        ],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert os.path.getsize(os.path.join(moe_run, "play", "expert_weights.png")) > 10_000
    metrics = json.load(open(os.path.join(moe_run, "play", "metrics.json")))
    assert sum(m["env_steps"] for m in metrics.values()) == 3 * 50
    for name in ("policy.pt", "policy.onnx"):
        assert os.path.isfile(os.path.join(moe_run, "exported", name))
    diffs = re.findall(r"max \|(?:TorchScript|ONNX) - PyTorch\| = (\S+)", result.stdout)
    assert len(diffs) == 2 and all(float(d.rstrip(",")) < 1e-4 for d in diffs), result.stdout[-500:]


def test_moe_checkpoint_plays_without_the_expert_files(moe_run, experts, tmp_path):
    """The checkpoint describes its experts (their weights are in its state dicts): play rebuilds them from it,
    with the same actions as from the files; a checkpoint without the descriptions still needs the files."""
    ckpt = torch.load(os.path.join(moe_run, "model_1.pt"), weights_only=True)
    models = ckpt["infos"]["expert_models"]
    assert list(models) == ["base", "arm"] and models["arm"]["actor"]["hidden_dims"] == [32]
    common = [*TINY_GATES, "play.num_envs=2", "play.duration_s=0.4", "play.live_plot=false"]
    metrics = {}
    for label, paths in (
        ("files", expert_overrides(experts)),
        ("no files", expert_overrides({"base": "/nowhere/base.pt", "arm": "/nowhere/arm.pt"})),
    ):
        result = run_script(
            "play.py", ["--config-name=train_moe_example", *paths, *common, f"ckpt_path={moe_run}/model_1.pt"]
        )
        assert result.returncode == 0, (label, result.stderr[-3000:])
        with open(os.path.join(moe_run, "play", "metrics.json")) as f:
            metrics[label] = json.load(f)
    assert metrics["files"] == metrics["no files"]
    del ckpt["infos"]["expert_models"]
    torch.save(ckpt, tmp_path / "undescribed.pt")
    result = run_script(
        "play.py",
        [
            "--config-name=train_moe_example",
            *expert_overrides({"base": "/nowhere/base.pt", "arm": experts["arm"]}),
            *common,
            f"ckpt_path={tmp_path}/undescribed.pt",
        ],
    )
    assert result.returncode == 2 and "'/nowhere/base.pt'" in result.stderr and "Traceback" not in result.stderr


def test_missing_expert_names_the_path_and_the_override(experts, tmp_path):
    result = run_script(
        "train.py",
        [
            "--config-name=train_moe_example",
            "env.num_envs=2",
            "runner.alg.actor_critic.base_ckpt_path=/nowhere/base.pt",
            f"runner.alg.actor_critic.arm_ckpt_path={experts['arm']}",
            f"hydra.run.dir={tmp_path}",
        ],
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "'/nowhere/base.pt'" in result.stderr and "runner.alg.actor_critic.base_ckpt_path=" in result.stderr
