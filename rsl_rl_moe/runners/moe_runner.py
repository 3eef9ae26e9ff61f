"""MoERunner: the Runner plus per-task statistics of the gate weights seen during rollouts.

Works with any rsl_rl 5.5 VecEnv whose actor is a :class:`~rsl_rl_moe.modules.MoEActor`.

How it hooks into rollouts: rsl_rl's ``learn()`` calls ``alg.act(obs)`` then ``env.step`` at every
rollout step. The runner registers an after-act hook of the algorithm (:mod:`rsl_rl_moe.algorithms.hooks`):
after the actor's forward it records the actor's ``last_gate_weights`` ``(N, E)`` (or ``(N, G, E)`` for per-limb
gating) together with the env's task index ``obs[task_obs_group]`` ``(N, 1)`` into an
:class:`~rsl_rl_moe.diagnostics.ExpertSelectionTracker` (torch ops, O(1) in the history length). Envs without that
group count as one task ``"all"``. Under torchrun each step's weights and task ids are gathered from every rank
first (in ``alg.act``, which every rank runs), so every rank's tracker counts the envs of the whole job and rank 0
logs them.

Written to TensorBoard at every iteration (``<group>`` only with per-limb gating):

- ``moe/<task>[/<group>]/weight/<expert>``: mean gate weight over the task's last ``num_steps_per_env``
  env steps (this iteration's rollout); tasks that had no env in this rollout are left out;
- ``moe/selection/...``: :meth:`ExpertSelectionTracker.scalars` over the iteration window and the
  configured ``windows`` (mean weights, argmax frequencies, entropies, near-one-hot and zero shares,
  distances between tasks, lifetime counts).

Checkpoints carry the tracker state (``infos["gate_selection"]``) and the diagnostics' conflict-frequency window
(``infos["diagnostics"]``); :meth:`MoERunner.load` restores both, so resumed runs continue their windows. They also
carry each expert's model description (``infos["expert_models"]``; the expert weights are in the state dicts
already), so with
:func:`with_described_experts` a checkpoint plays, evaluates or resumes without the expert files.
``gate_logging.enabled: false`` switches the tracker and these tags off.

``train_cfg["diagnostics"]`` adds gradient conflict, norm monitoring and heatmap images around each update
(:mod:`rsl_rl_moe.runners.training_diagnostics`), run as an around-update hook of the algorithm (inside the
:class:`Runner`'s checks); ``diagnostics.enabled: false`` registers no hook.
"""

from __future__ import annotations

import torch
from rsl_rl.env import VecEnv
from rsl_rl.utils import resolve_callable
from tensordict import TensorDict

from rsl_rl_moe.checkpoint import load_checkpoint, upgrade_model_cfg
from rsl_rl_moe.diagnostics import tags
from rsl_rl_moe.diagnostics.selection import ExpertSelectionTracker
from rsl_rl_moe.distributed import all_gather_rows
from rsl_rl_moe.modules.actor_critic_moe import ExpertMixture, MoEActor
from rsl_rl_moe.runners.runner import Runner
from rsl_rl_moe.runners.training_diagnostics import DiagnosticsConfig, TrainingDiagnostics

INFOS_KEY = "gate_selection"
"""Key of the tracker state in a checkpoint's ``infos``."""
DIAGNOSTICS_KEY = "diagnostics"
"""Key of the training diagnostics' state (the conflict-frequency window) in a checkpoint's ``infos``."""
EXPERT_MODELS_KEY = "expert_models"
"""Key of the experts' model descriptions ``{name: description}`` in a checkpoint's ``infos``."""


def with_described_experts(train_cfg: dict, ckpt_path: str) -> dict:
    """``train_cfg`` whose mixture models (actor / critic of an :class:`ExpertMixture` class) rebuild their experts
    from the descriptions in checkpoint ``ckpt_path`` instead of the expert files; unchanged when the checkpoint
    has none (e.g. not a mixture, or saved before descriptions were stored). Load ``ckpt_path`` into the runner
    afterwards: it holds the experts' weights."""
    models = (load_checkpoint(ckpt_path).get("infos") or {}).get(EXPERT_MODELS_KEY)
    if not models:
        return train_cfg
    train_cfg = {**train_cfg}
    for part in ("actor", "critic"):
        cfg = upgrade_model_cfg(train_cfg[part])
        cls = resolve_callable(cfg["class_name"])
        if isinstance(cls, type) and issubclass(cls, ExpertMixture):
            train_cfg[part] = {**cfg, "expert_sources": {**cfg["expert_sources"], "models": models}}
    return train_cfg


class MoERunner(Runner):
    """:class:`Runner` that logs per-task gate weights (see the module docstring).

    Args:
        env, train_cfg, log_dir, device, env_description: as for :class:`Runner`.
            ``train_cfg["gate_logging"]`` (optional) holds

            - ``enabled``: record and log the gate weights (default True);
            - ``task_obs_group``: observation group with each env's task index (default ``"task_id"``);
            - ``task_names``: names of the task indices (default: ``env_description["task_names"]``);
            - ``windows``: sliding windows of the selection statistics, in env steps per task
              (``num_steps_per_env`` is always added);
            - ``near_one_hot_threshold``: a gate counts as near one-hot above this max weight.

            ``train_cfg["diagnostics"]`` (optional): keys of :class:`DiagnosticsConfig`.
    """

    def __init__(
        self,
        env: VecEnv,
        train_cfg: dict,
        log_dir: str | None = None,
        device: str = "cpu",
        env_description: dict | None = None,
    ):
        super().__init__(env, train_cfg, log_dir=log_dir, device=device, env_description=env_description)
        actor = self.alg.get_policy()
        if not isinstance(actor, MoEActor):
            raise ValueError(
                f"MoERunner logs the gate of a mixture-of-experts actor (rsl_rl_moe.modules:MoEActor), "
                f"got {type(actor).__name__}: use rsl_rl_moe.runners:Runner for other actors"
            )
        cfg = train_cfg.get("gate_logging") or {}
        self.task_obs_group = cfg.get("task_obs_group", "task_id")
        obs = env.get_observations()
        if self.task_obs_group in obs.keys():
            task_names = cfg.get("task_names") or self.env_description.get("task_names")
            if not task_names:
                raise ValueError(
                    f"observation group {self.task_obs_group!r} holds task indices but no task names are known: "
                    f"set gate_logging.task_names or put task_names in the env description"
                )
        else:
            task_names = ["all"]
            self._single_task = torch.zeros(env.num_envs, dtype=torch.long, device=self.device)
        self.iteration_window = int(train_cfg["num_steps_per_env"])
        self.gate_tracker: ExpertSelectionTracker | None = None
        if cfg.get("enabled", True):
            self.gate_tracker = ExpertSelectionTracker(
                num_experts=len(actor.expert_names),
                task_names=task_names,
                windows=[self.iteration_window, *cfg.get("windows", [])],
                group_names=actor.action_group_names or None,
                expert_names=actor.expert_names,
                near_one_hot_threshold=cfg.get("near_one_hot_threshold", 0.95),
                device=self.device,
            )
            self._logged_env_steps = {task: 0 for task in task_names}
            self.alg.after_act_hooks.append(self._record_gate_weights)
            self.logger.scalar_sources.append(self.gate_scalars)
        self.diagnostics: TrainingDiagnostics | None = None
        diagnostics_cfg = DiagnosticsConfig.from_dict(train_cfg.get("diagnostics"))
        if diagnostics_cfg.enabled:
            self.diagnostics = TrainingDiagnostics(
                self.alg, diagnostics_cfg, task_names, self.task_obs_group, self.gate_tracker, self.logger
            )
            self.alg.around_update_hooks.append(self._update_with_diagnostics)
            self.logger.scalar_sources.append(self.diagnostics.scalars)

    def _record_gate_weights(self, obs: TensorDict, actions: torch.Tensor) -> None:
        """After-act hook: record the actor's gate weights of this step with the envs' task ids (``obs``: the
        step's observations; ``actions`` unused)."""
        task_ids = obs[self.task_obs_group] if self.task_obs_group in obs.keys() else self._single_task
        weights = self.alg.get_policy().last_gate_weights
        # under torchrun every rank records every rank's envs (same tracker everywhere; rank 0 logs it)
        self.gate_tracker.record(all_gather_rows(weights), all_gather_rows(task_ids))

    def _update_with_diagnostics(self, update) -> dict[str, float]:
        """Around-update hook: ``update()`` (the rest of ``alg.update()``) run through
        :meth:`TrainingDiagnostics.update`."""
        return self.diagnostics.update(update)

    def learn(self, num_learning_iterations: int, init_at_random_ep_len: bool = False) -> None:
        """As :class:`Runner`; the diagnostics learn which iteration comes first and take the expert checksums."""
        if self.diagnostics is not None:
            self.diagnostics.start(self.current_learning_iteration)
        super().learn(num_learning_iterations, init_at_random_ep_len)

    def gate_scalars(self) -> dict[str, float]:
        """TensorBoard scalars of this iteration (tags in the module docstring)."""
        tracker = self.gate_tracker
        counts = tracker.lifetime_counts()
        fresh = {task for task, c in counts.items() if c["env_steps"] > self._logged_env_steps[task]}
        out: dict[str, float] = {}
        for group in tracker.group_names:
            for task, per_window in tracker.get_expert_selection_stats(group=group).items():
                if task not in fresh:
                    continue
                tag_group = None if tracker.num_groups == 1 else group
                for expert, weight in zip(tracker.expert_names, per_window[self.iteration_window]["mean_weights"]):
                    out[tags.GateWeight(task, expert, tag_group).tag] = weight
        out.update(tracker.scalars(prefix=tags.RUN_SELECTION))
        self._logged_env_steps = {task: c["env_steps"] for task, c in counts.items()}
        return out

    def save(self, path: str, infos: dict | None = None) -> None:
        """Save as :class:`Runner` does, with the tracker state in ``infos["gate_selection"]``, the diagnostics'
        state in ``infos["diagnostics"]`` and the experts' descriptions in ``infos["expert_models"]``."""
        infos = {**(infos or {}), EXPERT_MODELS_KEY: self.alg.get_policy().expert_models}
        if self.gate_tracker is not None:
            infos[INFOS_KEY] = self.gate_tracker.state_dict()
        if self.diagnostics is not None:
            infos[DIAGNOSTICS_KEY] = self.diagnostics.state_dict()
        super().save(path, infos)

    def model_description(self) -> dict:
        """As :class:`Runner`'s, without experts rebuilt from descriptions (those travel in ``infos``)."""
        description = super().model_description()
        for part in ("actor", "critic"):
            sources = description[part].get("expert_sources")
            if sources and sources.get("models"):
                description[part] = {**description[part], "expert_sources": {**sources, "models": None}}
        return description

    def load(
        self, path: str, load_cfg: dict | None = None, strict: bool = True, map_location: str | None = None
    ) -> dict:
        """Load as :class:`Runner` does and restore the tracker and diagnostics states the checkpoint has."""
        infos = super().load(path, load_cfg, strict, map_location)
        state = (infos or {}).get(INFOS_KEY)
        if state is not None and self.gate_tracker is not None:
            self.gate_tracker.load_state_dict(state)
            self._logged_env_steps = {task: c["env_steps"] for task, c in self.gate_tracker.lifetime_counts().items()}
        diagnostics_state = (infos or {}).get(DIAGNOSTICS_KEY)
        if diagnostics_state is not None and self.diagnostics is not None:
            self.diagnostics.load_state_dict(diagnostics_state)
        return infos
