"""Check an input file before a long run: is it usable, and what will ``prepare`` make of it?

:func:`validate_file` reads the whole file once, streaming, and never raises for a
problem in the content: it reports it. ``problems`` are what ``prepare`` would refuse
(``usable`` is False then), among them a file with records but no sequence data at
all; ``warnings`` are what it accepts but the user should know
(empty records it will skip, many ambiguous bases, RNA, sequences far shorter than a
chunk).
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from virnucpro_core.errors import InputError
from virnucpro_core.external_sort import SortBuffer, find_duplicates
from virnucpro_core.seqio import (
    RecordStream,
    describe_bad_character,
    display_name,
    first_non_nucleotide,
    has_t_u,
    is_binary_character,
    mixed_t_u_error,
    not_nucleotide_hint,
    rna_warning,
)

#: How many IDs a report lists per kind (counts are always complete).
LIST_CAP = 20
#: Above this fraction of non-ACGT bases a warning is given (codons with them are dropped).
AMBIGUOUS_WARN = 0.05
#: Sequences shorter than this give no codon at all.
MIN_USEFUL_LENGTH = 3
_LOWER = bytes(range(ord("a"), ord("z") + 1))
#: The smallest chunk size of the published models.
SHORTEST_MODEL_CHUNK = 300


@dataclass(frozen=True)
class ValidationReport:
    """What :func:`validate_file` found; ``usable`` is False when ``prepare`` would refuse the file."""

    path: str
    format: str | None
    compression: str | None
    records: int
    total_bases: int
    min_length: int | None
    max_length: int | None
    mean_length: float | None
    duplicate_ids: list[str] = field(default_factory=list)
    duplicate_count: int = 0
    empty_records: list[str] = field(default_factory=list)
    empty_count: int = 0
    non_nucleotide_records: list[str] = field(default_factory=list)
    non_nucleotide_count: int = 0
    ambiguous_bases: int = 0
    ambiguous_fraction: float = 0.0
    lowercase_fraction: float = 0.0
    short_records: int = 0
    usable: bool = False
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def render(self) -> str:
        """A readable multi-line report."""
        lines = [f"{self.path}: {'usable' if self.usable else 'NOT usable'}"]
        if self.format:
            lines.append(f"  format       {self.format} (compression: {self.compression})")
        lines.append(f"  records      {self.records}")
        if self.mean_length is not None:
            lines.append(f"  total bases  {self.total_bases}")
            lines.append(f"  length       min {self.min_length}, max {self.max_length}, mean {self.mean_length:.1f}")
            lines.append(f"  ambiguous    {self.ambiguous_bases} bases ({100 * self.ambiguous_fraction:.2f}% not A/C/G/T)")
            lines.append(f"  lower case   {100 * self.lowercase_fraction:.2f}% (kept in the chunk file, upper-cased for translation)")
        for title, items in (("Problems", self.problems), ("Warnings", self.warnings)):
            if items:
                lines.append(f"{title}:")
                lines += [f"  - {item}" for item in items]
        return "\n".join(lines)


def _ids(ids: list[str]) -> str:
    shown = ", ".join(f"'{i}'" for i in ids[:5])
    return shown + (", ..." if len(ids) > 5 else "")


def validate_file(path: str | Path) -> ValidationReport:
    """Read ``path`` (FASTA/FASTQ, plain or compressed, ``-`` for stdin) and report on it.

    Memory does not grow with the file: duplicate IDs are found by an external sort whose
    runs spill to the temporary directory (``TMPDIR``), about 50 bytes a record.
    """
    name = display_name(path)
    problems: list[str] = []
    warnings: list[str] = []
    fmt = compression = None
    records = total = ambiguous = lower = short = 0
    min_len: int | None = None
    max_len: int | None = None
    ids = SortBuffer(None, tempfile.gettempdir())  # (id, record number): duplicates found by an external sort
    empty: list[str] = []
    empty_count = 0
    non_nuc: list[str] = []
    non_nuc_count = 0
    first_bad: str | None = None
    first_hint = "is this a protein FASTA?"
    empty_id = 0
    rna = 0
    mixed: str | None = None
    try:
        with RecordStream(path) as stream:
            fmt, compression = stream.format, stream.compression
            if stream.empty:
                problems.append(f"{name} is empty")
            elif fmt is None:
                problems.append(f"{name} contains no records (only blank lines)")
            for record in stream:
                records += 1
                n = len(record.seq)
                if record.id == "":
                    empty_id += 1
                ids.add((record.id, records))
                if n == 0:
                    empty_count += 1
                    if len(empty) < LIST_CAP:
                        empty.append(record.id)
                    continue
                bad = first_non_nucleotide(record.seq)
                if bad is not None:
                    non_nuc_count += 1
                    if len(non_nuc) < LIST_CAP:
                        non_nuc.append(record.id)
                    if first_bad is None:
                        pos, ch = bad
                        kind = "binary data" if is_binary_character(ch) else "not an IUPAC nucleotide code"
                        first_bad = f"record '{record.id}' has {describe_bad_character(ch)} at position {pos + 1} ({kind})"
                        first_hint = not_nucleotide_hint(ch)
                    continue
                total += n
                min_len = n if min_len is None else min(min_len, n)
                max_len = n if max_len is None else max(max_len, n)
                if n < SHORTEST_MODEL_CHUNK:
                    short += 1
                data = record.seq.encode("ascii")
                has_t, has_u = has_t_u(record.seq)
                rna += has_u and not has_t
                if has_t and has_u and mixed is None:
                    mixed = record.id
                ambiguous += len(data.translate(None, b"ACGTUacgtu" if has_u and not has_t else b"ACGTacgt"))
                lower += n - len(data.translate(None, _LOWER))
    except InputError as exc:
        problems.append(str(exc))
    if mixed is not None:
        problems.append(str(mixed_t_u_error(name, mixed)).removeprefix(f"{name}: "))
    elif rna:
        warnings.append(rna_warning(name, rna).removeprefix(f"{name}: "))
    found = find_duplicates(ids, keep=LIST_CAP)
    dup_count, duplicates = found.count, [record_id for record_id, _, _ in found.first]
    if dup_count:
        problems.append(f"{dup_count} duplicate record ID(s), e.g. {_ids(duplicates)}: chunk IDs would be ambiguous; make IDs unique")
    if non_nuc_count:
        problems.append(
            f"{non_nuc_count} record(s) are not nucleotide sequences ({first_bad}); "
            f"VirNucPro needs DNA ({first_hint})"
        )
    if records == 0 and not problems:
        problems.append(f"{name} contains no records")
    if records and empty_count == records:
        problems.append(f"{name} has {records} record(s) but no sequence data (every record is empty); "
                        "prepare refuses it: give a FASTA or FASTQ file with at least one sequence")
    elif empty_count:
        warnings.append(f"{empty_count} empty record(s), e.g. {_ids(empty)}: prepare skips them")
    if empty_id:
        warnings.append(f"{empty_id} record(s) with an empty ID (a bare '>' line): their chunks are named '_chunk_<k>'")
    fraction = ambiguous / total if total else 0.0
    if fraction > AMBIGUOUS_WARN:
        warnings.append(
            f"{100 * fraction:.1f}% of bases are not A/C/G/T: codons containing them are dropped from translations, "
            "which shifts proteins (as in the original)"
        )
    if short:
        tiny = " some give no codon at all;" if min_len is not None and min_len < MIN_USEFUL_LENGTH else ""
        warnings.append(
            f"{short} sequence(s) shorter than {SHORTEST_MODEL_CHUNK} bp become one short chunk each;{tiny} "
            "the published models were trained on 300/500 bp chunks"
        )
    valid_records = records - empty_count - non_nuc_count
    return ValidationReport(
        path=name,
        format=fmt,
        compression=compression,
        records=records,
        total_bases=total,
        min_length=min_len,
        max_length=max_len,
        mean_length=(total / valid_records) if valid_records > 0 else None,
        duplicate_ids=duplicates,
        duplicate_count=dup_count,
        empty_records=empty,
        empty_count=empty_count,
        non_nucleotide_records=non_nuc,
        non_nucleotide_count=non_nuc_count,
        ambiguous_bases=ambiguous,
        ambiguous_fraction=fraction,
        lowercase_fraction=(lower / total) if total else 0.0,
        short_records=short,
        usable=not problems,
        problems=problems,
        warnings=warnings,
    )


#: Residues a record needs before its letters say anything about what it is.
MODALITY_MIN_LENGTH = 20
_NUCLEOTIDE_LETTERS = b"ACGTUNacgtun"


@dataclass(frozen=True)
class EmbedInput:
    """What :func:`check_embed_input` found in an ``embed`` input: records, and how many
    look like nucleotides although the backend embeds proteins (a warning only)."""

    records: int
    nucleotide_like: int = 0


def _duplicate_id(name: str, ids: SortBuffer) -> InputError | None:
    found = find_duplicates(ids).first
    if not found:
        return None
    record_id, first, second = found[0]
    return InputError(f"{name}: record ID '{record_id}' occurs twice (records {first} and {second}); "
                      "embeddings are looked up by ID, so make the IDs unique (e.g. `seqkit rename`) and run again")


def check_embed_input(path: str | Path, modality: str, backend_key: str, workdir: str | Path | None = None) -> EmbedInput:
    """Refuse what ``embed`` cannot embed, as ``predict`` does for its input, before any model loads.

    One line each for: an empty file or one without records, a duplicated ID (rows are
    looked up by ID), a letter that is no nucleotide code given to a nucleotide backend.
    For a protein backend only a file whose every record of 20 or more residues is made
    of A, C, G, T/U and N is refused (DNA given by mistake); a few such records among
    proteins are ambiguous (``ACGT`` is also alanine, cysteine, glycine, threonine) and
    come back in ``nucleotide_like`` for a warning. IDs are checked by an external sort
    spilling to ``workdir`` (default: the temporary directory), so memory does not grow
    with the input; the problem reported is still the first one in file order.
    """
    name = display_name(path)
    ids = SortBuffer(None, workdir or tempfile.gettempdir())  # (id, record number): bounded memory at any size
    records = nucleotide_like = long_records = 0
    first_like: str | None = None
    try:
        with RecordStream(path) as stream:
            if stream.empty or stream.format is None:
                raise InputError(f"{name} has no records; give a FASTA file with at least one sequence to embed")
            for record in stream:
                records += 1
                ids.add((record.id, records))
                if modality == "nucleotide":
                    bad = first_non_nucleotide(record.seq)
                    if bad is not None:
                        pos, ch = bad
                        raise InputError(
                            f"{name}: record '{record.id}' has {describe_bad_character(ch)} at position {pos + 1}, which is not "
                            f"a nucleotide code, but {backend_key} embeds nucleotides ({not_nucleotide_hint(ch)}); give nucleotide "
                            "sequences (prepare's *_identified_nucleotide.fa) or choose a protein backend"
                        )
                elif len(record.seq) >= MODALITY_MIN_LENGTH:
                    long_records += 1
                    if not record.seq.encode("ascii", "replace").translate(None, _NUCLEOTIDE_LETTERS):
                        nucleotide_like += 1
                        first_like = first_like or record.id
    except InputError as exc:  # a duplicated ID before the problem (or in its record) was the first problem
        raise _duplicate_id(name, ids) or exc from None
    duplicate = _duplicate_id(name, ids)
    if duplicate is not None:
        raise duplicate
    if records == 0:
        raise InputError(f"{name} has no records; give a FASTA file with at least one sequence to embed")
    if long_records and nucleotide_like == long_records:
        raise InputError(
            f"{name}: every record looks like DNA (only A, C, G, T/U, N; e.g. '{first_like}'), but {backend_key} embeds "
            "proteins; give protein sequences (prepare's *_identified_protein.faa) or choose a nucleotide backend"
        )
    return EmbedInput(records, nucleotide_like)
