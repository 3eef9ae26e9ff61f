"""The one rollout loop of play, evaluate and compare (legged_gym.utils.rollout) on a real env."""

import numpy as np
import torch
from helpers import make_env

from legged_gym.utils.rollout import RolloutRecord, num_policy_steps, policy_steps, record_rollout

STEPS = 30  # 0.6 s: long enough for some resets with the short episodes below
SHORT_EPISODES = ["env.seed=3", "env.episode_length_s=0.3"]


class SwayPolicy:
    """Deterministic actions from the observation; remembers what it saw and whether inference mode was on."""

    def __init__(self):
        self.seen, self.inference = [], []

    def __call__(self, obs):
        self.seen.append(obs)
        self.inference.append(torch.is_inference_mode_enabled())
        return 0.3 * torch.tanh(obs["policy"][:, -18:] + 0.5)


def test_policy_steps_acts_on_each_observation_under_inference_mode_and_yields_outside_it():
    env = make_env(2, SHORT_EPISODES, quiet=True)
    policy = SwayPolicy()
    first_obs = env.get_observations()
    steps = []
    for step in policy_steps(env, policy, STEPS):
        assert not torch.is_inference_mode_enabled()  # the loop body runs in the caller's mode
        steps.append((step, env.get_observations()))
    assert len(steps) == STEPS and all(policy.inference)
    assert steps[0][0].obs is first_obs
    for k, (step, next_obs) in enumerate(steps):
        assert step.obs is policy.seen[k]  # the observation the actions were computed from
        torch.testing.assert_close(step.actions, 0.3 * torch.tanh(step.obs["policy"][:, -18:] + 0.5))
        assert step.rewards.shape == (2,) and step.dones.shape == (2,) and "time_outs" in step.extras
        if k + 1 < STEPS:
            assert steps[k + 1][0].obs is next_obs  # each step acts on the env's observation after the last
    assert any(bool(step.dones.any()) for step, _ in steps)


def test_record_rollout_is_the_hand_written_loop():
    """The arrays of :func:`record_rollout` equal those of the loop play, evaluate and compare wrote each by hand;
    ``each_step`` runs once per step, after it is recorded."""
    reference_env = make_env(2, SHORT_EPISODES, quiet=True)
    record, rewards, policy = RolloutRecord(dt=reference_env.dt), [], SwayPolicy()
    obs = reference_env.get_observations()
    for _ in range(STEPS):
        with torch.inference_mode():
            obs, reward, dones, extras = reference_env.step(policy(obs))
        record.add(reference_env, dones, extras["time_outs"])
        rewards.append(reward.numpy().copy())
    expected = record.stack()

    env = make_env(2, SHORT_EPISODES, quiet=True)
    calls = []
    arrays = record_rollout(
        env, SwayPolicy(), STEPS, each_step=lambda index, step: calls.append((index, step.rewards.numpy().copy()))
    )
    assert sorted(arrays) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(arrays[key], value, err_msg=key)
    assert [index for index, _ in calls] == list(range(STEPS))
    np.testing.assert_array_equal(np.stack([r for _, r in calls]), np.stack(rewards))


def test_num_policy_steps_rounds_to_the_nearest_step():
    assert num_policy_steps(1.0, 0.02) == 50 and num_policy_steps(0.4, 0.02) == 20 and num_policy_steps(0.0, 0.02) == 0
