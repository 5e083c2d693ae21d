"""Value types of the embedding-format contract.

A format is a reader/writer pair keyed by name. Readers give random access by row
and streaming batches, so merge and conversion never hold a whole file of embeddings
in memory when the format allows it. Writers write to a temporary name and only
``commit`` renames it into place, so a crash never leaves a half-written file under
the final name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Mapping, Protocol, Sequence

if TYPE_CHECKING:
    import numpy as np

EMBEDDING_MODALITIES: tuple[str, ...] = ("protein", "nucleotide", "merged")


@dataclass(frozen=True)
class EmbeddingMeta:
    """What an embeddings file says about itself.

    ``modality`` is ``protein``, ``nucleotide`` or ``merged`` (nucleotide columns
    first, then protein, as the original merge does). ``backend``/``version`` name the
    backend (``esm2``/``v1``), ``model`` the weights it ran. Formats that cannot store
    some fields (the original ``.pt`` layouts) return empty strings for them.
    """

    dim: int
    modality: str
    backend: str = ""
    version: str = ""
    package_version: str = ""
    model: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)


class EmbeddingReader(Protocol):
    """Open embeddings file. Use as a context manager."""

    meta: EmbeddingMeta

    def __len__(self) -> int: ...

    def ids(self) -> list[str]:
        """All IDs, in file order."""
        ...

    def iter_batches(self, batch_size: int = 4096) -> Iterator[tuple[list[str], np.ndarray]]:
        """``(ids, float32 array)`` batches in file order."""
        ...

    def read_rows(self, rows: np.ndarray) -> np.ndarray:
        """Rows by index, in the order given (any order, repeats allowed)."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> "EmbeddingReader": ...

    def __exit__(self, *exc: object) -> None: ...


class EmbeddingWriter(Protocol):
    """Embeddings file being written. Use as a context manager: a clean exit commits,
    an exception aborts and removes the temporary file."""

    def write(self, ids: Sequence[str], embeddings: np.ndarray) -> None: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...

    def __enter__(self) -> "EmbeddingWriter": ...

    def __exit__(self, *exc: object) -> None: ...


class CommitOnExit:
    """Mixin for writers: a clean ``with`` exit commits, an exception aborts."""

    def commit(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def abort(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


@dataclass(frozen=True)
class EmbeddingFormat:
    """A registered format. ``suffixes`` (``(".h5", ".hdf5")``) let the CLI infer the
    format from a file name; ``package`` is filled in by the registry."""

    name: str
    suffixes: tuple[str, ...]
    open_reader: Callable[[Path], EmbeddingReader]
    open_writer: Callable[[Path, EmbeddingMeta], EmbeddingWriter]
    description: str = ""
    package: str = ""
    package_version: str = ""
