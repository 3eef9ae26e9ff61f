"""Environments: :class:`LeggedRobot` and its tasks."""

from legged_gym.envs.commands import TASK_NAMES
from legged_gym.envs.legged_robot import LeggedRobot

__all__ = ["LeggedRobot", "TASK_NAMES"]
