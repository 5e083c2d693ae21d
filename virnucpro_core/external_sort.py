"""Bounded external sorting: order any number of records in a fixed amount of memory.

Stages that must produce an order their input does not have (the consensus sorted by
chunk ID as pandas ``groupby`` sorts it, a merge by ID of two files in different
orders, a duplicate-ID check) use :func:`external_sort`. It keeps at most
``max_in_memory`` records, spills each full buffer as a sorted *run* (pickled blocks of
:data:`BLOCK` records) to an anonymous temporary file in a directory the caller names
(the run or output directory, where there is room for the data anyway), and merges the
runs with :func:`heapq.merge`. Runs vanish when closed, also on a crash (they are
unlinked at creation).

Memory is bounded whatever the input size: the buffer, plus one decoded block per run
being merged. To keep the second term bounded too, runs are merged by levels: as soon
as :data:`FAN_IN` runs of one level exist they are merged into one run of the next level
(so fewer than ``FAN_IN`` runs per level stay open, and each record is rewritten once per
level, ``log_FAN_IN(N / max_in_memory)`` times). Disk use is about the pickled size of
the records (twice, briefly, while a level is merged).

Only the caller's own tuples of strings and numbers are pickled and read back, from
files this process created; nothing from outside is unpickled.
"""

from __future__ import annotations

import heapq
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator

#: Records kept in memory before a sorted run is spilled. About 200 bytes each for the
#: short tuples the stages sort, so some 20 MB.
DEFAULT_MAX_IN_MEMORY = 100_000
#: Runs merged at once; reaching it merges them into one run on disk.
FAN_IN = 32
#: Records per pickled block of a run (what one open run holds in memory while merging);
#: smaller when ``max_in_memory / FAN_IN`` is, so a merge holds no more than the buffer.
BLOCK = 1024


def _write_run(items: Iterable[Any], directory: Path, block_size: int = BLOCK) -> IO[bytes]:
    run = tempfile.TemporaryFile(dir=directory, prefix=".virnucpro-sort-")
    try:
        block: list = []
        for item in items:
            block.append(item)
            if len(block) >= block_size:
                pickle.dump(block, run, protocol=pickle.HIGHEST_PROTOCOL)
                block = []
        if block:
            pickle.dump(block, run, protocol=pickle.HIGHEST_PROTOCOL)
        run.seek(0)
    except BaseException:
        run.close()
        raise
    return run


def _read_run(run: IO[bytes]) -> Iterator[Any]:
    while True:
        try:
            block = pickle.load(run)
        except EOFError:
            return
        yield from block


class SortBuffer:
    """Items added one at a time, read back sorted by ``key``, in bounded memory.

    The push form of :func:`external_sort`, for a caller that collects items as a side
    effect of another pass (prepare collects record IDs while it checks the records).
    Iterate once, after the last :meth:`add`; :meth:`close` drops the spilled runs.
    """

    def __init__(self, key: Callable[[Any], Any] | None, directory: str | Path,
                 max_in_memory: int | None = None, fan_in: int = FAN_IN) -> None:
        if max_in_memory is None:  # read now, so that a test can lower it for a whole process
            max_in_memory = DEFAULT_MAX_IN_MEMORY
        if max_in_memory < 1:
            raise ValueError("max_in_memory must be positive")
        if fan_in < 2:
            raise ValueError("fan_in must be at least 2")
        self.key = key
        self.directory = Path(directory)
        self.max_in_memory = max_in_memory
        self.fan_in = fan_in
        self.block = max(16, min(BLOCK, max_in_memory // fan_in))
        self.count = 0
        self._levels: list[list[IO[bytes]]] = [[]]  # levels[k]: runs of about max_in_memory * fan_in**k items
        self._buffer: list = []

    def add(self, item: Any) -> None:
        self._buffer.append(item)
        self.count += 1
        if len(self._buffer) >= self.max_in_memory:
            self._spill()

    def extend(self, items: Iterable[Any]) -> None:
        for item in items:
            self.add(item)

    def _spill(self) -> None:
        self._buffer.sort(key=self.key)
        levels = self._levels
        levels[0].append(_write_run(self._buffer, self.directory, self.block))
        self._buffer = []
        level = 0
        while len(levels[level]) >= self.fan_in:  # merge a full level into one run of the next
            merged = _write_run(heapq.merge(*(_read_run(r) for r in levels[level]), key=self.key), self.directory, self.block)
            for run in levels[level]:
                run.close()
            levels[level] = []
            if level + 1 == len(levels):
                levels.append([])
            levels[level + 1].append(merged)
            level += 1

    def __iter__(self) -> Iterator[Any]:
        self._buffer.sort(key=self.key)
        runs = [run for level_runs in self._levels for run in level_runs]
        try:
            if not runs:
                yield from self._buffer
            else:
                yield from heapq.merge(self._buffer, *(_read_run(run) for run in runs), key=self.key)
        finally:
            self.close()

    def close(self) -> None:
        for level_runs in self._levels:
            for run in level_runs:
                run.close()
        self._levels = [[]]
        self._buffer = []


def external_sort(items: Iterable[Any], key: Callable[[Any], Any] | None, directory: str | Path,
                  max_in_memory: int | None = None, fan_in: int = FAN_IN) -> Iterator[Any]:
    """Yield ``items`` sorted by ``key`` (``None``: the items themselves; equal keys come in
    no particular order).

    Holds at most ``max_in_memory`` items (default :data:`DEFAULT_MAX_IN_MEMORY`) plus
    one block per open run; see the module docstring. The temporary runs are closed (hence deleted) when the iterator is
    exhausted, closed, or garbage-collected.
    """
    buffer = SortBuffer(key, directory, max_in_memory, fan_in)
    try:
        buffer.extend(items)
        yield from buffer
    finally:
        buffer.close()


@dataclass(frozen=True)
class Duplicates:
    """Repeated IDs among numbered records, as :func:`find_duplicates` finds them."""

    count: int  # records whose ID an earlier record already has
    first: tuple[tuple[str, int, int], ...]  # (id, first record, second record), earliest second record first


def find_duplicates(numbered: Iterable[tuple[str, int]], keep: int = 1) -> Duplicates:
    """The repeated IDs of ``(id, record number)`` pairs sorted by ID, then number (a
    :class:`SortBuffer` with ``key=None`` gives them so): how many records repeat an
    earlier ID, and the ``keep`` IDs whose second occurrence comes first in the input,
    which is the order a check reading the file from the top would have found them in.
    Holds ``keep`` IDs, whatever the number of records.
    """
    count = 0
    earliest: list[tuple[int, str, int]] = []  # a heap of (-second record, id, first record): the latest on top
    previous: str | None = None
    first_number = 0
    repeated = False
    for record_id, number in numbered:
        if record_id == previous:
            count += 1
            if not repeated:
                repeated = True
                heapq.heappush(earliest, (-number, record_id, first_number))
                if len(earliest) > keep:
                    heapq.heappop(earliest)
        else:
            previous, first_number, repeated = record_id, number, False
    found = sorted(((record_id, first, -second) for second, record_id, first in earliest), key=lambda item: item[2])
    return Duplicates(count, tuple(found))
