"""One env, two array backends: the per-step math on numpy views (the CPU default) and on torch tensors agrees, and
every tensor the env creates lives on ``env.device``."""

import pytest
import torch
from helpers import env_cfg, make_env

from legged_gym.envs import LeggedRobot
from legged_gym.envs.observations import CRITIC_OBS_DIM, CRITIC_TERMS, POLICY_OBS_DIM, POLICY_TERMS, scale_vector
from legged_gym.utils.arrays import NUMPY_OPS, TorchOps, array_ops

EVERYTHING_MOVES = [  # all three tasks, resets every 3 s, a push every policy-second, domain randomisation (default)
    "env.tasks.probabilities.locomotion=1",
    "env.tasks.probabilities.reaching=1",
    "env.tasks.probabilities.loco_reach=1",
    "env.episode_length_s=3",
    "env.domain_rand.push_interval_s=1",
]


def test_numpy_and_torch_array_paths_of_the_env_agree_on_the_same_backend():
    """200 policy steps under random actions (resets, pushes, command resampling included): observations and
    rewards equal within float32 rounding (the paths round matmuls differently), dones and task ids exactly."""
    n = 32
    envs = {
        backend: make_env(n, [*EVERYTHING_MOVES, f"env.array_backend={backend}"], quiet=True)
        for backend in ("numpy", "torch")
    }
    assert envs["numpy"].ops is NUMPY_OPS and isinstance(envs["torch"].ops, TorchOps)
    gen = torch.Generator().manual_seed(0)
    worst = {"policy": 0.0, "critic": 0.0, "rewards": 0.0}
    resets = 0
    for _ in range(200):
        actions = 0.5 * torch.randn(n, 18, generator=gen)
        (obs_np, rew_np, done_np, _), (obs_t, rew_t, done_t, _) = (env.step(actions) for env in envs.values())
        torch.testing.assert_close(done_np, done_t, rtol=0, atol=0)
        torch.testing.assert_close(obs_np["task_id"], obs_t["task_id"], rtol=0, atol=0)
        for key, a, b in (("policy", obs_np["policy"], obs_t["policy"]), ("critic", obs_np["critic"], obs_t["critic"])):
            worst[key] = max(worst[key], float((a - b).abs().max()))
        worst["rewards"] = max(worst["rewards"], float((rew_np - rew_t).abs().max()))
        resets += int(done_np.sum())
    assert resets >= n  # every env was reset at least once on average
    assert worst["policy"] < 1e-5 and worst["critic"] < 1e-5 and worst["rewards"] < 1e-6, worst


def test_every_tensor_the_env_creates_lives_on_its_device():
    """With torch's default device set to ``meta`` (tensors without data), an env on the torch array path that
    created any tensor without naming its device would fail to build or step (meta tensors hold no values)."""
    cfg = env_cfg(
        [
            "env.num_envs=8",
            "env.array_backend=torch",
            "env.observations.add_noise=true",
            "env.domain_rand.push_interval_s=0.1",
            "env.tasks.reaching.sequence_sampler.file_path=data/tossing.pkl",
        ]
    )
    torch.set_default_device("meta")
    try:
        env = LeggedRobot(cfg)
        for _ in range(30):
            obs, rewards, dones, _ = env.step(torch.zeros(8, 18, device=env.device))
    finally:
        torch.set_default_device(None)
    assert obs["policy"].device == rewards.device == dones.device == env.device
    assert torch.isfinite(obs["policy"]).all()


def test_array_backend_choice_and_its_errors():
    assert array_ops("auto", torch.device("cpu")) is NUMPY_OPS
    assert isinstance(array_ops("auto", torch.device("cuda", 0)), TorchOps)
    with pytest.raises(ValueError, match="env.array_backend=numpy needs the state in CPU memory"):
        array_ops("numpy", torch.device("cuda", 0))
    with pytest.raises(ValueError, match="env.array_backend='jax'"):
        array_ops("jax", torch.device("cpu"))


def test_the_observation_tables_give_the_dims_and_scales():
    assert (POLICY_OBS_DIM, CRITIC_OBS_DIM) == (69, 16)
    scale = scale_vector(POLICY_TERMS)
    assert scale[:3].tolist() == [0.25] * 3 and scale[6:9].tolist() == [2.0, 2.0, 0.25]
    assert scale[33:51].tolist() == pytest.approx([0.05] * 18) and scale[51:].tolist() == [1.0] * 18
    assert scale_vector(CRITIC_TERMS).tolist() == [2.0] * 3 + [1.0] * 13
