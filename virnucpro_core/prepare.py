"""The ``prepare`` stage: chunk every input record and keep its stop-free frames.

Output is byte-identical to the original VirNucPro's preprocessing (see
:mod:`virnucpro_core.chunking` and :mod:`virnucpro_core.translate` for the rules).
Memory stays flat however large the input is, even for one chromosome-sized record
or 100 million reads (beyond 8 bytes per FASTA record for pass 2, see below):

* The chunk rule needs a record's length before its first chunk can be placed, so a
  FASTA file is read twice. Pass 1 (:class:`_Checker`) scans it block by block
  (:meth:`~virnucpro_core.seqio.RecordStream.fasta_blocks`, never a whole record) and
  refuses what the original could not use (binary data, duplicated IDs, letters that are
  not nucleotides), recording each record's length. Duplicated IDs are found without a
  set of IDs: every ``(id, record number)`` goes to a bounded external sort
  (:class:`~virnucpro_core.external_sort.SortBuffer`, runs spilled to anonymous files in
  the output directory), read back at the end of the pass, or when another problem
  stops it, so that the first problem in file order is still the one reported. Pass 2 (:class:`_Emitter`) reads it
  again and cuts chunks from a sliding buffer of about one block plus one chunk.
  Compressed files are simply decompressed twice; stdin, which cannot be read twice, is
  kept (decompressed) in a temporary file in the output directory during pass 1 and
  removed afterwards, also on error.
* FASTQ reads are short: one pass with Biopython's parser, checked and written in
  batches.

Chunks are translated in batches of about half a megabase with numpy and each batch is
written before the next is read. Every check works on a whole block at C speed first and
goes record by record only when something is wrong, so the first problem in file order
is the one reported.

All four outputs are written under temporary names and renamed only when the whole
input has been processed, so an error never leaves a half-written file behind.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import logging
import operator
import os
import tempfile
from array import array
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from virnucpro_core.atomic import atomic_open
from virnucpro_core.chunking import chunk_count, chunk_plan, chunk_starts
from virnucpro_core.errors import InputError
from virnucpro_core.external_sort import SortBuffer, find_duplicates
from virnucpro_core.seqio import (
    RecordStream,
    describe_bad_character,
    display_name,
    first_non_nucleotide,
    format_fasta_joined,
    has_t_u,
    input_stem,
    is_binary_character,
    is_plain_sequence,
    mixed_t_u_error,
    not_nucleotide_hint,
    rna_as_dna,
    rna_warning,
    record_ids,
    sequence_from_lines,
)
from virnucpro_core.translate import identified_fasta

log = logging.getLogger(__name__)

#: Bases of chunk sequence translated per numpy batch (bounds memory, amortises overhead).
BATCH_BASES = 1 << 19
#: Empty records named one by one in the warnings (all are counted).
EMPTY_NAMED = 5


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
    #: records with U and no T, read as DNA (U as T)
    rna_records: int = 0


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

    Raises :class:`InputError` for an empty file, a file without records, a file whose
    records are all empty (no sequence data at all), a damaged compressed file, binary
    data, a non-nucleotide (e.g. protein) record, or a duplicated record ID; nothing is
    left in ``outdir`` then. Empty records among real ones are skipped with a warning
    (the original crashes on them) and still listed in the table with 0 chunks.
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    outdir = Path(outdir)
    paths = output_paths(input, outdir, chunk_size)
    name = display_name(input)
    with ExitStack() as stack:
        stream = stack.enter_context(RecordStream(input))
        if stream.empty:
            raise InputError(f"{stream.name} is empty; give a FASTA or FASTQ file with at least one sequence")
        if stream.format is None:
            raise InputError(f"{stream.name} contains no records (only blank lines); give a FASTA or FASTQ file with at least one sequence")
        outdir.mkdir(parents=True, exist_ok=True)
        checker = _Checker(name, outdir)
        stack.callback(checker.close)
        if stream.format == "fasta":
            if str(input) == "-":
                spool = stack.enter_context(_spool(outdir))
                with open(spool, "w", encoding="utf-8", errors="surrogateescape", newline="") as tee:
                    lengths = checker.checked(_survey, stream, checker, _Lengths(outdir), tee)
                second: str | Path = spool
            else:
                lengths = checker.checked(_survey, stream, checker, _Lengths(outdir))
                second = input
            stack.callback(lengths.close)
            stream.close()
            if not lengths.total:
                raise _no_sequence(stream.name, lengths.count)
        handles = [stack.enter_context(atomic_open(path)) for path in paths]
        bar = None
        if progress:
            from virnucpro_core.progress import progress_bar

            # a bar on a terminal; elsewhere a plain line now and then (log files stay clean)
            bar = stack.enter_context(progress_bar(desc=f"prepare {name}", unit="bp", unit_scale=True))
        emitter = _Emitter(name, chunk_size, handles, bar)
        if stream.format == "fasta":
            if bar is not None:
                bar.total = lengths.total
            with RecordStream(second) as again:
                _emit_fasta(again, lengths, emitter)
        else:
            checker.checked(_emit_fastq, stream, checker, emitter)
            if not emitter.bases:
                raise _no_sequence(stream.name, emitter.sequences)
        emitter.flush()
    # Logged once the run has succeeded: a file refused for having no sequence at all gets its one line only.
    for record_id in emitter.empty_ids:
        log.warning("%s: record '%s' is empty (length 0); skipped", name, record_id)
    if emitter.empty_skipped:
        log.warning("%s: skipped %d empty record(s) (length 0); they are listed in %s with 0 chunks",
                    name, emitter.empty_skipped, paths[3].name)
    if checker.rna_records:
        log.warning(rna_warning(name, checker.rna_records))
    return PrepareResult(*paths, emitter.sequences, emitter.bases, emitter.chunks, emitter.frames, emitter.empty_skipped,
                         checker.rna_records)


def _no_sequence(name: str, records: int) -> InputError:
    """The error for a file whose records are all empty: nothing to chunk, embed or score."""
    return InputError(f"{name} has {records} record(s) but no sequence data (every record is empty); "
                      "give a FASTA or FASTQ file with at least one sequence")


@contextlib.contextmanager
def _spool(outdir: Path):
    """A temporary file in ``outdir`` for stdin's text, removed on the way out whatever happens."""
    fd, name = tempfile.mkstemp(dir=outdir, prefix=".virnucpro-stdin-", suffix=".spool")
    os.close(fd)
    try:
        yield Path(name)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


class _Lengths:
    """The record lengths pass 1 finds, for pass 2: kept in order in an anonymous file
    (8 bytes a record) beside the outputs, so that memory does not grow with the records.

    Appended during pass 1 (the last one may still grow: a record spans blocks), then
    read back once, in order, with :meth:`take`.
    """

    BLOCK = 65536

    def __init__(self, workdir: Path) -> None:
        self._file = tempfile.TemporaryFile(dir=workdir, prefix=".virnucpro-lengths-")
        self._tail = array("q")  # not yet written; holds the last length while it may grow
        self.count = 0
        self.total = 0
        self._reading = False

    def extend(self, values: list[int]) -> None:
        self._tail.extend(values)
        self.count += len(values)
        self.total += sum(values)
        if len(self._tail) > 2 * self.BLOCK:
            self._file.write(self._tail[:-1].tobytes())
            del self._tail[:-1]

    def grow_last(self, bases: int) -> None:
        self._tail[-1] += bases
        self.total += bases

    def take(self, n: int) -> list[int]:
        """The next ``n`` lengths in record order (pass 2)."""
        if not self._reading:
            self._file.write(self._tail.tobytes())
            self._tail = array("q")
            self._file.seek(0)
            self._reading = True
        if n <= 0:
            return []
        out = array("q")
        out.frombytes(self._file.read(8 * n))
        return out.tolist()

    def close(self) -> None:
        self._file.close()


def _survey(stream: RecordStream, checker: _Checker, lengths: _Lengths, tee=None) -> _Lengths:
    """Pass 1 over a FASTA file: check every record and record their lengths in order."""
    for head, titles, bodies in stream.fasta_blocks(tee=tee):
        head_length, ids, record_lengths = checker.block(head, titles, bodies)
        if head_length:
            lengths.grow_last(head_length)
        if ids:
            lengths.extend(record_lengths)
            stream.last_id = checker.previous_id  # a read error names the last complete record
    return lengths


def _emit_fasta(stream: RecordStream, lengths: _Lengths, emitter: _Emitter) -> None:
    """Pass 2 over a FASTA file: cut and write the chunks, the record lengths known from pass 1."""
    plain = True
    index = 0  # records started so far
    for head, titles, bodies in stream.fasta_blocks():
        if plain and not (is_plain_sequence(head) and is_plain_sequence("".join(bodies))):
            plain = False  # spaces, tabs or other whitespace in the sequence lines: read them the exact way from here on
        if head and index:
            emitter.feed(head.replace("\n", "") if plain else sequence_from_lines(head))
        if not titles:
            continue
        if index:
            emitter.finish()
        count = len(titles)
        ids = record_ids(titles)
        if index + count > lengths.count:
            emitter.changed(ids[lengths.count - index] if index < lengths.count else ids[0])
        # Every record but the last is whole in this block; the last may go on in the next.
        if count > 1:
            seqs = [b.replace("\n", "") for b in bodies[:-1]] if plain else list(map(sequence_from_lines, bodies[:-1]))
            whole = lengths.take(count - 1)
            found = list(map(len, seqs))
            if found != whole:
                emitter.changed(next(i for i, a, b in zip(ids, found, whole) if a != b))
            emitter.whole(ids[:-1], seqs, whole)
        index += count
        emitter.start(ids[-1], lengths.take(1)[0])
        last = bodies[-1]
        emitter.feed(last.replace("\n", "") if plain else sequence_from_lines(last))
    if index:
        emitter.finish()
    if index != lengths.count:
        emitter.changed(None)


def _emit_fastq(stream: RecordStream, checker: _Checker, emitter: _Emitter) -> None:
    """The one pass over a FASTQ file: check and write batch by batch."""
    for titles, seqs in stream.fastq_batches():
        _, ids, lengths = checker.block("", titles, seqs)
        emitter.whole(ids, seqs, lengths)


_NEWLINES = operator.methodcaller("count", "\n")


class _Checker:
    """What ``prepare`` refuses, checked in file order so that the first problem is the one reported.

    Takes the text a block at a time (a record's sequence may span blocks); raw
    sequence text may still hold newlines (FASTA) or not (FASTQ). IDs go to an external
    sort, read back by :meth:`checked` to refuse duplicates. Records with U are counted
    (RNA) and a record with both T and U is refused; whether the open record has shown T
    or U is carried across blocks.
    """

    def __init__(self, name: str, workdir: Path):
        self.name = name
        self.ids = SortBuffer(None, workdir)  # (record id, record number)
        self.records = 0
        self.open_id: str | None = None  # the record that text without a header continues
        self.previous_id: str | None = None  # the record before it
        self.open_length = 0
        self.open_t = self.open_u = False  # letters the open record has shown so far
        self.rna_records = 0

    def block(self, head: str, titles: list[str], bodies: list[str]) -> tuple[int, list[str], list[int]]:
        """Check a block; return the bases ``head`` adds to the open record, and the new records' IDs and lengths."""
        # Printable titles hold no binary byte; plain sequence text needs no stripping; RNA goes record by record.
        text = "".join(bodies)
        if (is_plain_sequence(head) and is_plain_sequence(text) and "".join(titles).isprintable()
                and not self.open_u and not has_t_u(head)[1] and not has_t_u(text)[1]):
            ids = record_ids(titles)
            first = self.records + 1
            self.ids.extend(zip(ids, range(first, first + len(ids))))
            head_length = len(head) - head.count("\n")
            lengths = list(map(operator.sub, map(len, bodies), map(_NEWLINES, bodies)))
            self.records += len(ids)
            self.open_length += head_length
            if ids:
                self.previous_id = self.open_id if len(ids) == 1 else ids[-2]
                self.open_id, self.open_length = ids[-1], lengths[-1]
                self.open_t, self.open_u = has_t_u(bodies[-1])[0], False
            else:
                self.open_t = self.open_t or has_t_u(head)[0]
            return head_length, ids, lengths
        return self._one_by_one(head, titles, bodies)

    def _one_by_one(self, head: str, titles: list[str], bodies: list[str]) -> tuple[int, list[str], list[int]]:
        """The exact checks, record by record; raises :class:`InputError` at the first problem."""
        seq = sequence_from_lines(head)
        if seq:
            self._check_letters(self.open_id, seq, self.open_length)
            self._check_t_u(self.open_id, seq)
        head_length = len(seq)
        self.open_length += head_length
        ids, lengths = [], []
        for title, body in zip(titles, bodies):
            title = title.rstrip()
            bad = _binary(title)
            if bad is not None:
                raise InputError(
                    f"{self.name}: the header of the record after '{self.open_id}' contains binary data "
                    f"({describe_bad_character(bad)}); give a FASTA or FASTQ text file"
                    if self.open_id is not None else
                    f"{self.name}: the first record's header contains binary data "
                    f"({describe_bad_character(bad)}); give a FASTA or FASTQ text file"
                )
            record_id = title.split(None, 1)[0] if title.strip() else ""
            self.records += 1
            self.ids.add((record_id, self.records))
            seq = sequence_from_lines(body)
            self._check_letters(record_id, seq, 0)
            self.open_t = self.open_u = False
            self._check_t_u(record_id, seq)
            self.previous_id, self.open_id, self.open_length = self.open_id, record_id, len(seq)
            ids.append(record_id)
            lengths.append(len(seq))
        return head_length, ids, lengths

    def _check_t_u(self, record_id: str | None, seq: str) -> None:
        has_t, has_u = has_t_u(seq)
        if has_u and not self.open_u:
            self.rna_records += 1
        self.open_t, self.open_u = self.open_t or has_t, self.open_u or has_u
        if self.open_t and self.open_u:
            raise mixed_t_u_error(self.name, record_id)

    def checked(self, run, *args):
        """``run(*args)``, then the duplicate check; a problem ``run`` raises gives way to a
        duplicated ID seen before it, which the original order of checks reported first."""
        try:
            result = run(*args)
        except InputError as exc:
            raise self._duplicate() or exc from None
        duplicate = self._duplicate()
        if duplicate is not None:
            raise duplicate
        return result

    def _duplicate(self) -> InputError | None:
        """The duplicated ID whose second occurrence comes first among the records checked so far."""
        found = find_duplicates(self.ids).first
        if not found:
            return None
        record_id, first, second = found[0]
        return InputError(
            f"{self.name}: record ID '{record_id}' occurs twice (records {first} and {second}), "
            "which would make chunk IDs ambiguous; make the IDs unique (e.g. `seqkit rename`) and run again"
        )

    def close(self) -> None:
        self.ids.close()

    def _check_letters(self, record_id: str | None, seq: str, offset: int) -> None:
        bad = first_non_nucleotide(seq)
        if bad is None:
            return
        pos, ch = bad
        pos += offset
        if is_binary_character(ch):
            raise InputError(
                f"{self.name}: record '{record_id}' contains binary data ({describe_bad_character(ch)} at position {pos + 1}); "
                "give a FASTA or FASTQ text file"
            )
        raise InputError(
            f"{self.name}: record '{record_id}' contains {describe_bad_character(ch)} at position {pos + 1}, "
            f"which is not an IUPAC nucleotide code ({not_nucleotide_hint(ch)}); "
            "VirNucPro needs DNA: give nucleotide sequences, or replace unknown letters with N"
        )


def _binary(title: str) -> str | None:
    for ch in title:
        if is_binary_character(ch):
            return ch
    return None


class _Emitter:
    """Cuts records into chunks and writes them, a batch of about :data:`BATCH_BASES` at a time.

    Whole records go through :meth:`whole`; a record that arrives in pieces through
    :meth:`start`, :meth:`feed` and :meth:`finish`, its length known in advance. Only a
    sliding window of such a record is held: from the start of the next chunk to the
    end of the latest piece.
    """

    def __init__(self, name: str, chunk_size: int, handles, bar):
        self.name = name
        self.size = chunk_size
        self.chunk_out, self.nuc_out, self.prot_out, self.tsv_out = handles
        self.tsv_out.write("id\tlength\tchunks\n")
        self.bar = bar
        self.sequences = self.bases = self.chunks = self.frames = self.empty_skipped = 0
        self.empty_ids: list[str] = []  # the first EMPTY_NAMED empty records, warned about at the end
        self._ids: list[str] = []  # the current batch of chunks
        self._seqs: list[str] = []
        self._rows: list[str] = []  # sequence-table rows not yet written
        self._pending = 0  # chunk bases in the batch
        self._done = 0  # record bases the batch completes (for the progress bar)
        # The record being fed: ID, length, plan, next chunk, window and its start, bases so far.
        self._id: str | None = None
        self._length = self._next = self._at = self._got = 0
        self._plan = chunk_plan(0, chunk_size)
        self._window = ""

    def whole(self, ids: list[str], seqs: list[str], lengths: list[int]) -> None:
        """Records given whole (``lengths[i] == len(seqs[i])``)."""
        if not ids:
            return
        size = self.size
        total = sum(lengths)
        self.sequences += len(ids)
        self.bases += total
        self._done += total
        if min(lengths) > 0 and max(lengths) <= size:  # reads and contigs: one chunk each
            # Whole runs of records at a time, cut where the batch is full.
            ends = list(itertools.accumulate(lengths))
            i = done = 0
            while i < len(ids):
                j = max(bisect.bisect_right(ends, done + BATCH_BASES - self._pending, i), i + 1)
                self._ids += map("{}_chunk_1".format, ids[i:j])
                self._seqs += seqs[i:j]
                self._rows += map("{}\t{}\t1\n".format, ids[i:j], lengths[i:j])
                self._pending += ends[j - 1] - done
                done, i = ends[j - 1], j
                if self._pending >= BATCH_BASES:
                    self.flush()
        else:
            for record_id, seq, length in zip(ids, seqs, lengths):
                count = chunk_count(length, size)
                self._rows.append(f"{record_id}\t{length}\t{count}\n")
                if count <= 1:
                    if count:
                        self._ids.append(f"{record_id}_chunk_1")
                        self._seqs.append(seq)
                        self._pending += length
                    else:
                        self._empty(record_id)
                else:
                    # A whole record (a FASTA block holds it, or it is one FASTQ read) is cut in one go.
                    starts = chunk_starts(length, size)
                    self._ids += [f"{record_id}_chunk_{k}" for k in range(1, count + 1)]
                    self._seqs += [seq[start : start + size] for start in starts]  # slicing clips the last chunk
                    self._pending += (count - 1) * size + length - starts[-1]  # every chunk but the last is whole
                if self._pending >= BATCH_BASES:
                    self.flush()
        if len(self._rows) >= 65536:  # many empty records: do not let the table pile up
            self.flush()

    def start(self, record_id: str, length: int) -> None:
        self.sequences += 1
        self.bases += length
        self._id, self._length = record_id, length
        self._plan = chunk_plan(length, self.size)
        self._next = self._at = self._got = 0
        self._window = ""
        self._rows.append(f"{record_id}\t{length}\t{self._plan.count}\n")
        if length == 0:
            self._empty(record_id)

    def feed(self, piece: str) -> None:
        """The next bases of the started record."""
        if not piece:
            return
        self._got += len(piece)
        self._done += len(piece)
        if self._got > self._length:
            self.changed(self._id)
        window = self._window + piece if self._window else piece
        size, plan, at, got, length = self.size, self._plan, self._at, self._got, self._length
        k = self._next
        record_id = self._id
        while k < plan.count:
            start = plan.start(k)
            end = min(start + size, length)
            if end > got:
                break
            self._ids.append(f"{record_id}_chunk_{k + 1}")
            self._seqs.append(window[start - at : end - at])
            self._pending += end - start
            k += 1
            if self._pending >= BATCH_BASES:
                self.flush()
        self._next = k
        if k < plan.count:  # keep from the next chunk's start on
            start = plan.start(k)
            window = window[start - at :]
            self._at = start
        else:
            window = ""
        self._window = window

    def finish(self) -> None:
        """The started record is complete."""
        if self._got != self._length:
            self.changed(self._id)
        self._window = ""

    def changed(self, record_id: str | None) -> None:
        where = f" (at record '{record_id}')" if record_id is not None else ""
        raise InputError(f"{self.name} changed while it was being read{where}; "
                         "run again once nothing is writing to it")

    def _empty(self, record_id: str) -> None:
        self.empty_skipped += 1
        if len(self.empty_ids) < EMPTY_NAMED:
            self.empty_ids.append(record_id)

    def flush(self) -> None:
        self.tsv_out.write("".join(self._rows))
        self._rows.clear()
        if self._ids:
            ids, seqs = self._ids, self._seqs
            self._ids, self._seqs = [], []
            self._pending = 0
            joined = rna_as_dna("".join(seqs))  # RNA records: U read as T (mixed ones were refused in the check)
            lengths = list(map(len, seqs))
            self.chunk_out.write(format_fasta_joined(ids, joined, lengths))
            nucleotide, protein, frames = identified_fasta(ids, joined.upper(), lengths)
            self.nuc_out.write(nucleotide)
            self.prot_out.write(protein)
            self.chunks += len(ids)
            self.frames += frames
        if self.bar is not None and self._done:
            self.bar.update(self._done)
        self._done = 0
