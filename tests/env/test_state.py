"""The state refresh (one float32 copy of the simulator state, numpy kinematics written in place, live views)
matches the straightforward per-quantity torch formulas on random tilted states."""

import dataclasses

import numpy as np
import pytest
import torch
from helpers import make_env

from legged_gym.robots.go2_piper import LEG_NAMES
from legged_gym.utils.arrays import NUMPY_OPS, TorchOps
from legged_gym.utils.math import StateMath, quat_from_yaw, quat_rotate_inverse, yaw_from_quat

N = 32


@pytest.fixture(scope="module")
def env():
    """An env put in random states: any orientation, base and joint velocities, commands; then stepped once
    (no tilt, height or trunk-contact terminations, so that no env is reset to standing)."""
    no_falls = [
        "env.terminations.max_tilt_rad=3.1416",
        "env.terminations.min_base_height=-1.0",
        "env.terminations.trunk_contact=false",
    ]
    env = make_env(N, ["env=combo_go2Piper_loco_reach", *no_falls])
    gen = torch.Generator().manual_seed(0)
    qpos = env.sim.qpos.clone()
    qpos[:, 3:7] = torch.nn.functional.normalize(torch.randn(N, 4, generator=gen), dim=1)
    qvel = torch.randn(N, env.sim.nv, generator=gen)
    env.sim.reset(torch.arange(N), qpos, qvel, qpos[:, 7:])
    env.commands.velocity[:] = torch.randn(N, 3, generator=gen)
    _, _, dones, _ = env.step(torch.randn(N, env.num_actions, generator=gen))
    assert not dones.any()
    env.commands.ee_target_b[:] = torch.randn(N, 3, generator=gen)
    env._refresh_state()
    return env


@pytest.mark.parametrize("ops", [NUMPY_OPS, TorchOps("cpu")], ids=["numpy", "torch"])
def test_rotation_helpers_match_the_quaternion_formulas_on_both_array_backends(ops):
    gen = torch.Generator().manual_seed(1)
    q = torch.nn.functional.normalize(torch.randn(64, 4, generator=gen), dim=1)
    v = torch.randn(64, 3, generator=gen)
    math_ = StateMath(ops)
    rotation, rotated, in_yaw_frame = torch.zeros(64, 3, 3), torch.zeros(64, 3), torch.zeros(64, 3)
    math_.rotation_matrices(ops.of(q), out=ops.of(rotation))
    math_.rotate_inverse(ops.of(rotation), ops.of(v), out=ops.of(rotated))
    torch.testing.assert_close(rotated, quat_rotate_inverse(q, v), atol=1e-5, rtol=0)
    math_.world_to_yaw_frame(ops.of(yaw_from_quat(q)), ops.of(v), out=ops.of(in_yaw_frame))
    torch.testing.assert_close(in_yaw_frame, quat_rotate_inverse(quat_from_yaw(yaw_from_quat(q)), v))


def test_backend_state_is_the_batch_state_in_float32(env):
    batch = env.sim.batch
    for tensor, name in ((env.sim.qpos, "qpos"), (env.sim.qvel, "qvel"), (env.sim.sensordata, "sensordata")):
        np.testing.assert_array_equal(tensor.numpy(), batch.bind(name).astype(np.float32))
    assert not env.sim.unstable.any()


def test_derived_state_matches_the_reference_formulas(env):
    qpos, qvel, sensors, sensor = env.sim.qpos, env.sim.qvel, env.sim.sensordata, env.robot.sensor
    quat = qpos[:, 3:7]
    close = dict(atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(env.base_lin_vel_b, quat_rotate_inverse(quat, qvel[:, 0:3]), **close)
    gravity = torch.tensor([0.0, 0.0, -1.0]).expand(N, 3)
    torch.testing.assert_close(env.projected_gravity, quat_rotate_inverse(quat, gravity), **close)
    ee_offset_w = sensors[:, sensor["ee_pos"]] - qpos[:, 0:3]
    ee_pos_b = quat_rotate_inverse(quat_from_yaw(yaw_from_quat(quat)), ee_offset_w)
    torch.testing.assert_close(env.ee_pos_b, ee_pos_b, **close)
    for leg, name in enumerate(LEG_NAMES):
        touch = sensors[:, sensor[f"{name}_touch"].start]
        assert torch.equal(env.foot_contact[:, leg], touch > env.cfg["robot"]["contact_force_threshold"])
        assert torch.equal(env.foot_vel_w[:, leg], sensors[:, sensor[f"{name}_vel"]])
    torch.testing.assert_close(env.joint_pos_rel, qpos[:, 7:] - env.default_joint_pos)
    assert torch.equal(env.base_ang_vel_b, qvel[:, 3:6]) and torch.equal(env.joint_vel, qvel[:, 6:])
    assert torch.equal(env.base_height, qpos[:, 2])


def test_tracking_errors_are_command_minus_state(env):
    command = env.commands
    torch.testing.assert_close(env.lin_vel_error, command.velocity[:, :2] - env.base_lin_vel_b[:, :2])
    torch.testing.assert_close(env.yaw_rate_error, command.velocity[:, 2] - env.base_ang_vel_b[:, 2])
    torch.testing.assert_close(env.ee_error, command.ee_target_b - env.ee_pos_b)


def test_estimated_torques_follow_the_pd_law_within_the_limits(env):
    pd = env.kp * (env.default_joint_pos + env.action_scale * env.actions - env.joint_pos) - env.kd * env.joint_vel
    expected = torch.max(torch.min(pd, env.torque_limits), -env.torque_limits)
    torch.testing.assert_close(env.estimated_torques, expected)


def test_state_views_follow_the_simulator_and_copies_are_kept_apart():
    env = make_env(2, quiet=True)
    before = env.joint_pos.clone()
    env.step(torch.ones(2, env.num_actions))
    assert not torch.equal(env.joint_pos, before)
    assert torch.equal(env.joint_pos, env.sim.qpos[:, 7:])
    # what must survive the next refresh is a copy: last_contacts, last_joint_vel
    assert not np.shares_memory(env.last_contacts.numpy(), env.foot_contact.numpy())
    assert not np.shares_memory(env.last_joint_vel.numpy(), env.joint_vel.numpy())


def test_non_finite_state_is_flagged_unstable():
    env = make_env(2, quiet=True)
    qvel = torch.zeros(1, env.sim.nv)
    qvel[0, 4] = float("inf")
    env.sim.reset(torch.tensor([1]), env.sim.qpos[1:2].clone(), qvel, env.sim.qpos[1:2, 7:].clone())
    assert env.sim.unstable.tolist() == [False, True]


def test_sensor_block_requires_adjacent_sensors_of_one_width(env):
    robot = env.robot
    block = robot.sensor_block([f"{leg}_vel" for leg in LEG_NAMES])
    assert block == slice(robot.sensor["FL_vel"].start, robot.sensor["RR_vel"].stop)
    with pytest.raises(ValueError, match="not adjacent"):
        robot.sensor_block(["FL_vel", "RL_vel"])
    with pytest.raises(ValueError, match="not adjacent"):
        dataclasses.replace(robot, sensor={"a": slice(0, 1), "b": slice(1, 4)}).sensor_block(["a", "b"])
