"""Task assignment and command sampling: velocity commands and end-effector targets.

Every env has a task per episode (its id indexes :data:`TASK_NAMES`), and the same two commands
whatever its task, so all experts read one observation layout:

- ``locomotion``: a velocity command (vx, vy, yaw rate); the end-effector target is the arm's home
  position (the arm holds its default pose).
- ``reaching``: velocity command zero (the base stands); the end-effector target is sampled in the
  workspace every ``resampling_time_s``, or replayed from a sequence file.
- ``loco_reach``: both at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from legged_gym.utils.arrays import NUMPY_OPS, ArrayOps
from legged_gym.utils.buffers import InPlaceBuffer
from legged_gym.utils.sequence_sampler import TargetSequenceSampler


@dataclass(frozen=True)
class Task:
    """One task of the env: its name (also its ``env.tasks.<name>`` section for the shared settings) and the
    commands its episodes move (the others hold still: zero velocity, the arm's home target)."""

    name: str
    moves_base: bool
    moves_arm: bool


TASKS = (
    Task("locomotion", moves_base=True, moves_arm=False),
    Task("reaching", moves_base=False, moves_arm=True),
    Task("loco_reach", moves_base=True, moves_arm=True),
)
"""The task table, in task-id order."""
TASK_NAMES = tuple(task.name for task in TASKS)
MOVES_BASE = torch.tensor([task.moves_base for task in TASKS])
"""(T,) bool, by task id: its episodes command base velocities."""
MOVES_ARM = torch.tensor([task.moves_arm for task in TASKS])
"""(T,) bool, by task id: its episodes command end-effector targets."""
LOCOMOTION, REACHING, LOCO_REACH = TASK_NAMES
"""The task names one by one (also the names of their ``env.tasks.<task>`` config sections)."""
TASKS_MOVING_BASE = tuple(task.name for task in TASKS if task.moves_base)
"""Tasks whose episodes command base velocities (:data:`MOVES_BASE`): locomotion, loco_reach."""
TASKS_MOVING_ARM = tuple(task.name for task in TASKS if task.moves_arm)
"""Tasks whose episodes command end-effector targets (:data:`MOVES_ARM`): reaching, loco_reach."""


class TaskCommands:
    """Holds and resamples the commands of N envs.

    Args:
        tasks_cfg: ``env.tasks`` config (``probabilities``, ``locomotion``, ``reaching`` sections).
        ee_home_b: (3,) arm home position [m], base-yaw frame relative to the base origin.
        num_envs: N.
        policy_dt: policy period [s].
        generator: torch RNG on ``device``.
        device: where the commands live (the env's device).
        ops: the array backend that counts the resampling periods (:mod:`legged_gym.utils.arrays`).

    Attributes (assignment writes in place, :class:`~legged_gym.utils.buffers.InPlaceBuffer`: the env keeps views):
        task_ids: (N,) long, index into :data:`TASK_NAMES`.
        velocity: (N, 3) commanded (vx [m/s], vy [m/s], yaw rate [rad/s]) in the base frame.
        ee_target_b: (N, 3) end-effector target [m], base-yaw frame relative to the base origin.
        steps_since_vel, steps_since_ee: (N,) long, policy steps since the last velocity / EE-target resample.
    """

    task_ids = InPlaceBuffer()
    velocity = InPlaceBuffer()
    ee_target_b = InPlaceBuffer()
    steps_since_vel = InPlaceBuffer()
    steps_since_ee = InPlaceBuffer()

    def __init__(
        self,
        tasks_cfg: dict,
        ee_home_b: torch.Tensor,
        num_envs: int,
        policy_dt: float,
        generator: torch.Generator,
        device: torch.device | str = "cpu",
        ops: ArrayOps = NUMPY_OPS,
    ):
        self.device = torch.device(device)
        self.ops = ops
        self.ee_home_b = ee_home_b.to(self.device)
        self.num_envs = num_envs
        self.policy_dt = policy_dt
        self.generator = generator
        self.moves_base, self.moves_arm = MOVES_BASE.to(self.device), MOVES_ARM.to(self.device)
        self.configure(tasks_cfg)
        reach = tasks_cfg["reaching"]
        file_path = reach["sequence_sampler"].get("file_path")
        self.sequences = (
            TargetSequenceSampler(file_path, policy_dt, num_envs, generator, self.device) if file_path else None
        )

        self.task_ids = torch.zeros(num_envs, dtype=torch.long, device=self.device)
        self.velocity = torch.zeros(num_envs, 3, device=self.device)
        self.ee_target_b = self.ee_home_b.repeat(num_envs, 1)
        # policy steps since the last velocity / EE-target resample: (N,) views of the columns of one (N, 2) counter
        self._steps_since = torch.zeros(num_envs, 2, dtype=torch.long, device=self.device)
        self.steps_since_vel, self.steps_since_ee = self._steps_since.unbind(dim=1)
        self._steps_since_array = ops.of(self._steps_since)  # counted by the array backend (numpy on CPU)

    def configure(self, tasks_cfg: dict) -> None:
        """Task probabilities, command ranges and resampling periods from ``tasks_cfg`` (``env.tasks``); called at
        construction and by a curriculum stage (the commands being held are kept until their next resample)."""
        self.cfg = tasks_cfg
        probs = [float(tasks_cfg["probabilities"].get(name, 0.0)) for name in TASK_NAMES]
        unknown = set(tasks_cfg["probabilities"]) - set(TASK_NAMES)
        if unknown or sum(probs) <= 0:
            raise ValueError(
                f"env.tasks.probabilities={dict(tasks_cfg['probabilities'])}: keys must be among {TASK_NAMES} "
                "with a positive total"
            )
        self.task_probs = torch.tensor(probs, device=self.device) / sum(probs)
        loco, reach = tasks_cfg["locomotion"], tasks_cfg["reaching"]
        self.vel_interval = max(1, round(loco["resampling_time_s"] / self.policy_dt))
        self.ee_interval = max(1, round(reach["resampling_time_s"] / self.policy_dt))
        ranges = (loco["lin_vel_x"], loco["lin_vel_y"], loco["ang_vel_yaw"])
        self.vel_low = torch.tensor([r[0] for r in ranges], device=self.device)
        self.vel_high = torch.tensor([r[1] for r in ranges], device=self.device)
        self._shoulder_b = torch.tensor(reach["workspace"]["shoulder_b"], device=self.device)
        self._resample_intervals = self.ops.asarray(np.array([self.vel_interval, self.ee_interval]))

    def _uniform(self, n: int, low, high) -> torch.Tensor:
        shape = (n, *torch.as_tensor(low).shape)
        return low + (high - low) * torch.rand(shape, generator=self.generator, device=self.device)

    def reset(self, env_ids: torch.Tensor) -> None:
        """New episode for ``env_ids``: draw a task, then fresh commands."""
        if len(env_ids) == 0:
            return
        self.task_ids[env_ids] = torch.multinomial(self.task_probs, len(env_ids), True, generator=self.generator)
        self.resample_velocity(env_ids)
        self.resample_ee_target(env_ids)
        if self.sequences is not None:
            self.sequences.start(env_ids)
            self._apply_sequence(env_ids)

    def resample_velocity(self, env_ids: torch.Tensor) -> None:
        """Velocity commands of ``env_ids``; zero for tasks that do not move the base, or with ``still_prob``."""
        loco = self.cfg["locomotion"]
        cmd = self._uniform(len(env_ids), self.vel_low, self.vel_high)
        small = cmd[:, :2].norm(dim=1) < loco["min_lin_vel"]
        cmd[small, :2] = 0.0
        still = torch.rand(len(env_ids), generator=self.generator, device=self.device) < loco["still_prob"]
        cmd[still | ~self.moves_base[self.task_ids[env_ids]]] = 0.0
        self.velocity[env_ids] = cmd
        self.steps_since_vel[env_ids] = 0

    def resample_ee_target(self, env_ids: torch.Tensor) -> None:
        """Workspace targets for ``env_ids`` whose task moves the arm; home for the others."""
        ws = self.cfg["reaching"]["workspace"]
        n = len(env_ids)
        radius = self._uniform(n, *ws["radius"])
        azimuth = self._uniform(n, *ws["azimuth"])
        elevation = self._uniform(n, *ws["elevation"])
        offset = torch.stack(
            [
                radius * torch.cos(elevation) * torch.cos(azimuth),
                radius * torch.cos(elevation) * torch.sin(azimuth),
                radius * torch.sin(elevation),
            ],
            dim=-1,
        )
        target = self._shoulder_b + offset
        home = ~self.moves_arm[self.task_ids[env_ids]]
        target[home] = self.ee_home_b
        self.ee_target_b[env_ids] = target
        self.steps_since_ee[env_ids] = 0

    def _apply_sequence(self, env_ids: torch.Tensor) -> None:
        arm = env_ids[self.moves_arm[self.task_ids[env_ids]]]
        if len(arm):
            self.ee_target_b[arm] = self.sequences.current(arm)

    def describe(self, env_id: int) -> tuple[str, dict[str, torch.Tensor]]:
        """Task name of env ``env_id`` and the commands it follows now (e.g. for a timeline of a rollout).

        Returns:
            ``(task, {"velocity command": (3,) [m/s, m/s, rad/s], "EE target": (3,) [m, base-yaw frame]})``.
        """
        task = TASK_NAMES[int(self.task_ids[env_id])]
        return task, {"velocity command": self.velocity[env_id], "EE target": self.ee_target_b[env_id]}

    def step(self) -> None:
        """Advance one policy step, resampling expired commands."""
        ops, steps_since = self.ops, self._steps_since_array
        steps_since += 1
        due = steps_since >= self._resample_intervals  # (N, 2): velocity, EE target
        if due.any():  # on a few steps only: resampling is seconds apart
            vel_due = ops.flatnonzero(due[:, 0])
            if len(vel_due):
                self.resample_velocity(ops.as_tensor(vel_due))
            ee_due = ops.flatnonzero(due[:, 1])
            if len(ee_due) and self.sequences is None:
                self.resample_ee_target(ops.as_tensor(ee_due))
        if self.sequences is not None:
            arm = self.moves_arm[self.task_ids].nonzero().flatten()
            self.sequences.advance(arm)
            self._apply_sequence(arm)
