"""An expert's actor for training beside a partner: PPO counts only the action entries the policy writes itself.

When another expert writes some limbs in some episodes (``env.partner``,
:meth:`legged_gym.envs.LeggedRobot.set_partner`), the trained policy's own sample for those entries is never
applied. rsl_rl's PPO would still give them gradient
with advantages they had no effect on, count them in the KL that sets the learning rate, and push their std up with
the entropy bonus, with nothing pulling it back: measured on the arm expert, the legs' std rose from 1.0 to 1.6 in
500 iterations and the robot stepped about while standing on its own legs.

:class:`OwnActionsMLPModel` is rsl_rl's :class:`~rsl_rl.models.MLPModel` whose log-probability, entropy and KL sum
over the entries marked 1 in the env's observation group ``own_actions`` (N, A) (1: the policy's action is applied,
0: a partner's is). PPO reads the group from the observations it stores, so each sample keeps its own mask. Without
that group it is MLPModel. Its parameters, state dict and inference are MLPModel's: a checkpoint trained with it
is an ordinary MLP expert.

``entropy_action_weights`` (A,) weighs each entry's entropy in the entropy bonus (default: all 1). An expert whose job
is one limb can leave the others' entries out (weight 0): their std then moves only with the surrogate loss. Measured
on the arm expert: with the bonus on all 18 entries the legs' std rose to ~1.5 over 500 iterations while the arm's
fell, the base moved at 0.27 m/s in the standing episodes of training and drifted 6-7 cm in evaluation.
"""

from __future__ import annotations

import torch
from rsl_rl.models import MLPModel
from rsl_rl.modules import GaussianDistribution
from torch.distributions import Normal

OWN_ACTIONS_GROUP = "own_actions"
"""Observation group (N, A) float: 1 where the policy's action entry is applied, 0 where a partner writes it."""


class OwnActionsMLPModel(MLPModel):
    """:class:`~rsl_rl.models.MLPModel` whose PPO terms count only the action entries in ``obs["own_actions"]``, and
    whose entropy bonus weighs entry ``j`` by ``entropy_action_weights[j]``."""

    def __init__(
        self, obs, obs_groups, obs_set: str, output_dim: int, *args, entropy_action_weights=None, **kwargs
    ) -> None:
        super().__init__(obs, obs_groups, obs_set, output_dim, *args, **kwargs)
        weights = None if entropy_action_weights is None else torch.tensor(entropy_action_weights, dtype=torch.float)
        if weights is not None and weights.shape != (output_dim,):
            raise ValueError(f"entropy_action_weights: {len(weights)} weights for {output_dim} action entries")
        # not a parameter and not in the state dict (the checkpoint stays an MLPModel's); moves with the model
        self.register_buffer("entropy_action_weights", weights, persistent=False)

    def forward(self, obs, masks=None, hidden_state=None, stochastic_output: bool = False) -> torch.Tensor:
        """MLPModel's forward; remembers the batch's ``own_actions`` (None without the group) for the PPO terms."""
        own = obs[OWN_ACTIONS_GROUP] if OWN_ACTIONS_GROUP in obs.keys() else None
        if own is not None and type(self.distribution) is not GaussianDistribution:
            raise ValueError(
                f"{OWN_ACTIONS_GROUP}: only a GaussianDistribution actor can leave entries out, "
                f"not {type(self.distribution).__name__}"
            )
        self._own_actions = own
        return super().forward(obs, masks, hidden_state, stochastic_output)

    def _own(self, like: torch.Tensor) -> torch.Tensor | None:
        """The remembered mask, its first rows matching ``like``'s (PPO keeps the un-augmented rows for the KL)."""
        own = getattr(self, "_own_actions", None)
        return None if own is None else own[: like.shape[0]].to(like.dtype)

    @property
    def output_entropy(self) -> torch.Tensor:
        """(B,) entropy of the policy's own entries, each weighted by ``entropy_action_weights``."""
        own, weights = self._own(self.distribution.mean), self.entropy_action_weights
        if own is None and weights is None:
            return super().output_entropy
        per_entry = Normal(self.distribution.mean, self.distribution.std).entropy()
        if own is not None:
            per_entry = per_entry * own
        if weights is not None:
            per_entry = per_entry * weights
        return per_entry.sum(dim=-1)

    def get_output_log_prob(self, outputs: torch.Tensor) -> torch.Tensor:
        """(B,) log-probability of the policy's own entries of ``outputs`` (B, A)."""
        per_entry = Normal(self.distribution.mean, self.distribution.std).log_prob(outputs)
        own = self._own(per_entry)
        return super().get_output_log_prob(outputs) if own is None else (per_entry * own).sum(dim=-1)

    def get_kl_divergence(
        self, old_params: tuple[torch.Tensor, ...], new_params: tuple[torch.Tensor, ...]
    ) -> torch.Tensor:
        """(B,) KL between two (mean, std) parameterisations over the policy's own entries."""
        per_entry = torch.distributions.kl_divergence(Normal(*old_params), Normal(*new_params))
        own = self._own(per_entry)
        return super().get_kl_divergence(old_params, new_params) if own is None else (per_entry * own).sum(dim=-1)
