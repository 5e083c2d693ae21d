"""The host work between parts overlaps the device's: the next part is read (one process,
a torchrun rank) or already received (a worker) while the current one is computed.

These tests do not time anything: a part's computation *waits* for the next part to have
been read or received, which never happens when the reading comes after it (a guard
``WAIT`` seconds long turns that deadlock into a failure)."""

from __future__ import annotations

import pickle
import threading
from dataclasses import dataclass
from multiprocessing import Pipe
from types import SimpleNamespace

import pytest

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
    assert not any(t.name == "virnucpro-read-ahead" for t in threading.enumerate())
    assert len(read) <= 5
    with pytest.raises(ValueError):
        read_ahead([], depth=0).__next__()


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
