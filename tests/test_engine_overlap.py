"""The host work between parts overlaps the device's: the next part is read (one process,
a torchrun rank) or already received (a worker) while the current one is computed.

These tests do not time anything: a part's computation *waits* for the next part to have
been read or received, which never happens when the reading comes after it (a guard
``WAIT`` seconds long turns that deadlock into a failure)."""

from __future__ import annotations

import pickle
import threading
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing import Pipe
from types import SimpleNamespace

import pytest

from virnucpro_core.engine.failures import PartFailed
from virnucpro_core.engine.local import run_local
from virnucpro_core.engine.readahead import read_ahead

WAIT = 20.0


def test_read_ahead_yields_everything_in_order_and_raises_where_the_reading_failed():
    assert list(read_ahead(range(50))) == list(range(50))
    assert list(read_ahead(iter([]))) == []

    def broken():
        yield 1
        yield 2
        raise ValueError("record 3 is damaged")

    got = []
    with pytest.raises(ValueError, match="record 3 is damaged"):
        for item in read_ahead(broken()):
            got.append(item)
    assert got == [1, 2]


def test_read_ahead_reads_the_next_item_while_this_one_is_used_and_no_further():
    produced = [threading.Event() for _ in range(6)]

    def source():
        for i in range(6):
            produced[i].set()
            yield i

    ahead = read_ahead(source(), depth=1)
    for item in ahead:
        if item + 1 < 6:  # the next one is read while this one is in use
            assert produced[item + 1].wait(WAIT), f"item {item + 1} was not read while item {item} was in use"
        if item + 3 < 6:  # bounded: one waiting in the queue and one being handed over, at most
            threading.Event().wait(0.2)
            assert not produced[item + 3].is_set()


def test_closing_read_ahead_early_stops_its_thread():
    read = []

    def source():
        for i in range(1000):
            read.append(i)
            yield i

    ahead = read_ahead(source(), depth=2)
    assert next(ahead) == 0
    ahead.close()
    assert _reading_thread_ends()
    assert len(read) <= 5
    with pytest.raises(ValueError):
        read_ahead([], depth=0).__next__()


def _reading_thread_ends() -> bool:
    """Whether the read-ahead thread is gone within ``WAIT`` (closing waits only briefly for it)."""
    deadline = time.monotonic() + WAIT
    while any(t.name == "virnucpro-read-ahead" for t in threading.enumerate()):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_stop_signal_is_not_held_up_by_a_long_read():
    """Reaching the first wanted part can mean scanning millions of frames; a stop must not wait for it."""
    import os
    import signal

    from virnucpro_core.engine.stop import RunInterrupted, graceful_stop
    from virnucpro_core.engine.readahead import JOIN_SECONDS

    def scanning():
        time.sleep(WAIT / 2)
        yield 1

    with graceful_stop():
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
        start = time.monotonic()
        with pytest.raises(RunInterrupted):
            for _ in read_ahead(scanning()):
                pass
        assert time.monotonic() - start < 0.3 + JOIN_SECONDS + 2.0


@dataclass(frozen=True)
class _Task:
    index: int
    ids: tuple[str, ...]

    @property
    def records(self) -> str:
        return f"{self.index * 2 + 1}-{self.index * 2 + 2}"


class _WaitingWork:
    """Computes part k only once part k + 1 has been read: fails if reading waits for computing."""

    dim, model_id = 1, "waiting"

    def __init__(self, produced: list[threading.Event]) -> None:
        self.produced = produced
        self.computed: list[int] = []

    def compute(self, task, progress) -> None:
        if task.index + 1 < len(self.produced):
            assert self.produced[task.index + 1].wait(WAIT), f"part {task.index + 1} was not read while part {task.index} was computed"
        self.computed.append(task.index)
        progress(len(task.ids))

    def close(self) -> None:
        pass


def test_one_process_reads_the_next_part_while_it_computes_this_one():
    produced = [threading.Event() for _ in range(5)]
    work = _WaitingWork(produced)

    def tasks():
        for index in range(5):
            produced[index].set()
            yield _Task(index, (f"a{index}", f"b{index}"))

    job = SimpleNamespace(device="cpu", describe=lambda: "waiting", open=lambda backends: work)
    done: list[int] = []
    counted: list[int] = []
    run = run_local(tasks(), job, on_progress=counted.append, on_part=lambda t: done.append(t.index))
    assert work.computed == done == [0, 1, 2, 3, 4] and sum(counted) == 10 and run.computed == 5


def test_a_worker_receives_its_next_part_while_it_computes_this_one():
    """The worker's inbox thread drains the pipe, so the main process can send parts of
    several MB (a pipe holds 64 KB) without waiting for the worker to ask for them."""
    from virnucpro_core.engine.workers import _Inbox

    parent, child = Pipe(duplex=True)
    inbox = _Inbox(child)
    parts = [_Task(i, tuple(f"read{i}_{j}_chunk_1F1" for j in range(120_000))) for i in range(2)]
    assert len(pickle.dumps(parts[0])) > 1_000_000
    sent = threading.Event()

    def send() -> None:
        for part in parts:
            parent.send(part)
        parent.send(None)
        sent.set()

    threading.Thread(target=send, daemon=True).start()
    assert sent.wait(WAIT), "the sends waited for the worker to ask"  # nothing taken from the inbox yet
    assert inbox.get() == parts[0] and inbox.get() == parts[1] and inbox.get() is None
    parent.close()


class _Conn:
    def __init__(self) -> None:
        self.sent: list = []

    def send(self, item) -> None:
        self.sent.append(item)


def test_the_main_process_keeps_two_parts_with_each_worker_and_sends_the_end_once():
    from virnucpro_core.engine.workers import IN_FLIGHT, _handle, _Queue, _Worker

    assert IN_FLIGHT == 2
    tasks = [_Task(i, ("x",)) for i in range(3)]
    queue = _Queue(tasks[0], iter(tasks[1:]))
    worker = _Worker(SimpleNamespace(label="worker 1 (cpu)", device="cpu"), SimpleNamespace(), _Conn())
    finished: list[int] = []

    def handle(message) -> bool:
        return _handle(worker, message, queue, lambda n: None, lambda t: finished.append(t.index), 0.0)

    handle(("ready", 4, "m"))
    assert worker.conn.sent == [tasks[0], tasks[1]]  # the second before the first is done
    handle(("done", 0, 1, 0.1))
    assert worker.conn.sent == tasks and finished == [0]
    handle(("done", 1, 1, 0.1))
    assert worker.conn.sent == [*tasks, None] and worker.stopping and finished == [0, 1]
    handle(("done", 2, 1, 0.1))
    assert worker.conn.sent == [*tasks, None] and finished == [0, 1, 2] and not worker.tasks
    with pytest.raises(AssertionError, match="not given"):
        handle(("done", 7, 1, 0.1))


def test_one_process_stops_its_reading_thread_when_a_part_fails():
    read = []

    def tasks():
        for i in range(1000):
            read.append(i)
            yield _Task(i, ("a", "b"))

    class Failing:
        dim, model_id = 1, "failing"

        def compute(self, task, progress):
            threading.Event().wait(0.3)
            raise RuntimeError("boom")

        def close(self):
            pass

    job = SimpleNamespace(device="cpu", describe=lambda: "failing", open=lambda backends: Failing())
    with pytest.raises(PartFailed, match="records 1-2: RuntimeError: boom"):
        run_local(tasks(), job, on_progress=lambda n: None, on_part=lambda t: None)
    assert _reading_thread_ends() and len(read) <= 3


def _in_thread(call):
    """``call()`` in a thread: its result or exception, or ``None`` if it is still blocked after ``WAIT``."""
    got = []

    def run():
        try:
            got.append(("value", call()))
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            got.append(("raised", exc))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(WAIT)
    return got[0] if got else None


def test_the_inbox_says_gone_when_the_main_process_is_gone_and_hands_on_what_it_cannot_read():
    from virnucpro_core.engine.workers import _Inbox

    parent, child = Pipe(duplex=True)
    inbox = _Inbox(child)
    parent.send(_Task(0, ("x",)))
    parent.close()
    assert _in_thread(inbox.get) == ("value", _Task(0, ("x",)))
    assert _in_thread(inbox.get) == ("value", _Inbox.GONE)

    parent, child = Pipe(duplex=True)
    inbox = _Inbox(child)
    parent.send_bytes(b"not a pickle")
    got = _in_thread(inbox.get)
    assert got is not None, "the worker waits forever on an inbox whose thread died"
    assert got[0] == "raised" and "could not be received" in str(got[1])
    parent.close()


def _worker(conn=None, **process) -> "object":
    from virnucpro_core.engine.workers import _Worker

    return _Worker(SimpleNamespace(label="worker 1 (cpu)", device="cpu"), SimpleNamespace(**process), conn if conn is not None else _Conn())


def test_the_last_parts_go_one_at_a_time_to_free_workers():
    """Two parts, two workers: one each (taking ahead would leave a device idle)."""
    from virnucpro_core.engine.workers import _handle, _Queue

    tasks = [_Task(i, ("x",)) for i in range(2)]
    queue = _Queue(tasks[0], iter(tasks[1:]), count=2, workers=2)
    a, b = _worker(), _worker()
    for w in (a, b):
        _handle(w, ("ready", 4, "m"), queue, lambda n: None, lambda t: None, 0.0)
    assert a.conn.sent == [tasks[0]] and b.conn.sent == [tasks[1], None]
    _handle(a, ("done", 0, 1, 0.1), queue, lambda n: None, lambda t: None, 0.0)
    assert a.conn.sent == [tasks[0], None]

    tasks = [_Task(i, ("x",)) for i in range(5)]  # 5 parts, 2 workers: ahead while both can still get one
    queue = _Queue(tasks[0], iter(tasks[1:]), count=5, workers=2)
    a, b = _worker(), _worker()
    _handle(a, ("ready", 4, "m"), queue, lambda n: None, lambda t: None, 0.0)
    _handle(b, ("ready", 4, "m"), queue, lambda n: None, lambda t: None, 0.0)
    assert a.conn.sent == tasks[0:2] and b.conn.sent == tasks[2:4]  # the fifth goes to whichever finishes first


def test_a_worker_that_failed_while_its_next_part_was_sent_is_reported_with_its_error():
    from virnucpro_core.engine.workers import _handle, _Queue

    parent, child = Pipe(duplex=True)
    tasks = [_Task(i, ("x",)) for i in range(3)]
    worker = _worker(parent, join=lambda timeout=None: None, exitcode=1)
    worker.ready, worker.tasks = True, deque(tasks[:2])
    child.send(("failed", "3-4", "RuntimeError: boom", "traceback"))
    child.close()
    with pytest.raises(PartFailed, match=r"^worker 1 \(cpu\) failed on records 3-4: RuntimeError: boom$"):
        _handle(worker, ("done", 0, 1, 0.1), _Queue(tasks[2], iter(())), lambda n: None, lambda t: None, 0.0)


def test_a_dead_worker_is_named_with_the_part_it_was_computing():
    from virnucpro_core.engine.workers import _died, _handle, _Queue

    worker = _worker(exitcode=-9)
    worker.tasks = deque([_Task(3, ("x",)), _Task(4, ("y",))])
    assert "on records 7-8" in str(_died(worker))
    with pytest.raises(AssertionError, match="not given"):  # done for the part behind the one computing
        _handle(worker, ("done", 4, 1, 0.1), _Queue(_Task(5, ("z",)), iter(())), lambda n: None, lambda t: None, 0.0)
