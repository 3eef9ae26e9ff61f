"""Left-right mirror maps (legged_gym.envs.symmetry): involutions, derived from the MJCF joint axes, consistent with
the physics of the real env, and in the form rsl_rl 5.5's Symmetry extension calls."""

import mujoco
import numpy as np
import pytest
import torch
from helpers import REPO_ROOT, make_env
from rsl_rl.extensions import Symmetry
from rsl_rl.storage import RolloutStorage
from tensordict import TensorDict

from legged_gym.envs import symmetry as sym
from legged_gym.envs.legged_robot import CRITIC_OBS_DIM, POLICY_OBS_DIM
from legged_gym.robots.go2_piper import ACTION_JOINTS, LEG_NAMES, NUM_ACTIONS

S = np.array([1.0, -1.0, 1.0])  # the reflection y -> -y
MJCF_DIR = f"{REPO_ROOT}/resources/robots/go2_piper"
LINK6_POS = 'name="link6" pos="0 0.091 0.0014165"'  # the one lateral offset in the model (see the module doc)


def random_obs(batch: int, gen: torch.Generator) -> TensorDict:
    return TensorDict(
        {
            "policy": torch.randn(batch, POLICY_OBS_DIM, generator=gen),
            "critic": torch.randn(batch, CRITIC_OBS_DIM, generator=gen),
            "task_id": torch.randint(0, 3, (batch, 1), generator=gen).float(),
        },
        batch_size=[batch],
    )


@pytest.fixture(scope="module")
def env1():
    return make_env(1, quiet=True)


@pytest.fixture(scope="module")
def symmetric_mjcf(tmp_path_factory) -> str:
    """scene.xml of a copy of the model without link6's 1.4 mm lateral offset: exactly left-right symmetric."""
    folder = tmp_path_factory.mktemp("go2_piper_symmetric")
    robot = open(f"{MJCF_DIR}/go2_piper.xml").read()
    assert robot.count(LINK6_POS) == 1
    (folder / "go2_piper.xml").write_text(robot.replace(LINK6_POS, 'name="link6" pos="0 0.091 0"'))
    (folder / "scene.xml").write_text(open(f"{MJCF_DIR}/scene.xml").read())
    return str(folder / "scene.xml")


# ---------------------------------------------------------------- (a) the maps themselves
def test_maps_are_involutions_built_from_the_layout():
    for perm, sign, width in (
        (sym.JOINT_PERM, sym.JOINT_SIGN, NUM_ACTIONS),
        (sym.POLICY_PERM, sym.POLICY_SIGN, 69),
        (sym.CRITIC_PERM, sym.CRITIC_SIGN, 16),
    ):
        assert perm.shape == sign.shape == (width,)
        assert torch.equal(perm[perm], torch.arange(width))
        assert torch.equal(sign * sign[perm], torch.ones(width))
    # spot checks by name
    joint = {name: i for i, name in enumerate(ACTION_JOINTS)}
    for a, b, s in (
        ("FL_hip_joint", "FR_hip_joint", -1),
        ("RR_thigh_joint", "RL_thigh_joint", 1),
        ("FR_calf_joint", "FL_calf_joint", 1),
        ("joint1", "joint1", -1),
        ("joint2", "joint2", 1),
        ("joint3", "joint3", 1),
        ("joint4", "joint4", -1),
        ("joint5", "joint5", 1),
        ("joint6", "joint6", -1),
    ):
        assert (int(sym.JOINT_PERM[joint[a]]), float(sym.JOINT_SIGN[joint[a]])) == (joint[b], s)
    assert [LEG_NAMES[i] for i in sym.FOOT_PERM] == ["FR", "FL", "RR", "RL"]
    assert sym.POLICY_SEGMENTS["last_actions"] == slice(51, 69)
    assert sym.CRITIC_SEGMENTS["velocity_error"] == slice(14, 16)
    assert sym.POLICY_SIGN[:9].tolist() == [-1, 1, -1, 1, -1, 1, 1, -1, -1]  # ang vel, gravity, command


def test_mirroring_twice_is_the_identity():
    gen = torch.Generator().manual_seed(0)
    actions = torch.randn(64, NUM_ACTIONS, generator=gen)
    assert torch.equal(sym.mirror_actions(sym.mirror_actions(actions)), actions)
    assert not torch.allclose(sym.mirror_actions(actions), actions)
    obs = random_obs(64, gen)
    twice = sym.mirror_observations(sym.mirror_observations(obs))
    for key in ("policy", "critic", "task_id"):
        assert torch.equal(twice[key], obs[key])
    assert torch.equal(sym.mirror_observations(obs)["task_id"], obs["task_id"])
    with pytest.raises(KeyError, match="no mirror map"):
        sym.mirror_observations(TensorDict({"height_scan": torch.zeros(4, 3)}, batch_size=[4]))


def test_signs_follow_the_mjcf_joint_axes_at_the_default_pose(env1):
    """A joint whose axis (trunk frame, default pose) lies in the x-z plane flips sign, one along y keeps it; a joint
    maps onto the joint whose anchor is its mirror image. (Tolerance 1e-4: the MJCF's quaternions have 6 digits.)"""
    model = env1.robot.model
    data = mujoco.MjData(model)
    data.qpos[3] = 1.0  # base at the origin, unrotated: world = trunk frame
    data.qpos[7:] = env1.default_joint_pos.numpy()
    mujoco.mj_kinematics(model, data)
    ids = [model.joint(name).id for name in ACTION_JOINTS]
    axes, anchors = data.xaxis[ids], data.xanchor[ids]
    for i, name in enumerate(ACTION_JOINTS):
        if sym.JOINT_SIGN[i] < 0:
            assert abs(axes[i, 1]) < 1e-4, (name, axes[i])  # in the x-z plane
        else:
            np.testing.assert_allclose(np.abs(axes[i]), [0, 1, 0], atol=1e-4, err_msg=name)  # along y
        tol = 3e-3 if name == "joint6" else 1e-4  # joint6's anchor: link6's origin, 1.4 mm off the plane
        np.testing.assert_allclose(anchors[sym.JOINT_PERM[i]], S * anchors[i], atol=tol, err_msg=name)


def mirror_name(name: str) -> str:
    """The name of the mirror-image body or site: ``FL_calf -> FR_calf``; arm and trunk parts map to themselves."""
    leg = name[:2]
    return sym._mirror_leg(leg) + name[2:] if leg in LEG_NAMES else name


def test_mirrored_joint_angles_give_the_mirrored_kinematics(symmetric_mjcf):
    """Random joint angles q and their mirror: body origins, centres of mass and sites of the mirrored pose are the
    mirror images of those of their mirror-image parts (FL <-> FR ...); on the symmetrised model all of them, on the
    real model all but link6 and its sites (the EE), which are off by twice link6's lateral offset. (Tolerance 1e-4 m:
    the MJCF's quaternions have 6 digits.)"""
    gen = np.random.default_rng(0)
    real = mujoco.MjModel.from_xml_path(f"{MJCF_DIR}/scene.xml")
    offset = real.body("link6").pos[2]  # [m] along joint5's axis
    assert offset == pytest.approx(0.0014165)
    link6 = real.body("link6").id
    for model, path in ((mujoco.MjModel.from_xml_path(symmetric_mjcf), "symmetric"), (real, "real")):
        body_perm = [model.body(mirror_name(model.body(i).name)).id for i in range(model.nbody)]
        site_perm = [model.site(mirror_name(model.site(i).name)).id for i in range(model.nsite)]
        data, mirrored = mujoco.MjData(model), mujoco.MjData(model)
        low, high = model.jnt_range[1:].T
        for _ in range(20):
            q = torch.tensor(gen.uniform(low, high))
            data.qpos[3], mirrored.qpos[3] = 1.0, 1.0
            data.qpos[7:], mirrored.qpos[7:] = q.numpy(), sym.mirror_actions(q).numpy()
            assert np.all((mirrored.qpos[7:] >= low) & (mirrored.qpos[7:] <= high))
            mujoco.mj_kinematics(model, data)
            mujoco.mj_kinematics(model, mirrored)
            for points, mirror_points, perm, owner in (
                (data.xpos, mirrored.xpos, body_perm, np.arange(model.nbody)),
                (data.xipos, mirrored.xipos, body_perm, np.arange(model.nbody)),
                (data.site_xpos, mirrored.site_xpos, site_perm, model.site_bodyid),
            ):
                error = np.linalg.norm(mirror_points[perm] - points * S, axis=1)
                if path == "symmetric":
                    assert error.max() < 1e-4
                else:
                    assert error[owner != link6].max() < 1e-4
                    np.testing.assert_allclose(error[owner == link6], 2 * offset, atol=1e-4)


def test_default_pose_and_robot_parameters_are_symmetric(env1):
    env = env1
    robot = env.robot
    assert torch.equal(sym.mirror_actions(robot.default_joint_pos), robot.default_joint_pos)
    perm = sym.JOINT_PERM
    for name, values in (
        ("kp", robot.kp),
        ("kd", robot.kd),
        ("action_scale", env.action_scale),
        ("torque_limits", env.torque_limits),
    ):
        assert torch.equal(values[perm], values), name
    low, high = robot.joint_range.unbind(dim=1)  # clamping to the joint range commutes with the mirror
    flip = sym.JOINT_SIGN < 0
    assert torch.equal(torch.where(flip, -high[perm], low[perm]), low)
    assert torch.equal(torch.where(flip, -low[perm], high[perm]), high)
    scale = env._policy_obs_scale  # observation scaling commutes with the mirror
    assert torch.equal(scale[sym.POLICY_PERM], scale)
    noisy = make_env(1, ["env.observations.add_noise=true"], quiet=True).noise_scale  # so does the noise width
    assert torch.equal(noisy[sym.POLICY_PERM], noisy) and noisy.abs().sum() > 0


# ---------------------------------------------------------------- (b) physics
def mirrored_pair(overrides: list[str]):
    """A quiet 2-env env: env 0 in a tilted, moving, partly-in-contact state with commands, env 1 in its mirror image.
    Returns the env and the (1, 18) action to apply to env 0."""
    env = make_env(2, overrides, quiet=True)
    gen = torch.Generator().manual_seed(0)
    qpos = torch.zeros(1, env.sim.nq, dtype=torch.float64)
    qpos[0, 0:3] = torch.tensor([0.3, 0.2, 0.28])
    qpos[0, 3:7] = torch.nn.functional.normalize(torch.tensor([1.0, 0.08, -0.03, 0.35], dtype=torch.float64), dim=0)
    qpos[0, 7:] = env.default_joint_pos + 0.1 * torch.randn(NUM_ACTIONS, generator=gen)
    qvel = torch.zeros(1, env.sim.nv, dtype=torch.float64)
    qvel[0, 0:6] = 0.3 * torch.randn(6, generator=gen)
    qvel[0, 6:] = 0.5 * torch.randn(NUM_ACTIONS, generator=gen)
    s = torch.tensor(S)
    mirror_qpos, mirror_qvel = qpos.clone(), qvel.clone()
    mirror_qpos[:, 0:3] *= s  # position: polar
    mirror_qpos[:, 3:7] *= torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=torch.float64)  # S R S
    mirror_qpos[:, 7:] = sym.mirror_actions(qpos[:, 7:])
    mirror_qvel[:, 0:3] *= s  # world linear velocity: polar
    mirror_qvel[:, 3:6] *= -s  # base-frame angular velocity: axial
    mirror_qvel[:, 6:] = sym.mirror_actions(qvel[:, 6:])
    qpos, qvel = torch.cat([qpos, mirror_qpos]).float(), torch.cat([qvel, mirror_qvel]).float()
    env.sim.reset(torch.arange(2), qpos, qvel, qpos[:, 7:])
    velocity, ee_target = torch.tensor([0.5, 0.3, -0.4]), torch.tensor([0.4, 0.15, 0.3])
    env.commands.velocity[:] = torch.stack([velocity, velocity * torch.tensor([1.0, -1.0, -1.0])])
    env.commands.ee_target_b[:] = torch.stack([ee_target, ee_target * s.float()])
    return env, 0.5 * torch.randn(1, NUM_ACTIONS, generator=gen)


def step_mirrored(env, action: torch.Tensor, steps: int = 2):
    """Step env 0 with ``action`` and env 1 with its mirror; yield (obs of env 0 mirrored, obs of env 1) per step."""
    for _ in range(steps):
        obs, _, dones, _ = env.step(torch.cat([action, sym.mirror_actions(action)]))
        assert not dones.any()
        yield sym.mirror_observations(obs[0:1]), obs[1:2]


def test_mirrored_state_gives_the_mirrored_observation(symmetric_mjcf):
    """On the symmetrised model (the real one minus link6's 1.4 mm offset) the mirror of env 0's observation is env
    1's, to 1e-4, and a left-right asymmetric foot contact pattern occurs (so the contact swap is exercised)."""
    env, action = mirrored_pair([f"env.robot.mjcf={symmetric_mjcf}"])
    asymmetric_contact = False
    for mirrored, other in step_mirrored(env, action):
        for key in ("policy", "critic", "task_id"):
            torch.testing.assert_close(mirrored[key], other[key], atol=1e-4, rtol=0)
        contacts = other["critic"][0, sym.CRITIC_SEGMENTS["foot_contacts"]]
        asymmetric_contact |= bool((contacts != contacts[sym.FOOT_PERM]).any())
    assert asymmetric_contact


def test_real_model_is_symmetric_up_to_the_ee_offset():
    """On the real model the EE observations differ by about twice link6's lateral offset (2.8 mm); the rest,
    perturbed only by link6's 1.2 kg sitting 1.4 mm off the plane, agrees to 2e-3 over two steps."""
    env, action = mirrored_pair([])
    ee = [sym.POLICY_SEGMENTS["ee_pos"], sym.CRITIC_SEGMENTS["ee_error"]]
    for mirrored, other in step_mirrored(env, action):
        for key, segment in zip(("policy", "critic"), ee):
            gap = torch.linalg.vector_norm(mirrored[key][0, segment] - other[key][0, segment])
            assert abs(float(gap) - 2 * 0.0014165) < 1e-4
            rest = torch.ones(mirrored[key].shape[1], dtype=torch.bool)
            rest[segment] = False
            torch.testing.assert_close(mirrored[key][:, rest], other[key][:, rest], atol=2e-3, rtol=0)


# ---------------------------------------------------------------- (c) symmetric policy
def symmetric_linear_policy(gen: torch.Generator):
    """pi(o) = (f(o) + M_a f(M_o o)) / 2 for a random affine f: (..., 69) -> (..., 18)."""
    weight = torch.randn(POLICY_OBS_DIM, NUM_ACTIONS, generator=gen) / POLICY_OBS_DIM**0.5
    bias = torch.randn(NUM_ACTIONS, generator=gen)

    def f(policy_obs):
        return policy_obs @ weight + bias

    def pi(policy_obs):
        mirrored = sym.mirror_observations(TensorDict({"policy": policy_obs}, batch_size=policy_obs.shape[:1]))
        return 0.5 * (f(policy_obs) + sym.mirror_actions(f(mirrored["policy"])))

    return f, pi


def test_symmetric_policy_gives_mirrored_actions_for_mirrored_observations(symmetric_mjcf):
    gen = torch.Generator().manual_seed(3)
    f, pi = symmetric_linear_policy(gen)
    obs = random_obs(128, gen)
    mirrored = sym.mirror_observations(obs)["policy"]
    torch.testing.assert_close(pi(mirrored), sym.mirror_actions(pi(obs["policy"])), atol=1e-5, rtol=0)
    assert not torch.allclose(f(mirrored), sym.mirror_actions(f(obs["policy"])), atol=1e-2)  # f itself is not
    # on the observations of a mirrored pair of envs
    env, action = mirrored_pair([f"env.robot.mjcf={symmetric_mjcf}"])
    for _ in step_mirrored(env, action, steps=1):
        pass
    policy = env.get_observations()["policy"]
    torch.testing.assert_close(pi(policy[1:2]), sym.mirror_actions(pi(policy[0:1])), atol=1e-4, rtol=0)


# ---------------------------------------------------------------- (d) rsl_rl's call
def test_augmentation_as_rsl_rl_symmetry_calls_it():
    """Through rsl_rl 5.5's Symmetry extension (what PPO.update calls): the batch doubles, original rows first;
    the mirror loss of a symmetric policy is zero, that of a non-symmetric one is not."""
    gen = torch.Generator().manual_seed(4)
    env = make_env(4, quiet=True)
    batch_size = 4
    obs = env.get_observations()
    actions = torch.randn(batch_size, NUM_ACTIONS, generator=gen)
    aug_obs, aug_actions = sym.mirror_augmentation(env=env, obs=obs, actions=actions)
    assert aug_obs.batch_size == torch.Size([2 * batch_size]) and aug_actions.shape == (2 * batch_size, NUM_ACTIONS)
    assert set(aug_obs.keys()) == set(obs.keys())
    assert aug_obs["policy"].shape == (8, POLICY_OBS_DIM) and aug_obs["critic"].shape == (8, CRITIC_OBS_DIM)
    assert sym.mirror_augmentation(env=env, obs=None, actions=actions)[0] is None
    assert sym.mirror_augmentation(env=env, obs=obs, actions=None)[1] is None

    symmetry = Symmetry(
        env=env,
        data_augmentation_func="legged_gym.envs.symmetry:mirror_augmentation",
        use_data_augmentation=True,
        use_mirror_loss=True,
        mirror_loss_coeff=1.0,
    )
    column = lambda: torch.randn(batch_size, 1, generator=gen)  # noqa: E731
    batch = RolloutStorage.Batch(
        observations=obs,
        actions=actions,
        values=column(),
        advantages=column(),
        returns=column(),
        old_actions_log_prob=column(),
    )
    values = batch.values.clone()
    symmetry.augment_batch(batch, batch_size)
    assert batch.observations.batch_size == torch.Size([8]) and batch.actions.shape == (8, NUM_ACTIONS)
    torch.testing.assert_close(batch.observations[:4]["policy"], obs["policy"])
    torch.testing.assert_close(batch.observations[4:]["critic"], sym.mirror_observations(obs)["critic"])
    torch.testing.assert_close(batch.actions[4:], sym.mirror_actions(actions))
    assert batch.values.shape == (8, 1) and torch.equal(batch.values[4:], values)

    f, pi = symmetric_linear_policy(gen)
    symmetric_loss = symmetry.compute_loss(lambda td: pi(td["policy"]), batch, batch_size)
    plain_loss = symmetry.compute_loss(lambda td: f(td["policy"]), batch, batch_size)
    assert symmetric_loss.item() < 1e-10 < 1e-3 < plain_loss.item()


def test_symmetry_config_builds_rsl_rl_ppo_with_augmentation():
    """``env.symmetry.use_data_augmentation=true`` reaches rsl_rl: its PPO holds a Symmetry extension that mirrors."""
    from common import env_config, make_runner
    from helpers import SMALL, compose_cfg

    from legged_gym.envs import LeggedRobot

    cfg = compose_cfg("train", [*SMALL, "env.partner.ckpt_path=null"])
    runner = make_runner(cfg, LeggedRobot(env_config(cfg)), log_dir=None)
    assert runner.alg.symmetry is not None and runner.alg.symmetry.use_data_augmentation
    assert runner.alg.symmetry.data_augmentation_func is sym.mirror_augmentation


def test_own_actions_group_mirrors_with_the_joints():
    own = torch.ones(2, NUM_ACTIONS)
    own[0, 0:3] = 0.0  # FL leg written by a partner
    mirrored = sym.mirror_observations(TensorDict({"own_actions": own}, batch_size=[2]))["own_actions"]
    assert torch.all(mirrored[0, 3:6] == 0.0) and mirrored[0].sum() == NUM_ACTIONS - 3  # now FR
    torch.testing.assert_close(
        sym.mirror_observations(TensorDict({"own_actions": mirrored}, batch_size=[2]))["own_actions"], own
    )
