"""Go2 + Piper robot description in code: joint order, sensors, default pose, gains.

Action vector (18,), in this order (also the MJCF joint and actuator order)::

    0-2   FL hip, thigh, calf      3-5   FR hip, thigh, calf
    6-8   RL hip, thigh, calf      9-11  RR hip, thigh, calf
    12-17 Piper joint1 .. joint6

The gripper fingers are fixed geometry: not actuated, not in the action vector.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import mujoco
import numpy as np
import torch

from legged_gym import resolve_path

LEG_NAMES = ("FL", "FR", "RL", "RR")
LEG_JOINTS = tuple(f"{leg}_{part}_joint" for leg in LEG_NAMES for part in ("hip", "thigh", "calf"))
ARM_JOINTS = tuple(f"joint{i}" for i in range(1, 7))
ACTION_JOINTS = LEG_JOINTS + ARM_JOINTS
NUM_LEG_ACTIONS = len(LEG_JOINTS)
NUM_ACTIONS = len(ACTION_JOINTS)


@dataclass
class RobotModel:
    """A compiled robot model plus the index bookkeeping the env needs.

    Attributes:
        model: compiled MjModel with the configured actuator gains.
        default_joint_pos: (18,) standing pose [rad], action order.
        kp, kd: (18,) nominal servo gains.
        joint_range: (18, 2) joint limits [rad].
        sensor: name -> slice into ``sensordata`` (ee_pos, trunk_touch, <leg>_touch, <leg>_pos, <leg>_vel).
        ee_home_b: (3,) end-effector position [m] at the default pose, relative to the base origin, base-yaw frame.
    """

    model: mujoco.MjModel
    default_joint_pos: torch.Tensor
    kp: torch.Tensor
    kd: torch.Tensor
    joint_range: torch.Tensor
    sensor: dict[str, slice]
    ee_home_b: torch.Tensor

    def to(self, device: torch.device | str) -> RobotModel:
        """A copy with its tensors on ``device`` (the model is shared)."""
        tensors = ("default_joint_pos", "kp", "kd", "joint_range", "ee_home_b")
        return dataclasses.replace(self, **{name: getattr(self, name).to(device) for name in tensors})

    def sensor_block(self, names: list[str] | tuple[str, ...]) -> slice:
        """The ``sensordata`` columns of sensors ``names``, which must be adjacent, in this order, and all of one
        width d: ``sensordata[:, block].unflatten(1, (len(names), d))`` is (N, len(names), d), a view.

        Raises:
            ValueError: if the sensors are not laid out so.
        """
        slices = [self.sensor[n] for n in names]
        width = slices[0].stop - slices[0].start
        for before, after in zip(slices, slices[1:]):
            if after.start != before.stop or after.stop - after.start != width:
                raise ValueError(f"sensors {list(names)} are not adjacent in this order with one width: {slices}")
        return slice(slices[0].start, slices[-1].stop)


def _check_vector(name: str, values, length: int) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.shape != (length,):
        raise ValueError(f"env.robot.{name} has {array.size} entries, expected {length} (one per action joint)")
    return array


def load_robot(robot_cfg: dict) -> RobotModel:
    """Compile the MJCF named by ``robot_cfg["mjcf"]`` and apply the configured gains and timestep.

    Args:
        robot_cfg: the ``env.robot`` config: mjcf, timestep, default_joint_pos, kp, kd, torque_limits.
    """
    path = resolve_path(robot_cfg["mjcf"])  # from the current folder, else the shipped robot
    if not os.path.isfile(path):
        raise FileNotFoundError(f"robot model not found: {path} (set with env.robot.mjcf=...)")
    model = mujoco.MjModel.from_xml_path(path)
    names = tuple(model.joint(model.actuator_trnid[i, 0]).name for i in range(model.nu))
    if names != ACTION_JOINTS:
        raise ValueError(f"{path}: actuated joints {names} differ from the action order {ACTION_JOINTS}")

    model.opt.timestep = float(robot_cfg["timestep"])
    kp = _check_vector("kp", robot_cfg["kp"], NUM_ACTIONS)
    kd = _check_vector("kd", robot_cfg["kd"], NUM_ACTIONS)
    torque_limits = _check_vector("torque_limits", robot_cfg["torque_limits"], NUM_ACTIONS)
    default = _check_vector("default_joint_pos", robot_cfg["default_joint_pos"], NUM_ACTIONS)
    model.actuator_gainprm[:, 0] = kp
    model.actuator_biasprm[:, 0] = 0.0
    model.actuator_biasprm[:, 1] = -kp
    model.actuator_biasprm[:, 2] = -kd
    model.actuator_forcerange[:, 0] = -torque_limits
    model.actuator_forcerange[:, 1] = torque_limits
    model.actuator_forcelimited[:] = 1

    sensor = {
        model.sensor(i).name: slice(int(model.sensor_adr[i]), int(model.sensor_adr[i] + model.sensor_dim[i]))
        for i in range(model.nsensor)
    }
    joint_range = np.stack([model.jnt_range[model.joint(j).id] for j in ACTION_JOINTS])

    data = mujoco.MjData(model)
    data.qpos[2] = float(robot_cfg["init_height"])
    data.qpos[3] = 1.0
    data.qpos[7:] = default
    mujoco.mj_kinematics(model, data)
    ee_home_b = data.site("ee").xpos - data.qpos[:3]  # base unrotated: world axes = base-yaw axes

    as_tensor = lambda x: torch.as_tensor(np.asarray(x), dtype=torch.float32, device="cpu")  # noqa: E731
    return RobotModel(
        model=model,
        default_joint_pos=as_tensor(default),
        kp=as_tensor(kp),
        kd=as_tensor(kd),
        joint_range=as_tensor(joint_range),
        sensor=sensor,
        ee_home_b=as_tensor(ee_home_b),
    )
