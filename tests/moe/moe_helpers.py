"""Test helpers: real rsl_rl MLPModel experts saved as self-describing checkpoints, and a tiny VecEnv."""

from __future__ import annotations

import torch
from rsl_rl.env import VecEnv
from rsl_rl.models import MLPModel
from tensordict import TensorDict

from rsl_rl_moe.checkpoint import make_infos, save_checkpoint
from rsl_rl_moe.modules import ExpertSources

NUM_ENVS = 8
NUM_ACTIONS = 18
GROUP_DIMS = {"policy": 66, "critic": 21}
OBS_GROUPS = {"actor": ["policy"], "critic": ["policy", "critic"]}
LEGS_ARM = {"legs": list(range(12)), "arm": list(range(12, 18))}


def random_obs(dims: dict[str, int], num_envs: int, seed: int) -> TensorDict:
    gen = torch.Generator().manual_seed(seed)
    return TensorDict({g: torch.randn(num_envs, d, generator=gen) for g, d in dims.items()}, batch_size=[num_envs])


def make_obs(num_envs: int = NUM_ENVS, seed: int = 0) -> TensorDict:
    """Synthetic observation batch with groups ``policy`` (N, 66) and ``critic`` (N, 21)."""
    return random_obs(GROUP_DIMS, num_envs, seed)


def expert_cfgs(hidden_dims=(32, 32), activation: str = "elu") -> tuple[dict, dict]:
    actor = {
        "class_name": "rsl_rl.models:MLPModel",
        "hidden_dims": list(hidden_dims),
        "activation": activation,
        "obs_normalization": True,
        "distribution_cfg": {"class_name": "GaussianDistribution", "init_std": 1.0, "std_type": "scalar"},
    }
    critic = {"class_name": "rsl_rl.models:MLPModel", "hidden_dims": list(hidden_dims), "activation": activation}
    return actor, critic


def build_expert_models(
    seed: int, dims: dict[str, int], num_actions: int = NUM_ACTIONS, hidden_dims=(32, 32), activation: str = "elu"
) -> tuple[MLPModel, MLPModel]:
    """A pair of real MLPModels with distinct random weights, std and normaliser statistics."""
    torch.manual_seed(seed)
    obs = random_obs(dims, 4, seed)
    actor_cfg, critic_cfg = expert_cfgs(hidden_dims, activation)
    actor = MLPModel(obs, OBS_GROUPS, "actor", num_actions, **{k: v for k, v in actor_cfg.items() if k != "class_name"})
    critic = MLPModel(obs, OBS_GROUPS, "critic", 1, **{k: v for k, v in critic_cfg.items() if k != "class_name"})
    with torch.no_grad():
        actor.distribution.std_param.uniform_(0.2, 0.8)
        for p in list(actor.mlp.parameters()) + list(critic.mlp.parameters()):
            p.add_(0.3 * torch.randn_like(p))
    actor.train()
    actor.update_normalization(random_obs(dims, 64, seed + 100))
    return actor, critic


def save_expert(
    path,
    seed: int,
    num_actions: int = NUM_ACTIONS,
    group_dims: dict | None = None,
    hidden_dims=(32, 32),
    activation: str = "elu",
) -> str:
    """Save an expert as a self-describing checkpoint; returns the path."""
    dims = group_dims or GROUP_DIMS
    actor, critic = build_expert_models(seed, dims, num_actions, hidden_dims, activation)
    actor_cfg, critic_cfg = expert_cfgs(hidden_dims, activation)
    infos = make_infos(
        {
            "actor": actor_cfg,
            "critic": critic_cfg,
            "obs_groups": OBS_GROUPS,
            "obs_group_dims": dims,
            "num_actions": num_actions,
        }
    )
    payload = {
        "actor_state_dict": actor.state_dict(),
        "critic_state_dict": critic.state_dict(),
        "optimizer_state_dict": {},
        "iter": 10,
        "infos": infos,
    }
    save_checkpoint(str(path), payload)
    return str(path)


def expert_sources(files: dict[str, str], **kw) -> ExpertSources:
    """The experts ``{name: path}`` of ``files`` (in that order) as the MoE actor and critic take them."""
    return ExpertSources(experts=dict(files), **kw)


def expert_sources_cfg(files: dict[str, str], **kw) -> dict:
    """:func:`expert_sources` as a train config holds it (a plain dict)."""
    return expert_sources(files, **kw).as_dict()


class LinearEnv(VecEnv):
    """Tiny VecEnv with random linear dynamics, episodes of 6 steps, and a ``task_id`` group (optional)."""

    def __init__(self, num_envs: int = NUM_ENVS, task_id: bool = True) -> None:
        self.num_envs = num_envs
        self.num_actions = NUM_ACTIONS
        self.max_episode_length = 6
        self.device = "cpu"
        self.cfg = {"name": "linear"}
        self.task_id = task_id
        gen = torch.Generator().manual_seed(0)
        self.b = 0.1 * torch.randn(NUM_ACTIONS, GROUP_DIMS["policy"], generator=gen)
        self.state = torch.randn(num_envs, GROUP_DIMS["policy"], generator=gen)
        self.episode_length_buf = torch.zeros(num_envs, dtype=torch.long)

    def get_observations(self) -> TensorDict:
        groups = {"policy": self.state.clone(), "critic": self.state[:, : GROUP_DIMS["critic"]].clone()}
        if self.task_id:
            groups["task_id"] = (torch.arange(self.num_envs) % 2).float().unsqueeze(1)
        return TensorDict(groups, batch_size=[self.num_envs])

    def step(self, actions: torch.Tensor):
        self.state = 0.9 * self.state + actions.clamp(-3, 3) @ self.b
        rewards = -self.state[:, :3].pow(2).sum(dim=1)
        self.episode_length_buf += 1
        dones = self.episode_length_buf >= self.max_episode_length
        self.state[dones] = torch.randn(int(dones.sum()), GROUP_DIMS["policy"])
        self.episode_length_buf[dones] = 0
        return self.get_observations(), rewards, dones, {"time_outs": dones.clone()}
