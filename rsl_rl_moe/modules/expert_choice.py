"""Exploration by expert choice: the MoE actor's policy as a mixture of Gaussians around the experts.

With ``exploration: gaussian`` the MoE actor samples a Gaussian around the blended mean
``sum_i w_i a_i``. The gate then only learns from how the return changes with small
Gaussian noise along the direction between the experts' actions, and rollouts never leave the blend
the gate starts in (a 50/50 blend that falls far more often than either expert alone).

:class:`ExpertChoiceDistribution` instead makes the gate weights the probabilities of a choice of
expert, per action group g (one group for a scalar gate, e.g. legs and arm for per-limb gating)::

    pi(a | s) = prod_g sum_i w_{g,i}(s) N(a_g; a_{i,g}(s), diag(std_g^2))

A sample picks expert ``i`` for group ``g`` with probability ``w_{g,i}`` and adds Gaussian noise
(trainable std, one per action) around that expert's action. The PPO likelihood ratio is the ratio of
these mixture densities, so the gate gets a categorical-choice gradient: whole rollout segments on
one expert or the other, compared by their returns.

Held choices: an expert choice is drawn by inverse CDF from a uniform number ``u`` per env and group
that is kept between steps and redrawn with probability ``1 / hold_steps`` each step, so choices last
``hold_steps`` policy steps on average (geometric) while each step's marginal stays exactly the
mixture above. Held numbers advance only on calls without autograd (rollouts, under inference mode);
a call with autograd (PPO recomputing log-probabilities) draws fresh ones and leaves them alone.

The deterministic output (play, evaluation, export) is still the blended mean ``sum_i w_i a_i``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.distributions import Normal, kl_divergence

LOG_WEIGHT_FLOOR = 1e-12
"""Weights are clamped to this before the log, so sparse routings (exact zeros) stay finite."""


def _log_weights(weights: torch.Tensor) -> torch.Tensor:
    """Log of gate weights, finite where a weight is exactly 0."""
    return weights.clamp_min(LOG_WEIGHT_FLOOR).log()


class ExpertChoiceDistribution(nn.Module):
    """Mixture of Gaussians centred on the experts' actions, mixed per action group by the gate weights.

    Args:
        action_to_group: ``(A,)`` long, the action group of each action (all zeros for a scalar gate).
        init_std: ``(A,)`` initial std of the Gaussian around the chosen expert's action.
        hold_steps: mean number of policy steps an expert choice is kept (>= 1; 1: a fresh choice each step).
        allowed_experts: ``(G, E)`` bool, experts a group may choose (the gate gives the others weight exactly 0);
            they are never sampled and add nothing to the density. None: all.
    """

    def __init__(
        self,
        action_to_group: torch.Tensor,
        init_std: torch.Tensor,
        hold_steps: float,
        allowed_experts: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if hold_steps < 1:
            raise ValueError(f"expert_choice_hold_steps must be >= 1 (policy steps), got {hold_steps}")
        num_groups = int(action_to_group.max()) + 1
        self.output_dim = int(action_to_group.numel())
        self.hold_steps = float(hold_steps)
        self.std_param = nn.Parameter(init_std.clone().float())
        # (A, G) one-hot action -> group; not saved: checkpoints of either exploration load into the other
        self.register_buffer(
            "group_of_action", nn.functional.one_hot(action_to_group, num_groups).float(), persistent=False
        )
        # (G, E) or None; not saved: derived from the config (action maps)
        self.register_buffer(
            "allowed_experts", None if allowed_experts is None else allowed_experts.bool().clone(), persistent=False
        )
        self._held_uniform: torch.Tensor | None = None  # (N, G) in [0, 1)
        self._weights: torch.Tensor | None = None  # (N, G, E)
        self._means: torch.Tensor | None = None  # (N, A, E)
        self._blend: torch.Tensor | None = None  # (N, A)

    # --- rsl_rl Distribution interface ---------------------------------------------------------
    @property
    def input_dim(self) -> int:
        return self.output_dim

    def update(self, weights: torch.Tensor, means: torch.Tensor, blended_mean: torch.Tensor) -> None:
        """Set the distribution for a batch.

        Args:
            weights: ``(N, G, E)`` gate weights per action group (each ``[n, g, :]`` on the simplex).
            means: ``(N, A, E)`` expert action means.
            blended_mean: ``(N, A)`` ``sum_i w_i a_i`` (the deterministic output).
        """
        self._weights, self._means, self._blend = weights, means, blended_mean

    def deterministic_output(self, blended_mean: torch.Tensor) -> torch.Tensor:
        """The blended mean, unchanged."""
        return blended_mean

    @property
    def mean(self) -> torch.Tensor:
        """``(N, A)`` the blended mean ``sum_i w_i a_i`` (the mixture's mean)."""
        return self._blend

    @property
    def std(self) -> torch.Tensor:
        """``(N, A)`` std of the Gaussian around the chosen expert's action (not the mixture's spread)."""
        return self._std().expand_as(self._blend)

    @property
    def params(self) -> tuple[torch.Tensor, ...]:
        """``(weights (N, G, E), expert means (N, A, E), std (N, A))``."""
        return (self._weights, self._means, self.std)

    def sample(self) -> torch.Tensor:
        """``(N, A)``: per group, the chosen expert's action plus Gaussian noise."""
        weights = self._weights
        uniform = self._choice_uniform(weights.shape[0], weights.shape[1], weights.device)
        cdf = weights.cumsum(dim=-1)  # (N, G, E)
        cdf = cdf / cdf[..., -1:]  # exactly 1 at the end: an expert of weight 0 is never chosen, even the last
        choice = (uniform.unsqueeze(-1) >= cdf[..., :-1]).sum(dim=-1)  # (N, G) expert index
        one_hot = nn.functional.one_hot(choice, weights.shape[-1]).to(self._means.dtype)  # (N, G, E)
        per_action_choice = torch.einsum("nge,ag->nae", one_hot, self.group_of_action)
        chosen_mean = (per_action_choice * self._means).sum(dim=-1)
        return chosen_mean + self._std() * torch.randn_like(chosen_mean)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        """``(N,)`` log-density of ``actions`` ``(N, A)`` under the mixture (summed over groups)."""
        per_action = Normal(self._means, self._std().unsqueeze(-1)).log_prob(actions.unsqueeze(-1))  # (N, A, E)
        per_group = torch.einsum("nae,ag->nge", per_action, self.group_of_action)  # (N, G, E)
        log_weights = _log_weights(self._weights)
        if self.allowed_experts is not None:  # experts a group may not choose contribute exactly nothing
            log_weights = log_weights.masked_fill(~self.allowed_experts, float("-inf"))
        return torch.logsumexp(log_weights + per_group, dim=-1).sum(dim=-1)

    @property
    def entropy(self) -> torch.Tensor:
        """``(N,)`` an upper bound of the mixture's entropy: choice entropy + Gaussian entropy."""
        weights = self._weights
        choice_entropy = -(weights * _log_weights(weights)).sum(dim=(-2, -1))
        return choice_entropy + Normal(0.0, self._std()).entropy().sum()

    def kl_divergence(self, old_params: tuple[torch.Tensor, ...], new_params: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """``(N,)`` an upper bound of KL(old || new): KL of the choices + expected KL of the chosen Gaussians.

        Used by rsl_rl's adaptive learning-rate schedule.
        """
        old_w, old_means, old_std = old_params
        new_w, new_means, new_std = new_params
        choice_kl = (old_w * (_log_weights(old_w) - _log_weights(new_w))).sum(dim=(-2, -1))
        gaussian_kl = kl_divergence(
            Normal(old_means, old_std.unsqueeze(-1)), Normal(new_means, new_std.unsqueeze(-1))
        )  # (N, A, E)
        per_group = torch.einsum("nae,ag->nge", gaussian_kl, self.group_of_action)
        return choice_kl + (old_w * per_group).sum(dim=(-2, -1))

    # --- internals -----------------------------------------------------------------------------
    def _std(self) -> torch.Tensor:
        """``(A,)`` the std, kept positive."""
        return self.std_param.clamp_min(1e-6)

    def _choice_uniform(self, num_envs: int, num_groups: int, device: torch.device) -> torch.Tensor:
        """``(N, G)`` uniform numbers choosing the experts: held across rollout steps, fresh under autograd."""
        if torch.is_grad_enabled():
            return torch.rand(num_envs, num_groups, device=device)
        held = self._held_uniform
        if held is None or held.shape != (num_envs, num_groups) or held.device != device:
            held = torch.rand(num_envs, num_groups, device=device)
        else:
            redraw = torch.rand(num_envs, num_groups, device=device) < 1.0 / self.hold_steps
            held = torch.where(redraw, torch.rand(num_envs, num_groups, device=device), held)
        self._held_uniform = held
        return held
