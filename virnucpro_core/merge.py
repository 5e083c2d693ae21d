"""Merge nucleotide and protein embeddings by ID, streaming, never misaligned.

The classifier's input row is ``concat(DNABERT-S row, ESM row)`` of one frame
(nucleotide columns first, as the original's ``torch.cat((nucleotide, protein))``),
in nucleotide-file order, as the original writes it.

The original ``merge_data`` differs in one way we do not copy: it prints a warning
for an ID missing from the protein file, skips its row, but still writes *all*
nucleotide IDs next to the shorter data tensor, so every row after the first gap is
labelled with the wrong ID. Here an ID found in only one file is counted in
:class:`MergeStats` (with examples) and left out of both IDs and rows together, and
``strict=True`` refuses to merge at all. Duplicate IDs in either input are an error,
since a merge by ID cannot tell which row is meant.

Memory does not grow with the files (100 million frames is an ordinary input). Files
made by ``predict`` hold the same IDs in the same order (both embedding stages read
prepare's frames in file order), which one pass over the two ID columns side by side
proves; then rows are simply read in step. Any other pair of files is joined by
bounded external sorting (:mod:`virnucpro_core.external_sort`): both ``(id, row)``
lists are sorted by ID, walked together (which also finds duplicates), and the matched
``(nucleotide row, protein row)`` pairs, sorted back into nucleotide order, wait in a
temporary file (16 bytes per frame) read alongside the nucleotide batches. Uniqueness
is proved the same way for aligned files (one sorted ID list). The temporary files go
to ``workdir`` (the output directory in ``merge`` and ``classify``).
"""

from __future__ import annotations

import heapq
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Iterable, Iterator

import numpy as np

from virnucpro_core.errors import InputError
from virnucpro_core.external_sort import external_sort
from virnucpro_core.formats.base import EmbeddingMeta, EmbeddingReader

if TYPE_CHECKING:
    from virnucpro_core.registry import Registry

#: How many example IDs :class:`MergeStats` keeps of each kind.
EXAMPLES = 5


@dataclass(frozen=True)
class MergeStats:
    """Counts of a merge; ``*_examples`` are the first few IDs of each kind, in file order."""

    nucleotide: int
    protein: int
    merged: int
    missing_in_protein: int
    missing_in_nucleotide: int
    missing_in_protein_examples: tuple[str, ...] = ()
    missing_in_nucleotide_examples: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        """Every ID is in both files."""
        return self.missing_in_protein == 0 and self.missing_in_nucleotide == 0

    def problems(self) -> list[str]:
        """One sentence per kind of unmatched ID (empty when complete)."""
        lines = []
        if self.missing_in_protein:
            lines.append(
                f"{self.missing_in_protein} nucleotide IDs have no protein embedding "
                f"(e.g. {', '.join(self.missing_in_protein_examples)})"
            )
        if self.missing_in_nucleotide:
            lines.append(
                f"{self.missing_in_nucleotide} protein IDs have no nucleotide embedding "
                f"(e.g. {', '.join(self.missing_in_nucleotide_examples)})"
            )
        return lines

    def summary(self) -> str:
        text = f"merged {self.merged} of {self.nucleotide} nucleotide and {self.protein} protein embeddings"
        return "; ".join([text, *self.problems()])


def _name(reader: EmbeddingReader, fallback: str) -> str:
    return str(getattr(reader, "path", fallback))


#: IDs read at a time when the ID columns are compared or sorted (a few MB of strings).
ID_BATCH = 8192
#: Matched row pairs read at a time from the pairs file of an unaligned merge.
PAIR_BLOCK = 65536


def iter_ids(reader: EmbeddingReader, batch_size: int = ID_BATCH) -> Iterator[list[str]]:
    """A reader's IDs in file order, a batch at a time.

    Uses the reader's ``iter_ids`` when it has one (HDF5 streams them); a format without
    it (a third-party one, or ``.pt``, which holds its file whole anyway) gives ``ids()``.
    """
    stream = getattr(reader, "iter_ids", None)
    if stream is not None:
        yield from stream(batch_size)
        return
    ids = reader.ids()
    for start in range(0, len(ids), batch_size):
        yield ids[start : start + batch_size]


def _numbered(reader: EmbeddingReader) -> Iterator[tuple[str, int]]:
    row = 0
    for batch in iter_ids(reader):
        yield from zip(batch, range(row, row + len(batch)))
        row += len(batch)


def _duplicate(where: str, sid: str, first: int, second: int) -> InputError:
    return InputError(
        f"{where}: ID {sid!r} occurs twice (rows {first} and {second}); a merge by ID needs unique IDs, "
        "so remake the file from a FASTA with unique headers"
    )


def _sorted_unique(reader: EmbeddingReader, where: str, workdir: Path, max_in_memory: int | None) -> Iterator[tuple[str, int]]:
    """``(id, row)`` of a file sorted by ID; a repeated ID raises, naming its first two rows."""
    previous: tuple[str, int] | None = None
    for item in external_sort(_numbered(reader), key=None, directory=workdir, max_in_memory=max_in_memory):
        if previous is not None and previous[0] == item[0]:
            raise _duplicate(where, item[0], previous[1], item[1])
        previous = item
        yield item


def _same_ids(nucleotide: EmbeddingReader, protein: EmbeddingReader) -> bool:
    """Whether both files hold the same IDs in the same order (what ``predict`` writes)."""
    if len(nucleotide) != len(protein):
        return False
    for a, b in zip(iter_ids(nucleotide), iter_ids(protein)):
        if a != b:
            return False
    return True


class _Examples:
    """The first :data:`EXAMPLES` IDs by row, kept while rows arrive in any order."""

    def __init__(self) -> None:
        self.count = 0
        self._heap: list[tuple[int, str]] = []  # (-row, id): the largest kept row on top

    def add(self, sid: str, row: int) -> None:
        self.count += 1
        if len(self._heap) < EXAMPLES:
            heapq.heappush(self._heap, (-row, sid))
        elif -self._heap[0][0] > row:
            heapq.heapreplace(self._heap, (-row, sid))

    def ids(self) -> tuple[str, ...]:
        return tuple(sid for _, sid in sorted(self._heap, reverse=True))


def _write_pairs(pairs: Iterable[tuple[int, int]], workdir: Path) -> IO[bytes]:
    """``(nucleotide row, protein row)`` pairs as int64, in the order given, in an anonymous file."""
    handle = tempfile.TemporaryFile(dir=workdir, prefix=".virnucpro-merge-")
    try:
        block: list[tuple[int, int]] = []
        for pair in pairs:
            block.append(pair)
            if len(block) >= PAIR_BLOCK:
                handle.write(np.asarray(block, dtype=np.int64).tobytes())
                block = []
        if block:
            handle.write(np.asarray(block, dtype=np.int64).tobytes())
    except BaseException:
        handle.close()
        raise
    return handle


def merged_meta(nucleotide: EmbeddingMeta, protein: EmbeddingMeta) -> EmbeddingMeta:
    """Meta of the merged file: widths add up; each side's provenance goes to ``extra``."""
    extra = {}
    for side, meta in (("nucleotide", nucleotide), ("protein", protein)):
        for name in ("backend", "version", "package_version", "model"):
            value = getattr(meta, name)
            if value:
                extra[f"{side}_{name}"] = value
        extra[f"{side}_dim"] = str(meta.dim)
    return EmbeddingMeta(dim=nucleotide.dim + protein.dim, modality="merged", extra=extra)


class Merger:
    """Iterate ``(ids, merged rows)`` batches of two open readers.

    ``stats`` is computed from the ID columns when the merger is built, so a caller can
    refuse an incomplete merge before reading any embedding. Iterating again starts
    over. Temporary files (only for files in different orders) go to ``workdir``
    (default: the system's temporary directory); :meth:`close` removes them at once.
    """

    def __init__(self, nucleotide: EmbeddingReader, protein: EmbeddingReader, batch_size: int = 4096, *,
                 workdir: str | Path | None = None, max_in_memory: int | None = None) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.nucleotide = nucleotide
        self.protein = protein
        self.batch_size = batch_size
        self._nuc_name = nuc_name = _name(nucleotide, "nucleotide embeddings")
        self._prot_name = prot_name = _name(protein, "protein embeddings")
        for reader, name, want, other in ((nucleotide, nuc_name, "nucleotide", "first"), (protein, prot_name, "protein", "second")):
            if reader.meta.modality != want:
                raise InputError(
                    f"{name}: holds {reader.meta.modality} embeddings, but the {other} file of a merge must hold {want} "
                    "embeddings (nucleotide file first, then protein)"
                )
        workdir = Path(workdir) if workdir is not None else Path(tempfile.gettempdir())
        self._pairs: IO[bytes] | None = None
        self.aligned = _same_ids(nucleotide, protein)
        if self.aligned:
            for _ in _sorted_unique(nucleotide, nuc_name, workdir, max_in_memory):
                pass
            n = len(nucleotide)
            self.stats = MergeStats(nucleotide=n, protein=n, merged=n, missing_in_protein=0, missing_in_nucleotide=0)
        else:
            self.stats = self._join(workdir, max_in_memory)
        if self.stats.merged == 0 and self.stats.nucleotide and self.stats.protein:
            first_nuc = next(iter_ids(nucleotide, 1))[0]
            first_prot = next(iter_ids(protein, 1))[0]
            raise InputError(
                f"{nuc_name} and {prot_name} share no ID (e.g. {first_nuc!r} vs {first_prot!r}); "
                "are they from the same prepared FASTA?"
            )
        self.meta = merged_meta(nucleotide.meta, protein.meta)

    def _join(self, workdir: Path, max_in_memory: int | None) -> MergeStats:
        """Sort both ID lists, walk them together, keep the matched row pairs in nucleotide order."""
        missing_p, missing_n = _Examples(), _Examples()
        nuc = _sorted_unique(self.nucleotide, self._nuc_name, workdir, max_in_memory)
        prot = _sorted_unique(self.protein, self._prot_name, workdir, max_in_memory)

        def matched() -> Iterator[tuple[int, int]]:
            a, b = next(nuc, None), next(prot, None)
            while a is not None and b is not None:
                if a[0] == b[0]:
                    yield a[1], b[1]
                    a, b = next(nuc, None), next(prot, None)
                elif a[0] < b[0]:
                    missing_p.add(*a)
                    a = next(nuc, None)
                else:
                    missing_n.add(*b)
                    b = next(prot, None)
            while a is not None:
                missing_p.add(*a)
                a = next(nuc, None)
            while b is not None:
                missing_n.add(*b)
                b = next(prot, None)

        self._pairs = _write_pairs(external_sort(matched(), key=None, directory=workdir, max_in_memory=max_in_memory), workdir)
        merged = self._pairs.tell() // 16
        return MergeStats(
            nucleotide=merged + missing_p.count,
            protein=merged + missing_n.count,
            merged=merged,
            missing_in_protein=missing_p.count,
            missing_in_nucleotide=missing_n.count,
            missing_in_protein_examples=missing_p.ids(),
            missing_in_nucleotide_examples=missing_n.ids(),
        )

    def close(self) -> None:
        """Remove the temporary pairs file (also done when the merger is garbage-collected)."""
        if self._pairs is not None:
            self._pairs.close()

    def __iter__(self) -> Iterator[tuple[list[str], np.ndarray]]:
        if self.aligned:
            yield from self._in_step()
        else:
            yield from self._by_pairs()

    def _in_step(self) -> Iterator[tuple[list[str], np.ndarray]]:
        batches = zip(self.nucleotide.iter_batches(self.batch_size), self.protein.iter_batches(self.batch_size))
        for (ids, nuc_rows), (prot_ids, prot_rows) in batches:
            if ids != prot_ids:
                raise InputError(f"{self._nuc_name} and {self._prot_name} changed while being merged; merge them again")
            yield ids, np.concatenate([nuc_rows, prot_rows], axis=1)

    def _by_pairs(self) -> Iterator[tuple[list[str], np.ndarray]]:
        assert self._pairs is not None
        handle = self._pairs
        handle.seek(0)
        pending = np.empty((0, 2), dtype=np.int64)
        exhausted = False
        start = 0
        for ids, nuc_rows in self.nucleotide.iter_batches(self.batch_size):
            stop = start + len(ids)
            while not exhausted and (len(pending) == 0 or pending[-1, 0] < stop):
                block = np.frombuffer(handle.read(16 * PAIR_BLOCK), dtype=np.int64).reshape(-1, 2)
                exhausted = len(block) < PAIR_BLOCK
                pending = np.concatenate([pending, block]) if len(pending) else block
            take = int(np.searchsorted(pending[:, 0], stop))
            here, pending = pending[:take], pending[take:]
            start_row, start = start, stop
            if not len(here):
                continue
            local = here[:, 0] - start_row
            if len(local) != len(ids):
                ids = [ids[i] for i in local.tolist()]
                nuc_rows = nuc_rows[local]
            prot_rows = self.protein.read_rows(here[:, 1])
            yield ids, np.concatenate([nuc_rows, prot_rows], axis=1)


def merge_embeddings(
    nucleotide: EmbeddingReader, protein: EmbeddingReader, batch_size: int = 4096
) -> tuple[Iterator[tuple[list[str], np.ndarray]], MergeStats]:
    """``(batches, stats)`` of a merge; ``stats`` is final before any row is read."""
    merger = Merger(nucleotide, protein, batch_size)
    return iter(merger), merger.stats


def merge_files(
    nucleotide_path: str | Path,
    protein_path: str | Path,
    out_path: str | Path,
    *,
    registry: "Registry | None" = None,
    nucleotide_format: str | None = None,
    protein_format: str | None = None,
    out_format: str | None = None,
    batch_size: int = 4096,
    strict: bool = False,
) -> MergeStats:
    """Merge two embedding files into ``out_path`` in any registered format.

    Formats come from the names given or the file suffixes. With ``strict`` an ID
    found in only one file is an :class:`InputError` and nothing is written; without
    it the unmatched IDs are left out and reported in the returned stats.
    """
    if registry is None:
        from virnucpro_core.registry import get_registry

        registry = get_registry()
    out_path = Path(out_path)
    nuc_fmt = registry.format_for_path(nucleotide_path, nucleotide_format)
    prot_fmt = registry.format_for_path(protein_path, protein_format)
    out_fmt = registry.format_for_path(out_path, out_format)
    with nuc_fmt.open_reader(Path(nucleotide_path)) as nucleotide, prot_fmt.open_reader(Path(protein_path)) as protein:
        merger = Merger(nucleotide, protein, batch_size, workdir=out_path.parent if out_path.parent.is_dir() else None)
        if strict and not merger.stats.complete:
            raise InputError(f"{nucleotide_path} and {protein_path} do not hold the same IDs: {'; '.join(merger.stats.problems())}")
        out_path.parent.mkdir(parents=True, exist_ok=True)
        with out_fmt.open_writer(out_path, merger.meta) as writer:
            for ids, rows in merger:
                writer.write(ids, rows)
    return merger.stats
