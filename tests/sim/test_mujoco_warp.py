"""MujocoWarpBackend on Warp's CPU device against MujocoBatchBackend (C MuJoCo, float64) on the robot's model.

Tolerances (absolute; qpos [m, rad], qvel [m/s, rad/s], sensors: positions [m] and velocities [m/s], touch:
contact normal forces [N], tens to hundreds of N): Warp computes in float32 and stops its Newton solver at
tolerance 1e-6 (put_model raises the model's 1e-8 to it); C MuJoCo computes in float64 to 1e-8. Both run the
same algorithms (same contacts, pyramidal cone, implicitfast), so the states differ by that round-off, which
stiff contacts and PD servos amplify over the steps: the bounds grow with how violent the motion is, with a
margin of 5-20 over the maxima measured on this machine (N=6), quoted next to each.
"""

from __future__ import annotations

import sys

import mujoco
import numpy as np
import pytest
import torch
from helpers import env_cfg

pytest.importorskip("mujoco_warp")
wp = pytest.importorskip("warp")

from legged_gym.robots.go2_piper import load_robot  # noqa: E402
from legged_gym.sim import make_backend  # noqa: E402
from legged_gym.sim.mujoco_batch import MujocoBatchBackend  # noqa: E402
from legged_gym.sim.mujoco_warp import DERIVED_FIELDS, RANDOMISED_FIELDS, MujocoWarpBackend  # noqa: E402

N = 6
STANDING = {"qpos": 1e-5, "qvel": 2e-4, "sensors": 5e-5, "touch": 1e-2}
"""Dropped 3 cm onto the feet and holding the default pose, 25 policy steps (measured: 4.8e-7, 2.0e-5, 2.3e-6,
8.1e-4 N)."""
MOVING = {"qpos": 1e-4, "qvel": 2e-3, "sensors": 5e-4, "touch": 0.5}
"""Random PD targets, randomised physics, resets or pushes, up to 30 policy steps (measured: 9.4e-6, 2.3e-4,
5.4e-5, 5.7e-2 N)."""


@pytest.fixture(scope="module")
def robot():
    return load_robot(env_cfg()["robot"])


@pytest.fixture(scope="module")
def fresh_warp(robot):
    """One Warp backend for the module (its construction loads or compiles the kernels), and clones of its state
    right after construction."""
    sim = MujocoWarpBackend(robot.model, N)
    return sim, [x.clone() for x in (sim.qpos, sim.qvel, sim.sensordata)]


@pytest.fixture
def sims(robot, fresh_warp):
    """(warp, batch): the shared Warp backend back at the nominal model, and a new batch backend, both standing
    in the default pose (base 0.3 m up, level, at rest)."""
    warp, _ = fresh_warp
    colliding = np.flatnonzero(robot.model.geom_contype | robot.model.geom_conaffinity)
    assert (robot.model.geom_friction[colliding, 0] == 1.0).all()  # nominal friction: 1.0 everywhere
    all_ids = torch.arange(N)
    warp.set_friction(all_ids, torch.ones(N))
    warp.set_added_mass(all_ids, torch.zeros(N))
    warp.set_actuator_gains(all_ids, robot.kp.repeat(N, 1), robot.kd.repeat(N, 1))
    batch = MujocoBatchBackend(robot.model, N, nthread=1)
    qpos = standing_qpos(robot, N)
    for sim in (warp, batch):
        sim.reset(all_ids, qpos, torch.zeros(N, robot.model.nv), qpos[:, 7:])
    return warp, batch


def standing_qpos(robot, n: int, height: float = 0.3) -> torch.Tensor:
    qpos = torch.zeros(n, robot.model.nq)
    qpos[:, 2] = height
    qpos[:, 3] = 1.0
    qpos[:, 7:] = robot.default_joint_pos
    return qpos


def random_targets(robot, generator: torch.Generator) -> torch.Tensor:
    """(N, 18) PD targets [rad] drawn uniformly within the joint limits."""
    low, high = robot.joint_range.unbind(dim=1)
    return low + (high - low) * torch.rand(N, len(low), generator=generator)


def quantities(sim, rows) -> dict[str, torch.Tensor]:
    """qpos, qvel and the sensordata, split into touch sensors (contact normal force [N]) and the others (positions
    [m], velocities [m/s]), of the ``rows`` envs, on the CPU."""
    model = sim.model
    touch = torch.zeros(model.nsensordata, dtype=torch.bool)
    for i in np.flatnonzero(model.sensor_type == mujoco.mjtSensor.mjSENS_TOUCH):
        touch[model.sensor_adr[i] : model.sensor_adr[i] + model.sensor_dim[i]] = True
    sensordata = sim.sensordata[rows].cpu()
    return {
        "qpos": sim.qpos[rows].cpu(),
        "qvel": sim.qvel[rows].cpu(),
        "sensors": sensordata[:, ~touch],
        "touch": sensordata[:, touch],
    }


def assert_close(warp, batch, tolerances: dict[str, float], rows=slice(None)) -> None:
    got, want = quantities(warp, rows), quantities(batch, rows)
    for name, atol in tolerances.items():
        error = (got[name] - want[name]).abs().max().item()
        assert error <= atol, f"{name}: max |warp - batch| = {error:.3g} > {atol:g}"


def step_both(warp, batch, ctrl: torch.Tensor, steps: int, tolerances: dict[str, float]) -> None:
    """``steps`` policy steps of 4 substeps each with ``ctrl``, comparing after each."""
    for _ in range(steps):
        warp.step(ctrl, nstep=4)
        batch.step(ctrl, nstep=4)
        assert_close(warp, batch, tolerances)


def test_state_views(fresh_warp, robot):
    """float32 CPU tensors viewing Warp's arrays, the same objects after steps and resets."""
    sim, _ = fresh_warp
    widths = {"qpos": robot.model.nq, "qvel": robot.model.nv, "sensordata": robot.model.nsensordata}
    tensors = {name: getattr(sim, name) for name in widths}
    sim.step(torch.zeros(N, robot.model.nu), nstep=2)
    sim.reset(torch.tensor([1]), standing_qpos(robot, 1), torch.zeros(1, robot.model.nv), torch.zeros(1, 18))
    for name, width in widths.items():
        tensor = getattr(sim, name)
        assert tensor is tensors[name]
        assert tensor.shape == (N, width) and tensor.dtype == torch.float32 and tensor.device == torch.device("cpu")
        assert np.shares_memory(tensor.numpy(), getattr(sim.wp_data, name).numpy())


def test_initial_state_is_the_model_default(fresh_warp, robot):
    """qpos0 at rest, forward dynamics done: the sensors equal C MuJoCo's mj_forward (legs straight, feet 0.13 m
    into the floor: touch ~1.7 kN; measured max difference 0.01 N)."""
    _, (qpos, qvel, sensordata) = fresh_warp
    data = mujoco.MjData(robot.model)
    mujoco.mj_forward(robot.model, data)
    assert torch.equal(qpos, torch.as_tensor(robot.model.qpos0, dtype=torch.float32).expand(N, -1))
    assert not qvel.any()
    expected = torch.as_tensor(data.sensordata, dtype=torch.float32).expand(N, -1)
    torch.testing.assert_close(sensordata, expected, rtol=1e-4, atol=1e-4)


def test_standing_matches_batch(sims, robot):
    warp, batch = sims
    assert_close(warp, batch, STANDING)
    step_both(warp, batch, robot.default_joint_pos.repeat(N, 1), 25, STANDING)
    assert not warp.unstable.any()


def test_random_targets_match_batch(sims, robot):
    warp, batch = sims
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        step_both(warp, batch, random_targets(robot, generator), 10, MOVING)
    assert not warp.unstable.any()


def test_subset_reset(sims, robot):
    """The reset rows hold the given state and current sensors; the other rows are untouched."""
    warp, batch = sims
    generator = torch.Generator().manual_seed(1)
    ctrl = random_targets(robot, generator)
    step_both(warp, batch, ctrl, 10, MOVING)
    ids, others = torch.tensor([1, 4]), torch.tensor([0, 2, 3, 5])
    qpos = standing_qpos(robot, 2, height=0.35)
    qpos[:, 3:7] = torch.tensor([[0.8, 0.0, 0.0, 0.6], [0.6, 0.0, 0.0, -0.8]])  # yawed
    qpos[:, 7:] += 0.1 * torch.rand(2, 18, generator=generator)
    qvel = torch.rand(2, robot.model.nv, generator=generator) - 0.5
    before = [x[others].clone() for x in (warp.qpos, warp.qvel, warp.sensordata)]
    for sim in (warp, batch):
        sim.reset(ids, qpos, qvel, qpos[:, 7:])
    assert torch.equal(warp.qpos[ids], qpos) and torch.equal(warp.qvel[ids], qvel)
    for old, new in zip(before, (warp.qpos, warp.qvel, warp.sensordata)):
        assert torch.equal(new[others], old)
    assert_close(warp, batch, STANDING, rows=ids)  # sensors of the new state, from both
    assert_close(warp, batch, MOVING)
    step_both(warp, batch, ctrl, 10, MOVING)
    before = [x.clone() for x in (warp.qpos, warp.qvel, warp.sensordata)]
    warp.reset(torch.tensor([], dtype=torch.long), qpos[:0], qvel[:0], qpos[:0, 7:])  # no-op
    for old, new in zip(before, (warp.qpos, warp.qvel, warp.sensordata)):
        assert torch.equal(new, old)


def test_reset_leaves_other_worlds_bit_identical(sims, robot):
    """A trajectory of the other worlds is the same, bit for bit, whether a subset was reset midway or not."""
    warp, _ = sims
    all_ids, others = torch.arange(N), torch.tensor([0, 1, 3, 4])
    start = [x.clone() for x in (warp.qpos, warp.qvel)]
    ctrl = random_targets(robot, torch.Generator().manual_seed(2))
    trajectories = []
    for reset_midway in (False, True):
        warp.reset(all_ids, start[0], start[1], start[0][:, 7:])
        for step in range(10):
            warp.step(ctrl, nstep=4)
            if reset_midway and step == 4:
                qpos = standing_qpos(robot, 2, height=0.4)
                warp.reset(torch.tensor([2, 5]), qpos, torch.zeros(2, robot.model.nv), qpos[:, 7:])
        trajectories.append([x[others].clone() for x in (warp.qpos, warp.qvel, warp.sensordata)])
    for plain, with_reset in zip(*trajectories):
        assert torch.equal(plain, with_reset)


def test_set_base_velocity(sims, robot):
    """A push writes the base's linear velocity of the chosen envs only; the pushed robots move as in C."""
    warp, batch = sims
    ids = torch.tensor([0, 3])
    velocity = torch.tensor([[0.8, -0.3, 0.1], [-0.5, 0.6, 0.0]])
    expected = warp.qvel.clone()
    expected[ids, 0:3] = velocity
    for sim in (warp, batch):
        sim.set_base_velocity(ids, velocity)
    assert torch.equal(warp.qvel, expected)
    step_both(warp, batch, robot.default_joint_pos.repeat(N, 1), 20, MOVING)


def test_domain_randomisation_matches_batch(sims, robot):
    """Per-env friction, added trunk mass and gains: the Warp model's per-world arrays hold them, set_const
    derives each world's constants, and stepping agrees with the batch backend given the same values."""
    warp, batch = sims
    generator = torch.Generator().manual_seed(3)
    all_ids = torch.arange(N)
    friction = 0.3 + 1.2 * torch.rand(N, generator=generator)
    added_mass = -1.0 + 4.0 * torch.rand(N, generator=generator)
    gain_scale = 0.7 + 0.6 * torch.rand(N, 1, generator=generator)
    kp, kd = robot.kp * gain_scale, robot.kd * gain_scale
    for sim in (warp, batch):
        sim.set_friction(all_ids, friction)
        sim.set_added_mass(all_ids, added_mass)
        sim.set_actuator_gains(all_ids, kp, kd)

    model = robot.model
    fields = {name: wp.to_torch(getattr(warp.wp_model, name)) for name in RANDOMISED_FIELDS + DERIVED_FIELDS}
    colliding = np.flatnonzero(model.geom_contype | model.geom_conaffinity)
    others = np.setdiff1d(np.arange(model.ngeom), colliding)
    assert torch.equal(fields["geom_friction"][:, colliding, 0], friction[:, None].expand(-1, len(colliding)))
    nominal = torch.as_tensor(model.geom_friction[others], dtype=torch.float32)
    assert torch.equal(fields["geom_friction"][:, others], nominal.expand(N, -1, -1))
    trunk = model.body("base").id
    torch.testing.assert_close(fields["body_mass"][:, trunk], float(model.body_mass[trunk]) + added_mass)
    assert torch.equal(fields["actuator_gainprm"][:, :, 0], kp)
    assert torch.equal(fields["actuator_biasprm"][:, :, 1], -kp)
    assert torch.equal(fields["actuator_biasprm"][:, :, 2], -kd)
    for name in ("body_subtreemass", "dof_invweight0", "body_invweight0"):  # set_const, per world, as C's
        expected = torch.tensor(batch.batch.expanded(name), dtype=torch.float32)
        torch.testing.assert_close(fields[name], expected.reshape(fields[name].shape), rtol=1e-4, atol=1e-6)

    step_both(warp, batch, robot.default_joint_pos.repeat(N, 1), 10, MOVING)
    step_both(warp, batch, random_targets(robot, generator), 20, MOVING)


def test_mjdata(sims, robot):
    """An MjData of one world: its state, and its randomised model in the forward dynamics."""
    warp, _ = sims
    warp.set_added_mass(torch.tensor([2]), torch.tensor([1.5]))
    warp.step(robot.default_joint_pos.repeat(N, 1), nstep=4)
    data = warp.mjdata(2)
    assert isinstance(data, mujoco.MjData)
    np.testing.assert_allclose(data.qpos, warp.qpos[2].numpy(), rtol=0, atol=1e-7)
    gravity = (robot.model.body_mass.sum() + 1.5) * -robot.model.opt.gravity[2]
    assert data.qfrc_bias[2] == pytest.approx(gravity, rel=1e-2)  # the base's vertical bias force: m g, nearly at rest
    legs = ("FL", "FR", "RL", "RR")
    sites = np.concatenate([data.site(f"{leg}_foot").xpos for leg in legs])
    foot_pos = warp.sensordata[2, robot.sensor_block([f"{leg}_pos" for leg in legs])].numpy()
    np.testing.assert_allclose(sites, foot_pos, atol=0.01)  # the sensors lag a substep


def test_unstable_flags_only_the_diverged_world(sims, robot):
    warp, _ = sims
    previous = warp.unstable
    warp.qpos[3, 10] = float("nan")
    warp.step(robot.default_joint_pos.repeat(N, 1), nstep=4)
    assert warp.unstable.tolist() == [i == 3 for i in range(N)]
    assert previous is not warp.unstable and not previous.any()  # a new tensor at each refresh
    assert torch.isfinite(warp.qpos[[0, 1, 2, 4, 5]]).all()


def test_constraint_and_contact_overflow_flag_worlds(robot):
    """njmax too small: only the world in contact overflows its rows; nconmax too small: every world is flagged
    (Warp counts contacts over all worlds)."""
    sim = MujocoWarpBackend(robot.model, 2, nconmax=2, njmax=8)
    sunk = torch.as_tensor(robot.model.qpos0, dtype=torch.float32)[None]  # straight legs, 4 feet in the floor
    flying = standing_qpos(robot, 1, height=2.0)
    ctrl, rest = torch.zeros(2, robot.model.nu), torch.zeros(1, robot.model.nv)
    sim.reset(torch.tensor([0]), sunk, rest, ctrl[:1])
    sim.reset(torch.tensor([1]), flying, rest, ctrl[:1])
    sim.step(ctrl, nstep=1)
    assert sim.unstable.tolist() == [True, False]  # 4 contacts: 16 rows > 8
    sim.reset(torch.tensor([1]), sunk, rest, ctrl[:1])
    sim.step(ctrl, nstep=1)
    assert sim.unstable.tolist() == [True, True]  # 8 contacts > 2 worlds * 2


def test_make_backend(robot, monkeypatch):
    assert isinstance(make_backend(robot.model, 2, "cpu"), MujocoBatchBackend)
    sim = make_backend(robot.model, 2, "warp-cpu")
    assert isinstance(sim, MujocoWarpBackend) and sim.device == torch.device("cpu")
    with pytest.raises(ValueError, match="env.sim_device='gpu'.*'warp-cpu'"):
        make_backend(robot.model, 2, "gpu")
    monkeypatch.setitem(sys.modules, "legged_gym.sim.mujoco_warp", None)
    with pytest.raises(ImportError, match=r'pip install -e "\.\[gpu\]"'):
        make_backend(robot.model, 2, "cuda:0")


def test_graphs_replay_the_direct_calls(sims, robot):
    """Captured graphs (Warp's CPU device replays them too) step, reset and recompute exactly as the direct calls,
    with one step graph per nstep."""
    direct, _ = sims
    graphs = MujocoWarpBackend(robot.model, N, graphs=True)
    graphs.set_added_mass(torch.arange(N), torch.zeros(N))  # constants derived by Warp, as `sims` has them
    qpos = standing_qpos(robot, N)
    graphs.reset(torch.arange(N), qpos, torch.zeros(N, robot.model.nv), qpos[:, 7:])
    generator = torch.Generator().manual_seed(4)
    for nstep in (4, 4, 2, 4):  # a capture, a replay, a second graph, the first again
        ctrl = random_targets(robot, generator)
        for sim in (direct, graphs):
            sim.step(ctrl, nstep)
    for sim in (direct, graphs):
        sim.reset(torch.tensor([1, 4]), qpos[:2], torch.zeros(2, robot.model.nv), qpos[:2, 7:])
    for name in ("qpos", "qvel", "sensordata"):
        assert torch.equal(getattr(graphs, name), getattr(direct, name))
    assert set(graphs._graphs) == {"forward", "reset", ("step", 4), ("step", 2)}


@pytest.mark.skipif(wp.get_cuda_device_count() > 0, reason="this machine has a GPU")
def test_missing_gpu_is_a_clear_error(robot):
    with pytest.raises(ValueError, match="'cuda:0': Warp has no such device here"):
        make_backend(robot.model, 2, "cuda:0")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(robot):
    """On a GPU (as CUDA graphs, with torch on the default stream): the CPU device's physics."""
    cpu, gpu = MujocoWarpBackend(robot.model, N), MujocoWarpBackend(robot.model, N, device="cuda:0")
    assert gpu.qpos.is_cuda and gpu._use_graphs
    qpos = standing_qpos(robot, N)
    generator = torch.Generator().manual_seed(5)
    for sim in (cpu, gpu):
        sim.reset(torch.arange(N), qpos, torch.zeros(N, robot.model.nv), qpos[:, 7:])
    for nstep in (4, 4, 2, 4):
        ctrl = random_targets(robot, generator)
        for sim in (cpu, gpu):
            sim.step(ctrl, nstep)
    for sim in (cpu, gpu):
        sim.reset(torch.tensor([0, 5]), qpos[:2], torch.zeros(2, robot.model.nv), qpos[:2, 7:])
    assert_close(gpu, cpu, MOVING)
    assert not gpu.unstable.any()
