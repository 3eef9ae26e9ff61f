"""One training over several processes (torchrun / torch.distributed, gloo on CPU): 2 processes, small N."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile

import pytest
import torch
import torch.multiprocessing as mp
from helpers import REPO_ROOT, SMALL, compose_cfg

WORLD_SIZE = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_rank(rank: int, port: int) -> None:
    """The environment torchrun gives a worker."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        WORLD_SIZE=str(WORLD_SIZE),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(WORLD_SIZE),
    )


def train_two_iterations(rank: int, port: int, config_name: str, overrides: list[str], out_dir: str) -> None:
    """A worker: the train script's steps (join, seed, env, runner, learn) for 2 iterations; saves what it holds."""
    as_rank(rank, port)
    from common import env_config, join_processes, leave_processes, make_env, make_runner, seed_everything

    cfg = compose_cfg(config_name, overrides)
    info, _ = join_processes(cfg, out_dir)
    seed_everything(cfg.seed)
    env = make_env(env_config(cfg))
    first_obs = env.get_observations()["policy"].clone()
    runner = make_runner(cfg, env, log_dir=None)
    runner.learn(2)
    state = {
        "actor": runner.alg.actor.state_dict(),
        "critic": runner.alg.critic.state_dict(),
        "first_obs": first_obs,
        "seed": int(cfg.seed),
        "threads": torch.get_num_threads(),
    }
    if hasattr(runner, "gate_tracker"):
        state["tracker"] = runner.gate_tracker.state_dict()
        state["counts"] = runner.gate_tracker.lifetime_counts()
        state["diagnostics"] = {k: v for k, v in runner.diagnostics._pending.items() if not k.startswith("Perf/")}
    torch.save(state, os.path.join(out_dir, f"rank{info.rank}.pt"))
    leave_processes()


def run_workers(fn, *args) -> list[dict]:
    out_dir = tempfile.mkdtemp()
    try:
        mp.spawn(fn, args=(free_port(), *args, out_dir), nprocs=WORLD_SIZE, join=True)
        return [torch.load(os.path.join(out_dir, f"rank{r}.pt"), weights_only=False) for r in range(WORLD_SIZE)]
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_ranks_hold_identical_parameters_and_normalisers_and_step_their_own_envs():
    states = run_workers(train_two_iterations, "train", [*SMALL, "env=combo_go2Piper_locomotion"])
    assert_same_tensors(states[0]["actor"], states[1]["actor"])  # obs_normalizer._mean/_var/count included
    assert_same_tensors(states[0]["critic"], states[1]["critic"])
    assert int(states[0]["actor"]["obs_normalizer.count"]) == 2 * WORLD_SIZE * 16 * 8  # every rank's samples
    assert [s["seed"] for s in states] == [1, 2]  # seed + rank
    assert not torch.equal(states[0]["first_obs"], states[1]["first_obs"])
    cores = max(1, (os.cpu_count() or 1) // WORLD_SIZE)
    assert [s["threads"] for s in states] == [cores, cores]


def test_gate_statistics_and_diagnostics_count_every_rank_and_agree(tmp_path):
    overrides = [
        "env.num_envs=8",
        "runner.num_steps_per_env=4",
        "runner.diagnostics.conflict_interval=1",
        "runner.diagnostics.monitor_norm_freq=1",
        "runner.diagnostics.image_interval=0",
    ]
    states = run_workers(train_two_iterations, "train_moe_example", overrides)
    assert_same_tensors(states[0]["actor"], states[1]["actor"])
    assert states[0]["counts"] == states[1]["counts"]
    assert sum(c["rows"] for c in states[0]["counts"].values()) == 2 * 4 * WORLD_SIZE * 8  # iterations x steps x envs
    assert states[0]["diagnostics"] == states[1]["diagnostics"]
    assert any(k.startswith("conflict/") for k in states[0]["diagnostics"])
    assert any(k.startswith("grad/") or "grad_norm" in k for k in states[0]["diagnostics"])


def gradient_of_a_batch(rank: int, port: int, out_dir: str) -> None:
    """A worker: rank r's half of one seeded batch, backward, then rsl_rl's gradient averaging."""
    as_rank(rank, port)
    from common import env_config, join_processes, leave_processes, make_env, make_runner

    torch.manual_seed(0)
    cfg = compose_cfg("train", [*SMALL, "env=combo_go2Piper_locomotion"])
    join_processes(cfg, out_dir)
    env = make_env(env_config(cfg))
    torch.manual_seed(0)
    runner = make_runner(cfg, env, log_dir=None)
    grads = batch_gradient(runner, rows=slice(rank * 8, (rank + 1) * 8))
    runner.alg.reduce_parameters()
    torch.save({name: p.grad.clone() for name, p in grads}, os.path.join(out_dir, f"rank{rank}.pt"))
    leave_processes()


def batch_gradient(runner, rows: slice) -> list:
    """Backward of a loss over ``rows`` of a seeded batch of 16 observations through the real actor and critic."""
    from tensordict import TensorDict

    obs = runner.env.get_observations()
    generator = torch.Generator().manual_seed(5)
    batch = TensorDict({k: torch.randn(16, v.shape[-1], generator=generator) for k, v in obs.items()}, batch_size=[16])
    batch = batch[rows]
    runner.alg.optimizer.zero_grad()
    loss = runner.alg.actor(batch).square().mean() + runner.alg.critic(batch).square().mean()
    loss.backward()
    return [
        (f"{part}.{n}", p)
        for part, m in (("actor", runner.alg.actor), ("critic", runner.alg.critic))
        for n, p in m.named_parameters()
        if p.grad is not None
    ]


def test_the_ranks_gradient_average_equals_one_process_over_the_union_of_their_batches():
    from common import env_config, make_env, make_runner

    ranks = run_workers(gradient_of_a_batch)
    torch.manual_seed(0)
    cfg = compose_cfg("train", [*SMALL, "env=combo_go2Piper_locomotion"])
    env = make_env(env_config(cfg))
    torch.manual_seed(0)
    single = dict((n, p.grad) for n, p in batch_gradient(make_runner(cfg, env, log_dir=None), rows=slice(0, 16)))
    assert ranks[0].keys() == single.keys()
    for name, grad in single.items():
        assert torch.equal(ranks[0][name], ranks[1][name]), name
        assert torch.allclose(ranks[0][name], grad, rtol=1e-5, atol=1e-7), name


def test_torchrun_trains_into_one_run_folder_written_by_rank_zero_and_resumes():
    experiment = f"pytest_torchrun_{os.getpid()}"
    logs = os.path.join(REPO_ROOT, "logs", experiment)
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={WORLD_SIZE}",
        os.path.join(REPO_ROOT, "scripts", "train.py"),
        "--config-name=train",
        "env=combo_go2Piper_locomotion",
        *SMALL,
        "runner.max_iterations=2",
        f"experiment_name={experiment}",
    ]
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "go2_piper_moe_rank*")))
    try:
        result = subprocess.run(torchrun, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        (run,) = os.listdir(logs)
        files = set(os.listdir(os.path.join(logs, run)))
        assert {"config.yaml", "model_0.pt", "model_1.pt", ".run_owner"} <= files
        assert len(glob.glob(os.path.join(logs, run, "events.out.tfevents.*"))) == 1
        assert result.stdout.count("it     2/2") == 1  # one progress line per iteration: rank 0's
        assert set(glob.glob(os.path.join(tempfile.gettempdir(), "go2_piper_moe_rank*"))) == before

        resumed = subprocess.run(
            [
                *torchrun[:-2],
                "runner.max_iterations=1",
                f"experiment_name={experiment}",
                "resume=true",
                f"ckpt_path={os.path.join(logs, run, 'model_1.pt')}",
            ],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert resumed.stdout.count("continuing with iteration 2") == 1 and "it     3/3" in resumed.stdout
        assert len(os.listdir(logs)) == 2
    finally:
        shutil.rmtree(logs, ignore_errors=True)


def test_a_cuda_index_other_than_the_local_rank_is_refused():
    from rsl_rl_moe.distributed import ProcessInfo, device_for_rank

    info = ProcessInfo(rank=3, local_rank=1, world_size=4, local_world_size=2)
    assert device_for_rank("cuda", info) == "cuda:1" and device_for_rank("cpu", info) == "cpu"
    with pytest.raises(ValueError, match="device=cuda:0.*local rank 1"):
        device_for_rank("cuda:0", info)
