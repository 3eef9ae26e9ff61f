"""Checkpoint files: atomic writes, weights_only loading, clear errors."""

import os
import pickle

import pytest
import torch

from rsl_rl_moe.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def test_atomic_save_keeps_the_previous_file_when_writing_fails(tmp_path):
    path = str(tmp_path / "model.pt")
    save_checkpoint(path, {"actor_state_dict": {"w": torch.ones(3)}, "iter": 1})
    with pytest.raises((AttributeError, pickle.PicklingError)):  # AttributeError up to Python 3.13
        save_checkpoint(path, {"actor_state_dict": {"w": torch.zeros(3)}, "bad": lambda x: x})  # not picklable
    assert load_checkpoint(path)["iter"] == 1
    assert os.listdir(tmp_path) == ["model.pt"]  # no temp file left behind


def test_missing_folder_and_truncated_files_name_the_override(tmp_path):
    with pytest.raises(CheckpointError, match="not found.*runner.alg.actor_critic.base_ckpt_path"):
        load_checkpoint(str(tmp_path / "none.pt"), override_hint="runner.alg.actor_critic.base_ckpt_path")
    with pytest.raises(CheckpointError, match="folder"):
        load_checkpoint(str(tmp_path))
    good = tmp_path / "good.pt"
    save_checkpoint(str(good), {"iter": 3, "actor_state_dict": {"w": torch.randn(100)}})
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(str(truncated))
    with pytest.raises(CheckpointError, match="no checkpoint path"):
        load_checkpoint(None)
