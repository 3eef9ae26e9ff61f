"""Models: the ObsMoE gate, experts rebuilt from checkpoints, the MoE actor and critic.

The mixture of experts actor-critic (the user guide's "ActorCriticMoE") is the pair :class:`MoEActor` and
:class:`MoECritic` of :mod:`rsl_rl_moe.modules.actor_critic_moe`, both given the same :class:`ExpertSources`.
"""

from rsl_rl_moe.modules.actor_critic_moe import ExpertMixture, MoEActor, MoECritic
from rsl_rl_moe.modules.experts import Expert, ExpertSources, load_expert, load_experts
from rsl_rl_moe.modules.obs_moe import ObsMoE, RoutingSchedule, RoutingState

__all__ = [
    "Expert",
    "ExpertMixture",
    "ExpertSources",
    "MoEActor",
    "MoECritic",
    "ObsMoE",
    "RoutingSchedule",
    "RoutingState",
    "load_expert",
    "load_experts",
]


def __getattr__(name: str):
    if name == "ActorCriticMoE":  # no alias: the name said actor-critic, the class is only the actor
        raise AttributeError(
            "rsl_rl_moe.modules.ActorCriticMoE was a second name of the MoE actor: use rsl_rl_moe.modules:MoEActor "
            "with expert_sources={experts: {name: path, ...}} (rsl_rl_moe.checkpoint.upgrade_model_cfg translates "
            "configs of older versions; rsl_rl_moe.runners.Runner and scripts/common.py apply it)"
        )
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
