"""What differs between the rsl-rl-lib releases this package runs on, in one place.

The package is written against rsl-rl-lib 5.5.1 (the version Isaac Lab 3.0.0 pins). 5.4.x (mjlab 1.6.0 pins
5.4.2) differs in two ways that matter here, both handled below:

- ``rsl_rl.utils.resolve_class`` does not exist: :func:`resolve_class` is built on ``resolve_callable`` there;
- ``PPO.construct_algorithm`` pops ``class_name`` from the train config's ``algorithm`` / ``actor`` / ``critic``
  dicts and writes the resolved RND and symmetry settings into ``algorithm``, so a train config could not build a
  second runner: :func:`construct_algorithm` gives it copies.

Not shimmed (rsl_rl's own behaviour, the same for PPO and PPOMoE): before 5.5 the observation normalisers are
updated at every env step in ``process_env_step``, from 5.5 once per iteration after the update; 5.5 adds
``use_mixed_precision`` and ``grad_reduce_bucket_mb`` to PPO (unknown keywords for 5.4).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from rsl_rl.utils import resolve_callable

try:
    from rsl_rl.utils import resolve_class

    CONSTRUCT_KEEPS_CFG = True
    """Whether ``PPO.construct_algorithm`` leaves the train config's sub-dicts as they are (5.5 and later)."""
except ImportError:  # rsl-rl-lib < 5.5
    CONSTRUCT_KEEPS_CFG = False

    def resolve_class(cfg: dict) -> tuple[Callable, dict]:
        """rsl-rl-lib 5.5's ``resolve_class``: the callable named by ``cfg["class_name"]`` and a deep copy of
        ``cfg`` without ``"class_name"`` (``cfg`` itself is left as it is)."""
        class_cfg = copy.deepcopy(cfg)
        return resolve_callable(class_cfg.pop("class_name")), class_cfg


def construct_algorithm(construct: Callable, obs, env, cfg: dict, device: str):
    """``construct(obs, env, cfg, device)`` (rsl_rl's ``PPO.construct_algorithm``) with the 5.5 effect on ``cfg``
    on every 5.x release: only ``cfg["obs_groups"]`` is resolved in place. Before 5.5 rsl_rl builds from copies of
    ``cfg``'s ``algorithm`` / ``actor`` / ``critic``, and ``cfg["algorithm"]`` gets ``rnd_cfg: None`` when it has
    none (that release's runner and logger read the key)."""
    if CONSTRUCT_KEEPS_CFG:
        return construct(obs, env, cfg, device)
    work = {**cfg, **{part: copy.deepcopy(cfg[part]) for part in ("algorithm", "actor", "critic")}}
    alg = construct(obs, env, work, device)
    cfg["obs_groups"] = work["obs_groups"]
    cfg["algorithm"] = {"rnd_cfg": None, **cfg["algorithm"]}
    return alg


__all__ = ["CONSTRUCT_KEEPS_CFG", "construct_algorithm", "resolve_callable", "resolve_class"]
