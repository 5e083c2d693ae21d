"""Graceful stop: SIGINT (Ctrl-C) and SIGTERM (what SLURM sends before its kill).

The first signal raises :class:`RunInterrupted` in the main thread, wherever it is; the
code in between stops the workers and keeps every finished part (parts are written
atomically, so a part is either whole or absent). The command then exits 130 (SIGINT)
or 143 (SIGTERM) with one line saying how far it got and the user's own command with
``--resume``. A second signal while stopping aborts at once.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import threading
from typing import Iterator, Sequence

#: exit codes of a shell for a process ended by the signal
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class RunInterrupted(BaseException):
    """A stop signal arrived. A ``BaseException`` (like ``KeyboardInterrupt``) so that no
    ``except Exception`` in a backend or library swallows it."""

    def __init__(self, signum: int, progress: str = "") -> None:
        super().__init__(signum, progress)
        self.signum = signum
        self.progress = progress

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(signal.Signals(self.signum), 128 + self.signum)

    def with_progress(self, progress: str) -> "RunInterrupted":
        """The same interruption, with how far the run got (``14 of 40 parts done``)."""
        return RunInterrupted(self.signum, self.progress or progress)

    def __str__(self) -> str:
        return f"interrupted by {signal.Signals(self.signum).name}" + (f": {self.progress}" if self.progress else "")


def resume_command(argv: Sequence[str], prog: str = "virnucpro") -> str:
    """The user's command with ``--resume`` (``--force-resume`` would discard the parts)."""
    args = [a for a in argv if a not in ("--force-resume", "--resume")]
    return shlex.join([prog, *args, "--resume"])


def interrupted_line(exc: RunInterrupted, argv: Sequence[str]) -> str:
    """``interrupted: 14 of 40 parts done; continue with: virnucpro predict reads.fq -o res --resume``."""
    return f"interrupted: {exc.progress or 'stopped'}; continue with: {resume_command(argv)}"


@contextlib.contextmanager
def graceful_stop() -> Iterator[None]:
    """Turn SIGINT/SIGTERM into :class:`RunInterrupted` for the duration (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stopping = False

    def handler(signum: int, frame: object) -> None:
        nonlocal stopping
        if stopping:  # second signal: the user does not want to wait for the clean-up
            os._exit(EXIT_CODES.get(signal.Signals(signum), 128 + signum))
        stopping = True
        raise RunInterrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in EXIT_CODES}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    """Ignore SIGINT/SIGTERM while starting child processes: an ignored disposition is
    inherited across exec, so a Ctrl-C reaches only the main process, which decides."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in EXIT_CODES}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
