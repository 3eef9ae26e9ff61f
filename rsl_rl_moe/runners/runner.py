"""OnPolicyRunner with self-describing, atomic checkpoints and safe resume.

Works with any rsl_rl 5.5 VecEnv; never imports an env package.
"""

from __future__ import annotations

import copy
import os
import sys

import torch
from rsl_rl.env import VecEnv
from rsl_rl.runners import OnPolicyRunner

from rsl_rl_moe.algorithms.hooks import HookedPPO, hooked_algorithm_cfg
from rsl_rl_moe.checkpoint import (
    CheckpointError,
    is_self_describing,
    load_checkpoint,
    make_infos,
    save_checkpoint,
    upgrade_model_cfg,
    upgrade_model_description,
)
from rsl_rl_moe.distributed import any_rank, device_for_rank, init_process_group, process_info
from rsl_rl_moe.finite import (
    NonFiniteError,
    check_gradients,
    check_rollout,
    check_update,
    first_nonfinite,
    state_dict_entries,
)
from rsl_rl_moe.runners.curriculum import Curriculum
from rsl_rl_moe.runners.progress import ProgressLogger
from rsl_rl_moe.runners.stopping import TrainingStopped, stop_signals_ignored, stop_signals_raise
from rsl_rl_moe.runners.threads import torch_threads

ROLLOUT_BUFFERS = ("rewards", "values", "returns", "advantages")
"""Rollout storage buffers checked for NaN / inf before each update."""


class Runner(OnPolicyRunner):
    """rsl_rl's OnPolicyRunner plus:

    - checkpoints carry the model description (actor / critic config, observation group widths,
      action count) and an env description, so an expert can be rebuilt from its file alone;
    - checkpoints are written atomically (a killed run leaves the last one loadable);
    - :meth:`load` reads with ``weights_only=True`` and checks sizes against the env;
    - a one-line progress report per iteration (``train_cfg["progress"]``: ``"line"`` or ``"full"``);
    - rollouts with ``train_cfg["rollout_torch_threads"]`` torch threads (None: unchanged), updates with all.

    The algorithm is a :class:`~rsl_rl_moe.algorithms.hooks.HookedPPO` (rsl_rl's ``PPO`` in the config is built as
    one; ``PPOMoE`` is one): the runner's checks run as one of its ``around_update_hooks`` and nothing of the
    algorithm or the logger is replaced on the instance.

    Args:
        env: any rsl_rl VecEnv.
        train_cfg: rsl_rl train config (flat dict).
        log_dir: run folder, or None for no logging / saving.
        device: learner device.
        env_description: free-form dict stored in checkpoints (robot, task, observation layout, ...).
    """

    def __init__(
        self,
        env: VecEnv,
        train_cfg: dict,
        log_dir: str | None = None,
        device: str = "cpu",
        env_description: dict | None = None,
    ):
        # model configs of older versions (ActorCriticMoE, base_ckpt_path, ...) in today's spelling
        train_cfg.update({part: upgrade_model_cfg(train_cfg[part]) for part in ("actor", "critic")})
        self._model_cfg = {"actor": copy.deepcopy(train_cfg["actor"]), "critic": copy.deepcopy(train_cfg["critic"])}
        train_cfg["algorithm"] = hooked_algorithm_cfg(train_cfg["algorithm"])
        super().__init__(env, train_cfg, log_dir=log_dir, device=device)
        self.alg: HookedPPO
        # rsl_rl's __init__ builds a plain Logger and has no factory for it: build ours with the same arguments
        self.logger: ProgressLogger = ProgressLogger(
            log_dir=log_dir,
            cfg=self.cfg,
            env_cfg=self.env.cfg,
            num_envs=self.env.num_envs,
            is_distributed=self.is_distributed,
            gpu_world_size=self.gpu_world_size,
            gpu_global_rank=self.gpu_global_rank,
            device=self.device,
            progress=train_cfg.get("progress", "line"),
        )
        self.env_description = env_description or {}
        self.last_saved_path: str | None = None
        self.last_finished_iteration = -1
        """The last iteration whose update finished (a checkpoint's ``iter``); -1 before any."""
        self.check_env_for_nan = bool(train_cfg.get("check_for_nan", True))
        train_cfg["check_for_nan"] = False  # checked once per rollout by learn(), on every rank together
        self.curriculum = Curriculum(train_cfg.get("curriculum"))
        if self.curriculum.stages:
            self.logger.scalar_sources.append(self._curriculum_scalars)
        self.action_limbs: dict[str, slice] = dict(getattr(env, "action_limbs", None) or {})
        """``{limb: action columns}`` of the env (a VecEnv may declare ``action_limbs``): ``Policy/std/<limb>``."""
        if self.action_limbs:
            self.logger.scalar_sources.append(self._limb_std_scalars)

    def _configure_multi_gpu(self) -> None:
        """rsl_rl's multi-process set-up, for CPU processes too: under torchrun (``WORLD_SIZE`` > 1) join the process
        group (gloo on CPU, NCCL on CUDA; an existing group is reused) and give rsl_rl its ``multi_gpu`` config, with
        which it broadcasts parameters, averages gradients and synchronises the learning rate and normalisers.
        The learner device must be ``cpu`` or ``cuda:<LOCAL_RANK>`` (:func:`rsl_rl_moe.distributed.device_for_rank`).
        """
        info = process_info()
        self.gpu_world_size = info.world_size
        self.is_distributed = info.is_distributed
        self.gpu_local_rank, self.gpu_global_rank = info.local_rank, info.rank
        if not info.is_distributed:
            self.cfg["multi_gpu"] = None
            return
        if device_for_rank(str(self.device), info) != str(self.device):
            raise ValueError(
                f"device={self.device}: this process (local rank {info.local_rank}) must use cuda:{info.local_rank}"
            )
        self.cfg["multi_gpu"] = {"global_rank": info.rank, "local_rank": info.local_rank, "world_size": info.world_size}
        init_process_group(str(self.device), info)

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
        payload["iter"] = self.last_finished_iteration
        payload["infos"] = make_infos(self.model_description(), self.env_description, **(infos or {}))
        save_checkpoint(path, payload)
        self.last_saved_path = path
        self.logger.save_model(path, self.current_learning_iteration)

    def load(
        self, path: str, load_cfg: dict | None = None, strict: bool = True, map_location: str | None = None
    ) -> dict:
        """Resume from ``path`` (training continues with the iteration after the checkpoint's ``iter``); the
        checkpoint must come from a model of the same sizes, with finite weights. A checkpoint without
        optimizer state (e.g. a shipped expert, see ``scripts/ship_expert.py``) loads its models and iteration
        only, unless ``load_cfg`` says otherwise; training then continues with a fresh optimizer.

        Raises:
            CheckpointError: missing/corrupt file, non-finite weights, or sizes that differ from this env / config.
        """
        payload = load_checkpoint(path, override_hint="ckpt_path", map_location=map_location or self.device)
        if not {"actor_state_dict", "critic_state_dict"} <= payload.keys():
            raise CheckpointError(
                f"{path!r} has keys {sorted(payload)}; expected an rsl_rl 5.x checkpoint "
                "(actor_state_dict, critic_state_dict). Older rsl_rl formats cannot be resumed; "
                "load them as frozen experts instead."
            )
        nonfinite = first_nonfinite(
            state_dict_entries({k: payload[k] for k in ("actor_state_dict", "critic_state_dict")})
        )
        if nonfinite is not None:
            raise CheckpointError(f"{path!r} holds non-finite weights: {nonfinite}; refusing to run or resume it")
        if is_self_describing(payload):
            self._check_compatible(path, payload["infos"]["model"])
        if load_cfg is None and "optimizer_state_dict" not in payload:
            load_cfg = {"actor": True, "critic": True, "iteration": True}
        try:
            load_iteration = self.alg.load(payload, load_cfg, strict)
        except RuntimeError as exc:
            raise CheckpointError(
                f"{path!r} does not fit this model: {exc}{self._settings_hint(path, payload)}"
            ) from exc
        if load_iteration:
            self.last_finished_iteration = payload["iter"]
            self.current_learning_iteration = payload["iter"] + 1  # "iter" is the last finished iteration
        return payload["infos"]

    def _settings_hint(self, path: str, payload: dict) -> str:
        """For a checkpoint that does not fit: the model settings it was trained with that differ from this
        config, and how to play it with its own (empty if it does not describe itself)."""
        if not is_self_describing(payload):
            return ""
        saved = {part: upgrade_model_description(payload["infos"]["model"]).get(part) for part in ("actor", "critic")}
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
        """As rsl_rl, plus:

        - the rollout (rewards, values, returns, advantages) before each update, the gradients before each
          optimizer step and the losses and parameters after each update are checked: the first NaN or inf stops
          training with a :class:`~rsl_rl_moe.finite.NonFiniteError` naming the iteration and where, before it
          reaches the parameters; nothing is saved then (the last periodic checkpoint stays the last good one);
        - any other way out (Ctrl-C, SIGTERM, an exception) saves the last finished iteration's models first, as
          ``model_<it>.pt`` (atomically), then re-raises;
        - rollouts run with ``train_cfg["rollout_torch_threads"]`` torch threads, the update with all
          (see :mod:`rsl_rl_moe.runners.threads`);
        - the stages of ``train_cfg["curriculum"]`` due at an iteration apply before its rollout
          (:mod:`rsl_rl_moe.runners.curriculum`).

        The checks, threads and curriculum run in an around-update hook of the algorithm
        (:mod:`rsl_rl_moe.algorithms.hooks`), the outermost one, registered for the duration of ``learn()``; the
        gradient check in an optimizer step pre-hook. A checkpoint's ``iter`` is the last finished iteration;
        :meth:`load` continues with the next one.
        """
        learner_threads = torch.get_num_threads()
        first_iteration = self.current_learning_iteration
        self.last_finished_iteration = first_iteration - 1
        models = [("actor", self.alg.actor), ("critic", self.alg.critic)]
        if getattr(self.alg, "rnd", None) is not None:
            models.append(("rnd", self.alg.rnd))
        named_parameters = [
            (f"{part}.{name}", p) for part, model in models for name, p in model.named_parameters() if p.requires_grad
        ]

        def checked_update(update):
            """Around-update hook: rollout check, ``update()`` (the diagnostics and the algorithm's update) on the
            learner threads, then loss / parameter check and the curriculum stages due at the next iteration."""
            iteration = self.last_finished_iteration + 1
            storage = self.alg.storage
            buffers = {f"storage.{k}": getattr(storage, k, None) for k in ROLLOUT_BUFFERS}
            if self.check_env_for_nan:  # here, for every rank at once, instead of rsl_rl's per-step, per-rank check
                buffers |= {f"storage.observations[{group!r}]": obs for group, obs in storage.observations.items()}
            on_every_rank(check_rollout, buffers, iteration)
            with torch_threads(learner_threads):
                losses = update()
            on_every_rank(check_update, losses, named_parameters, iteration)
            self.last_finished_iteration = iteration
            self._advance_curriculum(iteration + 1)
            return losses

        def check_gradients_before_step(optimizer, args, kwargs):
            check_gradients(named_parameters, self.last_finished_iteration + 1)

        self._advance_curriculum(first_iteration)
        self.alg.around_update_hooks.insert(0, checked_update)  # outermost: around the diagnostics too
        gradient_checks = [
            optimizer.register_step_pre_hook(check_gradients_before_step)
            for optimizer in (self.alg.optimizer, getattr(getattr(self.alg, "rnd", None), "optimizer", None))
            if optimizer is not None
        ]
        try:
            with stop_signals_raise(), torch_threads(self.cfg.get("rollout_torch_threads")):
                super().learn(num_learning_iterations, init_at_random_ep_len)
        except NonFiniteError as exc:
            self._flush_writer()
            last = (
                f"the last checkpoint is {self.last_saved_path}" if self.last_saved_path else "no checkpoint was saved"
            )
            raise NonFiniteError(f"{exc}; nothing saved after it, {last}") from None
        except BaseException as exc:
            if self.last_finished_iteration >= first_iteration:
                with stop_signals_ignored():  # torchrun forwards Ctrl-C again, impatient users press it twice
                    self._save_on_the_way_out(exc)
            self._flush_writer()
            raise
        finally:
            self.alg.around_update_hooks.remove(checked_update)
            for hook in gradient_checks:
                hook.remove()
            self.current_learning_iteration = self.last_finished_iteration + 1  # the next learn() continues

    def _limb_std_scalars(self) -> dict[str, float]:
        """``Policy/std/<limb>``: the mean action std over each limb's entries (rsl_rl logs only the mean over all):
        one limb's exploration can grow while another's shrinks. Empty for an actor without a Gaussian output."""
        try:
            std = self.alg.get_policy().output_std.detach()
        except AttributeError:  # no distribution, or no forward yet
            return {}
        return {f"Policy/std/{limb}": float(std[..., columns].mean()) for limb, columns in self.action_limbs.items()}

    def _curriculum_scalars(self) -> dict[str, float]:
        """``Curriculum/stage`` of the iteration being logged (the last finished one)."""
        return {"Curriculum/stage": float(self.curriculum.stage_at(self.last_finished_iteration))}

    def _advance_curriculum(self, iteration: int) -> None:
        """Apply the curriculum stages due at ``iteration`` (before its rollout) and say so."""
        for stage in self.curriculum.advance(iteration, self.env, self.alg):
            if self.gpu_global_rank == 0:
                print(f"curriculum: {stage.name!r} from iteration {iteration}", flush=True)

    def _save_on_the_way_out(self, exc: BaseException) -> None:
        """Save the last finished iteration when training ends early (no-op on ranks / runs that do not write)."""
        if self.logger.writer is None:
            return
        path = os.path.join(self.logger.log_dir, f"model_{self.last_finished_iteration}.pt")
        reason = str(exc) if isinstance(exc, TrainingStopped) else f"{type(exc).__name__}: {exc}".splitlines()[0]
        try:
            self.save(path)
        except Exception as save_error:  # e.g. a full disk: report it, but let the original error through
            print(
                f"training ended early ({reason}); the final save failed too: {save_error}", file=sys.stderr, flush=True
            )
            return
        print(f"training ended early ({reason}): saved {path}", file=sys.stderr, flush=True)

    def _flush_writer(self) -> None:
        if self.logger.writer is not None:
            self.logger.writer.flush()


def on_every_rank(check, *args) -> None:
    """Run a non-finite ``check(*args, iteration)``; under torchrun every rank raises if it fails on any rank (the
    rollouts and losses are per rank; a rank stopping alone would leave the others waiting in a collective)."""
    try:
        check(*args)
        failure = None
    except NonFiniteError as exc:
        failure = exc
    if any_rank(failure is not None):
        raise failure or NonFiniteError(f"training stopped at iteration {args[-1]}: non-finite numbers on another rank")


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
