"""Fixtures for tests/moe (helpers live in moe_helpers.py)."""

from __future__ import annotations

import pytest
from moe_helpers import make_obs, save_expert
from tensordict import TensorDict


@pytest.fixture
def obs() -> TensorDict:
    return make_obs()


@pytest.fixture
def expert_files(tmp_path) -> dict[str, str]:
    """Two expert checkpoints, ``base`` and ``arm``."""
    return {"base": save_expert(tmp_path / "base.pt", seed=1), "arm": save_expert(tmp_path / "arm.pt", seed=2)}
