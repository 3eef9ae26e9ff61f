"""Algorithms: HookedPPO (rsl_rl's PPO with the runners' extension points) and PPOMoE (plus gate regularisers)."""

from rsl_rl_moe.algorithms.hooks import HookedPPO
from rsl_rl_moe.algorithms.ppo_moe import PPOMoE

__all__ = ["HookedPPO", "PPOMoE"]
