"""Models: the ObsMoE gate, experts rebuilt from checkpoints, the MoE actor and critic."""

from rsl_rl_moe.modules.actor_critic_moe import ActorCriticMoE, ExpertMixture, MoEActor, MoECritic
from rsl_rl_moe.modules.experts import Expert, load_expert, load_experts
from rsl_rl_moe.modules.obs_moe import ObsMoE, RoutingSchedule, RoutingState

__all__ = [
    "ActorCriticMoE",
    "Expert",
    "ExpertMixture",
    "MoEActor",
    "MoECritic",
    "ObsMoE",
    "RoutingSchedule",
    "RoutingState",
    "load_expert",
    "load_experts",
]
