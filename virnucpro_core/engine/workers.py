"""N devices: one spawned worker process per device, pulling parts until none are left.

Workers start with the *spawn* method, so CUDA is initialised only inside them. Each
gets a picklable :class:`WorkerSpec` (the :class:`~virnucpro_core.engine.work.PartJob` on its
device), opens the job once in its own process (models built from backend keys re-resolved
through the registry, so any installed plugin works and nothing unpicklable crosses), then
asks for parts. The main
process is the queue: it hands the next part to whichever worker asks, so a faster
device takes more parts. Each worker has its own pipe; a worker killed mid-message
cannot corrupt a lock the others need.

A worker holds :data:`IN_FLIGHT` parts: the one it computes and the next, which a thread
of the worker has already received (:class:`_Inbox`). So the main process reads, pickles
and sends a part, and finalises the scores of the one before, while the device computes,
and a worker starts its next part the moment it finishes one.

Fail-fast: a worker that raises reports the error and exits; one that dies without a
word (kill -9, the OOM killer, a segfault) is seen through its process sentinel within
a second. Either way the others are killed, finished parts stay for ``--resume``, and
the run stops with one line naming the worker, its device, the records and the error.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from queue import SimpleQueue
from typing import Any, Callable, Iterable, Iterator

from virnucpro_core import accel
from virnucpro_core.engine.failures import EngineRun, PartFailed, WorkerStats, death_summary, error_summary
from virnucpro_core.engine.parts import PartTask
from virnucpro_core.engine.work import PartJob
from virnucpro_core.engine.stop import signals_ignored
from virnucpro_core.errors import VirnucproError
from virnucpro_core.logs import FILE_ONLY

log = logging.getLogger(__name__)

#: how often the main process looks at its workers when no message arrives (seconds)
POLL_SECONDS = 0.5
#: parts a worker holds at once: the one it computes and the next, already received
IN_FLIGHT = 2


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs, all picklable: no backend object, no open file."""

    worker: int  # 1-based, as messages name workers
    device: str
    job: PartJob
    threads: int | None
    log_level: int = logging.WARNING

    @property
    def label(self) -> str:
        return f"worker {self.worker} ({self.device})"


# -- the worker process --------------------------------------------------------------


def worker_main(spec: WorkerSpec, conn: Connection) -> None:
    """Entry point of a worker process (module-level, so spawn can import it)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)  # the main process decides when to stop
    from virnucpro_core.progress import erase_bar_prefix

    # on a terminal the main process draws a bar: each line first erases it (it is redrawn below)
    logging.basicConfig(level=spec.log_level, format=f"{erase_bar_prefix()}%(asctime)s %(levelname)s [{spec.label}] %(message)s",
                        datefmt="%H:%M:%S")
    task: PartTask | None = None
    try:
        if spec.threads:
            import torch

            torch.set_num_threads(spec.threads)
        accel.bind(spec.device)  # anything implicit (events, streams, handles) lands on the device named too
        work = spec.job.open()
        inbox = _Inbox(conn)  # receives the next part while this one is computed
        conn.send(("ready", work.dim, work.model_id))
        try:
            while True:
                task = inbox.get()
                if task is _Inbox.GONE:  # the main process is gone
                    return
                if task is None:
                    break
                start = time.monotonic()
                work.compute(task, lambda n: conn.send(("progress", n)))
                conn.send(("done", task.index, len(task.ids), time.monotonic() - start))
                task = None
        finally:
            work.close()
    except BaseException as exc:
        records = task.records if task is not None else None
        try:
            conn.send(("failed", records, error_summary(exc), traceback.format_exc()))
        except (OSError, EOFError):
            pass
        raise SystemExit(1) from None
    conn.send(("exit",))


class _Inbox:
    """The worker's side of the pipe, read by a thread: parts arrive while the device is busy.

    Without it the main process could not send the next part before the worker asked
    for it (a pipe holds 64 KB; a part of 10,000 frames pickles to a few MB, so the
    send would block the main process until the worker read it). The thread only
    receives; the worker's own thread sends (progress, done), so each direction of the
    pipe has one user.
    """

    GONE = object()

    class Unreadable:
        """What could not be received (not a pickle, out of memory while unpickling a part)."""

        def __init__(self, exc: BaseException) -> None:
            self.exc = exc

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._items: SimpleQueue = SimpleQueue()
        threading.Thread(target=self._receive, name="virnucpro-inbox", daemon=True).start()

    def _receive(self) -> None:
        while True:
            try:
                item = self._conn.recv()
            except (EOFError, OSError):
                self._items.put(self.GONE)
                return
            except BaseException as exc:  # the worker's thread raises it, and reports it: a dead inbox would hang it
                self._items.put(self.Unreadable(exc))
                return
            self._items.put(item)
            if item is None:  # no more parts
                return

    def get(self) -> Any:
        item = self._items.get()
        if isinstance(item, self.Unreadable):
            raise RuntimeError(f"the next part could not be received from the main process: {item.exc!r}") from item.exc
        return item


# -- the main process ----------------------------------------------------------------


@dataclass
class _Worker:
    spec: WorkerSpec
    process: Any
    conn: Connection
    tasks: deque = field(default_factory=deque)  # sent and not done, oldest (the one computing) first
    ready: bool = False
    stopping: bool = False
    dim: int | None = None
    model: str | None = None
    parts: int = 0
    sequences: int = 0
    busy_seconds: float = 0.0
    startup_seconds: float = 0.0


def run_workers(tasks: Iterable[PartTask], job: PartJob, devices: tuple[str, ...], *,
                threads: int | None, on_progress: Callable[[int], None], on_part: Callable[[PartTask], None],
                log_level: int = logging.WARNING, count: int | None = None) -> EngineRun:
    """Compute ``tasks`` of ``job`` (``count`` of them, when known) on one worker process per
    device; see the module docstring."""
    pending: Iterator[PartTask] = iter(tasks)
    first = next(pending, None)
    if first is None:
        return EngineRun(None, None, 0)
    queue = _Queue(first, pending, count, len(devices))
    ctx = multiprocessing.get_context("spawn")
    workers: list[_Worker] = []
    started = time.monotonic()
    try:
        with signals_ignored():
            for number, device in enumerate(devices, start=1):
                spec = WorkerSpec(number, device, job.on(device), threads, log_level)
                parent, child = ctx.Pipe(duplex=True)
                process = ctx.Process(target=worker_main, args=(spec, child), name=f"virnucpro-{spec.label}", daemon=True)
                process.start()
                child.close()
                workers.append(_Worker(spec, process, parent))
        log.info("started %d worker processes on %s", len(workers), ", ".join(devices))
        _drive(workers, queue, on_progress, on_part, started)
    finally:
        _stop_all(workers)
    dims = {w.dim for w in workers if w.dim is not None}
    if len(dims) > 1:
        raise VirnucproError(f"the workers loaded models of different widths ({sorted(dims)}); this is a bug, please report it")
    stats = tuple(WorkerStats(w.spec.worker, w.spec.device, w.parts, w.sequences, w.busy_seconds, w.startup_seconds)
                  for w in workers)
    for s in stats:
        log.info("%s", s.line())
    ready = next(w for w in workers if w.ready)
    return EngineRun(ready.dim, ready.model, sum(s.parts for s in stats), stats)


class _Queue:
    """The parts not yet handed out, read lazily from the input.

    ``count`` (all the parts, when known) and ``workers`` decide when a worker may take a
    part ahead: only while every other worker could still get one, so the last parts go
    one at a time to whichever worker is free (8 parts on 8 GPUs: one each, not two each
    on four of them).
    """

    def __init__(self, first: PartTask, rest: Iterator[PartTask], count: int | None = None, workers: int = 1) -> None:
        self._next: PartTask | None = first
        self._rest = rest
        self._left = count
        self._workers = workers

    def pop(self) -> PartTask | None:
        task, self._next = self._next, None
        if task is None:
            task = next(self._rest, None)
        if task is not None and self._left is not None:
            self._left -= 1
        return task

    def may_take_ahead(self) -> bool:
        """Whether a worker that has a part may take another now (or learn that none are left)."""
        return self._left is None or self._left == 0 or self._left >= self._workers


def _drive(workers: list[_Worker], queue: _Queue, on_progress: Callable[[int], None],
           on_part: Callable[[PartTask], None], started: float) -> None:
    live = {w.conn: w for w in workers}
    by_sentinel = {w.process.sentinel: w for w in workers}
    while live:
        ready = wait(list(live) + [w.process.sentinel for w in live.values()], timeout=POLL_SECONDS)
        # read every message first: a worker that reported an error and exited must be
        # reported with its error, not as a death
        for obj in ready:
            if isinstance(obj, Connection) and obj in live:
                worker = live[obj]
                while worker.conn in live and _poll(worker.conn):
                    try:
                        message = worker.conn.recv()
                    except (EOFError, OSError):
                        break
                    if _handle(worker, message, queue, on_progress, on_part, started):
                        del live[worker.conn]
        for obj in ready:
            worker = by_sentinel.get(obj)
            if worker is not None and worker.conn in live:
                worker.process.join(timeout=1)
                if not worker.stopping or worker.tasks or worker.process.exitcode != 0:
                    raise _died(worker)
                del live[worker.conn]


def _poll(conn: Connection) -> bool:
    try:
        return conn.poll()
    except (EOFError, OSError):
        return False


def _handle(worker: _Worker, message: tuple, queue: _Queue, on_progress: Callable[[int], None],
            on_part: Callable[[PartTask], None], started: float) -> bool:
    """Act on one message; ``True`` when the worker has finished cleanly."""
    kind = message[0]
    if kind == "progress":
        on_progress(message[1])
        return False
    if kind == "failed":
        raise _failed(worker, message)
    if kind == "exit":
        return True
    if kind == "ready":
        worker.ready, worker.dim, worker.model = True, message[1], message[2]
        worker.startup_seconds = time.monotonic() - started
    elif kind == "done":
        assert worker.tasks and worker.tasks[0].index == message[1], "a worker reported a part it was not given"
        worker.parts += 1
        worker.sequences += message[2]
        worker.busy_seconds += message[3]
        on_part(worker.tasks.popleft())
    while not worker.stopping and len(worker.tasks) < IN_FLIGHT and (not worker.tasks or queue.may_take_ahead()):
        task = queue.pop()
        if task is None:
            worker.stopping = True
        else:
            worker.tasks.append(task)
        try:
            worker.conn.send(task)
        except OSError:  # it exited between asking and receiving: with its error, if it sent one
            while _poll(worker.conn):
                try:
                    waiting = worker.conn.recv()
                except (EOFError, OSError):
                    break
                if waiting[0] == "failed":
                    raise _failed(worker, waiting) from None
            worker.process.join(timeout=5)
            raise _died(worker) from None
    return False


def _failed(worker: _Worker, message: tuple) -> PartFailed:
    """The error a worker reported: ``("failed", records or None, summary, traceback)``."""
    records, summary, details = message[1], message[2], message[3]
    if records:
        where = f"failed on records {records}"
    else:
        where = "failed between parts" if worker.ready else "failed before its first part (loading the model)"
    log.error("%s %s:\n%s", worker.spec.label, where, details, extra=FILE_ONLY)
    return PartFailed(f"{worker.spec.label} {where}: {summary}", details)


def _died(worker: _Worker) -> PartFailed:
    where = f"on records {worker.tasks[0].records}" if worker.tasks else "before its first part"
    message = f"{worker.spec.label} {death_summary(worker.process.exitcode)} {where}"
    if worker.spec.device.startswith("cuda"):
        message += "; if it ran out of memory, lower --batch-tokens/--batch-size"
    log.error("%s", message, extra=FILE_ONLY)
    return PartFailed(message)


def _stop_all(workers: list[_Worker]) -> None:
    """Kill what still runs (a finished part is on disk; an unfinished one is lost anyway)."""
    for w in workers:
        if w.process.is_alive():
            w.process.kill()
    for w in workers:
        w.process.join(timeout=10)
        w.conn.close()
