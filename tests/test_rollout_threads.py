"""Runner.learn: rollouts with runner.rollout_torch_threads torch threads, the PPO update with all of them."""

import os
import sys

import torch
from helpers import REPO_ROOT, SMALL, compose_cfg, make_env

sys.path.insert(0, os.path.join(REPO_ROOT, "scripts"))
import common  # noqa: E402  (scripts/common.py: make_runner)


def test_rollouts_single_threaded_updates_with_all_threads():
    cfg = compose_cfg("train", [*SMALL, "runner.rollout_torch_threads=1"])
    env = make_env(16, [*SMALL])
    runner = common.make_runner(cfg, env, log_dir=None)
    seen = {"step": set(), "update": set()}
    step = env.step

    def recording_step(actions):
        seen["step"].add(torch.get_num_threads())
        return step(actions)

    def recording_update(update):  # innermost around-update hook: the algorithm's own update runs inside it
        seen["update"].add(torch.get_num_threads())
        return update()

    env.step = recording_step
    runner.alg.around_update_hooks.append(recording_update)
    torch.set_num_threads(2)
    runner.learn(2)
    assert seen == {"step": {1}, "update": {2}}
    assert torch.get_num_threads() == 2
    assert runner.alg.around_update_hooks == [recording_update]  # the runner's own hook is gone after learn()
