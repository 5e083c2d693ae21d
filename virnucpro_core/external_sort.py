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
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator

#: Records kept in memory before a sorted run is spilled. About 200 bytes each for the
#: short tuples the stages sort, so some 20 MB.
DEFAULT_MAX_IN_MEMORY = 100_000
#: Runs merged at once; reaching it merges them into one run on disk.
FAN_IN = 32
#: Records per pickled block of a run (what one open run holds in memory while merging).
BLOCK = 1024


def _write_run(items: Iterable[Any], directory: Path) -> IO[bytes]:
    run = tempfile.TemporaryFile(dir=directory, prefix=".virnucpro-sort-")
    try:
        block: list = []
        for item in items:
            block.append(item)
            if len(block) >= BLOCK:
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


def external_sort(items: Iterable[Any], key: Callable[[Any], Any], directory: str | Path,
                  max_in_memory: int = DEFAULT_MAX_IN_MEMORY, fan_in: int = FAN_IN) -> Iterator[Any]:
    """Yield ``items`` sorted by ``key`` (stable only within a run: equal keys may come in any order).

    Holds at most ``max_in_memory`` items plus one block per open run; see the module
    docstring. The temporary runs are closed (hence deleted) when the iterator is
    exhausted, closed, or garbage-collected.
    """
    if max_in_memory < 1:
        raise ValueError("max_in_memory must be positive")
    if fan_in < 2:
        raise ValueError("fan_in must be at least 2")
    directory = Path(directory)
    levels: list[list[IO[bytes]]] = [[]]  # levels[k]: runs of about max_in_memory * fan_in**k records
    buffer: list = []
    try:
        for item in items:
            buffer.append(item)
            if len(buffer) >= max_in_memory:
                buffer.sort(key=key)
                levels[0].append(_write_run(buffer, directory))
                buffer = []
                level = 0
                while len(levels[level]) >= fan_in:  # merge a full level into one run of the next
                    merged = _write_run(heapq.merge(*(_read_run(r) for r in levels[level]), key=key), directory)
                    for run in levels[level]:
                        run.close()
                    levels[level] = []
                    if level + 1 == len(levels):
                        levels.append([])
                    levels[level + 1].append(merged)
                    level += 1
        buffer.sort(key=key)
        runs = [run for level_runs in levels for run in level_runs]
        if not runs:
            yield from buffer
            return
        yield from heapq.merge(buffer, *(_read_run(run) for run in runs), key=key)
    finally:
        for level_runs in levels:
            for run in level_runs:
                run.close()
