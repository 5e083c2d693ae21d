"""The file object HDF5 writes through, so that a full disk is an error and not a segfault.

With its own (``sec2``) driver, HDF5 that hits ENOSPC while it closes a file is left
half-closed: its identifiers are still registered but their memory is partly freed, and
the next thing that touches them (closing again, garbage collection, the library's own
clean-up at interpreter exit) crashes the process with a segfault after a "Can't
decrement id ref count" message (h5py issues #914 and #1642). A file that fails to close
cannot be rescued afterwards, so the failure must never reach HDF5 at all.

:class:`GuardedFile` is handed to h5py's ``fileobj`` driver instead of a path. It writes
to the real file, and the first ``OSError`` (ENOSPC, EDQUOT, EIO, ...) is *recorded*
instead of raised: from then on writes are dropped and reads of what was dropped give
zeros, so HDF5 finishes every operation, including ``close``, on a consistent state. The
writer checks :attr:`GuardedFile.error` after each batch and after closing, deletes the
temporary file and raises a one-line error naming the file being written.
"""

from __future__ import annotations

import os
from pathlib import Path


class GuardedFile:
    """A binary file for h5py's ``fileobj`` driver that records write errors (see module)."""

    def __init__(self, path: str | Path, mode: str = "w+b") -> None:
        self.path = Path(path)
        self._file = open(self.path, mode, buffering=0)
        self.error: OSError | None = None

    # the methods h5py's fileobj driver calls
    def read(self, size: int = -1) -> bytes:
        data = self._file.read(size)
        if self.error is not None and size >= 0 and len(data) < size:
            data += bytes(size - len(data))  # what a dropped write would have held; the file is discarded anyway
        return data

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data)
        if self.error is None:
            try:
                written = 0
                while written < len(view):  # a raw write may be partial
                    written += self._file.write(view[written:])
            except OSError as exc:
                self.error = exc
        return len(view)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def truncate(self, size: int | None = None) -> int:
        if self.error is None:
            try:
                return self._file.truncate(size)
            except OSError as exc:
                self.error = exc
        return self.tell() if size is None else size

    def flush(self) -> None:
        pass  # unbuffered: every write went straight to the operating system

    # for the writer
    def fsync(self) -> None:
        """Force the data to disk (where NFS and quotas report a full disk late)."""
        if self.error is None:
            try:
                os.fsync(self._file.fileno())
            except OSError as exc:
                self.error = exc

    def close(self) -> None:
        try:
            self._file.close()
        except OSError as exc:
            self.error = self.error or exc
