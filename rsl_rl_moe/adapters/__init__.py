"""Adapters from other env interfaces to rsl-rl-lib 5.5's VecEnv (none imports its simulator)."""

from rsl_rl_moe.adapters.legged_gym import LeggedGymVecEnv, config_to_dict

__all__ = ["LeggedGymVecEnv", "config_to_dict"]
