"""State that rsl_rl, wrappers or subclasses assign must never go stale behind the env's numpy views."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import SMALL, compose_cfg

NEVER_FALLS = [
    "env.terminations.max_tilt_rad=3.2",
    "env.terminations.min_base_height=-10.0",
    "env.terminations.trunk_contact=false",
]


def test_rsl_rl_random_episode_starts_time_out_each_env_at_its_own_step():
    """rsl_rl's ``learn(init_at_random_ep_len=True)`` assigns ``env.episode_length_buf`` a new tensor. Each env
    must then time out after its own remaining steps, and every later episode last ``max_episode_length``."""
    from common import env_config, make_runner

    from legged_gym.envs import LeggedRobot

    class Recording(LeggedRobot):
        def step(self, actions):
            if not hasattr(self, "start_lengths"):
                self.start_lengths = self.episode_length_buf.clone()  # after rsl_rl's randomisation
                self.dones, self.time_outs = [], []
            obs, rewards, dones, extras = super().step(actions)
            self.dones.append(dones.clone())
            self.time_outs.append(extras["time_outs"].clone())
            return obs, rewards, dones, extras

    cfg = compose_cfg("train", [*SMALL, "env.episode_length_s=0.5", *NEVER_FALLS])
    env = Recording(env_config(cfg))
    runner = make_runner(cfg, env, log_dir=None)
    iterations = 9  # 9 x 8 = 72 policy steps: almost three episodes of 25
    runner.learn(iterations, init_at_random_ep_len=True)

    length = env.max_episode_length
    assert length == 25
    starts = env.start_lengths.numpy()
    assert starts.min() < starts.max(), "rsl_rl draws a random start length per env"
    dones = torch.stack(env.dones).numpy()  # (steps, N)
    assert np.array_equal(dones, torch.stack(env.time_outs).numpy()), "every episode here ends by time-out"
    for i, start in enumerate(starts):
        expected = np.arange(length - start, dones.shape[0] + 1, length)  # 1-based steps of its time-outs
        assert np.array_equal(np.flatnonzero(dones[:, i]) + 1, expected), f"env {i} (start length {start})"


@pytest.mark.parametrize("name", ["episode_length_buf", "reset_buf", "time_out_buf", "feet_air_time"])
def test_assigning_env_state_writes_into_the_buffer_the_env_reads(name):
    from helpers import make_env

    env = make_env(4)
    buffer = getattr(env, name)
    new_value = torch.ones_like(buffer)
    setattr(env, name, new_value)
    assert getattr(env, name) is buffer and torch.equal(buffer, new_value)
    with pytest.raises(ValueError, match=name):
        setattr(env, name, torch.ones(7, 7, dtype=buffer.dtype))


def test_simulator_state_views_cannot_be_rebound():
    from helpers import make_env

    env = make_env(2)
    with pytest.raises(AttributeError, match="view of the simulator state"):
        env.base_pos = torch.zeros(2, 3)


def test_assigning_commands_writes_into_the_buffer_the_env_reads():
    from helpers import make_env

    env = make_env(2, quiet=True)
    velocity = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.5]])
    env.commands.velocity = velocity
    env.step(torch.zeros(2, env.num_actions))
    # the tracking errors are computed in numpy on views of the command buffer
    assert torch.allclose(env.lin_vel_error, velocity[:, :2] - env.base_lin_vel_b[:, :2])
    assert torch.allclose(env.yaw_rate_error, velocity[:, 2] - env.base_ang_vel_b[:, 2])


def test_a_subclass_that_sets_step_state_before_the_env_binds_it_still_resets():
    """legged_gym-style subclasses may assign ``self.reset_buf`` before ``super().__init__``: the env's own binding
    must win, or its numpy views and the attribute part ways (no env would ever reset)."""
    from helpers import env_cfg

    from legged_gym.envs import LeggedRobot

    class EarlyBird(LeggedRobot):
        def __init__(self, cfg):
            self.reset_buf = torch.zeros(int(cfg["num_envs"]), dtype=torch.bool)
            super().__init__(cfg)

    env = EarlyBird(env_cfg(["env.num_envs=4", "env.episode_length_s=0.1", *NEVER_FALLS]))
    dones = [env.step(torch.zeros(4, env.num_actions))[2].clone() for _ in range(10)]
    assert torch.stack(dones).sum() == 2 * 4  # 5-step episodes: every env ends twice in 10 steps


def test_the_commands_object_cannot_be_replaced():
    from helpers import make_env

    env = make_env(2)
    with pytest.raises(AttributeError, match="commands"):
        env.commands = None
