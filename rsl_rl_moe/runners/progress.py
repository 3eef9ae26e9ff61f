"""A one-line-per-iteration progress report for rsl_rl's Logger."""

from __future__ import annotations

import contextlib
import datetime
import io
import statistics
from collections.abc import Callable

from rsl_rl.utils.logger import Logger


class ProgressLogger(Logger):
    """rsl_rl's Logger (same TensorBoard scalars) that prints one compact line per iteration.

    ``progress="full"`` keeps rsl_rl's multi-line block instead; ``"line"`` prints e.g.::

        it   12/300 | 10,342 steps/s | reward 3.41 | ep len 812 | collect 1.62 s learn 0.75 s | ETA 0:11:22

    ``scalar_sources``: callables returning ``{tag: value}``, written to the writer at every iteration
    (how runners add their own TensorBoard scalars, e.g. gate statistics).

    Args:
        *args, **kwargs: those of rsl_rl's :class:`~rsl_rl.utils.logger.Logger`.
        progress: ``"line"`` or ``"full"``.
    """

    def __init__(self, *args, progress: str = "line", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.progress = progress
        self.scalar_sources: list[Callable[[], dict[str, float]]] = []
        """Called at every :meth:`log` (rank 0, with a writer); their ``{tag: value}`` go to the writer."""

    def log(self, it: int, start_it: int, total_it: int, collect_time: float, learn_time: float, **kwargs) -> None:
        if self.writer is not None:
            for source in self.scalar_sources:
                for tag, value in source().items():
                    self.writer.add_scalar(tag, value, it)
        if self.writer is None or self.progress == "full":
            super().log(
                it=it, start_it=start_it, total_it=total_it, collect_time=collect_time, learn_time=learn_time, **kwargs
            )
            return
        with contextlib.redirect_stdout(io.StringIO()):
            super().log(
                it=it, start_it=start_it, total_it=total_it, collect_time=collect_time, learn_time=learn_time, **kwargs
            )
        steps = self.cfg["num_steps_per_env"] * self.num_envs * self.gpu_world_size
        done = it + 1 - start_it
        eta = self.tot_time / done * (total_it - start_it - done)
        reward = f"{statistics.mean(self.rewbuffer):8.2f}" if self.rewbuffer else "     n/a"
        length = f"{statistics.mean(self.lenbuffer):6.0f}" if self.lenbuffer else "   n/a"
        print(
            f"it {it + 1:>5}/{total_it} | {steps / (collect_time + learn_time):>9,.0f} steps/s | reward {reward} | "
            f"ep len {length} | collect {collect_time:.2f} s learn {learn_time:.2f} s | "
            f"ETA {datetime.timedelta(seconds=int(eta))}",
            flush=True,
        )
