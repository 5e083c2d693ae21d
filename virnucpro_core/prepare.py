"""The ``prepare`` stage: chunk every input record and keep its stop-free frames.

Output is byte-identical to the original VirNucPro's preprocessing (see
:mod:`virnucpro_core.chunking` and :mod:`virnucpro_core.translate` for the rules),
made in one streaming pass: records are read one at a time, their chunks are gathered
into batches of about a megabase and translated together with numpy, and each batch is
written out before the next is read. Memory stays flat however large the input is
(beyond the current record and the set of IDs used to refuse duplicates).

All four outputs are written under temporary names and renamed only when the whole
input has been processed, so an error never leaves a half-written file behind.
"""

from __future__ import annotations

import logging
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from virnucpro_core.atomic import atomic_open
from virnucpro_core.chunking import chunk_starts
from virnucpro_core.errors import InputError
from virnucpro_core.seqio import (
    RecordStream,
    describe_bad_character,
    display_name,
    first_non_nucleotide,
    format_fasta_wrapped,
    input_stem,
    is_binary_character,
    is_nucleotide,
)
from virnucpro_core.translate import translate_joined

log = logging.getLogger(__name__)

#: Bases of chunk sequence translated per numpy batch (bounds memory, amortises overhead).
BATCH_BASES = 1 << 20


@dataclass(frozen=True)
class PrepareResult:
    """Where ``prepare_file`` wrote its outputs and what it counted."""

    chunked: Path
    nucleotide: Path
    protein: Path
    sequences_tsv: Path
    sequences: int
    bases: int
    chunks: int
    frames: int
    empty_skipped: int


def output_paths(input: str | Path, outdir: Path, chunk_size: int) -> tuple[Path, Path, Path, Path]:
    """The chunk, nucleotide, protein and sequence-table paths ``prepare_file`` writes."""
    stem = input_stem(input)
    outdir = Path(outdir)
    return (
        outdir / f"{stem}_chunked{chunk_size}.fa",
        outdir / f"{stem}_identified_nucleotide.fa",
        outdir / f"{stem}_identified_protein.faa",
        outdir / f"{stem}_sequences.tsv",
    )


def prepare_file(input: str | Path, outdir: Path, chunk_size: int = 500, *, progress: bool = False) -> PrepareResult:
    """Chunk ``input`` (FASTA/FASTQ, plain or compressed, ``-`` for stdin) and write the frames the models see.

    Writes ``<stem>_chunked<N>.fa`` (60-column FASTA, case preserved),
    ``<stem>_identified_nucleotide.fa`` and ``<stem>_identified_protein.faa`` (one line
    per sequence, IDs ``<id>_chunk_<k>F1`` .. ``R3``), and ``<stem>_sequences.tsv``
    (``id  length  chunks`` for every input record, in input order).

    ``progress`` shows a tqdm bar of bases processed on stderr when it is a terminal.

    Raises :class:`InputError` for an empty file, a file without records, binary data,
    a non-nucleotide (e.g. protein) record, or a duplicated record ID; nothing is left
    in ``outdir`` then. Empty records are skipped with a warning (the original crashes
    on them) and still listed in the table with 0 chunks.
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    outdir = Path(outdir)
    paths = output_paths(input, outdir, chunk_size)
    with RecordStream(input) as stream:
        if stream.empty:
            raise InputError(f"{stream.name} is empty; give a FASTA or FASTQ file with at least one sequence")
        if stream.format is None:
            raise InputError(f"{stream.name} contains no records (only blank lines); give a FASTA or FASTQ file with at least one sequence")
        outdir.mkdir(parents=True, exist_ok=True)
        with ExitStack() as stack:
            handles = [stack.enter_context(atomic_open(path)) for path in paths]
            bar = None
            if progress:
                from tqdm import tqdm

                # disable=None: no bar when stderr is not a terminal (log files stay clean).
                bar = stack.enter_context(
                    tqdm(desc=f"prepare {stream.name}", unit="bp", unit_scale=True, file=sys.stderr, leave=False, disable=None)
                )
            counts = _Writer(stream.name, chunk_size, handles, bar).run(stream)
    if counts.empty_skipped:
        log.warning("%s: skipped %d empty record(s) (length 0); they are listed in %s with 0 chunks",
                    display_name(input), counts.empty_skipped, paths[3].name)
    return PrepareResult(*paths, counts.sequences, counts.bases, counts.chunks, counts.frames, counts.empty_skipped)


class _Writer:
    """Holds one batch of chunks at a time and the running counts."""

    def __init__(self, name: str, chunk_size: int, handles, bar):
        self.name = name
        self.size = chunk_size
        self.chunk_out, self.nuc_out, self.prot_out, self.tsv_out = handles
        self.bar = bar
        self.sequences = self.bases = self.chunks = self.frames = self.empty_skipped = 0
        self._seen: dict[str, int] = {}
        self._ids: list[str] = []  # the current batch of chunks (cleared in place by _flush)
        self._seqs: list[str] = []
        self._rows: list[str] = []  # sequence-table rows not yet written
        self._pending = 0
        self._pending_bases = 0

    def run(self, stream: RecordStream) -> "_Writer":
        # The loop runs once per record (millions for reads): keep it lean.
        self.tsv_out.write("id\tlength\tchunks\n")
        size, seen, rows = self.size, self._seen, self._rows
        ids, seqs = self._ids, self._seqs
        for record in stream:
            self.sequences += 1
            record_id, seq = record.id, record.seq
            if record_id in seen or not is_nucleotide(seq):
                self._check(record_id, seq)  # raises with the details
            seen[record_id] = self.sequences
            length = len(seq)
            if length <= size:
                if length == 0:
                    rows.append(f"{record_id}\t0\t0\n")
                    self._empty(record_id)
                    if len(rows) >= 65536:  # many empty records: do not let the table pile up
                        self._flush()
                    continue
                rows.append(f"{record_id}\t{length}\t1\n")
                ids.append(f"{record_id}_chunk_1")
                seqs.append(seq)
                self._pending_bases += length
            else:
                starts = chunk_starts(length, size)
                rows.append(f"{record_id}\t{length}\t{len(starts)}\n")
                for k, start in enumerate(starts, start=1):
                    ids.append(f"{record_id}_chunk_{k}")
                    seqs.append(seq[start : start + size])  # slicing clips the last chunk
                    self._pending_bases += size
                    if self._pending_bases >= BATCH_BASES:
                        self._flush()
            self.bases += length
            self._pending += length
            if self._pending_bases >= BATCH_BASES:
                self._flush()
        self._flush()
        return self

    def _empty(self, record_id: str) -> None:
        self.empty_skipped += 1
        level = logging.WARNING if self.empty_skipped <= 5 else logging.DEBUG
        log.log(level, "%s: record '%s' is empty (length 0); skipped", self.name, record_id)

    def _check(self, record_id: str, seq: str) -> None:
        previous = self._seen.get(record_id)
        if previous is not None:
            raise InputError(
                f"{self.name}: record ID '{record_id}' occurs twice (records {previous} and {self.sequences}), "
                "which would make chunk IDs ambiguous; make the IDs unique (e.g. `seqkit rename`) and run again"
            )
        self._seen[record_id] = self.sequences
        bad = first_non_nucleotide(seq)
        if bad is not None:
            pos, ch = bad
            if is_binary_character(ch):
                raise InputError(
                    f"{self.name}: record '{record_id}' contains binary data ({describe_bad_character(ch)} at position {pos + 1}); "
                    "give a FASTA or FASTQ text file"
                )
            raise InputError(
                f"{self.name}: record '{record_id}' contains {describe_bad_character(ch)} at position {pos + 1}, "
                "which is not an IUPAC nucleotide code (is this a protein FASTA?); "
                "VirNucPro needs DNA: give nucleotide sequences, or replace unknown letters with N"
            )

    def _flush(self) -> None:
        self.tsv_out.write("".join(self._rows))
        self._rows.clear()
        if not self._ids:
            return
        ids, seqs = list(self._ids), list(self._seqs)
        self._ids.clear()
        self._seqs.clear()
        self._pending_bases = 0
        frames = translate_joined("".join(seqs).upper(), [len(seq) for seq in seqs])
        self.chunk_out.write("".join([format_fasta_wrapped(cid, seq) for cid, seq in zip(ids, seqs)]))
        nuc, prot = [], []
        for cid, chunk_frames in zip(ids, frames):
            for frame in chunk_frames:
                nuc.append(f">{cid}{frame.suffix}\n{frame.nucleotide}\n")
                prot.append(f">{cid}{frame.suffix}\n{frame.protein}\n")
        self.nuc_out.write("".join(nuc))
        self.prot_out.write("".join(prot))
        self.chunks += len(ids)
        self.frames += len(nuc)
        if self.bar is not None:
            self.bar.update(self._pending)
        self._pending = 0
