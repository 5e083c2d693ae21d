"""Atomic file writes: a file exists under its final name only once it is complete.

Write to a temporary name in the same directory, flush and fsync, then
``os.replace``. On any exception the temporary file is removed and the previous
content of the final name (if any) is untouched. A full disk (or quota) while writing
becomes :class:`~virnucpro_core.errors.OutputWriteError`, one line naming the final path.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator

from virnucpro_core.errors import OutputWriteError

#: errors that mean "this filesystem cannot take more", whatever call hit them
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def temp_path_for(path: Path) -> Path:
    """A fresh temporary path beside ``path`` (same filesystem, so rename is atomic)."""
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    os.chmod(name, default_file_mode())  # mkstemp makes 0600; outputs get the permissions open() would give
    return Path(name)


def default_file_mode() -> int:
    """The permissions ``open(path, "w")`` gives a new file under the current umask."""
    return 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path; on success it is fsynced and renamed to ``path``."""
    path = Path(path)
    try:
        tmp = temp_path_for(path)
    except OSError as exc:
        if exc.errno in DISK_FULL:
            raise OutputWriteError(path, exc) from None
        raise
    try:
        yield tmp
        try:
            fsync_path(tmp)
            os.replace(tmp, path)
        except OSError as exc:
            raise OutputWriteError(path, exc) from None
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if isinstance(exc, OSError) and exc.errno in DISK_FULL:
            raise OutputWriteError(path, exc) from None
        raise


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Open a temporary file for writing; it replaces ``path`` when the block succeeds."""
    if "b" in mode:
        encoding = None
    with atomic_path(path) as tmp:
        with open(tmp, mode, encoding=encoding, newline="" if encoding else None) as handle:
            yield handle
            handle.flush()


def write_json_atomic(path: str | Path, data: Any) -> None:
    with atomic_open(path) as handle:
        json.dump(data, handle, indent=2, sort_keys=False)
        handle.write("\n")
