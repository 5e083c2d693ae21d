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

Memory: both ID lists and an ``id -> row`` index of the protein file are held (IDs
are small); embeddings are read one nucleotide batch at a time, the matching
protein rows with ``read_rows``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from virnucpro_core.errors import InputError
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


def _index(ids: list[str], where: str) -> dict[str, int]:
    index: dict[str, int] = {}
    for row, sid in enumerate(ids):
        if sid in index:
            raise InputError(
                f"{where}: ID {sid!r} occurs twice (rows {index[sid]} and {row}); a merge by ID needs unique IDs, "
                "so remake the file from a FASTA with unique headers"
            )
        index[sid] = row
    return index


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

    ``stats`` is computed from the ID lists when the merger is built, so a caller can
    refuse an incomplete merge before reading any embedding. Iterating again starts
    over.
    """

    def __init__(self, nucleotide: EmbeddingReader, protein: EmbeddingReader, batch_size: int = 4096) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.nucleotide = nucleotide
        self.protein = protein
        self.batch_size = batch_size
        nuc_name = _name(nucleotide, "nucleotide embeddings")
        prot_name = _name(protein, "protein embeddings")
        for reader, name, want, other in ((nucleotide, nuc_name, "nucleotide", "first"), (protein, prot_name, "protein", "second")):
            if reader.meta.modality != want:
                raise InputError(
                    f"{name}: holds {reader.meta.modality} embeddings, but the {other} file of a merge must hold {want} "
                    "embeddings (nucleotide file first, then protein)"
                )
        nuc_ids = nucleotide.ids()
        prot_ids = protein.ids()
        nuc_id_set = set(_index(nuc_ids, nuc_name))  # the index only proves uniqueness
        self._protein_index = _index(prot_ids, prot_name)
        missing_p = [sid for sid in nuc_ids if sid not in self._protein_index]
        missing_n = [sid for sid in prot_ids if sid not in nuc_id_set]
        merged = len(nuc_ids) - len(missing_p)
        self.stats = MergeStats(
            nucleotide=len(nuc_ids),
            protein=len(prot_ids),
            merged=merged,
            missing_in_protein=len(missing_p),
            missing_in_nucleotide=len(missing_n),
            missing_in_protein_examples=tuple(missing_p[:EXAMPLES]),
            missing_in_nucleotide_examples=tuple(missing_n[:EXAMPLES]),
        )
        if merged == 0 and nuc_ids and prot_ids:
            raise InputError(
                f"{nuc_name} and {prot_name} share no ID (e.g. {nuc_ids[0]!r} vs {prot_ids[0]!r}); "
                "are they from the same prepared FASTA?"
            )
        self.meta = merged_meta(nucleotide.meta, protein.meta)

    def __iter__(self) -> Iterator[tuple[list[str], np.ndarray]]:
        index = self._protein_index
        for ids, nuc_rows in self.nucleotide.iter_batches(self.batch_size):
            rows = np.fromiter((index.get(sid, -1) for sid in ids), dtype=np.int64, count=len(ids))
            keep = rows >= 0
            if not keep.any():
                continue
            if not keep.all():
                ids = [sid for sid, k in zip(ids, keep) if k]
                nuc_rows = nuc_rows[keep]
                rows = rows[keep]
            prot_rows = self.protein.read_rows(rows)
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
        merger = Merger(nucleotide, protein, batch_size)
        if strict and not merger.stats.complete:
            raise InputError(f"{nucleotide_path} and {protein_path} do not hold the same IDs: {'; '.join(merger.stats.problems())}")
        out_path.parent.mkdir(parents=True, exist_ok=True)
        with out_fmt.open_writer(out_path, merger.meta) as writer:
            for ids, rows in merger:
                writer.write(ids, rows)
    return merger.stats
