"""TrainingDiagnostics: gradient conflict, norm monitoring and heatmap images during PPOMoE training.

:class:`~rsl_rl_moe.runners.MoERunner` builds one from ``train_cfg["diagnostics"]`` (:class:`DiagnosticsConfig`)
and runs every ``alg.update()`` through :meth:`TrainingDiagnostics.update`. At training iteration ``it``
(absolute: a resumed run keeps the cadence):

- ``it % conflict_interval == 0``, BEFORE the update (the parameters that collected the rollout), on the
  minibatch the update draws first (:meth:`PPOMoE.conflict_minibatch`): gradient conflict between tasks of the
  PPO loss (:meth:`PPOMoE.loss_terms` restricted to each task's rows; the task of a row is the observation
  group ``task_obs_group``) on every parameter group of :func:`parameter_groups` and, with per-limb gating, on
  each action group's part of the gate (:func:`limb_gate_slices`), and conflict between the loss terms on the
  actor's gate (:class:`~rsl_rl_moe.diagnostics.GradientConflictMonitor`);
- ``it % monitor_norm_freq == 0`` (so also at iteration 0): parameter norms before the update, gradient norms
  of the update's first minibatch BEFORE clipping (captured by
  :func:`~rsl_rl_moe.diagnostics.first_gradients` between ``backward()`` and ``clip_grad_norm_``; under
  torch.distributed they are averaged over the ranks, as the optimizer sees them), statistics of the gate logits
  of the update's last minibatch (every rank's rows), of the gate input normalisers, and the frozen-expert check,
  which stops training with :class:`~rsl_rl_moe.diagnostics.FrozenExpertChangedError` naming the expert (checksums
  taken when
  ``learn()`` starts);
- every iteration, after the update (when the runner has a selection tracker): the tracker's Wasserstein ground
  cost between experts, the mean L2 distance between their actions on the update's last minibatch (per action
  group on that group's actions; :func:`~rsl_rl_moe.diagnostics.grouped_action_ground_cost`), so
  ``moe/selection[/<group>]/w<W>/wasserstein/<a>__<b>`` is logged next to ``tv`` and ``js``;
- ``it % image_interval == 0``: task x expert heatmaps of the mean gate weight per selection window and, when
  conflicts were computed in that iteration, the cosine heatmaps (loss terms without gradient on the gate, such
  as the value loss, left out of the image), as TensorBoard images and, for the cosine heatmaps, PNG files
  ``<run>/diagnostics/{conflict_<group>,term_conflict_gate}_it<it>.png``. Images are drawn only where the
  logger has a writer (rank 0 under torch.distributed; none without a log folder).

TensorBoard scalars (step = iteration; every tag built by :mod:`rsl_rl_moe.diagnostics.tags`; ``<group>``: ``gate``,
``gate_<action group>`` (conflict only), ``critic``, ``std``, ``experts`` (only when not frozen)):

- ``conflict/<group>/...`` (:func:`~rsl_rl_moe.diagnostics.conflict_scalars`) and
  ``term_conflict/gate/...`` (:func:`~rsl_rl_moe.diagnostics.term_conflict_scalars`);
- ``norm/<group>/{<param>, _total_norm}``, ``norm/<expert>_{actor,critic}/...`` (frozen experts),
  ``grad/<group>/{<param>, _total_norm}``, ``logits/{gate, critic_gate}/{mean, std, min, max, abs_max}``,
  ``obs_norm/{gate, critic}/{mean_mean, abs_max_mean, mean_std, min_std, max_std, count}``;
- ``Perf/diagnostics_time``: seconds this class spent in the iteration (part of ``Perf/learning_time``).

Images: ``images/conflict/<group>``, ``images/term_conflict/gate``, ``images/selection[/<action group>]/w<W>``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time

import torch
from torch import nn

from rsl_rl_moe.algorithms.ppo_moe import PPOMoE, batch_rows
from rsl_rl_moe.diagnostics import (
    ExpertSelectionTracker,
    GradientConflictMonitor,
    GradientStats,
    GroupConflict,
    NormMonitor,
    conflict_scalars,
    cosine_heatmap,
    figure_to_image,
    first_gradients,
    grouped_action_ground_cost,
    normalizer_stats,
    save_png,
    selection_heatmap,
    tags,
    tensor_stats,
    term_conflict_scalars,
)
from rsl_rl_moe.distributed import all_gather_rows, average_
from rsl_rl_moe.modules.actor_critic_moe import ExpertMixture, MoEActor


@dataclasses.dataclass(frozen=True)
class DiagnosticsConfig:
    """``train_cfg["diagnostics"]``; intervals in training iterations, 0 switches that part off."""

    enabled: bool = True
    """False: no diagnostics object at all (no hook, no cost)."""
    conflict_interval: int = 10
    """Gradient conflict every this many iterations (one minibatch each time)."""
    noise_floor: bool = True
    """Also the split-half same-task cosine (two more backward passes per task)."""
    frequency_window: int = 100
    """Conflict computations over which ``conflict/<group>/frequency`` is measured."""
    monitor_norm_freq: int = 10
    """Norms, gradient norms, logits, normalisers and the frozen-expert check every this many iterations."""
    image_interval: int = 50
    """Heatmap images every this many iterations; a multiple of ``conflict_interval`` when both are on."""

    def __post_init__(self) -> None:
        for name in ("conflict_interval", "frequency_window", "monitor_norm_freq", "image_interval"):
            if getattr(self, name) < 0:
                raise ValueError(f"runner.diagnostics.{name} must be >= 0, got {getattr(self, name)}")
        if self.conflict_interval and self.image_interval and self.image_interval % self.conflict_interval:
            raise ValueError(
                f"runner.diagnostics.image_interval={self.image_interval} is not a multiple of "
                f"conflict_interval={self.conflict_interval}: cosine heatmaps are drawn where both fall on an iteration"
            )

    @classmethod
    def from_dict(cls, cfg: dict | None) -> DiagnosticsConfig:
        """From the config section; unknown keys are refused with their names."""
        cfg = dict(cfg or {})
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(cfg) - set(known))
        if unknown:
            raise ValueError(f"unknown runner.diagnostics keys {unknown}; known: {known}")
        return cls(**cfg)


def parameter_groups(actor: MoEActor, critic: nn.Module) -> dict[str, nn.Module]:
    """The trained parts, by name: ``gate`` (the actor's gate), ``std`` (its action distribution), ``critic``
    (a MoECritic's gate and residual, or a whole MLP critic) and ``experts`` (the actor's experts, only when
    they are not frozen). Monitors keep only parameters with ``requires_grad``."""
    groups = {"gate": actor.gate, "std": actor.distribution, "critic": critic}
    if not actor.freeze_experts:
        groups["experts"] = actor.experts
    return groups


def limb_gate_slices(actor: MoEActor) -> dict[str, list[tuple[torch.Tensor, torch.Tensor]]]:
    """Per action group of a per-limb gate: ``gate_<group>`` -> the last-layer weight and bias elements that
    produce that group's E logits (the hidden layers are shared by all groups); empty for one global gate.

    The gate's last ``nn.Linear`` has ``G * E`` outputs, reshaped to ``(G, E)``: group g owns rows
    ``g*E .. (g+1)*E - 1``.
    """
    last = [m for m in actor.gate.mlp if isinstance(m, nn.Linear)][-1]
    num_experts, width = actor.gate.num_experts, last.in_features
    slices = {}
    for g, name in enumerate(actor.action_group_names):
        rows = torch.arange(g * num_experts, (g + 1) * num_experts)
        weight_elements = (rows[:, None] * width + torch.arange(width)).reshape(-1)
        slices[f"gate_{name}"] = [(last.weight, weight_elements), (last.bias, rows)]
    return slices


class TrainingDiagnostics:
    """Diagnostics run around each PPOMoE update (see the module docstring).

    Args:
        alg: the PPOMoE algorithm (feed-forward models, no symmetry extension when conflicts are on).
        cfg: cadence and switches.
        task_names: names of the task ids in ``task_obs_group`` (the cosine matrices' order).
        task_obs_group: observation group with each env's task id ``(N, 1)``; without it every row is task 0.
        tracker: the runner's expert-selection tracker (selection heatmaps), or None.
        logger: rsl_rl's Logger of the runner (its ``writer`` and ``log_dir`` are read when images are due).
    """

    def __init__(
        self,
        alg: PPOMoE,
        cfg: DiagnosticsConfig,
        task_names: list[str],
        task_obs_group: str,
        tracker: ExpertSelectionTracker | None,
        logger,
    ) -> None:
        if not isinstance(alg, PPOMoE):
            raise TypeError(
                f"runner diagnostics need the algorithm rsl_rl_moe.algorithms:PPOMoE, got {type(alg).__name__}: "
                f"use it or set runner.diagnostics.enabled=false"
            )
        if cfg.conflict_interval and alg.symmetry:
            raise ValueError(
                "gradient conflict does not cover rsl_rl's symmetry extension: "
                "set runner.diagnostics.conflict_interval=0"
            )
        self.alg, self.cfg, self.tracker, self.logger = alg, cfg, tracker, logger
        self.task_names = list(task_names)
        self.task_obs_group = task_obs_group
        actor, critic = alg.get_policy(), alg.critic
        self.groups = parameter_groups(actor, critic)
        self.conflict = None
        if cfg.conflict_interval:
            params = {name: list(module.parameters()) for name, module in self.groups.items()}
            self.conflict = GradientConflictMonitor(
                self.task_names, params | limb_gate_slices(actor), cfg.frequency_window, cfg.noise_floor
            )
        moe_critic = isinstance(critic, ExpertMixture)
        self.gates = {"gate": actor.gate} | ({"critic_gate": critic.gate} if moe_critic else {})
        # input normalisers with running statistics (an MLP critic's own, or Identity: no statistics)
        self.normalizers = {"gate": actor.gate.obs_normalizer}
        self.normalizers["critic"] = (
            critic.gate.obs_normalizer if moe_critic else getattr(critic, "obs_normalizer", None)
        )
        self.norms: NormMonitor | None = None
        self.iteration = 0
        self._pending: dict[str, float] = {}

    def start(self, iteration: int) -> None:
        """Call when ``learn()`` starts: ``iteration`` of the first update; frozen-expert checksums are taken now."""
        self.iteration = iteration
        if self.cfg.monitor_norm_freq:
            frozen = {}
            for part, model in (("actor", self.alg.get_policy()), ("critic", self.alg.critic)):
                if isinstance(model, ExpertMixture) and model.freeze_experts:
                    frozen |= {f"{name}_{part}": expert for name, expert in model.experts.items()}
            self.norms = NormMonitor(self.groups, frozen, self.cfg.monitor_norm_freq)

    def state_dict(self) -> dict:
        """What a resumed run needs to continue its windows: the conflict monitor's (see
        :meth:`GradientConflictMonitor.state_dict`)."""
        return {"conflict": self.conflict.state_dict()} if self.conflict is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.conflict is not None and "conflict" in state:
            self.conflict.load_state_dict(state["conflict"])

    def _due(self, interval: int) -> bool:
        return interval > 0 and self.iteration % interval == 0

    def update(self, update_fn) -> dict[str, float]:
        """``update_fn()`` (the algorithm's own update) with the diagnostics due at this iteration around it."""
        start = time.perf_counter()
        out: dict[str, float] = {}
        images = self._due(self.cfg.image_interval) and self.logger.writer is not None
        if self._due(self.cfg.conflict_interval):
            out |= self._conflicts(images)
        monitor = self.norms is not None and self.norms.should_monitor(self.iteration)
        if monitor:
            out |= self.norms.parameter_norms()
        inner = time.perf_counter()
        with first_gradients(self.norms.parameters) if monitor else contextlib.nullcontext() as grads:
            loss_dict = update_fn()
        inner = time.perf_counter() - inner
        if monitor:
            average_(list(grads.values()))  # the first minibatch's gradient of the whole job, as the optimizer sees it
            out |= self.norms.gradient_norms(grads)
            for name, gate in self.gates.items():
                out |= tensor_stats(all_gather_rows(gate.last_logits), tags.logits_source(name))
            for name, normalizer in self.normalizers.items():
                if normalizer is not None:
                    out |= normalizer_stats(normalizer, tags.obs_norm_source(name))
            self.norms.check_frozen()
        if self.tracker is not None:
            self._set_ground_cost()
            if images:
                self._selection_images()
        out[tags.DiagnosticsTime().tag] = time.perf_counter() - start - inner
        self._pending = out
        self.iteration += 1
        return loss_dict

    def scalars(self) -> dict[str, float]:
        """Scalars of the last update (for the logger's ``scalar_sources``); each set is returned once."""
        out, self._pending = self._pending, {}
        return out

    def _conflicts(self, images: bool) -> dict[str, float]:
        """Task and loss-term conflicts on one minibatch; heatmaps when ``images``."""
        alg = self.alg
        batch = alg.conflict_minibatch()
        obs = batch.observations
        if self.task_obs_group in obs.keys():
            task_ids = obs[self.task_obs_group]
        else:
            task_ids = torch.zeros(obs.batch_size[0], device=obs.device)
        report = self.conflict.compute(lambda rows: sum(alg.loss_terms(batch_rows(batch, rows)).values()), task_ids)
        terms = self.conflict.term_conflicts(alg.loss_terms(batch), "gate")
        if images:
            self._conflict_images(report, terms)
        return conflict_scalars(report) | term_conflict_scalars(terms, "gate")

    def _set_ground_cost(self) -> None:
        """The tracker's Wasserstein ground cost from the experts' actions on the update's last minibatch (rows of
        the whole rollout): per action group, the mean L2 distance between two experts' actions on that group's
        actions (:func:`~rsl_rl_moe.diagnostics.grouped_action_ground_cost`), averaged over the ranks so every
        rank's tracker logs the same distances."""
        actor = self.alg.get_policy()
        actions = actor.last_expert_actions  # (B, A, E) of the actor's last forward
        if actions is None:
            return
        groups = actor.action_to_group if self.tracker.num_groups > 1 else None
        cost = grouped_action_ground_cost(actions, groups, self.tracker.num_groups)
        average_([cost])
        self.tracker.set_ground_cost(cost)

    def _conflict_images(self, report: dict[str, GroupConflict], terms: GradientStats) -> None:
        """Task x task cosine heatmap per group, and term x term on the gate (terms without gradient there left out)."""
        for group, stats in report.items():
            figure = cosine_heatmap(stats.cosine, self.task_names, self._title(group))
            self._image(tags.ConflictImage(group), figure, png=True)
        acting = (terms.norms > 0).nonzero().reshape(-1)  # e.g. the value loss does not reach the actor's gate
        labels = [terms.labels[i] for i in acting]
        figure = cosine_heatmap(terms.cosine[acting][:, acting], labels, self._title("gate, loss terms"))
        self._image(tags.ConflictImage("gate", tags.TERM_CONFLICT), figure, png=True)

    def _title(self, what: str) -> str:
        return f"{what}: gradient cosine\nit {self.iteration}"

    def _selection_images(self) -> None:
        """Task x expert mean-weight heatmap per window (and action group) of the tracker."""
        tracker = self.tracker
        for group in tracker.group_names:
            tag_group = None if tracker.num_groups == 1 else group
            for window in tracker.windows:
                matrix = tracker.selection_matrix(window, "mean_weights", group)
                title = f"mean gate weight\nw{window}, it {self.iteration}"
                figure = selection_heatmap(matrix, tracker.task_names, tracker.expert_names, title)
                self._image(tags.SelectionImage(window, tag_group), figure)

    def _image(self, record: tags.ConflictImage | tags.SelectionImage, figure, png: bool = False) -> None:
        """``record.tag`` (``images/<name>``) to TensorBoard (writers with ``add_image``); with ``png`` also
        ``<run>/diagnostics/<name with / as _>_it<it>.png``."""
        writer = self.logger.writer
        tag = record.tag
        if hasattr(writer, "add_image"):
            writer.add_image(tag, figure_to_image(figure), self.iteration, dataformats="HWC")
        if png and self.logger.log_dir is not None:
            file_name = f"{tag.removeprefix(tags.IMAGES + '/').replace('/', '_')}_it{self.iteration}.png"
            save_png(figure, os.path.join(self.logger.log_dir, "diagnostics", file_name))
