"""Stop requests during training: SIGTERM (a scheduler, ``kill``, ``timeout``) raised like Ctrl-C.

SIGINT already raises ``KeyboardInterrupt`` in the main thread; SIGTERM would end the process without
unwinding, so nothing could save. Inside :func:`stop_signals_raise`, SIGTERM raises :class:`TrainingStopped`
instead, and the runner saves a final checkpoint on its way out (see :meth:`Runner.learn`).
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager


class TrainingStopped(BaseException):
    """Raised by SIGTERM inside :func:`stop_signals_raise` (a BaseException, like ``KeyboardInterrupt``, so
    ``except Exception`` blocks in user code do not swallow it)."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


def exit_code(exc: BaseException) -> int:
    """The shell's exit code for a process ended by ``exc``: 128 + signal number for a stop signal (143 for
    SIGTERM, 130 for Ctrl-C), else 1."""
    if isinstance(exc, TrainingStopped):
        return 128 + exc.signum
    if isinstance(exc, KeyboardInterrupt):
        return 128 + signal.SIGINT
    return 1


@contextmanager
def stop_signals_raise():
    """Within the block, SIGTERM raises :class:`TrainingStopped`; the previous handler is restored after. Only
    the main thread can install handlers: elsewhere the block runs unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_stopped(signum, frame):
        raise TrainingStopped(signum)

    previous = signal.signal(signal.SIGTERM, raise_stopped)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def stop_signals_ignored():
    """Within the block (a final save), SIGINT and SIGTERM are ignored, so a second Ctrl-C (torchrun forwards the
    first to its workers again) or SIGTERM cannot cut the save short; the previous handlers are restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
