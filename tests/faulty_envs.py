"""Envs that fail on purpose, for the fault tests (``env.class_name=tests.faulty_envs:<Class>``)."""

from __future__ import annotations

import torch

from legged_gym.envs import LeggedRobot

FAULT_STEP = 40
"""Policy steps after which the fault appears (iteration 5 at 8 steps per env and iteration)."""


class RewardBlowsUp(LeggedRobot):
    """From step :data:`FAULT_STEP` on, rewards are +inf (a reward term that overflows): the value loss and
    then every gradient become non-finite."""

    steps = 0

    def step(self, actions):
        obs, rewards, dones, extras = super().step(actions)
        self.steps += 1
        if self.steps >= FAULT_STEP:
            rewards = torch.full_like(rewards, float("inf"))
        return obs, rewards, dones, extras


class RaisesMidRun(LeggedRobot):
    """Raises at step :data:`FAULT_STEP` (a bug in user code, during a rollout)."""

    steps = 0

    def step(self, actions):
        self.steps += 1
        if self.steps == FAULT_STEP:
            raise RuntimeError("a bug in the env's step")
        return super().step(actions)
