"""Progress as a terminal and as a log file want it.

A tqdm bar is for a person watching a terminal. Written to a file (a SLURM job's
stderr, ``2> run.err``) every redraw becomes another carriage-return-separated copy of the
bar, megabytes of it over a long run, and no line of it is readable. So a bar is drawn only
when stderr is a terminal; anywhere else a plain log line
(``embed esm2=v2: 12000 of 50000 seq (24%), 41.3 seq/s``) is written at most every
:data:`PLAIN_INTERVAL_S` seconds, and once at the end. The rate counts only what this run
did: a resumed run starts at the work already done (``initial``) and does not count it.

Log records printed while a bar is on screen go above it (:class:`BarSafeHandler`,
installed by :func:`virnucpro_core.logs.setup_logging`), never onto the bar's line; a worker
process's lines erase the bar's line first (:func:`erase_bar_prefix`).
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, Callable

log = logging.getLogger(__name__)

#: Seconds between two plain progress lines when stderr is not a terminal.
PLAIN_INTERVAL_S = 30.0


class PlainProgress:
    """The bar's interface (``update``, ``close``, ``total``, ``n``) writing a log line now and then."""

    def __init__(self, *, desc: str, unit: str, total: int | None = None, initial: int = 0,
                 interval: float = PLAIN_INTERVAL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.desc, self.unit, self.total = desc, unit, total
        self.n = self.initial = initial
        self.interval, self.clock = interval, clock
        self.started = self._last = clock()
        self._reported = initial
        self._closed = False

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        if now - self._last >= self.interval:
            self._report(now)

    def close(self) -> None:
        if not self._closed and self.n > self._reported:
            self._report(self.clock())
        self._closed = True

    def __enter__(self) -> "PlainProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def line(self, now: float) -> str:
        """``embed esm2=v2: 1200 of 5000 seq (24%), 40.0 seq/s``."""
        elapsed = max(now - self.started, 1e-9)
        rate = (self.n - self.initial) / elapsed
        of = f" of {self.total} {self.unit} ({100 * self.n / self.total:.0f}%)" if self.total else f" {self.unit}"
        return f"{self.desc}: {self.n}{of}, {rate:.1f} {self.unit}/s"

    def _report(self, now: float) -> None:
        log.info("%s", self.line(now))
        self._last, self._reported = now, self.n


def stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


#: Carriage return and "erase line": puts the cursor at the start of a cleared line.
ERASE_LINE = "\r\x1b[2K"


def erase_bar_prefix() -> str:
    """What a worker process puts before each log line so it never lands on the main
    process's bar (which it cannot lift as :class:`BarSafeHandler` does): on a terminal the
    bar's line is erased first and the bar redraws itself on the next line; elsewhere nothing."""
    return ERASE_LINE if stderr_is_terminal() else ""


def progress_bar(*, desc: str, unit: str, total: int | None = None, initial: int = 0, enabled: bool = True,
                 unit_scale: bool = False) -> Any:
    """A tqdm bar on a terminal, a :class:`PlainProgress` elsewhere, a disabled bar when not ``enabled`` (``-q``)."""
    if enabled and not stderr_is_terminal():
        return PlainProgress(desc=desc, unit=unit, total=total, initial=initial)
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, unit_scale=unit_scale, file=sys.stderr,
                disable=not enabled, leave=False, smoothing=0.1)


class BarSafeHandler(logging.StreamHandler):
    """A stream handler that lifts any tqdm bar off the stream while it writes a record."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        with tqdm.external_write_mode(file=self.stream, nolock=False):
            super().emit(record)
