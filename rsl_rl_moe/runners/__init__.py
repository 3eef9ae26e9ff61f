"""Runners that wire checkpoints, progress and diagnostics into rsl_rl's OnPolicyRunner."""

from rsl_rl_moe.runners.moe_runner import MoERunner, with_described_experts
from rsl_rl_moe.runners.runner import Runner

__all__ = ["MoERunner", "Runner", "with_described_experts"]
