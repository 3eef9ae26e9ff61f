"""Check the values people type as overrides before anything is built.

:func:`validate_config` walks :data:`RULES`, a table of (dotted key, kind, allowed range), and raises one
:class:`ConfigError` whose message is one line naming each bad override and what it may be, e.g.
``runner.save_interval=0: must be an integer >= 1``. Keys absent from the config (``runner.gate_logging``
outside MoE configs, ``compare`` outside compare_moe.py) are skipped, and so are values that interpolate
another key (``env.seed: ${seed}``): that key has its own rule. Hydra gives ``seed=abc`` as the string
``"abc"`` and ``env.num_envs=16.7`` as a float: both are refused for integer keys, as are bools.

Kinds (``?`` appended: ``null`` also allowed):

- ``int``: an integer, not a bool or a float, within the range;
- ``number``: an int or float, not a bool, finite, within the range (empty range: any finite number);
- ``ints``: a list of integers, each within the range;
- ``bool``: true or false;
- ``choice``: one of the ``|``-separated words of the range;
- ``device``: ``cpu``, ``cuda`` or ``cuda:N``.

Ranges: ``>= a``, ``> a``, ``<= b``, ``< b``, or an interval ``[a, b]`` / ``(a, b]`` / ``[a, b)`` / ``(a, b)``.
A key segment ``*`` stands for every key of the dict at that level (``env.rewards.scales.*``).
"""

from __future__ import annotations

import math
import re

from omegaconf import DictConfig, ListConfig, OmegaConf

SEED_RANGE = "[0, 4294967295]"  # numpy's np.random.seed takes 0 .. 2**32 - 1

RULES: tuple[tuple[str, str, str], ...] = (
    # top level
    ("seed", "int", SEED_RANGE),
    ("device", "device", ""),
    ("resume", "bool", ""),
    # env (config/env_base/go2_piper.yaml)
    ("env.num_envs", "int", ">= 1"),
    ("env.sim_device", "sim_device", ""),
    ("env.nthread", "int", ">= 0"),
    ("env.array_backend", "choice", "auto|numpy|torch"),
    ("env.seed", "int", SEED_RANGE),
    ("env.episode_length_s", "number", "> 0"),
    ("env.max_iterations", "int", ">= 1"),
    ("env.algorithm.num_learning_epochs", "int", ">= 1"),
    ("env.algorithm.entropy_coef", "number", ">= 0"),
    ("env.partner.limbs", "choice", "legs|arm"),
    ("env.symmetry.use_data_augmentation", "bool", ""),
    ("env.symmetry.mirror_loss_coeff", "number", ">= 0"),
    ("env.robot.timestep", "number", "> 0"),
    ("env.robot.decimation", "int", ">= 1"),
    ("env.init_state.joint_pos_noise", "number", ">= 0"),
    ("env.init_state.base_vel_noise", "number", ">= 0"),
    ("env.tasks.probabilities.*", "number", ">= 0"),
    ("env.tasks.locomotion.resampling_time_s", "number", "> 0"),
    ("env.tasks.locomotion.min_lin_vel", "number", ">= 0"),
    ("env.tasks.locomotion.still_prob", "number", "[0, 1]"),
    ("env.tasks.reaching.resampling_time_s", "number", "> 0"),
    ("env.observations.add_noise", "bool", ""),
    ("env.observations.noise.*", "number", ">= 0"),
    ("env.terminations.trunk_contact", "bool", ""),
    ("env.domain_rand.enabled", "bool", ""),
    ("env.domain_rand.push_robots", "bool", ""),
    ("env.domain_rand.push_interval_s", "number", "> 0"),
    ("env.domain_rand.max_push_vel_xy", "number", ">= 0"),
    ("env.rewards.only_positive_rewards", "bool", ""),
    ("env.rewards.scales.*", "number", ""),
    # runner (config/runner/on_policy.yaml, train_moe_example.yaml)
    ("runner.max_iterations", "int", ">= 1"),
    ("runner.num_steps_per_env", "int", ">= 1"),
    ("runner.save_interval", "int", ">= 1"),
    ("runner.check_for_nan", "bool", ""),
    ("runner.rollout_torch_threads", "int?", ">= 1"),
    ("runner.progress", "choice", "line|full"),
    ("runner.gate_logging.enabled", "bool", ""),
    ("runner.gate_logging.windows", "ints", ">= 1"),
    ("runner.gate_logging.near_one_hot_threshold", "number", "[0, 1]"),
    ("runner.diagnostics.enabled", "bool", ""),
    ("runner.diagnostics.conflict_interval", "int", ">= 0"),
    ("runner.diagnostics.noise_floor", "bool", ""),
    ("runner.diagnostics.frequency_window", "int", ">= 0"),
    ("runner.diagnostics.monitor_norm_freq", "int", ">= 0"),
    ("runner.diagnostics.image_interval", "int", ">= 0"),
    # algorithm (config/runner/alg/ppo.yaml, ppo_moe.yaml)
    ("runner.alg.num_learning_epochs", "int", ">= 1"),
    ("runner.alg.num_mini_batches", "int", ">= 1"),
    ("runner.alg.clip_param", "number", "> 0"),
    ("runner.alg.gamma", "number", "[0, 1]"),
    ("runner.alg.lam", "number", "[0, 1]"),
    ("runner.alg.value_loss_coef", "number", ">= 0"),
    ("runner.alg.entropy_coef", "number", ">= 0"),
    ("runner.alg.learning_rate", "number", "> 0"),
    ("runner.alg.max_grad_norm", "number", "> 0"),
    ("runner.alg.use_clipped_value_loss", "bool", ""),
    ("runner.alg.schedule", "choice", "adaptive|fixed"),
    ("runner.alg.desired_kl", "number?", "> 0"),
    ("runner.alg.moe_weight_regularization", "number", ">= 0"),
    ("runner.alg.load_balance_coef", "number", ">= 0"),
    ("runner.alg.router_z_loss_coef", "number", ">= 0"),
    ("runner.alg.diversity_coef", "number", ""),
    ("runner.alg.actor_critic.freeze_experts", "bool", ""),
    ("runner.alg.actor_critic.actor.distribution_cfg.init_std", "number", "> 0"),
    ("runner.alg.actor_critic.actor.blend", "choice", "mixture|product_of_experts"),
    ("runner.alg.actor_critic.actor.exploration", "choice", "expert_choice|gaussian"),
    ("runner.alg.actor_critic.actor.expert_choice_hold_steps", "number", ">= 1"),
    ("runner.alg.actor_critic.*.obs_moe.routing", "choice", "softmax|sparsemax|entmax15"),
    ("runner.alg.actor_critic.*.obs_moe.temperature", "number", "> 0"),
    # play.py, evaluate.py, compare_moe.py (config/train.yaml)
    ("play.num_envs", "int", ">= 1"),
    ("play.duration_s", "number", "> 0"),
    ("play.video", "bool", ""),
    ("play.export", "bool", ""),
    ("play.live_plot", "bool", ""),
    ("play.live_plot_period_s", "number", "> 0"),
    ("evaluate.num_envs", "int", ">= 1"),
    ("evaluate.duration_s", "number", "> 0"),
    ("evaluate.seed", "int", SEED_RANGE),
    ("evaluate.command_resampling_s", "number", "> 0"),
    ("evaluate.settle_s", "number", ">= 0"),
    ("evaluate.fast_speed", "number", ">= 0"),
    ("compare.sweep", "bool", ""),
)
"""(dotted key, kind, allowed range) of every value checked; see the module docstring."""

POLICY_STEP_DURATIONS = ("play.duration_s", "evaluate.duration_s")
"""Durations [s] that must round to at least one policy step (env.robot.timestep x env.robot.decimation), as
play.py, evaluate.py and compare_moe.py round them."""

_DEVICE = re.compile(r"cpu|cuda(:\d+)?")
_SIM_DEVICE = re.compile(r"cpu|warp-cpu|cuda(:\d+)?")
_BOUND = re.compile(r"(>=|>|<=|<)\s*(\S+)")
_INTERVAL = re.compile(r"([\[(])\s*([^,\s]+)\s*,\s*([^\])\s]+)\s*([\])])")
_ABSENT = object()


class ConfigError(ValueError):
    """A config value outside what its key allows; the message is one line naming the override(s)."""


def validate_config(cfg: DictConfig) -> None:
    """Check every key of :data:`RULES` present in ``cfg``, then the durations of :data:`POLICY_STEP_DURATIONS`.

    Raises:
        ConfigError: one line, ``<key>=<value>: must be <allowed>`` for each bad value, joined by ``; ``.
    """
    problems = []
    for pattern, kind, allowed in RULES:
        for key in _expand(cfg, pattern):
            value = _value(cfg, key)
            if value is not _ABSENT and not _allowed(value, kind, allowed):
                problems.append(f"{key}={_show(value)}: must be {_describe(kind, allowed)}")
    if not problems:
        problems = _check_durations(cfg)
    if problems:
        raise ConfigError("; ".join(problems))


def _check_durations(cfg: DictConfig) -> list[str]:
    timestep, decimation = _value(cfg, "env.robot.timestep"), _value(cfg, "env.robot.decimation")
    if _ABSENT in (timestep, decimation):
        return []
    dt = timestep * decimation
    problems = []
    for key in POLICY_STEP_DURATIONS:
        value = _value(cfg, key)
        if value is not _ABSENT and round(value / dt) < 1:
            problems.append(
                f"{key}={_show(value)}: must be at least one policy step ({dt:g} s = env.robot.timestep x "
                f"env.robot.decimation)"
            )
    return problems


def _expand(cfg: DictConfig, pattern: str) -> list[str]:
    """The dotted keys of ``cfg`` matching ``pattern`` (``*``: every key of a dict at that level)."""
    keys = [""]
    for part in pattern.split("."):
        if part != "*":
            keys = [f"{k}.{part}" if k else part for k in keys]
            continue
        expanded = []
        for k in keys:
            node = OmegaConf.select(cfg, k, default=None, throw_on_missing=False) if k else cfg
            if isinstance(node, DictConfig):
                expanded += [f"{k}.{child}" for child in node.keys()]
        keys = expanded
    return keys


def _value(cfg: DictConfig, key: str):
    """The value at ``key``; ``_ABSENT`` when the key is missing, ``???`` or an interpolation of another key."""
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key, default=None, throw_on_missing=False) if parent_key else cfg
    if not isinstance(parent, DictConfig) or leaf not in parent or OmegaConf.is_missing(parent, leaf):
        return _ABSENT
    if OmegaConf.is_interpolation(parent, leaf):
        return _ABSENT
    value = parent[leaf]
    return OmegaConf.to_container(value) if isinstance(value, (DictConfig, ListConfig)) else value


def _allowed(value, kind: str, allowed: str) -> bool:
    kind, nullable = kind.rstrip("?"), kind.endswith("?")
    if value is None:
        return nullable
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "choice":
        return isinstance(value, str) and value in allowed.split("|")
    if kind == "device":
        return isinstance(value, str) and _DEVICE.fullmatch(value) is not None
    if kind == "sim_device":
        return isinstance(value, str) and _SIM_DEVICE.fullmatch(value) is not None
    if kind == "int":
        return _is_int(value) and _in_range(value, allowed)
    if kind == "ints":
        return isinstance(value, list) and all(_is_int(v) and _in_range(v, allowed) for v in value)
    if kind == "number":
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return is_number and _in_range(value, allowed)
    raise ValueError(f"validation rule with unknown kind {kind!r}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _in_range(value, allowed: str) -> bool:
    if not allowed:
        return True
    interval = _INTERVAL.fullmatch(allowed)
    if interval:
        left, low, high, right = interval.groups()
        low, high = float(low), float(high)
        return (value >= low if left == "[" else value > low) and (value <= high if right == "]" else value < high)
    bound = _BOUND.fullmatch(allowed)
    if bound is None:
        raise ValueError(f"validation rule with unknown range {allowed!r}")
    op, limit = bound.group(1), float(bound.group(2))
    return {">=": value >= limit, ">": value > limit, "<=": value <= limit, "<": value < limit}[op]


def _describe(kind: str, allowed: str) -> str:
    kind, nullable = kind.rstrip("?"), kind.endswith("?")
    text = {
        "bool": "true or false",
        "choice": "one of " + ", ".join(allowed.split("|")),
        "device": "cpu, cuda or cuda:N (N: a GPU index)",
        "sim_device": "cpu (mujoco.batch), cuda or cuda:N (MuJoCo Warp on a GPU) or warp-cpu (MuJoCo Warp on the CPU)",
        "int": f"an integer {_range_words(allowed)}",
        "ints": f"a list of integers {_range_words(allowed)}",
        "number": f"a number {_range_words(allowed)}" if allowed else "a finite number",
    }[kind]
    return f"{text.rstrip()} or null" if nullable else text.rstrip()


def _range_words(allowed: str) -> str:
    return f"in {allowed}" if _INTERVAL.fullmatch(allowed) else allowed


def _show(value) -> str:
    """The value as it would be typed on the command line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return value if value else "''"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return repr(value)
