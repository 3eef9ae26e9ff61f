"""LeggedGymVecEnv: a legged_gym-style env (rsl_rl 1.0.2 interface, 5-tuple step) trained by our runners.

The env below is written for the test in pure torch with legged_gym's names, class-based config and step order
(``BaseTask`` buffers, ``post_physics_step`` -> ``check_termination`` -> ``compute_reward`` -> ``reset_idx``
-> ``compute_observations``; time-out when ``episode_length_buf > max_episode_length``; ``extras["episode"]``
of per-term episode sums, ``extras["time_outs"]`` when ``cfg.env.send_timeouts``).
"""

from __future__ import annotations

import inspect
import json
import sys

import numpy as np
import pytest
import torch
from helpers import read_events
from moe.moe_helpers import save_expert

from rsl_rl_moe.adapters import LeggedGymVecEnv
from rsl_rl_moe.checkpoint import load_checkpoint
from rsl_rl_moe.runners import MoERunner, Runner


def init_member_classes(obj) -> None:
    """legged_gym's ``BaseConfig.__init__``: replace each nested class by an instance, recursively."""
    for key in dir(obj):
        value = getattr(obj, key)
        if key != "__class__" and inspect.isclass(value):
            setattr(obj, key, value())
            init_member_classes(getattr(obj, key))


class PointMassCfg:
    class env:
        num_envs = 64
        num_observations = 4
        num_privileged_obs = 6  # None: the env has no privileged observations
        num_actions = 2
        episode_length_s = 2.0
        send_timeouts = True
        bound = 3.0  # terminate (not a time-out) beyond this |position|

    class sim:
        dt = 0.05

    class control:
        decimation = 2

    class normalization:
        clip_actions = 1.0

    class rewards:
        tracking_sigma = 0.5

        class scales:
            reaching = 1.0
            action_rate = -0.01

    def __init__(self) -> None:
        init_member_classes(self)


class PointMassEnv:
    """Point masses pushed towards a goal, legged_gym style. Actions (N, 2): velocity in [-1, 1] times a per-env
    gain; obs (N, 4): goal - position, actions; privileged obs (N, 6): obs, gain, episode progress.
    Reward per step ``dt * (exp(-|goal - pos|^2 / sigma) - 0.01 |a - a_prev|^2)``: a policy improves it by moving
    to the goal. ``max_episode_length`` = 20, so an episode is 21 steps (legged_gym's ``>`` time-out)."""

    def __init__(self, cfg: PointMassCfg, device: str = "cpu") -> None:
        self.cfg, self.device = cfg, device
        self.num_envs = cfg.env.num_envs
        self.num_obs = cfg.env.num_observations
        self.num_privileged_obs = cfg.env.num_privileged_obs
        self.num_actions = cfg.env.num_actions
        self.sim_dt = cfg.sim.dt
        self.dt = cfg.control.decimation * cfg.sim.dt
        self.max_episode_length_s = cfg.env.episode_length_s
        self.max_episode_length = np.ceil(self.max_episode_length_s / self.dt)  # a numpy float, as in legged_gym
        n = self.num_envs
        self.obs_buf = torch.zeros(n, self.num_obs)
        self.rew_buf = torch.zeros(n)
        self.reset_buf = torch.ones(n, dtype=torch.long)
        self.episode_length_buf = torch.zeros(n, dtype=torch.long)
        self.time_out_buf = torch.zeros(n, dtype=torch.bool)
        self.privileged_obs_buf = None if self.num_privileged_obs is None else torch.zeros(n, self.num_privileged_obs)
        self.extras = {}
        self.pos, self.goal, self.gain = torch.zeros(n, 2), torch.zeros(n, 2), torch.ones(n, 1)
        self.actions, self.last_actions = torch.zeros(n, 2), torch.zeros(n, 2)
        scales = cfg.rewards.scales
        self.reward_scales = {k: getattr(scales, k) * self.dt for k in dir(scales) if not k.startswith("_")}
        self.episode_sums = {name: torch.zeros(n) for name in self.reward_scales}
        self.generator = torch.Generator().manual_seed(0)

    def get_observations(self) -> torch.Tensor:
        return self.obs_buf

    def get_privileged_observations(self) -> torch.Tensor | None:
        return self.privileged_obs_buf

    def reset(self):
        self.reset_idx(torch.arange(self.num_envs))
        obs, privileged_obs, _, _, _ = self.step(torch.zeros(self.num_envs, self.num_actions))
        return obs, privileged_obs

    def step(self, actions: torch.Tensor):
        clip = self.cfg.normalization.clip_actions
        self.actions = torch.clip(actions, -clip, clip).to(self.device)
        for _ in range(self.cfg.control.decimation):
            self.pos += self.sim_dt * self.gain * self.actions
        self.post_physics_step()
        return self.obs_buf, self.privileged_obs_buf, self.rew_buf, self.reset_buf, self.extras

    def post_physics_step(self) -> None:
        self.episode_length_buf += 1
        self.check_termination()
        self.compute_reward()
        self.reset_idx(self.reset_buf.nonzero(as_tuple=False).flatten())
        self.compute_observations()
        self.last_actions[:] = self.actions

    def check_termination(self) -> None:
        self.reset_buf = self.pos.abs().amax(dim=1) > self.cfg.env.bound
        self.time_out_buf = self.episode_length_buf > self.max_episode_length
        self.reset_buf |= self.time_out_buf

    def compute_reward(self) -> None:
        terms = {
            "reaching": torch.exp(-(self.goal - self.pos).pow(2).sum(dim=1) / self.cfg.rewards.tracking_sigma),
            "action_rate": (self.actions - self.last_actions).pow(2).sum(dim=1),
        }
        self.rew_buf[:] = 0.0
        for name, scale in self.reward_scales.items():
            rew = terms[name] * scale
            self.rew_buf += rew
            self.episode_sums[name] += rew

    def reset_idx(self, env_ids: torch.Tensor) -> None:
        if len(env_ids) == 0:
            return
        k = len(env_ids)
        self.pos[env_ids] = 2 * torch.rand(k, 2, generator=self.generator) - 1
        self.goal[env_ids] = 2 * torch.rand(k, 2, generator=self.generator) - 1
        self.gain[env_ids] = 0.5 + torch.rand(k, 1, generator=self.generator)
        self.last_actions[env_ids] = 0.0
        self.episode_length_buf[env_ids] = 0
        self.reset_buf[env_ids] = 1
        self.extras["episode"] = {}
        for name in self.episode_sums:
            self.extras["episode"]["rew_" + name] = (
                torch.mean(self.episode_sums[name][env_ids]) / self.max_episode_length_s
            )
            self.episode_sums[name][env_ids] = 0.0
        if self.cfg.env.send_timeouts:
            self.extras["time_outs"] = self.time_out_buf

    def compute_observations(self) -> None:
        self.obs_buf = torch.cat([self.goal - self.pos, self.actions], dim=1)
        if self.privileged_obs_buf is not None:
            progress = (self.episode_length_buf / self.max_episode_length).float().unsqueeze(1)
            self.privileged_obs_buf = torch.cat([self.obs_buf, self.gain, progress], dim=1)


def make_env(**env_overrides) -> PointMassEnv:
    cfg = PointMassCfg()
    for key, value in env_overrides.items():
        setattr(cfg.env, key, value)
    return PointMassEnv(cfg)


def record_steps(env: PointMassEnv) -> list[dict]:
    """Record, at each call of ``env.step``, the episode lengths before it and the rewards / time-outs after it."""
    records, step = [], env.step

    def recording_step(actions):
        before = env.episode_length_buf.clone()
        out = step(actions)
        records.append({"length_before": before, "rewards": env.rew_buf.clone(), "time_outs": env.time_out_buf.clone()})
        return out

    env.step = recording_step
    return records


def ppo_cfg(num_steps_per_env: int = 8, learning_rate: float = 1e-3) -> dict:
    return {
        "num_steps_per_env": num_steps_per_env,
        "save_interval": 100,
        "obs_groups": {"actor": ["policy"], "critic": ["critic"]},
        "algorithm": {
            "class_name": "PPO",
            "num_learning_epochs": 4,
            "num_mini_batches": 2,
            "learning_rate": learning_rate,
            "schedule": "adaptive",
            "desired_kl": 0.01,
            "entropy_coef": 0.0,
            "gamma": 0.95,
        },  # fmt: skip
        "actor": {
            "class_name": "rsl_rl.models:MLPModel",
            "hidden_dims": [32, 32],
            "distribution_cfg": {"class_name": "GaussianDistribution", "init_std": 1.0, "std_type": "scalar"},
        },  # fmt: skip
        "critic": {"class_name": "rsl_rl.models:MLPModel", "hidden_dims": [32, 32]},
    }


def test_adapter_groups_shapes_extras_and_config():
    inner = make_env()
    env = LeggedGymVecEnv(inner)
    assert "isaacgym" not in sys.modules
    assert (env.num_envs, env.num_actions, env.max_episode_length, env.device) == (64, 2, 20, "cpu")
    assert type(env.max_episode_length) is int
    obs = env.get_observations()
    assert set(obs.keys()) == {"policy", "critic"}
    assert obs["policy"].shape == (64, 4) and obs["critic"].shape == (64, 6)
    assert torch.equal(obs["policy"], inner.obs_buf) and torch.equal(obs["critic"], inner.privileged_obs_buf)
    assert inner.episode_length_buf.eq(1).all()  # reset() ran once at construction, with its zero-action step

    inner.pos[0] = 10.0  # env 0 leaves the table: a termination, not a time-out
    result = env.step(torch.zeros(64, 2))
    assert len(result) == 4
    obs, rewards, dones, extras = result
    assert obs["policy"].shape == (64, 4) and obs["critic"].shape == (64, 6)
    assert rewards.shape == (64,) and dones.shape == (64,) and extras["time_outs"].shape == (64,)
    assert bool(dones[0]) and not bool(extras["time_outs"][0]) and not bool(dones[1:].any())
    assert set(extras["episode"]) == {"rew_reaching", "rew_action_rate"}
    assert extras is not inner.extras
    timed_out, env_flags = [], []
    for _ in range(21):  # envs 1.. time out at the 19th step, env 0 at the 21st; no env resets at the 20th
        _, _, dones, extras = env.step(torch.zeros(64, 2))
        assert torch.equal(extras["time_outs"], inner.time_out_buf) and torch.equal(dones, inner.reset_buf)
        timed_out.append(int(extras["time_outs"].sum()))
        env_flags.append(int(inner.extras["time_outs"].sum()))
    assert timed_out[18:] == [63, 0, 1] and sum(timed_out) == 64
    assert env_flags[18:] == [63, 63, 1]  # legged_gym's own extras: stale at the 20th step (set in reset_idx only)

    # cfg: the class-based config as plain, JSON-able values (what rsl_rl's logger stores)
    assert env.cfg["env"]["num_envs"] == 64 and env.cfg["rewards"]["scales"] == {"reaching": 1.0, "action_rate": -0.01}
    assert env.cfg["env"]["num_privileged_obs"] == 6 and "init_member_classes" not in json.dumps(env.cfg)

    # episode_length_buf: read from and assigned to the env's own attribute
    lengths = torch.arange(64) % 5
    env.episode_length_buf = lengths
    assert inner.episode_length_buf is lengths and env.episode_length_buf is lengths


def test_env_without_privileged_obs_or_timeouts_and_other_group_names():
    inner = make_env(num_privileged_obs=None, send_timeouts=False)
    env = LeggedGymVecEnv(inner, policy_group="proprio", critic_group="privileged")
    obs = env.get_observations()
    assert set(obs.keys()) == {"proprio", "privileged"} and torch.equal(obs["privileged"], obs["proprio"])
    for _ in range(25):  # past a time-out at step 21
        obs, _, dones, extras = env.step(torch.zeros(64, 2))
    assert extras["time_outs"].dtype == torch.bool and not extras["time_outs"].any() and "time_outs" not in inner.extras
    assert obs["privileged"].shape == (64, 4)
    with pytest.raises(ValueError, match="must differ"):
        LeggedGymVecEnv(make_env(), policy_group="obs", critic_group="obs")


def test_runner_trains_with_random_initial_episode_lengths(tmp_path):
    """rsl_rl's learn(init_at_random_ep_len=True) assigns random lengths to the adapter; the legged_gym env counts
    on them, so every env times out at its own steps: steps 21 - l0, 42 - l0, ... of the run."""
    torch.manual_seed(0)
    inner = make_env(bound=100.0)  # time-outs only
    env = LeggedGymVecEnv(inner)
    records = record_steps(inner)
    runner = Runner(env, ppo_cfg(), log_dir=str(tmp_path))
    runner.learn(6, init_at_random_ep_len=True)  # 48 steps: two time-outs per env
    initial = records[0]["length_before"]
    assert initial.min() >= 0 and initial.max() < 20 and len(initial.unique()) > 5, initial  # rsl_rl's random lengths
    steps = torch.arange(1, len(records) + 1).unsqueeze(1)  # (T, 1)
    time_outs = torch.stack([r["time_outs"] for r in records])  # (T, N)
    assert torch.equal(time_outs, (steps + initial) % 21 == 0)
    assert (tmp_path / "model_5.pt").exists()
    tags = read_events(str(tmp_path)).Tags()["scalars"]
    assert "Episode/rew_reaching" in tags and "Train/mean_reward" in tags  # extras["episode"] reached the logger


def test_short_training_improves_the_reward():
    torch.manual_seed(0)
    inner = make_env()
    env = LeggedGymVecEnv(inner)
    records = record_steps(inner)
    steps_per_iteration, iterations = 16, 30
    Runner(env, ppo_cfg(steps_per_iteration), log_dir=None).learn(iterations, init_at_random_ep_len=True)
    rewards = torch.stack([r["rewards"] for r in records]).view(iterations, steps_per_iteration, -1).mean(dim=(1, 2))
    first, last = rewards[:3].mean().item(), rewards[-3:].mean().item()
    assert last > 2 * first, rewards.tolist()


def test_moe_runner_trains_on_the_adapted_env(tmp_path):
    dims = {"policy": 4, "critic": 6}
    experts = {part: save_expert(tmp_path / f"{part}.pt", seed=i, num_actions=2, group_dims=dims)
               for i, part in enumerate(("base", "arm"), start=1)}  # fmt: skip
    cfg = {
        "num_steps_per_env": 8,
        "save_interval": 100,
        "obs_groups": {"actor": ["policy"], "critic": ["policy", "critic"]},
        "algorithm": {
            "class_name": "rsl_rl_moe.algorithms:PPOMoE",
            "num_learning_epochs": 1,
            "num_mini_batches": 2,
            "learning_rate": 1e-3,
        },  # fmt: skip
        "actor": {
            "class_name": "rsl_rl_moe.modules:MoEActor",
            "expert_sources": {"experts": experts},
            "obs_moe": {"hidden_dims": [16]},
        },  # fmt: skip
        "critic": {"class_name": "rsl_rl.models:MLPModel", "hidden_dims": [16]},
    }
    run_dir = tmp_path / "run"
    runner = MoERunner(LeggedGymVecEnv(make_env()), cfg, log_dir=str(run_dir))
    runner.learn(2, init_at_random_ep_len=True)
    payload = load_checkpoint(str(run_dir / "model_1.pt"))
    assert payload["iter"] == 1
    assert payload["infos"]["model"]["obs_group_dims"] == dims and payload["infos"]["model"]["num_actions"] == 2
    assert "moe/all/weight/base" in read_events(str(run_dir)).Tags()["scalars"]
