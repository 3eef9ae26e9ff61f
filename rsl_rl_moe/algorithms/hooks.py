"""Extension points in ``act()`` and ``update()``: the runners' work is called from there, not patched in.

rsl_rl 5.5's ``OnPolicyRunner.learn()`` calls ``alg.act(obs)`` at every rollout step and ``alg.update()`` once per
iteration, and offers no hook of its own around either. :class:`HookedPPO` (rsl_rl's PPO) and its subclass
:class:`~rsl_rl_moe.algorithms.PPOMoE` call two lists of callables at those points, explicitly, the way rsl_rl's
PPO calls its RND and symmetry extensions inside ``update()``:

``after_act_hooks``: ``hook(obs, actions) -> None``, after each ``act(obs)``.
    ``obs`` is the observation TensorDict given to ``act`` (every group the env returns); ``actions`` the sampled
    actions ``(num_envs, num_actions)`` that ``act`` returns (read them, do not modify them). The call is inside
    rsl_rl's rollout (``torch.inference_mode()``), after the actor's and critic's forward of this step, so
    per-step model state such as ``MoEActor.last_gate_weights`` is this step's. Used by
    :class:`~rsl_rl_moe.runners.MoERunner` to record the gate weights per task.

``around_update_hooks``: ``hook(update) -> loss dict``, around each ``update()``.
    ``update`` is a callable without arguments that runs the rest of the update (the hooks after this one, then
    :meth:`HookedPPO.ppo_update`) and returns its loss dict ``{name: float}``. A hook calls ``update`` exactly
    once and returns its dict (it may add keys; rsl_rl logs each as ``Loss/<key>``). The first hook of the list
    is the outermost. :class:`~rsl_rl_moe.runners.Runner` puts its checks first while ``learn()`` runs (non-finite
    rollouts / losses / parameters, learner torch threads, curriculum); :class:`~rsl_rl_moe.runners.MoERunner`
    appends :meth:`TrainingDiagnostics.update <rsl_rl_moe.runners.training_diagnostics.TrainingDiagnostics.update>`.

Both lists are plain instance lists: append (or insert) a hook, remove it when done. With empty lists the
algorithm is rsl_rl's, call for call. A subclass changes the update itself in :meth:`HookedPPO.ppo_update`, not in
``update``, so that the hooks run around all of it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from rsl_rl.algorithms import PPO
from rsl_rl.env import VecEnv
from rsl_rl.utils import resolve_callable
from tensordict import TensorDict

from rsl_rl_moe import compat

ActHook = Callable[[TensorDict, torch.Tensor], None]
"""``hook(obs, actions)`` called after each ``act`` (see the module docstring)."""
UpdateHook = Callable[[Callable[[], dict[str, float]]], dict[str, float]]
"""``hook(update) -> loss dict`` called around each ``update`` (see the module docstring)."""


class HookedPPO(PPO):
    """rsl_rl's PPO whose ``act()`` and ``update()`` call :attr:`after_act_hooks` and :attr:`around_update_hooks`.

    Build it through rsl_rl: ``algorithm.class_name: rsl_rl_moe.algorithms:HookedPPO`` (the runners use it when
    the config names rsl_rl's ``PPO``). Arguments: those of :class:`rsl_rl.algorithms.PPO`.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.after_act_hooks: list[ActHook] = []
        """Called as ``hook(obs, actions)`` after each :meth:`act`, in list order."""
        self.around_update_hooks: list[UpdateHook] = []
        """Called as ``hook(update)`` around each :meth:`update`; the first is the outermost."""

    @staticmethod
    def construct_algorithm(obs: TensorDict, env: VecEnv, cfg: dict, device: str) -> PPO:
        """rsl_rl's, leaving ``cfg`` as rsl-rl-lib 5.5 does on older 5.x releases too (:mod:`rsl_rl_moe.compat`)."""
        return compat.construct_algorithm(PPO.construct_algorithm, obs, env, cfg, device)

    def act(self, obs: TensorDict) -> torch.Tensor:
        """rsl_rl's ``act(obs)``, then each ``hook(obs, actions)`` of :attr:`after_act_hooks`."""
        actions = super().act(obs)
        for hook in self.after_act_hooks:
            hook(obs, actions)
        return actions

    def update(self) -> dict[str, float]:
        """:meth:`ppo_update` run through the :attr:`around_update_hooks` (the first one outermost)."""
        update = self.ppo_update
        for hook in reversed(self.around_update_hooks):
            update = functools.partial(hook, update)
        return update()

    def ppo_update(self) -> dict[str, float]:
        """The update itself, without the hooks: rsl_rl's ``PPO.update()``. Subclasses extend this method."""
        return super().update()


def hooked_algorithm_cfg(alg_cfg: dict) -> dict:
    """``alg_cfg`` (rsl_rl's ``train_cfg["algorithm"]``) naming a :class:`HookedPPO` class: rsl_rl's ``PPO``
    becomes :class:`HookedPPO`; a HookedPPO subclass (e.g. ``PPOMoE``) stays. Returns a new dict when it changes.

    Raises:
        TypeError: another algorithm class (its ``act`` / ``update`` would not call the runners' hooks).
    """
    cls = resolve_callable(alg_cfg["class_name"])
    if isinstance(cls, type) and issubclass(cls, HookedPPO):
        return alg_cfg
    if cls is PPO:
        return {**alg_cfg, "class_name": "rsl_rl_moe.algorithms:HookedPPO"}
    raise TypeError(
        f"algorithm.class_name={alg_cfg['class_name']!r} ({getattr(cls, '__qualname__', cls)}): the runners need "
        f"rsl_rl's PPO or a subclass of rsl_rl_moe.algorithms:HookedPPO (extend its ppo_update())"
    )


def algorithm_name(alg) -> str:
    """The algorithm's name in messages, as configs give it: ``"PPO"`` for :class:`HookedPPO` (what the runners
    build for rsl_rl's ``PPO``), else its class name."""
    return "PPO" if type(alg) is HookedPPO else type(alg).__name__
