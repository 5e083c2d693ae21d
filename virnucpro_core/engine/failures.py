"""How a failed part becomes one line, and what the engine reports about its workers."""

from __future__ import annotations

import signal
from dataclasses import dataclass

from virnucpro_core.errors import VirnucproError


class PartFailed(VirnucproError):
    """A worker (or this process) failed on a part, or a worker died.

    The message is one line naming the worker, its device, the records and the error;
    ``details`` holds the traceback, which goes to ``--log-file`` and ``run.json`` only.
    """

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details


def error_summary(exc: BaseException) -> str:
    """The error as one line, with what to do where we know it."""
    if isinstance(exc, VirnucproError):
        return str(exc)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if "out of memory" in text.lower() or type(exc).__name__ == "OutOfMemoryError":
        return "CUDA out of memory; lower --batch-tokens (protein) or --batch-size (nucleotide)"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def death_summary(exitcode: int | None) -> str:
    """``killed by SIGKILL (the OOM killer, or kill -9)`` for a worker that died without raising."""
    if exitcode is None:
        return "stopped responding"
    if exitcode < 0:
        name = signal.Signals(-exitcode).name if -exitcode in signal.Signals._value2member_map_ else f"signal {-exitcode}"
        cause = {"SIGKILL": " (the OOM killer, or kill -9)", "SIGSEGV": " (a crash in native code)"}.get(name, "")
        return f"died: killed by {name}{cause}"
    return f"died: exited with code {exitcode} without reporting an error"


@dataclass(frozen=True)
class WorkerStats:
    """What one worker (or this process) computed, for the log and the counts."""

    worker: int
    device: str
    parts: int
    sequences: int
    seconds: float
    #: from starting the process to its model being loaded (0 for this process)
    startup_seconds: float = 0.0

    def line(self) -> str:
        rate = self.sequences / self.seconds if self.seconds > 0 else 0.0
        return (f"worker {self.worker} ({self.device}): {self.parts} part(s), {self.sequences} sequences, {rate:.1f} seq/s, "
                f"ready after {self.startup_seconds:.1f} s")


@dataclass(frozen=True)
class EngineRun:
    """The outcome of computing a set of parts: the width and model the parts were made
    with (``None`` when no part was computed) and per-worker statistics."""

    dim: int | None
    model: str | None
    computed: int
    stats: tuple[WorkerStats, ...] = ()
