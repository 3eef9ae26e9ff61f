"""Regularisers on gate weights and logits.

Shapes: weights ``w`` are ``(N, E)`` or ``(N, G, E)`` (per action group), on the simplex over the last
dimension; logits have the same shape. Batch statistics are taken over N for each group, and every
loss is averaged over groups. Losses are in nats (natural log) or dimensionless. :func:`entropy` is the one
definition of gate entropy (:mod:`rsl_rl_moe.diagnostics.information`, also used by the selection statistics).
"""

from __future__ import annotations

import math

import torch

from rsl_rl_moe.diagnostics.information import entropy
from rsl_rl_moe.modules.actor_critic_moe import grouped_weights

__all__ = ["diversity_loss", "entropy", "kl_to_uniform", "load_balance", "router_z_loss"]


def kl_to_uniform(weights: torch.Tensor) -> torch.Tensor:
    """``KL(mean_n w || uniform) = log E - H(mean_n w)``, in nats; 0 iff every expert gets the same
    average weight over the batch. Penalises collapse of the *average* use onto few experts while
    leaving each sample free to pick one expert (unlike a per-sample entropy bonus)."""
    mean_w = grouped_weights(weights).mean(dim=0)  # (G, E)
    return (math.log(mean_w.shape[-1]) - entropy(mean_w)).mean()


def load_balance(weights: torch.Tensor) -> torch.Tensor:
    """Switch Transformer load-balance loss ``E * sum_i f_i P_i`` (without its coefficient).

    ``f_i``: share of samples whose largest weight is expert i (no gradient); ``P_i``: mean weight of
    expert i. Equals 1 under uniform use, up to E when one expert takes everything.
    """
    w = grouped_weights(weights)
    num_experts = w.shape[-1]
    f = torch.nn.functional.one_hot(w.argmax(dim=-1), num_experts).to(w.dtype).mean(dim=0)  # (G, E)
    p = w.mean(dim=0)  # (G, E)
    return (num_experts * (f * p).sum(dim=-1)).mean()


def router_z_loss(logits: torch.Tensor) -> torch.Tensor:
    """Router z-loss ``mean(logsumexp(logits)^2)`` on the raw logits (before the temperature);
    keeps logits small so routing stays numerically stable."""
    return torch.logsumexp(logits, dim=-1).pow(2).mean()


def diversity_loss(weights: torch.Tensor) -> torch.Tensor:
    """Negative mutual information between input and expert: ``mean_n H(w_n) - H(mean_n w)``, in nats.

    Lowest (``-log E``) when every sample puts all its weight on one expert *and* the experts are used
    equally often over the batch; 0 when all samples share the same weights. Minimising it makes
    different states use different experts (specialisation).
    """
    w = grouped_weights(weights)
    return (entropy(w).mean(dim=0) - entropy(w.mean(dim=0))).mean()
