"""The robot model: stands under PD, and a loaded foot does not slide."""

import mujoco
import numpy as np
import torch
from helpers import env_cfg, make_env

from legged_gym.robots.go2_piper import ACTION_JOINTS, load_robot


def test_action_order_and_mass():
    robot = load_robot(env_cfg()["robot"])
    assert robot.model.nu == len(ACTION_JOINTS) == 18
    assert robot.model.nq == 7 + 18
    total_mass = robot.model.body_mass.sum()
    assert 17.0 < total_mass < 18.0  # Go2 15.2 kg + Piper ~2.4 kg (fingers fixed)


def test_stands_in_default_pose():
    """Zero action = default pose under PD: after 0.5 s settling, 2 s within 2 cm of nominal height, upright."""
    env = make_env(4, quiet=True)
    nominal = env.reward_cfg["base_height_target"]
    steps_half_s = int(0.5 / env.dt)
    for _ in range(steps_half_s):
        env.step(torch.zeros(4, 18))
    heights, tilts = [], []
    for _ in range(int(2.0 / env.dt)):
        _, _, dones, _ = env.step(torch.zeros(4, 18))
        assert not dones.any()
        heights.append(env.base_height.clone())
        tilts.append(torch.acos((-env.projected_gravity[:, 2]).clamp(max=1.0)))
    heights, tilts = torch.stack(heights), torch.stack(tilts)
    assert (heights - nominal).abs().max() < 0.02, f"height range {heights.min():.3f}..{heights.max():.3f}"
    assert tilts.max() < 0.05
    assert env.foot_contact.all()


def test_loaded_foot_does_not_slide_under_sideways_push():
    """A 40 N sideways shove on the trunk for 0.5 s (~23% of body weight) moves no foot by more than 1.5 cm."""
    robot = load_robot(env_cfg()["robot"])
    model = robot.model
    data = mujoco.MjData(model)
    data.qpos[2], data.qpos[3] = 0.29, 1.0
    data.qpos[7:] = robot.default_joint_pos.numpy()
    data.ctrl[:] = robot.default_joint_pos.numpy()
    for _ in range(200):
        mujoco.mj_step(model, data)
    feet = ["FL_foot", "FR_foot", "RL_foot", "RR_foot"]
    before = np.array([data.site(f).xpos[:2].copy() for f in feet])
    trunk = model.body("base").id
    data.xfrc_applied[trunk, 1] = 40.0
    for _ in range(100):
        mujoco.mj_step(model, data)
    data.xfrc_applied[trunk, 1] = 0.0
    for _ in range(100):
        mujoco.mj_step(model, data)
    slip = np.linalg.norm(np.array([data.site(f).xpos[:2] for f in feet]) - before, axis=1)
    assert slip.max() < 0.015, f"foot slip {slip}"
    assert abs(data.qpos[2] - 0.26) < 0.03  # still standing
