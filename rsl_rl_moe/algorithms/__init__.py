"""Algorithms: PPOMoE (PPO with gate regularisers)."""

from rsl_rl_moe.algorithms.ppo_moe import PPOMoE

__all__ = ["PPOMoE"]
