"""rsl_rl_moe.compat: the same behaviour on rsl-rl-lib 5.5.1 and on releases without ``resolve_class`` (5.4.x).

The fallback is checked here on any installed version by loading ``compat.py`` again with ``resolve_class``
removed from ``rsl_rl.utils``; the library itself on 5.4.2 is checked by running the MoE tests in a second
environment (README, "What works with what").
"""

from __future__ import annotations

import importlib.util

import pytest
import rsl_rl.utils
from rsl_rl.models import MLPModel

import rsl_rl_moe.compat


def fresh_compat(monkeypatch, without_resolve_class: bool):
    """A separate copy of the compat module, loaded as on a release that lacks ``resolve_class`` if asked."""
    if without_resolve_class:
        monkeypatch.delattr(rsl_rl.utils, "resolve_class", raising=False)
    spec = importlib.util.spec_from_file_location("compat_under_test", rsl_rl_moe.compat.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("without_resolve_class", [False, True])
def test_resolve_class_leaves_the_config_as_it_is(monkeypatch, without_resolve_class):
    compat = fresh_compat(monkeypatch, without_resolve_class)
    assert compat.CONSTRUCT_KEEPS_CFG is hasattr(rsl_rl.utils, "resolve_class")
    cfg = {"class_name": "rsl_rl.models:MLPModel", "hidden_dims": [8], "distribution_cfg": {"class_name": "G"}}
    cls, rest = compat.resolve_class(cfg)
    assert cls is MLPModel
    assert rest == {"hidden_dims": [8], "distribution_cfg": {"class_name": "G"}}
    assert cfg["class_name"] == "rsl_rl.models:MLPModel" and rest["hidden_dims"] is not cfg["hidden_dims"]


def test_construct_algorithm_on_an_old_release_changes_only_obs_groups(monkeypatch):
    compat = fresh_compat(monkeypatch, without_resolve_class=True)
    compat.CONSTRUCT_KEEPS_CFG = False  # as on 5.4.x, whatever is installed

    def construct_as_5_4(obs, env, cfg, device):  # what rsl-rl-lib 5.4.2's PPO.construct_algorithm does to cfg
        for part in ("algorithm", "actor", "critic"):
            cfg[part].pop("class_name")
        cfg["obs_groups"] = {"actor": ["policy"], "critic": ["policy"]}
        cfg["algorithm"]["rnd_cfg"] = None
        cfg["algorithm"]["symmetry_cfg"] = None
        return "alg"

    cfg = {
        "algorithm": {"class_name": "PPO", "learning_rate": 1e-3},
        "actor": {"class_name": "A", "hidden_dims": [8]},
        "critic": {"class_name": "C"},
        "obs_groups": {"actor": ["policy"]},
    }
    assert compat.construct_algorithm(construct_as_5_4, None, None, cfg, "cpu") == "alg"
    assert compat.construct_algorithm(construct_as_5_4, None, None, cfg, "cpu") == "alg"  # the config builds again
    assert cfg == {
        "algorithm": {"rnd_cfg": None, "class_name": "PPO", "learning_rate": 1e-3},
        "actor": {"class_name": "A", "hidden_dims": [8]},
        "critic": {"class_name": "C"},
        "obs_groups": {"actor": ["policy"], "critic": ["policy"]},
    }
