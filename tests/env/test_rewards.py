"""Each reward term has the right sign and responds to crafted simulator states."""

import math

import pytest
import torch
from helpers import make_env

from legged_gym.envs import rewards as terms
from legged_gym.utils.math import quat_from_yaw

TASK_TERMS = {"tracking_lin_vel", "tracking_ang_vel", "tracking_ee_pos", "tracking_ee_pos_fine", "feet_air_time"}


@pytest.fixture(scope="module")
def env():
    return make_env(2, quiet=True)


def set_state(env, base_vel=None, base_height=None, quat=None, joint_offset=None):
    """Put both envs standing in the default pose, then apply the given changes to env 0 only."""
    qpos = torch.zeros(2, env.sim.nq)
    qpos[:, 2] = 0.265
    qpos[:, 3] = 1.0
    qpos[:, 7:] = env.default_joint_pos
    qvel = torch.zeros(2, env.sim.nv)
    if base_vel is not None:
        qvel[0, :6] = torch.tensor(base_vel)
    if base_height is not None:
        qpos[0, 2] = base_height
    if quat is not None:
        qpos[0, 3:7] = torch.tensor(quat)
    if joint_offset is not None:
        qpos[0, 7:] += joint_offset
    env.sim.reset(torch.arange(2), qpos, qvel, qpos[:, 7:])
    env._refresh_state()


def test_configured_scales_have_the_right_sign(env):
    for name, scale in env.cfg["rewards"]["scales"].items():
        if scale == 0:
            continue
        assert (scale > 0) == (name in TASK_TERMS), f"{name}: scale {scale}"


def test_tracking_lin_vel_peaks_at_the_command(env):
    env.commands.velocity[:] = torch.tensor([0.8, 0.0, 0.0])
    set_state(env, base_vel=[0.8, 0, 0, 0, 0, 0])
    r = terms.tracking_lin_vel(env)
    assert r[0] == pytest.approx(1.0, abs=1e-3) and r[1] == pytest.approx(math.exp(-0.64 / 0.25), rel=1e-3)


def test_tracking_ang_vel_peaks_at_the_command(env):
    env.commands.velocity[:] = torch.tensor([0.0, 0.0, 0.5])
    set_state(env, base_vel=[0, 0, 0, 0, 0, 0.5])
    r = terms.tracking_ang_vel(env)
    assert r[0] > 0.999 and r[1] < r[0]


def test_tracking_ee_pos_peaks_at_the_target(env):
    set_state(env)
    env.commands.ee_target_b[0] = env.ee_pos_b[0]
    env.commands.ee_target_b[1] = env.ee_pos_b[1] + torch.tensor([0.1, 0.0, 0.0])
    env._refresh_state()  # the tracking errors follow the new targets
    coarse, fine = terms.tracking_ee_pos(env), terms.tracking_ee_pos_fine(env)
    assert coarse[0] == pytest.approx(1.0) and fine[0] == pytest.approx(1.0)
    assert coarse[1] == pytest.approx(math.exp(-0.01 / 0.02), rel=1e-4) and fine[1] < coarse[1]


def test_penalties_are_zero_at_rest_and_positive_when_violated(env):
    set_state(env, base_vel=[0, 0, 0.5, 0.4, 0.3, 0])
    assert terms.lin_vel_z(env)[0] == pytest.approx(0.25, rel=1e-4) and terms.lin_vel_z(env)[1] == 0
    assert terms.ang_vel_xy(env)[0] == pytest.approx(0.25, rel=1e-4) and terms.ang_vel_xy(env)[1] == 0
    tilt = 0.3
    set_state(env, quat=[math.cos(tilt / 2), math.sin(tilt / 2), 0, 0])
    assert (
        terms.orientation(env)[0] == pytest.approx(math.sin(tilt) ** 2, rel=1e-4) and terms.orientation(env)[1] < 1e-10
    )
    target = env.reward_cfg["base_height_target"]
    set_state(env, base_height=target - 0.05)
    assert terms.base_height(env)[0] == pytest.approx(0.05**2, rel=1e-3)
    assert terms.base_height(env)[1] == pytest.approx((0.265 - target) ** 2, rel=1e-3, abs=1e-9)


def test_sliding_feet_in_contact_are_penalised(env):
    set_state(env, base_vel=[0.6, 0, 0, 0, 0, 0])
    slip = terms.feet_slip(env)
    assert env.foot_contact.all()
    assert slip[0] > 4 * 0.3**2 and slip[1] < 1e-6


def test_stand_still_only_without_command(env):
    offset = torch.zeros(18)
    offset[1] = 0.2
    set_state(env, joint_offset=offset)
    env.commands.velocity[:] = 0.0
    assert terms.stand_still(env)[0] == pytest.approx(0.2, rel=1e-4) and terms.stand_still(env)[1] < 1e-6
    env.commands.velocity[0] = torch.tensor([0.5, 0.0, 0.0])
    assert terms.stand_still(env)[0] == 0


def test_action_rate_and_joint_limits(env):
    set_state(env)
    env.actions = torch.zeros(2, 18)
    env.last_actions = torch.zeros(2, 18)
    env.actions[0, 3] = 0.5
    assert terms.action_rate(env).tolist() == pytest.approx([0.25, 0.0])
    assert terms.joint_pos_limits(env).tolist() == [0.0, 0.0]
    offset = torch.zeros(18)
    offset[2] = 0.95  # calf from -1.8 to -0.85: beyond the soft upper limit (-0.885)
    set_state(env, joint_offset=offset)
    assert terms.joint_pos_limits(env)[0] > 0


def test_feet_air_time_rewards_long_steps_under_command():
    env = make_env(1, quiet=True)
    env.commands.velocity[:] = torch.tensor([0.6, 0.0, 0.0])
    env.touchdown_air_time = torch.tensor([[0.4, 0.0, 0.0, 0.1]])
    env.first_contact = torch.tensor([[True, False, False, True]])
    target = env.reward_cfg["air_time_target"]
    assert terms.feet_air_time(env)[0] == pytest.approx((0.4 - target) + (0.1 - target))
    env.commands.velocity[:] = 0.0
    assert terms.feet_air_time(env)[0] == 0


def test_unknown_reward_name_is_a_clear_error():
    with pytest.raises(ValueError, match="no such reward term"):
        make_env(1, ["+env.rewards.scales.tracking_lin_vell=1.0"])


def test_yaw_only_rotation_keeps_ee_frame(env):
    set_state(env)
    before = env.ee_pos_b.clone()
    set_state(env, quat=quat_from_yaw(torch.tensor([1.0]))[0].tolist())
    assert torch.allclose(env.ee_pos_b[0], before[0], atol=1e-4)


def test_termination_penalty_survives_positive_clipping():
    """Only-positive clipping applies to the other terms; a fall penalty is added after it (legged_gym)."""
    env = make_env(2, ["env.rewards.scales.termination=-100.0"], quiet=True)
    set_state(env)
    env.reset_buf[:] = torch.tensor([True, False])
    env.time_out_buf[:] = False
    env.unstable_buf = torch.zeros(2, dtype=torch.bool)
    reward = env._compute_rewards()
    assert reward[0] < 0 < reward[1] + 1e-9
    assert reward[1] - reward[0] >= 100.0 * env.dt - 1e-5


def test_base_drift_counts_distance_from_the_stand_anchor_only_without_command(env):
    set_state(env)
    env.commands.velocity[:] = 0.0
    env.stand_anchor_xy = torch.tensor([[0.03, -0.04], [0.0, 0.0]])
    drift = terms.base_drift(env)
    assert drift[0] == pytest.approx(0.05**2, rel=1e-3) and drift[1] == pytest.approx(0.0, abs=1e-8)
    env.commands.velocity[0] = torch.tensor([0.5, 0.0, 0.0])
    assert terms.base_drift(env)[0] == 0


def test_stand_anchor_follows_the_base_while_moving_and_stays_while_standing():
    env = make_env(2, ["env.domain_rand.enabled=false", "env.rewards.scales.base_drift=-1.0"], quiet=True)
    env.commands.velocity[:] = torch.tensor([[0.5, 0.0, 0.0], [0.0, 0.0, 0.0]])
    anchor_before = env.stand_anchor_xy.clone()
    for _ in range(5):
        env.commands.steps_since_vel[:] = 0  # no resampling during the test
        env.step(torch.zeros(2, env.num_actions))
    assert torch.allclose(env.stand_anchor_xy[0], env.base_pos[0, :2])  # moving: follows the base
    assert torch.equal(env.stand_anchor_xy[1], anchor_before[1])  # standing: kept
    env.commands.velocity[0] = 0.0
    held = env.base_pos[0, :2].clone()
    env.step(torch.zeros(2, env.num_actions))
    assert torch.allclose(env.stand_anchor_xy[0], held)  # told to stand: anchored where it was
    env.reset_idx(torch.tensor([1]))
    assert torch.equal(env.stand_anchor_xy[1], torch.zeros(2))


def test_stand_feet_anchor_sums_each_foot_distance_from_its_anchor_only_without_command(env):
    set_state(env)
    env.commands.velocity[:] = 0.0
    env.stand_anchor_feet_xy = env.foot_pos_w[:, :, :2].clone()
    assert torch.equal(terms.stand_feet_anchor(env), torch.zeros(2))
    env.stand_anchor_feet_xy[0, 1] += torch.tensor([0.03, -0.04])  # one foot 5 cm from its anchor
    env.stand_anchor_feet_xy[0, 3, 0] += 0.02  # another 2 cm
    assert terms.stand_feet_anchor(env)[0] == pytest.approx(0.07, rel=1e-4)
    assert terms.stand_feet_anchor(env)[1] == 0
    env.commands.velocity[0] = torch.tensor([0.5, 0.0, 0.0])
    assert terms.stand_feet_anchor(env)[0] == 0


def test_stand_lean_is_the_base_moving_relative_to_its_feet_since_told_to_stand_only_without_command(env):
    set_state(env)
    env.commands.velocity[:] = 0.0
    env.stand_anchor_xy = env.base_pos[:, :2].clone()
    env.stand_anchor_feet_xy = env.foot_pos_w[:, :, :2].clone()
    assert torch.equal(terms.stand_lean(env), torch.zeros(2))
    env.stand_anchor_xy[0] += torch.tensor([0.03, -0.04])  # the base was 5 cm elsewhere over the same feet
    env.stand_anchor_feet_xy[1] += torch.tensor([0.01, 0.02])  # the whole robot moved by 2.2 cm: no lean
    env.stand_anchor_xy[1] += torch.tensor([0.01, 0.02])
    assert terms.stand_lean(env)[0] == pytest.approx(0.05, rel=1e-4)
    assert terms.stand_lean(env)[1] == pytest.approx(0.0, abs=1e-6)
    env.stand_anchor_feet_xy[1, 2, 0] += 0.04  # one foot 4 cm back: the centroid moved 1 cm, the base did not
    assert terms.stand_lean(env)[1] == pytest.approx(0.01, rel=1e-4)
    env.commands.velocity[0] = torch.tensor([0.5, 0.0, 0.0])
    assert terms.stand_lean(env)[0] == 0


@pytest.mark.parametrize("term", ["stand_feet_anchor", "stand_lean"])
def test_feet_anchors_are_set_at_reset_follow_the_feet_while_moving_and_stay_while_standing(term):
    env = make_env(2, ["env.domain_rand.enabled=false", f"env.rewards.scales.{term}=-1.0"], quiet=True)
    assert torch.equal(env.stand_anchor_feet_xy, env.foot_pos_w[:, :, :2])  # where the spawn placed the feet
    env.commands.velocity[:] = torch.tensor([[0.5, 0.0, 0.0], [0.0, 0.0, 0.0]])
    anchor_before = env.stand_anchor_feet_xy.clone()
    for _ in range(25):
        env.commands.steps_since_vel[:] = 0  # no resampling during the test
        env.step(torch.zeros(2, env.num_actions))
    assert torch.equal(env.stand_anchor_feet_xy[0], env.foot_pos_w[0, :, :2])  # moving: follows the feet
    assert torch.equal(env.stand_anchor_feet_xy[1], anchor_before[1])  # standing: kept
    assert not torch.equal(env.foot_pos_w[1, :, :2], anchor_before[1])  # ... although the feet moved (settling)


@pytest.mark.parametrize("recovery_s", [0.0, 0.2])
def test_after_a_push_the_anchors_follow_the_robot_for_push_recovery_s_then_hold(recovery_s):
    overrides = [
        "env.rewards.scales.base_drift=-1.0",
        "env.domain_rand.push_interval_s=0.5",  # 25 policy steps: a push at the end of step 25
        "env.domain_rand.max_push_vel_xy=1.0",
        f"env.rewards.push_recovery_s={recovery_s}",  # 10 policy steps
    ]
    env = make_env(2, overrides)  # domain randomisation on: pushes are part of it
    at_reset = env.stand_anchor_xy.clone()
    base_after = {}
    for step in range(1, 46):
        env.commands.velocity[:] = 0.0  # told to stand throughout
        env.commands.steps_since_vel[:] = 0
        env.step(torch.zeros(2, env.num_actions))
        base_after[step] = env.base_pos[:, :2].clone()
    assert torch.linalg.vector_norm(base_after[35] - base_after[25], dim=1).min() > 0.02  # the push moved the base
    if recovery_s == 0:
        assert torch.equal(env.stand_anchor_xy, at_reset)  # held where the episode started: walk back
    else:
        assert torch.equal(env.stand_anchor_xy, base_after[35])  # followed for 10 steps after the push, then held
        assert not torch.equal(base_after[45], base_after[35])


def test_stand_feet_speed_counts_every_foot_only_without_command(env):
    set_state(env, base_vel=[0.5, 0, 0, 0, 0, 0])
    env.commands.velocity[:] = 0.0
    speed = terms.stand_feet_speed(env)
    assert speed[0] > 4 * 0.4**2 and speed[1] < 1e-6
    env.commands.velocity[0] = torch.tensor([0.5, 0.0, 0.0])
    assert terms.stand_feet_speed(env)[0] == 0
