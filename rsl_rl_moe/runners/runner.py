"""OnPolicyRunner with self-describing, atomic checkpoints and safe resume.

Works with any rsl_rl 5.5 VecEnv; never imports an env package.
"""

from __future__ import annotations

import copy
import os

import torch
from rsl_rl.env import VecEnv
from rsl_rl.runners import OnPolicyRunner

from rsl_rl_moe.checkpoint import CheckpointError, is_self_describing, load_checkpoint, make_infos, save_checkpoint
from rsl_rl_moe.runners.progress import ProgressLogger
from rsl_rl_moe.runners.threads import torch_threads


class Runner(OnPolicyRunner):
    """rsl_rl's OnPolicyRunner plus:

    - checkpoints carry the model description (actor / critic config, observation group widths,
      action count) and an env description, so an expert can be rebuilt from its file alone;
    - checkpoints are written atomically (a killed run leaves the last one loadable);
    - :meth:`load` reads with ``weights_only=True`` and checks sizes against the env;
    - a one-line progress report per iteration (``train_cfg["progress"]``: ``"line"`` or ``"full"``);
    - rollouts with ``train_cfg["rollout_torch_threads"]`` torch threads (None: unchanged), updates with all.

    Args:
        env: any rsl_rl VecEnv.
        train_cfg: rsl_rl train config (flat dict).
        log_dir: run folder, or None for no logging / saving.
        device: learner device.
        env_description: free-form dict stored in checkpoints (robot, task, observation layout, ...).
    """

    def __init__(
        self, env: VecEnv, train_cfg: dict, log_dir: str | None = None, device: str = "cpu", env_description: dict | None = None
    ):
        self._model_cfg = {"actor": copy.deepcopy(train_cfg["actor"]), "critic": copy.deepcopy(train_cfg["critic"])}
        super().__init__(env, train_cfg, log_dir=log_dir, device=device)
        self.logger.__class__ = ProgressLogger
        self.logger.progress = train_cfg.get("progress", "line")
        self.logger.scalar_sources = []
        self.env_description = env_description or {}

    def model_description(self) -> dict:
        """What :func:`rsl_rl_moe.checkpoint.make_infos` needs to rebuild actor and critic."""
        obs = self.env.get_observations()
        return {
            **self._model_cfg,
            "obs_groups": {k: list(v) for k, v in self.cfg["obs_groups"].items()},
            "obs_group_dims": {k: int(obs[k].shape[-1]) for k in obs.keys()},
            "num_actions": int(self.env.num_actions),
        }

    def save(self, path: str, infos: dict | None = None) -> None:
        payload = self.alg.save()
        payload["iter"] = self.current_learning_iteration
        payload["infos"] = make_infos(self.model_description(), self.env_description, **(infos or {}))
        save_checkpoint(path, payload)
        self.logger.save_model(path, self.current_learning_iteration)

    def load(self, path: str, load_cfg: dict | None = None, strict: bool = True, map_location: str | None = None) -> dict:
        """Resume from ``path``; the checkpoint must come from a model of the same sizes. A checkpoint without
        optimizer state (e.g. a shipped expert, see ``scripts/ship_expert.py``) loads its models and iteration
        only, unless ``load_cfg`` says otherwise; training then continues with a fresh optimizer.

        Raises:
            CheckpointError: missing/corrupt file, or a checkpoint whose sizes differ from this env / config.
        """
        payload = load_checkpoint(path, override_hint="ckpt_path", map_location=map_location or self.device)
        if not {"actor_state_dict", "critic_state_dict"} <= payload.keys():
            raise CheckpointError(
                f"{path!r} has keys {sorted(payload)}; expected an rsl_rl 5.x checkpoint "
                "(actor_state_dict, critic_state_dict). Older rsl_rl formats cannot be resumed; "
                "load them as frozen experts instead."
            )
        if is_self_describing(payload):
            self._check_compatible(path, payload["infos"]["model"])
        if load_cfg is None and "optimizer_state_dict" not in payload:
            load_cfg = {"actor": True, "critic": True, "iteration": True}
        try:
            load_iteration = self.alg.load(payload, load_cfg, strict)
        except RuntimeError as exc:
            raise CheckpointError(f"{path!r} does not fit this model: {exc}{self._settings_hint(path, payload)}") from exc
        if load_iteration:
            self.current_learning_iteration = payload["iter"]
        return payload["infos"]

    def _settings_hint(self, path: str, payload: dict) -> str:
        """For a checkpoint that does not fit: the model settings it was trained with that differ from this
        config, and how to play it with its own (empty if it does not describe itself)."""
        if not is_self_describing(payload):
            return ""
        saved = {part: payload["infos"]["model"].get(part) for part in ("actor", "critic")}
        current = self.model_description()
        differences = config_differences(saved, {part: current[part] for part in ("actor", "critic")})
        if not differences:
            return ""
        run_dir = os.path.dirname(os.path.abspath(path))
        return (
            f"\nit was trained with other model settings ({'; '.join(differences)}): give the same overrides, "
            f"or use its run's config: --config-path={run_dir} --config-name=config"
        )

    def _check_compatible(self, path: str, saved: dict) -> None:
        current = self.model_description()
        if saved["num_actions"] != current["num_actions"]:
            raise CheckpointError(
                f"{path!r} was trained with {saved['num_actions']} actions, this env has {current['num_actions']}"
            )
        for obs_set, groups in current["obs_groups"].items():
            width_saved = sum(saved["obs_group_dims"].get(g, 0) for g in saved["obs_groups"].get(obs_set, []))
            width_now = sum(current["obs_group_dims"][g] for g in groups)
            if width_saved != width_now:
                raise CheckpointError(
                    f"{path!r}: the {obs_set} observation has {width_saved} entries in the checkpoint, "
                    f"{width_now} in this env"
                )

    def learn(self, num_learning_iterations: int, init_at_random_ep_len: bool = False) -> None:
        """As rsl_rl, but a failure mid-run still leaves a checkpoint of the last finished iteration, and
        rollouts run with ``train_cfg["rollout_torch_threads"]`` torch threads (the update with all;
        see :mod:`rsl_rl_moe.runners.threads`)."""
        update = self.alg.update
        learner_threads = torch.get_num_threads()

        def update_with_learner_threads(*args, **kwargs):
            with torch_threads(learner_threads):
                return update(*args, **kwargs)

        self.alg.update = update_with_learner_threads
        try:
            with torch_threads(self.cfg.get("rollout_torch_threads")):
                super().learn(num_learning_iterations, init_at_random_ep_len)
        except KeyboardInterrupt:
            if self.logger.writer is not None:
                path = os.path.join(self.logger.log_dir, f"model_{self.current_learning_iteration}.pt")
                self.save(path)
                print(f"interrupted: saved {path}")
            raise
        finally:
            self.alg.update = update


def config_differences(saved: dict, current: dict, prefix: str = "") -> list[str]:
    """``"<dotted key>: <saved> in the checkpoint, <current> here"`` for each setting that differs between two
    nested config dicts (a key missing on one side counts as None)."""
    differences = []
    for key in sorted(set(saved) | set(current), key=str):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            differences += config_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            differences.append(f"{prefix}{key}: {a!r} in the checkpoint, {b!r} here")
    return differences

