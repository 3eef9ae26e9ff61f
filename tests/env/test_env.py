"""LeggedRobot on the rsl_rl 5.5 VecEnv API: observation groups, resets, terminations, randomisation."""

import numpy as np
import pytest
import torch
from helpers import make_env
from rsl_rl.env import VecEnv

from legged_gym.envs.legged_robot import CRITIC_OBS_DIM, POLICY_OBS_DIM


def test_observation_groups_shapes_and_dtypes():
    env = make_env(6)
    assert isinstance(env, VecEnv)
    obs = env.get_observations()
    assert obs["policy"].shape == (6, POLICY_OBS_DIM) == (6, 69)
    assert obs["critic"].shape == (6, CRITIC_OBS_DIM) == (6, 16)
    assert obs["task_id"].shape == (6, 1)
    for value in obs.values():
        assert value.dtype == torch.float32 and torch.isfinite(value).all()
    obs, rewards, dones, extras = env.step(torch.zeros(6, 18))
    assert rewards.shape == (6,) and dones.shape == (6,) and extras["time_outs"].shape == (6,)
    assert dones.dtype == torch.bool


def test_same_layout_for_both_tasks():
    loco = make_env(4, ["env=combo_go2Piper_locomotion"])
    reach = make_env(4, ["env=combo_go2Piper_reaching", "env.tasks.probabilities.loco_reach=0.0"])
    assert loco.get_observations()["policy"].shape == reach.get_observations()["policy"].shape
    assert loco.num_actions == reach.num_actions == 18
    # locomotion: the arm target is home; reaching: the base command is zero
    assert torch.allclose(loco.commands.ee_target_b, loco.robot.ee_home_b.expand(4, 3))
    assert (reach.commands.velocity == 0).all()
    assert not torch.allclose(reach.commands.ee_target_b, reach.robot.ee_home_b.expand(4, 3))


def test_wrong_action_shape_is_refused():
    env = make_env(4)
    with pytest.raises(ValueError, match=r"expected \(4, 18\)"):
        env.step(torch.zeros(4, 12))


def test_subset_reset_leaves_other_envs_alone():
    env = make_env(6, quiet=True)
    for _ in range(20):
        env.step(0.5 * torch.ones(6, 18))
    qpos_before = env.sim.qpos.clone()
    ids = torch.tensor([1, 4])
    env.reset_idx(ids)
    env._refresh_state()
    others = torch.tensor([0, 2, 3, 5])
    assert torch.equal(env.sim.qpos[others], qpos_before[others])
    assert (env.episode_length_buf[ids] == 0).all() and (env.episode_length_buf[others] == 20).all()
    assert torch.allclose(env.sim.qpos[ids, 7:], env.default_joint_pos.expand(2, 18))
    assert torch.allclose(env.sim.qpos[ids, 2], torch.full((2,), 0.29))
    assert (env.last_actions[ids] == 0).all() and (env.last_actions[others] != 0).all()


def test_time_out_and_fall_terminations():
    env = make_env(4, ["env=combo_go2Piper_loco_reach", "env.episode_length_s=0.2"], quiet=True)
    for _ in range(9):
        _, _, dones, extras = env.step(torch.zeros(4, 18))
        assert not dones.any()
    _, _, dones, extras = env.step(torch.zeros(4, 18))
    assert dones.all() and extras["time_outs"].all()
    assert "rew_tracking_lin_vel" in extras["episode"] and "Task/locomotion/return" in extras["episode"]
    # tip env 2 over: a terminal (non-time-out) reset
    qpos = env.sim.qpos[2:3].clone()
    qpos[0, 3:7] = torch.tensor([0.0, 1.0, 0.0, 0.0])  # upside down
    env.sim.reset(torch.tensor([2]), qpos, torch.zeros(1, env.sim.nv), qpos[:, 7:])
    task_before = env.commands.task_ids.clone()
    _, _, dones, extras = env.step(torch.zeros(4, 18))
    assert dones[2] and not extras["time_outs"][2]
    assert torch.equal(env.step_task_ids, task_before)  # the fall belongs to the task of the finished episode
    assert extras["episode"]["terminated"] > 0


def test_simulator_nan_resets_the_env_and_keeps_observations_finite():
    env = make_env(4, quiet=True)
    qpos = env.sim.qpos[1:2].clone()
    qvel = torch.full((1, env.sim.nv), float("nan"))
    env.sim.reset(torch.tensor([1]), qpos, qvel, qpos[:, 7:])
    obs, rewards, dones, extras = env.step(torch.zeros(4, 18))
    assert dones[1] and not dones[[0, 2, 3]].any()
    assert extras["episode"]["sim_unstable"] > 0
    assert torch.isfinite(rewards).all() and all(torch.isfinite(v).all() for v in obs.values())
    env.step(torch.zeros(4, 18))
    assert torch.isfinite(env.sim.qpos).all()


def test_domain_randomisation_is_per_env():
    env = make_env(8)
    assert env.friction.unique().numel() == 8 and env.added_mass.unique().numel() == 8
    friction = env.sim.batch.expanded("geom_friction")[:, env.sim._colliding_geoms[0], 0]
    np.testing.assert_allclose(friction, env.friction.numpy(), rtol=1e-6)
    kp = env.sim.batch.expanded("actuator_gainprm")[:, 0, 0]
    np.testing.assert_allclose(kp, (env.robot.kp[0] * env.gain_scale).numpy(), rtol=1e-5)
    quiet = make_env(4, quiet=True)
    assert (quiet.friction == 1.0).all() and (quiet.added_mass == 0.0).all()


def test_pushes_change_base_velocity():
    env = make_env(
        4,
        [
            "env.domain_rand.push_interval_s=0.1",
            "env.domain_rand.max_push_vel_xy=1.0",
            "env.domain_rand.friction_range=[1,1]",
        ],
    )
    speeds = []
    for _ in range(5):
        env.step(torch.zeros(4, 18))
        speeds.append(env.sim.qvel[:, :2].norm(dim=1).max())
    assert max(speeds) > 0.3


def test_velocity_commands_are_resampled():
    env = make_env(16, ["env.tasks.locomotion.resampling_time_s=0.1"])
    first = env.commands.velocity.clone()
    for _ in range(5):
        env.step(torch.zeros(16, 18))
    assert not torch.equal(first, env.commands.velocity)
    low, high = env.commands.vel_low, env.commands.vel_high
    assert ((env.commands.velocity >= low) & (env.commands.velocity <= high)).all()


def observation_noise(env) -> torch.Tensor:
    """(N, 69) noisy minus noise-free policy observation of the env's current state."""
    noisy = env._compute_observations()["policy"]
    env.cfg["observations"]["add_noise"] = False
    try:
        clean = env._compute_observations()["policy"]
    finally:
        env.cfg["observations"]["add_noise"] = True
    return noisy - clean


def test_observation_noise_is_uniform_within_its_half_width_and_seeded():
    env = make_env(256, ["env.domain_rand.enabled=false"])
    noise, half_width = observation_noise(env), env.noise_scale
    noisy = half_width > 0
    assert noisy.sum() == 3 + 3 + 3 + 18 + 18  # angular velocity, gravity, EE position, joint positions, velocities
    assert (noise[:, ~noisy] == 0).all()  # commands and last actions are exact
    ratio = noise[:, noisy] / half_width[noisy]
    assert ratio.abs().max() <= 1.0 + 1e-4 and ratio.abs().max() > 0.99
    assert abs(ratio.mean()) < 0.02 and abs(ratio.var() - 1 / 3) < 0.01  # uniform on [-1, 1]: mean 0, variance 1/3
    assert not torch.equal(observation_noise(env), noise)  # fresh every step
    twin = make_env(256, ["env.domain_rand.enabled=false"])
    other_seed = make_env(256, ["env.domain_rand.enabled=false", "seed=7"])
    assert torch.equal(observation_noise(twin)[:, noisy], noise[:, noisy])
    assert not torch.equal(observation_noise(other_seed)[:, noisy], noise[:, noisy])


def test_a_subclass_may_rebind_reset_buf_as_legged_gym_code_does():
    from helpers import env_cfg

    from legged_gym.envs import LeggedRobot

    class EndsEveryStep(LeggedRobot):
        def _check_termination(self):
            super()._check_termination()
            self.reset_buf = torch.ones(self.num_envs, dtype=torch.bool)  # a new tensor, not the env's buffer

    env = EndsEveryStep(env_cfg(["env.num_envs=4"]))
    env.step(torch.zeros(4, env.num_actions))
    _, _, dones, extras = env.step(torch.zeros(4, env.num_actions))
    assert dones.all() and (env.episode_length_buf == 0).all() and "terminated" in extras["episode"]


def test_non_finite_actions_are_counted_not_hidden():
    env = make_env(4, quiet=True)
    actions = torch.zeros(4, env.num_actions)
    actions[1, 3] = float("nan")
    actions[2, 0] = float("inf")
    _, _, _, extras = env.step(actions)
    assert extras["episode"]["nonfinite_actions"] == 2
    assert env.actions[1, 3] == 0.0 and env.actions[2, 0] == env.cfg["robot"]["clip_actions"]
    _, _, _, extras = env.step(torch.zeros(4, env.num_actions))
    assert extras["episode"]["nonfinite_actions"] == 0
