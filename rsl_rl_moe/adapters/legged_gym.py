"""Train a legged_gym env (rsl_rl 1.0.2 era) with rsl-rl-lib 5.5 and our runners.

Never imports isaacgym or legged_gym: it works with any env object that has legged_gym's interface
(``BaseTask`` / ``LeggedRobot``)::

    from legged_gym.envs import *  # noqa (registers the tasks)
    from legged_gym.utils import get_args, task_registry
    from rsl_rl_moe.adapters import LeggedGymVecEnv
    from rsl_rl_moe.runners import Runner  # or MoERunner

    args = get_args()
    env = LeggedGymVecEnv(task_registry.make_env(name=args.task, args=args)[0])
    train_cfg = {..., "obs_groups": {"actor": ["policy"], "critic": ["critic"]}, ...}  # rsl_rl 5.5 flat dict
    Runner(env, train_cfg, log_dir=..., device=env.device).learn(1500, init_at_random_ep_len=True)

What maps to what (legged_gym env -> rsl_rl 5.5 VecEnv):

- ``get_observations()`` ``(N, num_obs)`` -> group ``policy``; ``get_privileged_observations()``
  ``(N, num_privileged_obs)`` -> group ``critic``, or the policy observation again when it is None
  (``num_privileged_obs = None``). Group names are arguments.
- ``step(actions) -> (obs, privileged_obs, rew_buf (N,), reset_buf (N,), extras)`` ->
  ``(TensorDict, rewards (N,), dones (N,), extras)``; ``extras`` is a shallow copy of the env's dict
  (``"episode"``: legged_gym's per-term episode sums, logged as ``Episode/<key>``), with
  ``extras["time_outs"]`` (N,) bool: the env's own (``cfg.env.send_timeouts``) AND ``dones``, or all False.
  The AND matters: legged_gym sets ``extras["time_outs"] = time_out_buf`` in ``reset_idx`` only, so after a
  step in which no env reset it still holds the previous reset step's flags, and PPO would bootstrap
  envs that did not end (rsl_rl 1.0.2 did).
- ``episode_length_buf``: read from and ASSIGNED to the env's attribute. rsl_rl's
  ``learn(init_at_random_ep_len=True)`` assigns random lengths, as rsl_rl 1.0.2 did; legged_gym's env
  counts (``+= 1``) and times out on its own attribute, so each env's first episode ends at its own step.
- ``num_envs``, ``num_actions``, ``device``, ``max_episode_length`` (legged_gym's numpy float ->
  int) forwarded; ``cfg``: the class-based config as a dict of plain values (:func:`config_to_dict`),
  what rsl_rl's logger stores for the run's records.
- ``env.reset()`` is called once at construction (``reset=True``), as rsl_rl 1.0.2's
  ``OnPolicyRunner.__init__`` did; rsl_rl 5.5 never calls it.
"""

from __future__ import annotations

import inspect

import torch
from rsl_rl.env import VecEnv
from tensordict import TensorDict

_PLAIN = (bool, int, float, str, type(None))


def config_to_dict(cfg) -> object:
    """A legged_gym class-based config (nested classes or their instances, as ``BaseConfig`` makes them) as
    nested dicts / lists of plain values: public attributes only (``_``-names and methods skipped, like
    legged_gym's ``class_to_dict``), numpy / torch values via ``tolist()``, anything else as its ``repr``."""
    if isinstance(cfg, _PLAIN):
        return cfg
    if isinstance(cfg, dict):
        return {str(k): config_to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [config_to_dict(v) for v in cfg]
    if hasattr(cfg, "tolist"):  # numpy arrays and scalars, tensors
        return cfg.tolist()
    if isinstance(cfg, type) or (hasattr(cfg, "__dict__") and not inspect.isroutine(cfg)):
        return {
            key: config_to_dict(value)
            for key in dir(cfg)
            if not key.startswith("_") and not inspect.isroutine(value := getattr(cfg, key))
        }
    return repr(cfg)


class LeggedGymVecEnv(VecEnv):
    """rsl_rl 5.5 :class:`~rsl_rl.env.VecEnv` view of a legged_gym-style env (see the module docstring).

    Args:
        env: the legged_gym env (``task_registry.make_env(...)[0]`` or anything with its interface).
        policy_group: observation group of ``get_observations()`` ``(N, num_obs)``.
        critic_group: observation group of ``get_privileged_observations()`` ``(N, num_privileged_obs)``,
            or of the policy observation when the env has none.
        reset: call ``env.reset()`` once now, as rsl_rl 1.0.2's runner did.
    """

    def __init__(self, env, policy_group: str = "policy", critic_group: str = "critic", reset: bool = True) -> None:
        if policy_group == critic_group:
            raise ValueError(f"policy_group and critic_group must differ, both are {policy_group!r}")
        self.env = env
        self.policy_group = policy_group
        self.critic_group = critic_group
        self.num_envs = int(env.num_envs)
        self.num_actions = int(env.num_actions)
        self.device = env.device
        self.cfg = config_to_dict(env.cfg)
        if reset:
            env.reset()

    @property
    def episode_length_buf(self) -> torch.Tensor:
        """The env's own ``episode_length_buf`` (N,) long."""
        return self.env.episode_length_buf

    @episode_length_buf.setter
    def episode_length_buf(self, value: torch.Tensor) -> None:
        self.env.episode_length_buf = value

    @property
    def max_episode_length(self) -> int | torch.Tensor:
        """The env's ``max_episode_length`` (legged_gym: ``np.ceil(episode_length_s / dt)``) as an int."""
        length = self.env.max_episode_length
        return length if isinstance(length, torch.Tensor) else int(length)

    def get_observations(self) -> TensorDict:
        """Current observations, groups ``policy`` (N, num_obs) and ``critic`` (N, num_privileged_obs or num_obs)."""
        env = self.env
        if hasattr(env, "get_observations"):  # legged_gym's BaseTask: obs_buf / privileged_obs_buf, or an override
            return self._groups(env.get_observations(), env.get_privileged_observations())
        return self._groups(env.obs_buf, getattr(env, "privileged_obs_buf", None))

    def step(self, actions: torch.Tensor) -> tuple[TensorDict, torch.Tensor, torch.Tensor, dict]:
        """Step with actions (N, num_actions): observations, rewards (N,), dones (N,), extras with ``time_outs``
        (N,)."""
        obs, privileged_obs, rewards, dones, env_extras = self.env.step(actions)
        extras = dict(env_extras)  # the env's own dict stays as it is
        time_outs = extras.get("time_outs")
        if time_outs is None:
            extras["time_outs"] = torch.zeros_like(dones, dtype=torch.bool)
        else:  # legged_gym refreshes it in reset_idx only: stale after a step without resets
            extras["time_outs"] = time_outs.bool() & (dones > 0)
        return self._groups(obs, privileged_obs), rewards, dones, extras

    def _groups(self, obs: torch.Tensor, privileged_obs: torch.Tensor | None) -> TensorDict:
        critic = obs if privileged_obs is None else privileged_obs
        return TensorDict({self.policy_group: obs, self.critic_group: critic}, batch_size=[self.num_envs])
