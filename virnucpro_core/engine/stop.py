"""Graceful stop: SIGINT (Ctrl-C) and SIGTERM (what SLURM sends before its kill).

The first signal raises :class:`RunInterrupted` in the main thread, wherever it is; the
code in between stops the workers and keeps every finished part (parts are written
atomically, so a part is either whole or absent). The command then exits 130 (SIGINT)
or 143 (SIGTERM) with one line saying how far it got and the user's own command with
``--resume``. A second signal while stopping aborts at once.

Terminals (Ctrl-C) and SLURM (``scancel``, the time limit) signal the whole process
group, not only the main process: worker processes ignore both signals (the main process
stops them). torchrun starts its ranks in their own session and forwards each signal it
gets (a second one as SIGTERM); SLURM signals every process of the step, so a rank may get
one stop twice, directly and forwarded, a few milliseconds apart. A rank therefore counts
a signal within :data:`DUPLICATE_SECONDS` of the first as the same stop; the user's second
Ctrl-C comes later and aborts. Under torchrun the line names the launcher command the
ranks were started with (read from the agent's command line), since that is what the user
reruns; torchrun itself exits 1 with a traceback when signalled, ``virnucpro-torchrun``
(the same options) exits 130/143 (:mod:`virnucpro_core.torchrun`).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import threading
import time
from typing import Iterator, Sequence

#: exit codes of a shell for a process ended by the signal
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
#: under torchrun, a signal this soon after the first is the same stop delivered twice
DUPLICATE_SECONDS = 2.0


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


def resume_command(argv: Sequence[str], prog: str = "virnucpro", launcher: Sequence[str] | None = None) -> str:
    """The user's command with ``--resume`` (``--force-resume`` would discard the parts);
    under torchrun, ``launcher`` is the agent's command up to ``-m virnucpro_core``."""
    args = [a for a in argv if a not in ("--force-resume", "--resume")]
    return shlex.join([*(launcher if launcher else [prog]), *args, "--resume"])


def under_torchrun() -> bool:
    """This process is a rank started by a torchrun agent (which forwards every stop signal)."""
    return "TORCHELASTIC_RUN_ID" in os.environ


def launcher_command(cmdline: Sequence[str] | None = None) -> list[str] | None:
    """The torchrun command that started this rank, up to and including ``-m virnucpro_core``,
    as the user would type it (``torchrun --nnodes 2 ... -m virnucpro_core``); ``None`` when
    the agent's command line cannot be read (not Linux) or does not run this module."""
    if cmdline is None:
        try:
            with open(f"/proc/{os.getppid()}/cmdline", "rb") as handle:
                cmdline = [part.decode(errors="replace") for part in handle.read().split(b"\0") if part]
        except OSError:
            return None
    words = list(cmdline)
    for i in range(len(words) - 1):
        if words[i] == "-m" and words[i + 1] == "virnucpro_core":
            prefix = words[: i + 2]
            break
    else:
        return None
    if len(prefix) > 1 and os.path.basename(prefix[1]) in ("torchrun", "virnucpro-torchrun"):
        return [os.path.basename(prefix[1]), *prefix[2:]]  # python /path/bin/torchrun ... -> torchrun ...
    if len(prefix) > 2 and prefix[1] == "-m":
        return ["python", *prefix[1:]]  # python -m torch.distributed.run ... / python -m virnucpro_core.torchrun ...
    return [os.path.basename(prefix[0]), *prefix[1:]]


def interrupted_line(exc: RunInterrupted, argv: Sequence[str]) -> str:
    """``interrupted: 14 of 40 parts done; continue with: virnucpro predict reads.fq -o res --resume``;
    under torchrun, the same torchrun command with ``--resume``."""
    progress = exc.progress or "stopped"
    if under_torchrun():
        launcher = launcher_command()
        if launcher is None:
            return (f"interrupted: {progress}; rerun your torchrun command with --resume "
                    f"(its virnucpro arguments: {shlex.join([*argv, '--resume'])})")
        return f"interrupted: {progress}; rerun the same torchrun command with --resume: {resume_command(argv, launcher=launcher)}"
    return f"interrupted: {progress}; continue with: {resume_command(argv)}"


@contextlib.contextmanager
def graceful_stop() -> Iterator[None]:
    """Turn SIGINT/SIGTERM into :class:`RunInterrupted` for the duration (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    first: float | None = None
    duplicates = DUPLICATE_SECONDS if under_torchrun() else 0.0

    def handler(signum: int, frame: object) -> None:
        nonlocal first
        now = time.monotonic()
        if first is None:
            first = now
            raise RunInterrupted(signum)
        if now - first < duplicates:
            return  # the same stop, forwarded by the torchrun agent (see the module docstring)
        # the user's second signal: they do not want to wait for the clean-up
        os._exit(EXIT_CODES.get(signal.Signals(signum), 128 + signum))

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
