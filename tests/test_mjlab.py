"""MoERunner with its diagnostics on a real mjlab task, built through mjlab's own rsl_rl wrapper.

mjlab's ``Mjlab-Velocity-Flat-Unitree-Go1`` (MuJoCo Warp, Warp's CPU device, 2 envs) as mjlab's ``train.py``
builds it: ``ManagerBasedRlEnv(cfg, device)`` wrapped by ``mjlab.rl.RslRlVecEnvWrapper`` (an rsl_rl
``VecEnv``: observation groups ``actor`` and ``critic``, ``extras["time_outs"]`` and ``extras["log"]``).
Two frozen experts, tiny MLPs written here for the task's observation and action sizes, are mixed by the MoE
actor and critic; two iterations with every diagnostic on each iteration.

Needs mjlab (not a dependency of this package). Passes with mjlab 1.6.0's own ``rsl-rl-lib==5.4.2`` (through
``rsl_rl_moe.compat``) and with 5.5.1. The first run compiles MuJoCo Warp's CPU kernels (about half a minute,
cached in ``~/.cache/warp``).
"""

from __future__ import annotations

import contextlib
import copy
import io

import pytest

mjlab = pytest.importorskip("mjlab")

import torch  # noqa: E402
from helpers import read_events  # noqa: E402
from moe.moe_helpers import expert_cfgs, random_obs  # noqa: E402
from rsl_rl.models import MLPModel  # noqa: E402

from rsl_rl_moe.checkpoint import load_checkpoint, make_infos, save_checkpoint  # noqa: E402
from rsl_rl_moe.runners import MoERunner  # noqa: E402

TASK = "Mjlab-Velocity-Flat-Unitree-Go1"
OBS_GROUPS = {"actor": ["actor"], "critic": ["critic"]}  # mjlab's velocity tasks' groups, as in its rl_cfg


def make_env(num_envs: int = 2):
    """The task's env on Warp's CPU device, wrapped as mjlab's train.py wraps it."""
    import mjlab.tasks  # noqa: F401  (registers the tasks)
    from mjlab.envs import ManagerBasedRlEnv
    from mjlab.rl import RslRlVecEnvWrapper
    from mjlab.tasks.registry import load_env_cfg, load_rl_cfg

    env_cfg = load_env_cfg(TASK)
    env_cfg.scene.num_envs = num_envs
    with contextlib.redirect_stdout(io.StringIO()):  # mjlab prints its managers' tables
        env = ManagerBasedRlEnv(cfg=env_cfg, device="cpu")
    return RslRlVecEnvWrapper(env, clip_actions=load_rl_cfg(TASK).clip_actions)


def save_expert(path, seed: int, dims: dict[str, int], num_actions: int) -> str:
    """A self-describing expert (rsl_rl MLPModel actor and critic, random weights) for the env's groups."""
    torch.manual_seed(seed)
    obs = random_obs(dims, 4, seed)
    actor_cfg, critic_cfg = expert_cfgs(hidden_dims=(32, 32))
    kwargs = {k: v for k, v in copy.deepcopy(actor_cfg).items() if k != "class_name"}  # rsl_rl 5.4 pops from it
    actor = MLPModel(obs, OBS_GROUPS, "actor", num_actions, **kwargs)
    critic_kwargs = {k: v for k, v in copy.deepcopy(critic_cfg).items() if k != "class_name"}
    critic = MLPModel(obs, OBS_GROUPS, "critic", 1, **critic_kwargs)
    with torch.no_grad():
        actor.distribution.std_param.fill_(0.3)
        for p in list(actor.mlp.parameters()) + list(critic.mlp.parameters()):
            p.add_(0.3 * torch.randn_like(p))
    model = {"actor": actor_cfg, "critic": critic_cfg, "obs_groups": OBS_GROUPS, "obs_group_dims": dims,
             "num_actions": num_actions}  # fmt: skip
    payload = {"actor_state_dict": actor.state_dict(), "critic_state_dict": critic.state_dict(),
               "optimizer_state_dict": {}, "iter": 10, "infos": make_infos(model)}  # fmt: skip
    save_checkpoint(str(path), payload)
    return str(path)


@pytest.mark.slow
def test_moe_runner_with_diagnostics_trains_on_mjlab_go1_velocity(tmp_path):
    env = make_env(num_envs=2)
    obs = env.get_observations()
    dims = {group: obs[group].shape[1] for group in OBS_GROUPS}
    assert env.num_envs == 2 and env.num_actions == 12 and str(env.device) == "cpu"
    experts = {name: save_expert(tmp_path / f"{name}.pt", seed, dims, env.num_actions)
               for seed, name in enumerate(("walk", "trot"), start=1)}  # fmt: skip
    sources = {"experts": experts}
    cfg = {
        "num_steps_per_env": 8,
        "save_interval": 100,
        "obs_groups": OBS_GROUPS,
        "gate_logging": {"windows": [8]},
        "diagnostics": {"conflict_interval": 1, "monitor_norm_freq": 1, "image_interval": 1},
        "algorithm": {
            "class_name": "rsl_rl_moe.algorithms:PPOMoE",
            "num_learning_epochs": 1,
            "num_mini_batches": 2,
            "learning_rate": 1e-3,
        },  # fmt: skip
        "actor": {
            "class_name": "rsl_rl_moe.modules:MoEActor",
            "expert_sources": sources,
            "obs_moe": {"hidden_dims": [16], "obs_normalization": True},
        },  # fmt: skip
        "critic": {
            "class_name": "rsl_rl_moe.modules:MoECritic",
            "expert_sources": sources,
            "obs_moe": {"hidden_dims": [16]},
            "residual_hidden_dims": [16],
        },
    }
    run_dir = tmp_path / "run"
    runner = MoERunner(env, cfg, log_dir=str(run_dir), env_description={"task": TASK})
    checksum = runner.alg.actor.expert_checksum()
    with contextlib.redirect_stdout(io.StringIO()):
        runner.learn(2, init_at_random_ep_len=True)
    env.close()

    assert runner.alg.actor.expert_checksum() == checksum  # frozen experts (the diagnostics check it too)
    payload = load_checkpoint(str(run_dir / "model_1.pt"))
    assert payload["iter"] == 1 and payload["infos"]["model"]["obs_group_dims"] == dims
    events = read_events(str(run_dir))
    scalars = set(events.Tags()["scalars"])
    (weight,) = events.Scalars("moe/all/weight/walk")[-1:]
    assert 0.0 < weight.value < 1.0 and weight.step == 1
    assert {
        "moe/all/weight/trot", "moe/selection/all/w8/entropy_of_mean", "moe/selection/all/w8/frequency/walk",
        "moe/selection/all/lifetime_env_steps", "Loss/moe_weight_regularization", "Loss/moe_gate_entropy",
        "term_conflict/gate/norm_share/surrogate", "conflict/gate/noise_floor/all", "norm/gate/_total_norm",
        "grad/gate/_total_norm", "logits/gate/abs_max", "obs_norm/gate/min_std", "Perf/diagnostics_time",
    } <= scalars, sorted(scalars)  # fmt: skip
    assert any(tag.startswith("Metrics/") for tag in scalars)  # mjlab's extras["log"] reached rsl_rl's logger
    assert {"images/selection/w8", "images/conflict/gate", "images/term_conflict/gate"} <= set(events.Tags()["images"])
