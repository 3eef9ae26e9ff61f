"""PPOMoE: rsl_rl PPO plus regularisers on the actor's gate.

Loss per minibatch: the PPO loss of :class:`rsl_rl.algorithms.PPO` plus

- ``moe_weight_regularization * KL(mean gate weights || uniform)`` (:func:`gate_losses.kl_to_uniform`):
  keeps the *batch-average* use of the experts from collapsing onto one expert; each sample may still
  route to a single expert;
- ``load_balance_coef * E * sum_i f_i P_i`` (Switch Transformer, :func:`gate_losses.load_balance`);
- ``router_z_loss_coef * mean(logsumexp(logits)^2)`` (:func:`gate_losses.router_z_loss`);
- ``diversity_coef * (mean_n H(w_n) - H(mean_n w))`` (negative input/expert mutual information,
  :func:`gate_losses.diversity_loss`).

How the terms reach the gradient without copying ``PPO.update()``: rsl_rl 5.5 has no hook for extra
loss terms, and copying its ~150-line update would fork it. Instead :meth:`~PPOMoE.ppo_update` registers a forward
hook on the actor's gate for the duration of rsl_rl's update. On each forward with gradient
enabled (one per minibatch) the hook computes the regulariser R from the gate's weights and logits
and returns the weights passed through :func:`attach_loss`, an identity whose backward also sends a
gradient of 1 into R. Since the PPO loss depends on the weights, ``loss.backward()`` then yields the
gradient of ``loss + R`` exactly, and PPO's clipping, multi-GPU reduction and optimizer step apply to
it unchanged. This relies on ``PPO.update()`` running the actor forward once per minibatch before one
``backward()``; tests/moe pin the rsl-rl-lib version (:data:`TESTED_RSL_RL_VERSION`) and check the
resulting parameter step against ``-lr * grad(R)``. With the symmetry extension the actor is run on the
mirrored batch too, and that forward is regularised as well.

Logged (rsl_rl writes ``Loss/<key>``): ``moe_weight_regularization``, ``moe_load_balance``,
``moe_router_z``, ``moe_diversity`` (unweighted values, minibatch means), ``moe_gate_entropy`` (mean
per-sample entropy of the weights, nats), ``moe_routing_temperature`` and ``moe_routing_phase`` (index
into :data:`rsl_rl_moe.modules.obs_moe.PHASES`: 0 constant, 1 warmup, 2 anneal, 3 final) of the
iteration just trained. After each update the routing schedules of the actor's (and a MoE critic's)
gate advance by one iteration.

PPOMoE is a :class:`~rsl_rl_moe.algorithms.hooks.HookedPPO`: ``update()`` runs the runners' hooks (checks,
training diagnostics) around all of the above, and ``act()`` calls theirs after each step.

Extra observation groups (e.g. an env's ``task_id`` ``(N, 1)``) are kept in rollout storage by rsl_rl
and ignored by the models unless listed in ``obs_groups``.

For diagnostics (gradient conflict between tasks and between loss terms), :meth:`PPOMoE.loss_terms`
recomputes the loss of ``PPO.update()`` on a minibatch as separate terms, :func:`batch_rows` restricts a
minibatch to some rows (e.g. one task's), and :meth:`PPOMoE.conflict_minibatch` draws a minibatch as
``update()`` does without moving the global random state.
"""

from __future__ import annotations

import torch
from rsl_rl.storage import RolloutStorage

from rsl_rl_moe.algorithms import gate_losses
from rsl_rl_moe.algorithms.hooks import HookedPPO
from rsl_rl_moe.modules.actor_critic_moe import ExpertMixture
from rsl_rl_moe.modules.obs_moe import PHASES, ObsMoE

TESTED_RSL_RL_VERSION = "5.5.1"
"""rsl-rl-lib version whose ``PPO.update()`` the gate-loss hook was checked against."""


class _AttachLoss(torch.autograd.Function):
    """Identity on ``carrier``; its backward also returns d(total)/d(loss) = 1 for the scalar ``loss``."""

    @staticmethod
    def forward(ctx, carrier: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
        return carrier.view_as(carrier)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return grad, torch.ones((), dtype=grad.dtype, device=grad.device)


def attach_loss(carrier: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
    """Return ``carrier`` unchanged; any backward through it adds the gradient of the scalar ``loss``."""
    return _AttachLoss.apply(carrier, loss)


def untouched_rng(device: str | torch.device):
    """Context in which random draws on the CPU and on ``device`` leave the global random state as it was."""
    device = torch.device(device)
    return torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else [])


def batch_rows(batch: RolloutStorage.Batch, rows: torch.Tensor) -> RolloutStorage.Batch:
    """A feed-forward RL minibatch restricted to ``rows`` (bool mask (B,) or long indices)."""
    return RolloutStorage.Batch(
        observations=batch.observations[rows],
        actions=batch.actions[rows],
        values=batch.values[rows],
        advantages=batch.advantages[rows],
        returns=batch.returns[rows],
        old_actions_log_prob=batch.old_actions_log_prob[rows],
        old_distribution_params=tuple(p[rows] for p in batch.old_distribution_params),
    )


class PPOMoE(HookedPPO):
    """PPO with gate regularisers for a :class:`~rsl_rl_moe.modules.MoEActor` actor, and the runners' hooks
    (:mod:`rsl_rl_moe.algorithms.hooks`).

    Build it through rsl_rl: ``algorithm.class_name: rsl_rl_moe.algorithms:PPOMoE``.
    """

    def __init__(
        self,
        actor,
        critic,
        storage,
        moe_weight_regularization: float = 0.01,
        load_balance_coef: float = 0.0,
        router_z_loss_coef: float = 1e-3,
        diversity_coef: float = 0.0,
        **ppo_kwargs,
    ) -> None:
        """Args:
        actor, critic, storage: as for :class:`rsl_rl.algorithms.PPO`; the actor must have an ``ObsMoE`` ``gate``.
        moe_weight_regularization: coefficient of ``KL(mean gate weights || uniform)`` (nats).
        load_balance_coef: alpha of the Switch load-balance loss (off by default: tasks may be unevenly
            represented in a batch, and forcing equal use then fights specialisation).
        router_z_loss_coef: coefficient of the router z-loss.
        diversity_coef: coefficient of the diversity loss (negative mutual information, nats).
        ppo_kwargs: every other argument of :class:`rsl_rl.algorithms.PPO`.
        """
        super().__init__(actor, critic, storage, **ppo_kwargs)
        gate = getattr(self._raw_actor, "gate", None)
        if not isinstance(gate, ObsMoE):
            raise TypeError(
                f"PPOMoE needs an actor with an ObsMoE `gate` (rsl_rl_moe.modules:MoEActor), "
                f"got {type(self._raw_actor).__name__}: use rsl_rl's PPO for other actors"
            )
        self.gate = gate
        self.coefficients = {
            "moe_weight_regularization": moe_weight_regularization,
            "moe_load_balance": load_balance_coef,
            "moe_router_z": router_z_loss_coef,
            "moe_diversity": diversity_coef,
        }
        self._sums: dict[str, torch.Tensor] = {}
        self._num_forwards = 0

    def gate_regularization(
        self, weights: torch.Tensor, logits: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Weighted sum of the gate regularisers and each unweighted term.

        Args:
            weights: ``(N, E)`` or ``(N, G, E)`` gate weights.
            logits: raw gate logits, same shape.

        Returns:
            ``(sum_k coef_k * term_k, {name: term_k})`` plus ``moe_gate_entropy`` in the dict (not in the sum).
        """
        terms = {
            "moe_weight_regularization": gate_losses.kl_to_uniform(weights),
            "moe_load_balance": gate_losses.load_balance(weights),
            "moe_router_z": gate_losses.router_z_loss(logits),
            "moe_diversity": gate_losses.diversity_loss(weights),
        }
        total = sum(self.coefficients[name] * value for name, value in terms.items())
        terms["moe_gate_entropy"] = gate_losses.entropy(weights).mean()
        return total, terms

    def _regularize_gate(self, _module: ObsMoE, _inputs, output: tuple[torch.Tensor, torch.Tensor]):
        """Forward hook on the gate during :meth:`ppo_update`: attach the regulariser to the weights."""
        if not torch.is_grad_enabled():
            return None
        weights, logits = output
        total, terms = self.gate_regularization(weights, logits)
        for name, value in terms.items():
            self._sums[name] = self._sums.get(name, 0.0) + value.detach()
        self._num_forwards += 1
        return attach_loss(weights, total), logits

    def compile(self, mode: str | None = None) -> None:
        """Refuse ``torch_compile_mode``: a compiled actor would not see the gate hook added in :meth:`ppo_update`
        (dynamo skips guards on module hooks), so the regularisers would silently vanish."""
        if mode is not None:
            raise ValueError(f"PPOMoE does not support torch_compile_mode={mode!r} yet: set it to null")

    def conflict_minibatch(self) -> RolloutStorage.Batch:
        """A minibatch of the stored rollout (after :meth:`compute_returns`), drawn as :meth:`update` draws them.

        The storage's generator runs under ``torch.random.fork_rng``, so the global random state is left as it
        was: training is the same with or without this call, and the rows are those of the update's first
        minibatch. Per-minibatch advantage normalisation is applied as ``PPO.update()`` does. Feed-forward
        models only (no trajectory minibatches).
        """
        with untouched_rng(self.device):
            batch = next(self.storage.mini_batch_generator(self.num_mini_batches, 1))
        if self.normalize_advantage_per_mini_batch:
            batch.advantages = (batch.advantages - batch.advantages.mean()) / (batch.advantages.std() + 1e-8)
        return batch

    def loss_terms(self, batch: RolloutStorage.Batch) -> dict[str, torch.Tensor]:
        """The loss ``PPO.update()`` minimises on ``batch``, as weighted terms whose sum is that loss.

        Mirrors the loss of rsl_rl's ``PPO.update()`` (version :data:`TESTED_RSL_RL_VERSION`; a test compares both
        on a real minibatch, so a change in rsl_rl is noticed) plus the gate regularisers of :meth:`ppo_update`:

        - ``surrogate``: clipped surrogate ``mean(max(-A r, -A clip(r, 1 - eps, 1 + eps)))``;
        - ``value``: ``value_loss_coef`` x the (clipped) squared value error;
        - ``entropy``: ``-entropy_coef`` x mean entropy of the action distribution;
        - ``moe_*``: coefficient x regulariser (:meth:`gate_regularization`), on this batch's gate weights.

        Terms with a zero coefficient are left out. The action sample the actor draws (as in ``update()``) does
        not move the global random state. Not covered: the symmetry extension (its augmentation
        and mirror loss), mixed precision (computed in full precision) and RND (a separate optimizer).
        ``batch_rows(batch, task rows)`` gives the loss restricted to one task's rows.

        Args:
            batch: a feed-forward RL minibatch (B rows), e.g. from :meth:`conflict_minibatch`.

        Returns:
            ``{name: scalar tensor with gradient}``.
        """
        if self.symmetry:
            raise NotImplementedError("loss_terms does not cover the symmetry extension (augmentation, mirror loss)")
        gate_outputs = []
        handle = self.gate.register_forward_hook(lambda _module, _inputs, output: gate_outputs.append(output))
        try:
            with untouched_rng(self.device):
                self.actor(batch.observations, stochastic_output=True)
        finally:
            handle.remove()
        ((weights, logits),) = gate_outputs
        actions_log_prob = self.actor.get_output_log_prob(batch.actions)
        values = self.critic(batch.observations)
        ratio = torch.exp(actions_log_prob - torch.squeeze(batch.old_actions_log_prob))
        advantages = torch.squeeze(batch.advantages)
        clipped_ratio = torch.clamp(ratio, 1.0 - self.clip_param, 1.0 + self.clip_param)
        surrogate = torch.max(-advantages * ratio, -advantages * clipped_ratio).mean()
        if self.use_clipped_value_loss:
            value_clipped = batch.values + (values - batch.values).clamp(-self.clip_param, self.clip_param)
            value_loss = torch.max((values - batch.returns).pow(2), (value_clipped - batch.returns).pow(2)).mean()
        else:
            value_loss = (batch.returns - values).pow(2).mean()
        _, regularizers = self.gate_regularization(weights, logits)
        weighted = {
            "surrogate": (1.0, surrogate),
            "value": (self.value_loss_coef, value_loss),
            "entropy": (-self.entropy_coef, self.actor.output_entropy.mean()),
            **{name: (coef, regularizers[name]) for name, coef in self.coefficients.items()},
        }
        return {name: coef * term for name, (coef, term) in weighted.items() if coef != 0}

    def ppo_update(self) -> dict[str, float]:
        """PPO update with the gate regularisers added to the loss; returns PPO's losses plus the ``moe_*`` keys.
        ``update()`` runs it inside the runners' hooks (:class:`~rsl_rl_moe.algorithms.hooks.HookedPPO`)."""
        state = self.gate.routing_state
        self._sums, self._num_forwards = {}, 0
        handle = self.gate.register_forward_hook(self._regularize_gate)
        try:
            loss_dict = super().ppo_update()
        finally:
            handle.remove()
        for name, total in self._sums.items():
            loss_dict[name] = (total / max(self._num_forwards, 1)).item()
        loss_dict["moe_routing_temperature"] = state.temperature
        loss_dict["moe_routing_phase"] = float(PHASES.index(state.phase))
        for model in (self._raw_actor, self._raw_critic):
            if isinstance(model, ExpertMixture):
                model.step_routing_schedule()
        return loss_dict
