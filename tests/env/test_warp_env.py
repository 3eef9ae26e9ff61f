"""The same env on two physics backends: ``mujoco.batch`` (float64, the CPU default) and MuJoCo Warp on Warp's CPU
device (float32, the code path a GPU runs), with the env's torch array path on Warp as on a GPU."""

import pytest
import torch
from helpers import make_env

pytest.importorskip("mujoco_warp")

N = 8
EVERYTHING_MOVES = [  # all three tasks, resets every 0.6 s, a push every 0.1 s, domain randomisation (default)
    "env.tasks.probabilities.locomotion=1",
    "env.tasks.probabilities.reaching=1",
    "env.tasks.probabilities.loco_reach=1",
    "env.episode_length_s=0.6",
    "env.domain_rand.push_interval_s=0.1",
]
OBS_TOLERANCE = 1e-4
"""Observations and rewards: measured differences are ~3e-6 over 80 steps (float32 physics against float64, the
same contacts); 1e-4 leaves room for other CPUs' rounding while failing on any real difference (a wrong sign,
frame, sensor or parameter moves them by 1e-3 or more)."""


@pytest.fixture(scope="module")
def envs():
    """The env on mujoco.batch (numpy array path) and on Warp's CPU device (torch array path)."""
    batch = make_env(N, [*EVERYTHING_MOVES, "env.sim_device=cpu"], quiet=True)
    warp = make_env(N, [*EVERYTHING_MOVES, "env.sim_device=warp-cpu", "env.array_backend=torch"], quiet=True)
    return batch, warp


def test_the_env_on_warp_matches_the_env_on_mujoco_batch(envs):
    """60 policy steps: standing (zero actions) for 10, then random actions; subset resets (staggered episode
    lengths, as rsl_rl's ``init_at_random_ep_len``), pushes and randomised friction / mass / gains."""
    batch, warp = envs
    assert batch.ops.name == "numpy" and warp.ops.name == "torch"
    torch.testing.assert_close(batch.domain_params, warp.domain_params, rtol=0, atol=0)  # same seeded draws
    gen = torch.Generator().manual_seed(0)
    staggered = torch.randint(0, batch.max_episode_length, (N,), generator=gen)
    batch.episode_length_buf, warp.episode_length_buf = staggered, staggered
    resets, subset_resets, worst = 0, 0, {"policy": 0.0, "critic": 0.0, "rewards": 0.0}
    for step in range(60):
        actions = torch.zeros(N, 18) if step < 10 else 0.5 * torch.randn(N, 18, generator=gen)
        (obs_b, rew_b, done_b, _), (obs_w, rew_w, done_w, _) = batch.step(actions), warp.step(actions)
        torch.testing.assert_close(done_b, done_w, rtol=0, atol=0)
        for key in ("policy", "critic"):
            worst[key] = max(worst[key], float((obs_b[key] - obs_w[key]).abs().max()))
        worst["rewards"] = max(worst["rewards"], float((rew_b - rew_w).abs().max()))
        resets += int(done_b.sum())
        subset_resets += bool(0 < done_b.sum() < N)
    assert resets >= N and subset_resets >= 5
    assert max(worst.values()) < OBS_TOLERANCE, worst
