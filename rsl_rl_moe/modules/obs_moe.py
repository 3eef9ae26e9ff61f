"""ObsMoE: the gate that maps observations to expert weights.

A small MLP turns an observation vector into one logit per expert (or per action group and expert),
and a routing function turns logits into weights on the probability simplex:

- ``"softmax"``: dense, every expert gets a positive weight;
- ``"sparsemax"``: Euclidean projection onto the simplex, exact zeros (with 2 experts it is a hard
  sigmoid of the logit gap); a saturated gate (one weight exactly 1) passes no gradient;
- ``"entmax15"``: 1.5-entmax, between the two (sparse, smoother than sparsemax).

Logits are divided by a temperature T before routing (T < 1 sharpens). A :class:`RoutingSchedule`
changes routing function and temperature with the training iteration, e.g. a softmax warm-up for K
iterations, then sparsemax with T annealed linearly 1.0 -> 0.5 over M iterations. The iteration
counter is a buffer, so it is saved in and restored from checkpoints with the model.

Training uses the ``entmax`` package (exact custom gradients); exported policies use the
forward-only, pure-torch versions below (TorchScript / ONNX friendly), tested equal to it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import entmax
import torch
import torch.nn as nn
from rsl_rl.modules import MLP, EmpiricalNormalization

ROUTINGS = ("softmax", "sparsemax", "entmax15")
"""Routing functions understood by :func:`route`."""

PHASES = ("constant", "warmup", "anneal", "final")
"""Schedule phases; the index of a phase is what gets logged (``Loss/moe_routing_phase``)."""


def _check_routing(routing: str) -> str:
    if routing not in ROUTINGS:
        raise ValueError(f"unknown routing {routing!r}: choose one of {list(ROUTINGS)}")
    return routing


def route(logits: torch.Tensor, routing: str, temperature: float) -> torch.Tensor:
    """Gate weights from logits, over the last dimension.

    Args:
        logits: ``(..., E)`` raw gate outputs.
        routing: one of :data:`ROUTINGS`.
        temperature: T > 0, logits are divided by it.

    Returns:
        ``(..., E)`` weights, non-negative, summing to 1 over the last dimension.
    """
    z = logits / temperature
    if routing == "softmax":
        return torch.softmax(z, dim=-1)
    if routing == "sparsemax":
        return entmax.sparsemax(z, dim=-1)
    if routing == "entmax15":
        return entmax.entmax15(z, dim=-1)
    raise ValueError(f"unknown routing {routing!r}: choose one of {list(ROUTINGS)}")


def sparsemax_forward(z: torch.Tensor) -> torch.Tensor:
    """Sparsemax over the last dimension, forward only (export path). ``(..., E) -> (..., E)``."""
    z = z - z.max(dim=-1, keepdim=True).values
    z_sorted = torch.sort(z, dim=-1, descending=True).values
    cumsum = z_sorted.cumsum(dim=-1) - 1.0
    rho = torch.arange(1, z.shape[-1] + 1, device=z.device, dtype=z.dtype)
    support = (rho * z_sorted > cumsum).sum(dim=-1, keepdim=True)
    tau = cumsum.gather(-1, support - 1) / support.to(z.dtype)
    return torch.clamp(z - tau, min=0.0)


def entmax15_forward(z: torch.Tensor) -> torch.Tensor:
    """1.5-entmax over the last dimension, forward only (export path). ``(..., E) -> (..., E)``."""
    z = (z - z.max(dim=-1, keepdim=True).values) / 2.0
    z_sorted = torch.sort(z, dim=-1, descending=True).values
    rho = torch.arange(1, z.shape[-1] + 1, device=z.device, dtype=z.dtype)
    mean = z_sorted.cumsum(dim=-1) / rho
    mean_sq = (z_sorted**2).cumsum(dim=-1) / rho
    delta = (1.0 - rho * (mean_sq - mean**2)) / rho
    tau = mean - torch.sqrt(torch.clamp(delta, min=0.0))
    support = (tau <= z_sorted).sum(dim=-1, keepdim=True)
    tau_star = tau.gather(-1, support - 1)
    return torch.clamp(z - tau_star, min=0.0) ** 2


@dataclass(frozen=True)
class RoutingState:
    """Routing in force at one training iteration."""

    phase: str
    """One of :data:`PHASES`."""
    routing: str
    """One of :data:`ROUTINGS`."""
    temperature: float
    """Logit divisor T (dimensionless)."""


class RoutingSchedule:
    """Routing function and temperature as a function of the training iteration.

    ``it < warmup_iterations``: ``warmup_routing`` at ``temperature`` (phase ``"warmup"``);
    then ``routing`` with T going linearly from ``temperature`` to ``final_temperature`` over
    ``anneal_iterations`` (phase ``"anneal"``), then ``final_temperature`` (phase ``"final"``).
    With no warm-up and no annealing the phase is ``"constant"``.
    """

    def __init__(
        self,
        routing: str = "softmax",
        temperature: float = 1.0,
        warmup_iterations: int = 0,
        warmup_routing: str = "softmax",
        anneal_iterations: int = 0,
        final_temperature: float | None = None,
    ) -> None:
        """Args:
        routing: routing after the warm-up, one of :data:`ROUTINGS`.
        temperature: T at the start (and during the warm-up), > 0.
        warmup_iterations: K, iterations of ``warmup_routing`` (0: none).
        warmup_routing: routing during the warm-up.
        anneal_iterations: M, iterations over which T goes to ``final_temperature`` (0: jump at once).
        final_temperature: T after annealing, > 0 (default: ``temperature``).
        """
        self.routing = _check_routing(routing)
        self.warmup_routing = _check_routing(warmup_routing)
        self.temperature = float(temperature)
        self.final_temperature = self.temperature if final_temperature is None else float(final_temperature)
        if self.temperature <= 0 or self.final_temperature <= 0:
            raise ValueError(f"temperatures must be > 0, got {self.temperature} and {self.final_temperature}")
        if warmup_iterations < 0 or anneal_iterations < 0:
            raise ValueError(f"iteration counts must be >= 0, got {warmup_iterations} and {anneal_iterations}")
        self.warmup_iterations = int(warmup_iterations)
        self.anneal_iterations = int(anneal_iterations)

    def state(self, iteration: int) -> RoutingState:
        """Routing at training iteration ``iteration`` (0-based)."""
        if self.warmup_iterations == 0 and self.anneal_iterations == 0:
            return RoutingState("constant", self.routing, self.final_temperature)
        if iteration < self.warmup_iterations:
            return RoutingState("warmup", self.warmup_routing, self.temperature)
        progress = iteration - self.warmup_iterations
        if progress < self.anneal_iterations:
            frac = progress / self.anneal_iterations
            temp = self.temperature + (self.final_temperature - self.temperature) * frac
            return RoutingState("anneal", self.routing, temp)
        return RoutingState("final", self.routing, self.final_temperature)


def _refresh_after_load(gate: ObsMoE, _incompatible_keys) -> None:
    """Load-state-dict post hook: the restored ``iteration`` buffer sets the routing state."""
    gate._refresh_routing_state()


class ObsMoE(nn.Module):
    """Gating MLP: observations ``(N, obs_dim)`` -> expert weights ``(N, E)`` or ``(N, G, E)``.

    After each forward, ``last_weights`` and ``last_logits`` hold the (detached) outputs for
    diagnostics and logging.
    """

    def __init__(
        self,
        obs_dim: int,
        hidden_dims: tuple[int, ...] | list[int] = (128, 64),
        num_experts: int = 2,
        num_groups: int | None = None,
        activation: str = "elu",
        obs_normalization: bool = False,
        routing: str = "softmax",
        temperature: float = 1.0,
        schedule: dict | None = None,
        output_init_gain: float = 0.01,
        allowed_experts: torch.Tensor | None = None,
    ) -> None:
        """Args:
        obs_dim: width of the gate's input vector.
        hidden_dims: hidden layer widths of the gate MLP.
        num_experts: E >= 2.
        num_groups: G, one weight vector per action group (per-limb gating); None for one global vector.
        activation: activation name understood by rsl_rl (``"elu"``, ``"relu"``, ...).
        obs_normalization: running mean/std normalisation of the gate input.
        routing: routing function, one of :data:`ROUTINGS` (after the warm-up when scheduled).
        temperature: initial logit temperature T > 0.
        schedule: optional keys of :class:`RoutingSchedule` besides ``routing`` and ``temperature``:
            ``warmup_iterations``, ``warmup_routing``, ``anneal_iterations``, ``final_temperature``.
        output_init_gain: gain of the orthogonal init of the output layer. The default 0.01 starts every
            state close to a uniform blend; larger values start with state-dependent, more decisive routing.
        allowed_experts: ``(G, E)`` (or ``(E,)``) bool, the experts each group may weight: the others' logits
            are set to -inf before routing, so their weights are exactly 0 and the rest sum to 1. None: all.
        """
        super().__init__()
        if num_experts < 2:
            raise ValueError(f"a mixture needs num_experts >= 2, got {num_experts}")
        if num_groups is not None and num_groups < 1:
            raise ValueError(f"num_groups must be >= 1 or None, got {num_groups}")
        self.obs_dim = obs_dim
        self.num_experts = num_experts
        self.num_groups = num_groups
        self.schedule = RoutingSchedule(routing=routing, temperature=temperature, **(schedule or {}))
        self.obs_normalization = obs_normalization
        self.obs_normalizer = EmpiricalNormalization(obs_dim) if obs_normalization else nn.Identity()
        output_dim = num_experts if num_groups is None else [num_groups, num_experts]
        self.mlp = MLP(obs_dim, output_dim, hidden_dims, activation)
        last = [m for m in self.mlp if isinstance(m, nn.Linear)][-1]
        nn.init.orthogonal_(last.weight, gain=output_init_gain)
        nn.init.zeros_(last.bias)
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))
        shape = (num_experts,) if num_groups is None else (num_groups, num_experts)
        allowed = torch.ones(shape, dtype=torch.bool) if allowed_experts is None else allowed_experts.bool()
        if allowed.shape != shape or not allowed.any(dim=-1).all():
            raise ValueError(
                f"allowed_experts must be a {tuple(shape)} mask with an allowed expert per row, got {allowed}"
            )
        # not saved: derived from the config (action maps)
        self.register_buffer("allowed_experts", allowed, persistent=False)
        self.register_load_state_dict_post_hook(_refresh_after_load)
        self._routing_state = self.schedule.state(0)
        self.last_weights: torch.Tensor | None = None
        self.last_logits: torch.Tensor | None = None

    @property
    def routing_state(self) -> RoutingState:
        """Routing function, temperature and phase in force now."""
        return self._routing_state

    def _refresh_routing_state(self) -> None:
        self._routing_state = self.schedule.state(int(self.iteration.item()))

    def set_iteration(self, iteration: int) -> None:
        """Move the routing schedule to training iteration ``iteration``."""
        self.iteration.fill_(iteration)
        self._refresh_routing_state()

    def step_schedule(self) -> None:
        """Advance the routing schedule by one training iteration (call once per PPO update)."""
        self.set_iteration(int(self.iteration.item()) + 1)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the gate's input normaliser (identity when disabled). ``(N, obs_dim) -> (N, obs_dim)``."""
        return self.obs_normalizer(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gate weights and raw logits.

        Args:
            x: ``(N, obs_dim)`` gate input.

        Returns:
            weights ``(N, E)`` (or ``(N, G, E)``) on the simplex, and the raw logits of the same shape
            (before the temperature).
        """
        logits = self.mlp(self.obs_normalizer(x))
        state = self._routing_state
        weights = route(logits.masked_fill(~self.allowed_experts, float("-inf")), state.routing, state.temperature)
        self.last_logits = logits.detach()
        self.last_weights = weights.detach()
        return weights, logits

    def update_normalization(self, x: torch.Tensor) -> None:
        """Update the input normaliser's running statistics with ``x`` ``(N, obs_dim)``."""
        if self.obs_normalization:
            self.obs_normalizer.update(x)  # type: ignore[operator]

    def as_export(self) -> nn.Module:
        """A TorchScript / ONNX friendly copy with the current routing and temperature frozen in."""
        return _ExportGate(self)


class _ExportGate(nn.Module):
    """Forward-only gate for export: ``(N, obs_dim) -> (N, E)`` or ``(N, G, E)``."""

    def __init__(self, gate: ObsMoE) -> None:
        super().__init__()
        self.obs_normalizer = copy.deepcopy(gate.obs_normalizer)
        self.mlp = copy.deepcopy(gate.mlp)
        self.routing = gate.routing_state.routing
        self.temperature = gate.routing_state.temperature
        self.register_buffer("allowed_experts", gate.allowed_experts.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.mlp(self.obs_normalizer(x)).masked_fill(~self.allowed_experts, float("-inf")) / self.temperature
        if self.routing == "sparsemax":
            return sparsemax_forward(z)
        if self.routing == "entmax15":
            return entmax15_forward(z)
        return torch.softmax(z, dim=-1)
