"""Target sequences from data/tossing.pkl: format, replay, clear errors."""

import pickle

import numpy as np
import pytest
import torch

from helpers import make_env
from legged_gym.utils.sequence_sampler import SequenceFileError, TargetSequenceSampler, load_sequences


def test_shipped_tossing_file_is_valid():
    sequences, dt = load_sequences("data/tossing.pkl")
    assert dt == pytest.approx(0.02) and len(sequences) >= 8
    for seq in sequences:
        assert seq.shape[1] == 3 and np.isfinite(seq).all()
        reach = np.linalg.norm(seq - np.array([0.06, 0.0, 0.18]), axis=1)  # distance from the arm's shoulder
        assert reach.max() < 0.65


def test_reaching_env_replays_the_file():
    env = make_env(3, ["env=combo_go2Piper_reaching", "env.tasks.reaching.sequence_sampler.file_path=data/tossing.pkl"])
    sampler = env.commands.sequences
    seq = sampler.seq_idx.clone()
    expected = sampler.targets[seq, 1]
    env.step(torch.zeros(3, 18))
    assert torch.allclose(env.commands.ee_target_b, expected)
    assert (env.commands.velocity == 0).all()


def test_sequence_wraps_to_a_new_one_at_its_end():
    sampler = TargetSequenceSampler("data/tossing.pkl", 0.02, 2, torch.Generator().manual_seed(0))
    sampler.start(torch.arange(2))
    length = int(sampler.lengths[sampler.seq_idx[0]])
    for _ in range(length):
        sampler.advance(torch.arange(2))
    assert sampler.step_idx[0] == 0


def write(tmp_path, payload):
    path = tmp_path / "bad.pkl"
    with open(path, "wb") as f:
        pickle.dump(payload, f)
    return str(path)


@pytest.mark.parametrize(
    "payload, message",
    [
        ({"format": "something else"}, "format"),
        ({"format": "ee_target_sequences", "frame": "base_yaw", "dt": 0.02, "sequences": []}, "non-empty"),
        ({"format": "ee_target_sequences", "frame": "base_yaw", "dt": 0.02, "sequences": [np.zeros((5, 2))]}, r"shape \(5, 2\)"),
        ({"format": "ee_target_sequences", "frame": "base_yaw", "dt": -1, "sequences": [np.zeros((5, 3))]}, "dt"),
        ({"format": "ee_target_sequences", "frame": "world", "dt": 0.02, "sequences": [np.zeros((5, 3))]}, "frame"),
    ],
)
def test_malformed_file_is_a_clear_error(tmp_path, payload, message):
    with pytest.raises(SequenceFileError, match=message) as info:
        load_sequences(write(tmp_path, payload))
    assert "env.tasks.reaching.sequence_sampler.file_path" in str(info.value)


def test_missing_and_garbage_files(tmp_path):
    with pytest.raises(SequenceFileError, match="not found"):
        load_sequences(str(tmp_path / "nope.pkl"))
    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(b"not a pickle")
    with pytest.raises(SequenceFileError, match="cannot be unpickled"):
        load_sequences(str(garbage))


def test_shipped_file_is_reproduced_by_its_script(tmp_path):
    from helpers import run_script

    out = tmp_path / "tossing.pkl"
    result = run_script("make_tossing_data.py", ["--out", str(out)])
    assert result.returncode == 0, result.stderr
    regenerated, dt_new = load_sequences(str(out))
    shipped, dt = load_sequences("data/tossing.pkl")
    assert dt_new == dt and len(regenerated) == len(shipped)
    for a, b in zip(regenerated, shipped):
        np.testing.assert_array_equal(a, b)
