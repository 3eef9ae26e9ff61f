"""End-effector target sequences read from a file (e.g. ``data/tossing.pkl``).

File format (a pickled dict; ``scripts/make_tossing_data.py`` writes one)::

    {
        "format": "ee_target_sequences",
        "version": 1,
        "dt": 0.02,                       # [s] between consecutive targets
        "frame": "base_yaw",              # targets relative to the base origin, in the base-yaw frame
        "sequences": [array (T_i, 3), ...],   # float, [m]
        "names": ["...", ...],            # optional, one per sequence
    }

Sequences are resampled (linear interpolation) to the env's policy period at load time.

Loading runs no code from the file: a restricted unpickler accepts plain data (dict, list, tuple, str,
bytes, int, float, bool, None) and numeric numpy arrays/scalars (bool, int, uint, float, complex) and
refuses every other global. Any pickle protocol works (protocols 0-2 store bytes through ``_codecs.encode``,
which is allowed for latin-1 only).
"""

from __future__ import annotations

import math
import os
import reprlib

import numpy as np
import torch

from legged_gym import resolve_path
from legged_gym.utils.plain_pickle import UnsafePickleError, load_plain_data

SEQUENCE_FORMAT = "ee_target_sequences"


class SequenceFileError(ValueError):
    """The target-sequence file is missing or malformed."""


def _fail(path: str, what: str) -> SequenceFileError:
    return SequenceFileError(
        f"target sequence file {path!r}: {what} "
        "(set with env.tasks.reaching.sequence_sampler.file_path=...; "
        "see legged_gym/utils/sequence_sampler.py for the format)"
    )


def load_sequences(file_path: str) -> tuple[list[np.ndarray], float]:
    """Read and validate a sequence file; returns (sequences [(T_i, 3) float64], dt [s])."""
    path = resolve_path(file_path)  # from the current folder, else the shipped file (data/tossing.pkl)
    if not os.path.isfile(path):
        raise _fail(path, "not found")
    try:
        with open(path, "rb") as f:
            payload = load_plain_data(f.read())
    except UnsafePickleError as exc:
        raise _fail(path, str(exc)) from None
    except Exception as exc:
        raise _fail(path, f"cannot be unpickled ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != SEQUENCE_FORMAT:
        raise _fail(path, f"expected a dict with format={SEQUENCE_FORMAT!r}")
    if payload.get("frame") != "base_yaw":
        raise _fail(path, f"frame {payload.get('frame')!r} is not supported (only 'base_yaw')")
    dt = payload.get("dt")
    dt_ok = isinstance(dt, (int, float, np.integer, np.floating)) and not isinstance(dt, (bool, np.bool_))
    try:
        dt_ok = dt_ok and math.isfinite(dt) and dt > 0
    except OverflowError:  # an int too large for a float
        dt_ok = False
    if not dt_ok:
        raise _fail(path, f"dt must be a finite positive number of seconds, got {reprlib.repr(dt)}")
    sequences = payload.get("sequences")
    if not isinstance(sequences, (list, tuple)) or len(sequences) == 0:
        raise _fail(path, "'sequences' must be a non-empty list of (T, 3) arrays")
    checked = []
    for i, seq in enumerate(sequences):
        try:
            arr = np.asarray(seq)
        except ValueError as exc:
            raise _fail(path, f"sequence {i} is not a (T, 3) array of numbers ({exc})") from exc
        if arr.dtype.kind not in "iuf":
            raise _fail(path, f"sequence {i} has dtype {arr.dtype}, expected numbers")
        arr = arr.astype(np.float64)
        if arr.ndim != 2 or arr.shape[1] != 3 or arr.shape[0] < 2:
            raise _fail(path, f"sequence {i} has shape {arr.shape}, expected (T>=2, 3)")
        if not np.all(np.isfinite(arr)):
            raise _fail(path, f"sequence {i} contains NaN or inf")
        checked.append(arr)
    return checked, float(dt)


def resample(seq: np.ndarray, dt_in: float, dt_out: float) -> np.ndarray:
    """Linearly resample a (T, 3) sequence from period ``dt_in`` to ``dt_out`` [s]."""
    t_in = np.arange(len(seq)) * dt_in
    t_out = np.arange(0.0, t_in[-1] + 1e-9, dt_out)
    return np.stack([np.interp(t_out, t_in, seq[:, k]) for k in range(3)], axis=1)


class TargetSequenceSampler:
    """Replays file sequences, one cursor per env, at the policy rate.

    Args:
        file_path: the sequence file.
        policy_dt: env policy period [s].
        num_envs: N.
        generator: torch RNG for sequence choice, on ``device``.
        device: where the targets and cursors live (the env's device).
    """

    def __init__(
        self,
        file_path: str,
        policy_dt: float,
        num_envs: int,
        generator: torch.Generator,
        device: torch.device | str = "cpu",
    ):
        sequences, dt = load_sequences(file_path)
        sequences = [resample(s, dt, policy_dt) for s in sequences]
        self.device = torch.device(device)
        self.lengths = torch.tensor([len(s) for s in sequences], device=self.device)
        self.targets = torch.zeros(len(sequences), int(self.lengths.max()), 3, device=self.device)
        for i, s in enumerate(sequences):
            self.targets[i, : len(s)] = torch.as_tensor(s, dtype=torch.float32, device=self.device)
        self.generator = generator
        self.seq_idx = torch.zeros(num_envs, dtype=torch.long, device=self.device)
        self.step_idx = torch.zeros(num_envs, dtype=torch.long, device=self.device)

    @property
    def num_sequences(self) -> int:
        return len(self.lengths)

    def start(self, env_ids: torch.Tensor) -> None:
        """Give ``env_ids`` a random sequence from its first target."""
        self.seq_idx[env_ids] = torch.randint(
            self.num_sequences, (len(env_ids),), generator=self.generator, device=self.device
        )
        self.step_idx[env_ids] = 0

    def advance(self, env_ids: torch.Tensor) -> None:
        """Move ``env_ids`` one policy step along; a finished sequence is replaced by a new one."""
        self.step_idx[env_ids] += 1
        done = env_ids[self.step_idx[env_ids] >= self.lengths[self.seq_idx[env_ids]]]
        if len(done):
            self.start(done)

    def current(self, env_ids: torch.Tensor) -> torch.Tensor:
        """Targets (M, 3) [m] of ``env_ids`` in the base-yaw frame."""
        return self.targets[self.seq_idx[env_ids], self.step_idx[env_ids]]
