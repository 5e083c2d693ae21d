"""The HDF5 embeddings format: the default, because it streams both ways.

Layout (``format_version`` 1)::

    /ids          variable-length UTF-8 strings, shape (N,)
    /embeddings   float32, shape (N, dim), chunked and resizable along N
    attributes    format_version, created_by ("virnucpro <version>"), modality, dim,
                  backend, version, package_version, model, extra (JSON object),
                  and warning when the rows mean nothing (random tiny models)

IDs and embeddings live in one file so they can never drift apart, and a file exists
under its final name only once complete: :class:`Hdf5Writer` writes to a temporary
name beside the target and :meth:`Hdf5Writer.commit` flushes, fsyncs and renames it.
HDF5 writes through :class:`~virnucpro_core.formats.hdf5_io.GuardedFile`, so a full disk
is one line naming the file (:class:`~virnucpro_core.errors.OutputWriteError`), never
the segfault HDF5 gives when a close fails.
A reader therefore never has to guess whether a file is partial; anything it cannot
read is refused with one line naming the file and what is wrong.

h5py is imported inside the functions so that importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from virnucpro_core.atomic import DISK_FULL, temp_path_for
from virnucpro_core.errors import InputError, OutputWriteError, VirnucproError
from virnucpro_core.formats.base import CommitOnExit, EmbeddingMeta
from virnucpro_core.formats.checks import check_batch
from virnucpro_core.formats.hdf5_io import GuardedFile

FORMAT_VERSION = 1
IDS = "ids"
EMBEDDINGS = "embeddings"
#: Target size of one chunk of the embeddings dataset; whole rows per chunk.
CHUNK_BYTES = 1 << 20
#: Chunk cache of a reader's embeddings, so random ``read_rows`` does not re-read chunks.
READ_CACHE_BYTES = 64 << 20
#: Chunk cache of a reader's IDs, which are only read in order (a chunk holds 4,096 of
#: them): with the embeddings' cache they would fill 64 MB per file at 3 million rows.
IDS_CACHE_BYTES = 1 << 20
#: Ceiling of the HDF5 library's metadata cache of an open file (its default grows to 32 MB
#: as the ID strings' heap blocks are read or written; this keeps it small and bounded).
METADATA_CACHE_BYTES = 2 << 20

_META_ATTRS = ("backend", "version", "package_version", "model")


def _created_by() -> str:
    from virnucpro_core import __version__

    return f"virnucpro {__version__}"


def bound_metadata_cache(file: Any) -> None:
    """Cap the metadata cache of an open h5py file at :data:`METADATA_CACHE_BYTES`."""
    config = file.id.get_mdc_config()
    config.set_initial_size = True
    config.initial_size = min(config.initial_size, METADATA_CACHE_BYTES)
    config.min_size = min(config.min_size, METADATA_CACHE_BYTES)
    config.max_size = METADATA_CACHE_BYTES
    file.id.set_mdc_config(config)


def _open_with_cache(file: Any, name: str, cache_bytes: int) -> Any:
    """Dataset ``name`` of an open file with its own chunk cache of ``cache_bytes``."""
    import h5py

    access = h5py.h5p.create(h5py.h5p.DATASET_ACCESS)
    slots, _, w0 = file.id.get_access_plist().get_cache()[1:]
    access.set_chunk_cache(slots, cache_bytes, w0)
    return h5py.Dataset(h5py.h5d.open(file.id, name.encode(), access))


def chunk_rows(dim: int) -> int:
    """Rows per chunk: about :data:`CHUNK_BYTES`, at least one row."""
    return max(1, CHUNK_BYTES // (4 * max(dim, 1)))


class Hdf5Writer(CommitOnExit):
    """Stream ``(ids, rows)`` batches into a new HDF5 file.

    Use as a context manager: a clean exit commits, an exception aborts (the
    temporary file is deleted and an existing file at ``path`` is left untouched).
    Rows are checked by :func:`~virnucpro_core.formats.checks.check_batch`: wrong
    width, ID/row count mismatch and NaN/inf (naming the first bad ID) are refused.
    """

    def __init__(self, path: str | Path, meta: EmbeddingMeta) -> None:
        import h5py

        self.path = Path(path)
        self.meta = meta
        if meta.dim < 1:
            raise VirnucproError(f"{self.path}: cannot write {meta.dim}-dim embeddings; dim must be at least 1")
        try:
            self._tmp = temp_path_for(self.path)
        except OSError as exc:
            if exc.errno in DISK_FULL:
                raise OutputWriteError(self.path, exc) from None
            raise VirnucproError(f"cannot create {self.path}: {exc.strerror or exc}; check that the folder exists and is writable") from None
        self.rows = 0
        self._done = False
        try:
            self._raw = GuardedFile(self._tmp)  # a full disk must not reach HDF5 (see formats/hdf5_io.py)
            self._file = h5py.File(self._raw, "w")
            bound_metadata_cache(self._file)
            self._ids = self._file.create_dataset(
                IDS, shape=(0,), maxshape=(None,), dtype=h5py.string_dtype("utf-8"), chunks=(chunk_rows(64),)
            )
            self._emb = self._file.create_dataset(
                EMBEDDINGS, shape=(0, meta.dim), maxshape=(None, meta.dim), dtype=np.float32,
                chunks=(chunk_rows(meta.dim), meta.dim),
            )
            attrs = self._file.attrs
            attrs["format_version"] = FORMAT_VERSION
            attrs["created_by"] = _created_by()
            attrs["modality"] = meta.modality
            attrs["dim"] = int(meta.dim)
            for name in _META_ATTRS:
                attrs[name] = str(getattr(meta, name))
            attrs["extra"] = json.dumps(dict(meta.extra), sort_keys=True)
        except BaseException:
            self.abort()
            raise

    def write(self, ids: Sequence[str], embeddings: np.ndarray) -> None:
        """Append one batch; row ``i`` belongs to ``ids[i]``."""
        if self._done:
            raise VirnucproError(f"{self.path}: writer is already closed")
        ids, array = check_batch(self.path, self.meta.dim, ids, embeddings)
        n = len(ids)
        if n == 0:
            return
        start, stop = self.rows, self.rows + n
        self._ids.resize((stop,))
        self._emb.resize((stop, self.meta.dim))
        self._ids[start:stop] = np.array(ids, dtype=object)
        self._emb[start:stop] = array
        self.rows = stop
        self._check_io()

    def _check_io(self) -> None:
        """Raise the write error the guarded file recorded (the file is then discarded)."""
        if self._raw.error is not None:
            error = OutputWriteError(self.path, self._raw.error)
            self.abort()
            raise error

    def commit(self) -> None:
        """Close, fsync and rename the temporary file to ``path``."""
        if self._done:
            return
        try:
            self._file.close()
            self._raw.fsync()
            self._raw.close()
            self._check_io()
            os.replace(self._tmp, self.path)
        except OSError as exc:
            self.abort()
            raise OutputWriteError(self.path, exc) from None
        except BaseException:
            self.abort()
            raise
        self._done = True

    def abort(self) -> None:
        """Close and delete the temporary file; ``path`` is not touched."""
        if self._done:
            return
        self._done = True
        file = getattr(self, "_file", None)
        if file is not None:
            with contextlib.suppress(Exception):
                file.close()
        raw = getattr(self, "_raw", None)
        if raw is not None:
            raw.close()
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()



class Hdf5Reader:
    """Read an HDF5 embeddings file written by :class:`Hdf5Writer`.

    Opening checks the layout (both datasets, matching lengths, float rows as wide as
    the ``dim`` attribute, a known ``format_version``) so later reads cannot fail
    half-way for a reason that was visible up front.
    """

    def __init__(self, path: str | Path) -> None:
        import h5py

        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"{self.path}: no such embeddings file")
        try:
            self._file = h5py.File(self.path, "r", rdcc_nbytes=READ_CACHE_BYTES)
        except OSError:
            raise InputError(
                f"{self.path}: cannot be read as HDF5 (truncated, still being written, or not an HDF5 file); "
                "recreate it with the command that made it"
            ) from None
        try:
            bound_metadata_cache(self._file)
            self._ids, self._emb, self.meta = self._check()
        except BaseException:
            self._file.close()
            raise

    def _check(self) -> tuple[Any, Any, EmbeddingMeta]:
        import h5py

        f = self._file
        missing = [name for name in (IDS, EMBEDDINGS) if not isinstance(f.get(name), h5py.Dataset)]
        if missing:
            names = " and ".join(repr(m) for m in missing)
            raise InputError(f"{self.path}: not a VirNucPro embeddings file (no {names} dataset)")
        ids, emb = _open_with_cache(f, IDS, IDS_CACHE_BYTES), f[EMBEDDINGS]
        attrs = f.attrs
        version = attrs.get("format_version")
        if version is None:
            raise InputError(f"{self.path}: not a VirNucPro embeddings file (no 'format_version' attribute)")
        if int(version) > FORMAT_VERSION:
            raise InputError(
                f"{self.path}: format_version {int(version)} is newer than this virnucpro reads ({FORMAT_VERSION}); upgrade virnucpro"
            )
        if emb.ndim != 2 or emb.dtype.kind != "f":
            raise InputError(f"{self.path}: 'embeddings' must be a 2-D float dataset, found shape {emb.shape} dtype {emb.dtype}")
        if ids.ndim != 1 or h5py.check_string_dtype(ids.dtype) is None:
            raise InputError(f"{self.path}: 'ids' must be a 1-D string dataset, found shape {ids.shape} dtype {ids.dtype}")
        if ids.shape[0] != emb.shape[0]:
            raise InputError(f"{self.path}: {ids.shape[0]} IDs but {emb.shape[0]} embedding rows; the file is damaged, recreate it")
        dim = int(attrs.get("dim", emb.shape[1]))
        if dim != emb.shape[1]:
            raise InputError(f"{self.path}: attribute dim={dim} but the embeddings are {emb.shape[1]} wide; the file is damaged")
        modality = _text(attrs.get("modality", ""))
        if not modality:
            raise InputError(f"{self.path}: not a VirNucPro embeddings file (no 'modality' attribute)")
        try:
            extra = json.loads(_text(attrs.get("extra", "{}")) or "{}")
        except ValueError:
            raise InputError(f"{self.path}: attribute 'extra' is not valid JSON; the file is damaged") from None
        meta = EmbeddingMeta(
            dim=dim,
            modality=modality,
            extra={str(k): str(v) for k, v in dict(extra).items()},
            **{name: _text(attrs.get(name, "")) for name in _META_ATTRS},
        )
        return ids.asstr(), emb, meta

    def __len__(self) -> int:
        return int(self._emb.shape[0])

    def ids(self) -> list[str]:
        return list(self._ids[:]) if len(self) else []

    def iter_ids(self, batch_size: int = 8192) -> Iterator[list[str]]:
        """The IDs in file order, a batch at a time, without reading any embedding."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        for start in range(0, len(self), batch_size):
            yield list(self._ids[start : min(start + batch_size, len(self))])

    def iter_batches(self, batch_size: int = 4096) -> Iterator[tuple[list[str], np.ndarray]]:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        for start in range(0, len(self), batch_size):
            stop = min(start + batch_size, len(self))
            yield list(self._ids[start:stop]), self._emb[start:stop].astype(np.float32, copy=False)

    def read_rows(self, rows: np.ndarray | Sequence[int]) -> np.ndarray:
        """Rows by index in the order given; repeats allowed.

        h5py's fancy indexing wants increasing unique indices, so the request is
        sorted and deduplicated, read, then put back in the caller's order. A dense
        request (the usual case: both inputs of a merge in the same order) is read as
        one contiguous slice, which is much faster than a point selection.
        """
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        dim = self.meta.dim
        if rows.size == 0:
            return np.empty((0, dim), dtype=np.float32)
        n = len(self)
        if rows.min() < 0 or rows.max() >= n:
            bad = int(rows[(rows < 0) | (rows >= n)][0])
            raise IndexError(f"{self.path}: row {bad} is out of range (the file has {n} rows)")
        unique, inverse = np.unique(rows, return_inverse=True)
        first, last = int(unique[0]), int(unique[-1])
        span = last - first + 1
        if span <= 2 * unique.size + 1024:
            block = self._emb[first : last + 1]
            picked = block if span == unique.size else block[unique - first]
        else:  # one stored chunk at a time: a point selection over the whole file holds many at once
            step = self._emb.chunks[0] if self._emb.chunks else len(unique)
            picked = np.empty((unique.size, dim), dtype=np.float32)
            bounds = np.flatnonzero(np.diff(unique // step)) + 1
            for lo, hi in zip(np.concatenate([[0], bounds]), np.concatenate([bounds, [unique.size]])):
                a, b = int(unique[lo]), int(unique[hi - 1])
                picked[lo:hi] = self._emb[a : b + 1][unique[lo:hi] - a]
        return np.ascontiguousarray(picked[inverse], dtype=np.float32)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._file.close()

    def __enter__(self) -> "Hdf5Reader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


WARNING_ATTR = "warning"


def set_warning(path: str | Path, text: str) -> None:
    """Add the ``warning`` attribute to a finished file, in place (a few bytes of metadata;
    callers do this before they record the file as done, so a crash here means the file is
    made again), then fsync."""
    import h5py

    raw = GuardedFile(path, "r+b")  # a full disk must not reach HDF5 (see formats/hdf5_io.py)
    try:
        with h5py.File(raw, "r+") as f:
            f.attrs[WARNING_ATTR] = text
        raw.fsync()
    finally:
        raw.close()
    if raw.error is not None:
        raise OutputWriteError(path, raw.error)


def read_warning(path: str | Path) -> str | None:
    """The ``warning`` attribute of an HDF5 embeddings file, or ``None`` (also for other files)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            value = f.attrs.get(WARNING_ATTR)
    except OSError:
        return None
    return _text(value) if value is not None else None


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return "" if value is None else str(value)
