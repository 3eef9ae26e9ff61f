"""Target sequences from data/tossing.pkl: format, replay, clear errors, no code run from the file."""

import builtins
import os
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
    env = make_env(
        3,
        [
            "env=combo_go2Piper_reaching",
            "env.tasks.probabilities.loco_reach=0.0",
            "env.tasks.reaching.sequence_sampler.file_path=data/tossing.pkl",
        ],
    )
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


def write(tmp_path, payload, protocol=4):
    path = tmp_path / "bad.pkl"
    with open(path, "wb") as f:
        pickle.dump(payload, f, protocol=protocol)
    return str(path)


@pytest.mark.parametrize(
    "payload, message",
    [
        ({"format": "something else"}, "format"),
        ({"format": "ee_target_sequences", "frame": "base_yaw", "dt": 0.02, "sequences": []}, "non-empty"),
        (
            {"format": "ee_target_sequences", "frame": "base_yaw", "dt": 0.02, "sequences": [np.zeros((5, 2))]},
            r"shape \(5, 2\)",
        ),
        ({"format": "ee_target_sequences", "frame": "base_yaw", "dt": -1, "sequences": [np.zeros((5, 3))]}, "dt"),
        ({"format": "ee_target_sequences", "frame": "world", "dt": 0.02, "sequences": [np.zeros((5, 3))]}, "frame"),
    ],
)
def test_malformed_file_is_a_clear_error(tmp_path, payload, message):
    with pytest.raises(SequenceFileError, match=message) as info:
        load_sequences(write(tmp_path, payload))
    assert "env.tasks.reaching.sequence_sampler.file_path" in str(info.value)


def sequence_file(tmp_path, sequences, dt=0.02, protocol=4):
    return write(
        tmp_path, {"format": "ee_target_sequences", "frame": "base_yaw", "dt": dt, "sequences": sequences}, protocol
    )


class RunsCode:
    """Unpickling this calls ``func(*args)`` (what a malicious file would do)."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
@pytest.mark.parametrize("kind", ["os.system", "builtins.exec"])
def test_a_file_cannot_run_code(tmp_path, kind, protocol):
    marker = tmp_path / "ran"
    if kind == "os.system":
        func, args = os.system, (f"touch {marker}",)
    else:
        func, args = builtins.exec, (f"open({str(marker)!r}, 'w').close()",)
    path = sequence_file(tmp_path, [RunsCode(func, *args)], protocol=protocol)
    with pytest.raises(SequenceFileError) as info:
        load_sequences(path)
    message = str(info.value)
    assert f"{func.__module__}.{func.__name__}" in message and path in message
    assert "only contain plain data" in message and "env.tasks.reaching.sequence_sampler.file_path" in message
    assert "\n" not in message
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_numeric_arrays_of_any_protocol_and_layout_load(tmp_path, protocol):
    seq = np.arange(12.0).reshape(4, 3)
    views = [seq, seq.astype(">f4"), np.asfortranarray(seq), seq.astype(np.int16)]
    sequences, dt = load_sequences(sequence_file(tmp_path, views, dt=np.float64(0.02), protocol=protocol))
    assert dt == pytest.approx(0.02)
    for loaded in sequences:
        np.testing.assert_array_equal(loaded, seq)


@pytest.mark.parametrize("protocol", [4, 5])
@pytest.mark.parametrize(
    "seq",
    [
        pytest.param(np.array([[1.0, "a", None]] * 2, dtype=object), id="object"),
        pytest.param(np.zeros((4, 3)).astype("U8"), id="str"),
        pytest.param(np.zeros(4, dtype=[("x", "f8"), ("y", "f8"), ("z", "f8")]), id="structured"),
        pytest.param(np.zeros((4, 3), dtype="datetime64[s]"), id="datetime"),
    ],
)
def test_non_numeric_arrays_are_refused(tmp_path, seq, protocol):
    path = sequence_file(tmp_path, [seq], protocol=protocol)
    with pytest.raises(SequenceFileError, match="numeric numpy arrays") as info:
        load_sequences(path)
    assert "dtype" in str(info.value) and path in str(info.value)


class ForgedDtype:
    """A float64 dtype whose pickled state would turn it into something else."""

    def __init__(self, state):
        self.state = state

    def __reduce__(self):
        return np.dtype, ("f8", False, True), self.state


@pytest.mark.parametrize(
    "state",
    [
        (3, "|", None, ("a",), {"a": (np.dtype("f8"), 0)}, 8, 1, 16),  # fields
        (3, "|", (np.dtype("f8"), (1,)), None, None, 8, 1, 0),  # subarray
        (3, "<", None, None, None, -1, -1, 63),  # "holds Python objects" flags
        (3, "<", None, None, None, 4096, -1, 0),  # item size
    ],
)
def test_forged_dtype_state_is_refused(tmp_path, state):
    with pytest.raises(SequenceFileError, match="pickled state"):
        load_sequences(sequence_file(tmp_path, [ForgedDtype(state)]))


@pytest.mark.parametrize(
    "dt",
    [
        float("nan"),
        float("inf"),
        -float("inf"),
        np.float32("nan"),
        True,
        0,
        -0.02,
        "0.02",
        None,
        pytest.param(10**400, id="huge_int"),
    ],
)
def test_dt_must_be_finite_and_positive(tmp_path, dt):
    path = sequence_file(tmp_path, [np.zeros((5, 3))], dt=dt)
    with pytest.raises(SequenceFileError, match="dt must be a finite positive number") as info:
        load_sequences(path)
    message = str(info.value)
    assert path in message and "env.tasks.reaching.sequence_sampler.file_path" in message
    assert "\n" not in message and len(message) < 400


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_targets_are_refused(tmp_path, value):
    seq = np.zeros((5, 3))
    seq[2, 1] = value
    with pytest.raises(SequenceFileError, match="sequence 0 contains NaN or inf"):
        load_sequences(sequence_file(tmp_path, [seq]))


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
