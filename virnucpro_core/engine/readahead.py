"""Reading the next part while the device computes this one.

A part task is read from the prepared FASTA files (about 15 microseconds a frame on one
core: some 0.15 s for a part of 10,000 frames). Read between two parts, that is time the
device waits: a few percent of an H200's time at ~1,700 frames/s. :func:`read_ahead`
reads the next task in a thread while the caller computes the current one (the device
work releases the GIL while it waits on the GPU), holding at most ``depth + 1`` tasks
ahead (``depth`` waiting, one being handed over), so memory stays bounded by a few parts.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()
#: How long closing waits for the reading thread. Reaching the first wanted part may mean
#: scanning millions of frames (a resume deep into a large input, a torchrun rank skipping
#: the others' parts); a stop signal must not wait for that. The thread is a daemon that
#: only reads, and it ends at its next item.
JOIN_SECONDS = 0.5


class _Raised:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def read_ahead(items: Iterable[T], depth: int = 1) -> Iterator[T]:
    """Yield ``items`` in order while a thread reads up to ``depth + 1`` of them ahead.

    An exception of the reading is raised here, at the item it happened at (after the
    items read before it). Closing the generator early (an error or a stop in the
    caller) stops the thread after the item it is reading (waiting at most
    :data:`JOIN_SECONDS` for it); nothing is read after that.
    """
    if depth < 1:
        raise ValueError("depth must be at least 1")
    ahead: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                ahead.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as exc:  # handed to the consumer, which raises it in its own thread
            put(_Raised(exc))
            return
        put(_DONE)

    reader = threading.Thread(target=read, name="virnucpro-read-ahead", daemon=True)
    reader.start()
    try:
        while True:
            item = ahead.get()
            if item is _DONE:
                return
            if isinstance(item, _Raised):
                raise item.exc
            yield item
    finally:
        stop.set()
        reader.join(JOIN_SECONDS)
