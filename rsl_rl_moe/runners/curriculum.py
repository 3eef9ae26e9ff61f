"""A training curriculum: stages the run moves through by itself, at given iterations.

``train_cfg["curriculum"]`` is a list of stages, each ``{"start_iteration": int, "name": str (optional),
"env": {...}, "algorithm": {...}}``. A stage's ``env`` overrides go to ``env.update_cfg(overrides)`` (the env
defines what may change; e.g. :meth:`legged_gym.envs.LeggedRobot.update_cfg`: reward scales, command ranges);
its ``algorithm`` overrides set numeric attributes of the algorithm (``entropy_coef``, ``learning_rate``,
``desired_kl``, ...). Stages apply in order on top of each other: stage k runs with the config's settings and
the overrides of stages 1..k. The stage of an iteration depends on the iteration alone, so a resumed run
re-applies the stages up to its iteration and continues exactly. TensorBoard: ``Curriculum/stage`` (0 before
the first stage).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field

from rsl_rl_moe.algorithms.hooks import algorithm_name


@dataclass(frozen=True)
class Stage:
    start_iteration: int
    """First iteration that runs under this stage."""
    name: str = ""
    env: dict = field(default_factory=dict)
    """Overrides for ``env.update_cfg``."""
    algorithm: dict = field(default_factory=dict)
    """Algorithm attributes to set, e.g. ``{"entropy_coef": 0.005}``."""


class Curriculum:
    """The stages of ``train_cfg["curriculum"]`` and how many of them are applied.

    Args:
        stages: list of stage dicts (keys of :class:`Stage`), start iterations strictly increasing.
        config_path: where the list is set, named in errors (e.g. ``"runner.curriculum"``).

    Raises:
        ValueError: unknown keys, a start iteration that is not an increasing integer >= 0, or a stage that changes
            nothing.
    """

    def __init__(self, stages: list[dict] | None, config_path: str = "curriculum"):
        self.stages: list[Stage] = []
        for i, spec in enumerate(stages or []):
            where = f"{config_path}[{i}]"
            unknown = set(spec) - {"start_iteration", "name", "env", "algorithm"}
            if unknown:
                raise ValueError(
                    f"{where}: unknown keys {sorted(unknown)} (a stage has start_iteration, name, env, algorithm)"
                )
            start = spec.get("start_iteration")
            previous = self.stages[-1].start_iteration if self.stages else -1
            if isinstance(start, bool) or not isinstance(start, int) or start <= previous:
                raise ValueError(
                    f"{where}.start_iteration={start!r}: must be an integer > {previous} (stages in order)"
                )
            if not spec.get("env") and not spec.get("algorithm"):
                raise ValueError(f"{where}: the stage changes nothing (give env and/or algorithm overrides)")
            self.stages.append(
                Stage(
                    start,
                    spec.get("name") or f"stage {i + 1}",
                    dict(spec.get("env") or {}),
                    dict(spec.get("algorithm") or {}),
                )
            )
        self.applied = 0
        """Number of stages applied so far (``Curriculum/stage``)."""

    def advance(self, iteration: int, env, alg) -> list[Stage]:
        """Apply, in order, every stage not yet applied whose start is at or before ``iteration``; returns them."""
        started = []
        while self.applied < len(self.stages) and self.stages[self.applied].start_iteration <= iteration:
            stage = self.stages[self.applied]
            if stage.env:
                if not callable(getattr(env, "update_cfg", None)):
                    raise ValueError(
                        f"curriculum stage {stage.name!r} changes env settings, but "
                        f"{type(env).__name__} has no update_cfg(overrides) method"
                    )
                env.update_cfg(stage.env)
            for name, value in stage.algorithm.items():
                set_algorithm_setting(alg, name, value, stage.name)
            self.applied += 1
            started.append(stage)
        return started

    def stage_at(self, iteration: int) -> int:
        """Number of stages ``iteration`` runs under (``Curriculum/stage``: 0 before the first)."""
        return sum(stage.start_iteration <= iteration for stage in self.stages)


def set_algorithm_setting(alg, name: str, value, stage_name: str) -> None:
    """Set numeric attribute ``name`` of the algorithm (the learning rate also in its optimizer)."""
    current = getattr(alg, name, None)
    if isinstance(current, bool) or not isinstance(current, numbers.Number) or not isinstance(value, numbers.Number):
        raise ValueError(
            f"curriculum stage {stage_name!r}: algorithm.{name}={value!r}: {algorithm_name(alg)} has no "
            f"numeric setting {name!r}"
        )
    setattr(alg, name, value)
    if name == "learning_rate":
        for group in alg.optimizer.param_groups:
            group["lr"] = value
