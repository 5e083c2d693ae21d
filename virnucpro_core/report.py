"""Result files: per-frame scores, the per-chunk consensus, the per-sequence summary
and a FASTA of the sequences called viral.

The first two files keep the original tool's names, columns and bytes, because
existing users parse them:

``prediction_results.txt``
    ``Sequence_ID  Prediction  score1  score2``, tab-separated, one row per scored
    frame in the order the classifier saw them. ``score1``/``score2`` are the softmax
    probabilities of "others"/"virus" printed as ``str()`` of numpy float32 values
    (shortest text that reads back to the same float32: ``0.8789939``, ``1e-05``).
    ``Prediction`` is ``virus`` when ``score2 > score1`` and ``others`` otherwise: the
    original takes ``torch.max`` over the two columns, which returns the first index
    on a tie (and the index of a NaN, should one appear).

``prediction_results_highestscore.csv``
    Tab-separated despite its name: ``Modified_ID  Is_Virus``. The original reads the
    file above with pandas, groups rows by the frame ID minus its last two characters
    (the ``F1``..``R3`` suffix), i.e. by chunk, and writes ``max(score2) >=
    max(score1)`` per chunk as ``True``/``False``. Because pandas ``groupby`` sorts its
    keys, rows come **sorted by chunk ID as strings** (code-point order, so
    ``x_chunk_10`` precedes ``x_chunk_2``), not in input order. NaN scores are skipped
    by the maxima as pandas does; IDs holding ``"`` are quoted as pandas' CSV writer
    does. One deliberate difference: with no scored frame at all, recent pandas writes
    a meaningless header (``index  Sequence_ID ...``); we write ``Modified_ID
    Is_Virus``.

The per-sequence summary and the viral FASTA are our additions (see
:func:`write_sequence_summary`).

Everything streams, in memory that does not grow with the input. The consensus must
come out sorted by chunk ID: the frames of a chunk arrive together (prepare writes them
so), so they are first folded into one record per chunk, and those go through a bounded
external sort (:mod:`virnucpro_core.external_sort`, sorted runs spilled to anonymous
temporary files beside the output). The summary is in input order, the order
``predict`` scores frames in, so it is one pass over both files side by side; frames in
another order (a ``classify`` of other files) fall back to external sorts.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterator, NamedTuple, Sequence

import numpy as np

from virnucpro_core.atomic import atomic_open
from virnucpro_core.errors import ConfigError, InputError
from virnucpro_core.external_sort import external_sort

PREDICTIONS_NAME = "prediction_results.txt"
CONSENSUS_NAME = "prediction_results_highestscore.csv"
SUMMARY_NAME = "sequence_summary.tsv"
VIRAL_FASTA_NAME = "viral_sequences.fa"

PREDICTIONS_HEADER = ("Sequence_ID", "Prediction", "score1", "score2")
CONSENSUS_HEADER = ("Modified_ID", "Is_Virus")
SEQUENCES_HEADER = ("id", "length", "chunks")
SUMMARY_HEADER = (
    "sequence_id",
    "length",
    "chunks",
    "chunks_scored",
    "frames_scored",
    "viral_chunks",
    "viral_fraction",
    "max_virus_score",
    "mean_virus_score",
    "call",
)
FRAME_SUFFIXES = frozenset({"F1", "F2", "F3", "R1", "R2", "R3"})
CHUNK_SEPARATOR = "_chunk_"
FASTA_WIDTH = 60


# --------------------------------------------------------------------------- per-frame file


def prediction_label(score1: float, score2: float) -> str:
    """``virus`` or ``others`` exactly as ``torch.max(probs, 1)`` picks the index.

    Ties go to index 0 (``others``); a NaN wins the maximum, the first NaN on a tie.
    """
    if math.isnan(score1):
        return "others"
    if math.isnan(score2) or score2 > score1:
        return "virus"
    return "others"


def prediction_lines(ids: Sequence[str], probs: Any) -> str:
    """The ``prediction_results.txt`` lines of a batch (no header). ``probs`` is cast to
    float32, the original's dtype, because the printed text depends on it."""
    probs = np.asarray(probs, dtype=np.float32)
    if probs.ndim != 2 or probs.shape[1] != 2 or probs.shape[0] != len(ids):
        raise ValueError(f"expected probabilities of shape ({len(ids)}, 2), got {probs.shape}")
    lines = []
    for seq_id, (p0, p1) in zip(ids, probs):
        # str(), not format(): f"{np.float32}" prints the float64 widening (0.12100612372159958).
        lines.append(f"{seq_id}\t{prediction_label(float(p0), float(p1))}\t{p0!s}\t{p1!s}\n")
    return "".join(lines)


class PredictionWriter:
    """Write ``prediction_results.txt`` batch by batch, atomically.

    Use as a context manager and call :meth:`write` with each batch of frame IDs and
    their ``(n, 2)`` softmax probabilities (others, virus). The file appears under
    its final name only when the block exits without an exception.

    >>> with PredictionWriter(outdir / "prediction_results.txt") as out:   # doctest: +SKIP
    ...     out.write(["x_chunk_1F1"], np.array([[0.25, 0.75]], dtype=np.float32))
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.rows = 0
        self._stack: contextlib.ExitStack | None = None
        self._handle: IO[str] | None = None

    def __enter__(self) -> "PredictionWriter":
        self._stack = contextlib.ExitStack()
        self._handle = self._stack.enter_context(atomic_open(self.path, "w"))
        self._handle.write("\t".join(PREDICTIONS_HEADER) + "\n")
        return self

    def write(self, ids: Sequence[str], probs: Any) -> None:
        """Append one batch. ``probs`` is cast to float32, the original's dtype,
        because the printed text depends on it."""
        if self._handle is None:
            raise RuntimeError("PredictionWriter.write() called outside its with-block")
        self._handle.write(prediction_lines(ids, probs))
        self.rows += len(ids)

    def __exit__(self, exc_type, exc, tb) -> bool:
        stack, self._stack, self._handle = self._stack, None, None
        assert stack is not None
        return stack.__exit__(exc_type, exc, tb)


class PredictionRow(NamedTuple):
    """One row of ``prediction_results.txt``; ``line`` is its 1-based line number."""

    frame_id: str
    prediction: str
    score1: float
    score2: float
    line: int


def _tsv_rows(path: Path, header: tuple[str, ...], missing: str, wrong_header: str) -> Iterator[tuple[int, list[str]]]:
    """``(line number, fields)`` of a tab-separated file whose first line is ``header``.

    Blank lines are skipped (pandas skips them too). ``missing`` and ``wrong_header``
    finish the one-line errors for an absent file and an unexpected first line.
    """
    try:
        handle = open(path, encoding="utf-8", newline="")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file; {missing}") from None
    with handle:
        first = handle.readline().rstrip("\r\n")
        if tuple(first.split("\t")) != header:
            raise InputError(f"{path}: line 1 is {first[:80]!r}, {wrong_header}")
        for number, raw in enumerate(handle, start=2):
            text = raw.rstrip("\r\n")
            if text:
                yield number, text.split("\t")


def iter_predictions(path: str | Path) -> Iterator[PredictionRow]:
    """Stream the rows of a ``prediction_results.txt``, checking its shape."""
    path = Path(path)
    rows = _tsv_rows(
        path, PREDICTIONS_HEADER, "run `virnucpro predict` (or `classify`) first",
        f"expected the tab-separated header {', '.join(PREDICTIONS_HEADER)}; is this a prediction_results.txt?",
    )
    for number, fields in rows:
        if len(fields) != 4:
            raise InputError(f"{path}: line {number} has {len(fields)} tab-separated fields, expected 4")
        try:
            score1, score2 = float(fields[2]), float(fields[3])
        except ValueError:
            raise InputError(f"{path}: line {number}: scores {fields[2]!r}, {fields[3]!r} are not numbers") from None
        yield PredictionRow(fields[0], fields[1], score1, score2, number)


# --------------------------------------------------------------------------- helpers


def _nanmax(current: float, value: float) -> float:
    """Running maximum that skips NaN like pandas' ``Series.max()`` (NaN if all NaN)."""
    if math.isnan(value):
        return current
    if math.isnan(current) or value > current:
        return value
    return current


def _chunk_is_viral(max_score1: float, max_score2: float) -> bool:
    """The original consensus rule; a comparison with NaN is False, as in pandas."""
    return max_score2 >= max_score1


# --------------------------------------------------------------------------- consensus


def _chunk_maxima(prediction_results: str | Path) -> Iterator[tuple[str, float, float]]:
    """``(chunk id, max score1, max score2)`` per run of consecutive frames of one chunk.

    Frames of a chunk arrive together in what ``predict`` writes, so this usually gives
    one record per chunk; a chunk whose frames are scattered gives several, which the
    consensus combines after sorting.
    """
    for chunk_id, group in itertools.groupby(iter_predictions(prediction_results), key=lambda row: row.frame_id[:-2]):
        max1 = max2 = math.nan
        for row in group:
            max1, max2 = _nanmax(max1, row.score1), _nanmax(max2, row.score2)
        yield chunk_id, max1, max2


def write_consensus(
    prediction_results: str | Path, out: str | Path, *, max_in_memory: int | None = None
) -> int:
    """Write ``prediction_results_highestscore.csv`` as the original does; return its row count.

    Grouping key: the frame ID without its last two characters. ``Is_Virus`` is
    ``max(score2) >= max(score1)`` over the group. Rows sorted by key (pandas
    ``groupby`` order). See the module docstring for the details kept. Memory: at most
    ``max_in_memory`` per-chunk records (the rest is spilled to sorted runs beside ``out``).
    """
    out = Path(out)
    ordered = external_sort(_chunk_maxima(prediction_results), key=lambda item: item[0], directory=out.parent,
                            max_in_memory=max_in_memory)
    rows = 0
    with atomic_open(out, "w") as handle:
        # pandas' to_csv is csv.writer underneath: minimal quoting, "\n" line ends.
        writer = csv.writer(handle, delimiter="\t", quotechar='"', quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        writer.writerow(CONSENSUS_HEADER)
        for chunk_id, group in itertools.groupby(ordered, key=lambda item: item[0]):
            max1 = max2 = math.nan
            for _, score1, score2 in group:
                max1, max2 = _nanmax(max1, score1), _nanmax(max2, score2)
            writer.writerow((chunk_id, "True" if _chunk_is_viral(max1, max2) else "False"))
            rows += 1
    return rows


# --------------------------------------------------------------------------- sequence summary


@dataclass(frozen=True)
class FrameId:
    """A frame ID ``<sequence id>_chunk_<k><F|R><1-3>`` taken apart."""

    sequence_id: str
    chunk: int
    frame: str

    @property
    def chunk_id(self) -> str:
        return f"{self.sequence_id}{CHUNK_SEPARATOR}{self.chunk}"


def parse_frame_id(frame_id: str) -> FrameId | None:
    """Split a frame ID on its **last** ``_chunk_``; ``None`` when it has not that shape.

    Splitting on the last occurrence keeps sequence IDs that themselves contain
    ``_chunk_`` intact.
    """
    suffix = frame_id[-2:]
    chunk_id = frame_id[:-2]
    sequence_id, sep, index = chunk_id.rpartition(CHUNK_SEPARATOR)
    if suffix not in FRAME_SUFFIXES or not sep or not index.isdigit() or not index.isascii():
        return None
    return FrameId(sequence_id, int(index), suffix)


@dataclass(frozen=True)
class SummaryStats:
    """Counts from :func:`write_sequence_summary`, for stage accounting and logs."""

    sequences: int
    with_frames: int
    viral: int
    chunks_scored: int
    frames_scored: int


def _scored_frames(prediction_results: Path) -> Iterator[tuple[str, int, float, float]]:
    for row in iter_predictions(prediction_results):
        parsed = parse_frame_id(row.frame_id)
        if parsed is None:
            raise InputError(
                f"{prediction_results}: line {row.line}: frame ID {row.frame_id!r} is not "
                f"<sequence id>_chunk_<k><F|R><1-3>; was this file made by virnucpro?"
            )
        yield parsed.sequence_id, parsed.chunk, row.score1, row.score2


class _SequenceScores(NamedTuple):
    sequence_id: str
    chunks_scored: int
    frames_scored: int
    viral_chunks: int
    max_virus_score: float
    sum_best_virus: float
    n_best_virus: int
    max_chunk: int


class _OutOfOrder(Exception):
    """The frames are not in the order of the sequence table (see :func:`write_sequence_summary`)."""


def _per_sequence(frames: Iterator[tuple[str, int, float, float]]) -> Iterator[_SequenceScores]:
    """Fold frames grouped by sequence, chunks in increasing order, into one record per
    consecutive run of a sequence's frames; a chunk that comes back raises :class:`_OutOfOrder`."""
    for sequence_id, seq_frames in itertools.groupby(frames, key=lambda item: item[0]):
        chunks = n_frames = viral = n_best = max_chunk = 0
        best_overall = math.nan
        sum_best = 0.0
        for chunk, chunk_frames in itertools.groupby(seq_frames, key=lambda item: item[1]):
            if chunk <= max_chunk:
                raise _OutOfOrder(sequence_id)
            max1 = max2 = math.nan
            for _, _, score1, score2 in chunk_frames:
                max1, max2 = _nanmax(max1, score1), _nanmax(max2, score2)
                n_frames += 1
            chunks += 1
            max_chunk = max(max_chunk, chunk)
            viral += _chunk_is_viral(max1, max2)
            if not math.isnan(max2):
                sum_best += max2
                n_best += 1
            best_overall = _nanmax(best_overall, max2)
        yield _SequenceScores(sequence_id, chunks, n_frames, viral, best_overall, sum_best, n_best, max_chunk)


def _input_sequences(sequences_tsv: Path) -> Iterator[tuple[str, int, int, int]]:
    """(id, input ordinal, length, chunks) for each row of prepare's ``sequences.tsv``."""
    rows = _tsv_rows(sequences_tsv, SEQUENCES_HEADER, "run `virnucpro prepare` first",
                     "expected the header id, length, chunks")
    for number, fields in rows:
        try:
            if len(fields) != 3:
                raise ValueError
            yield fields[0], number, int(fields[1]), int(fields[2])
        except ValueError:
            raise InputError(f"{sequences_tsv}: line {number} is not <id><TAB><length><TAB><chunks>") from None


def _float32_text(value: float) -> str:
    return "NA" if math.isnan(value) else str(np.float32(value))


def write_sequence_summary(
    sequences_tsv: str | Path,
    prediction_results: str | Path,
    out: str | Path,
    *,
    min_viral_fraction: float = 0.5,
    max_in_memory: int | None = None,
) -> SummaryStats:
    """Write ``sequence_summary.tsv``: one row per input sequence, in input order.

    The original stops at chunks; this answers "is my read/contig viral?". Rule:

    - Every frame ID ``<sequence id>_chunk_<k><F|R><1-3>`` is mapped back to its
      chunk and sequence (split on the last ``_chunk_``).
    - A chunk is viral by the original consensus rule: the best virus score of its
      frames >= the best non-virus score (``max(score2) >= max(score1)``).
    - ``viral_fraction`` = viral chunks / chunks with at least one scored frame
      (chunks without a stop-free frame are not counted either way).
    - ``call`` is ``virus`` when ``viral_fraction >= min_viral_fraction`` (default 0.5,
      compared unrounded), ``others`` when it is lower, and ``no_frames`` when no frame
      of the sequence had a stop-free translation (nothing was scored).
    - ``max_virus_score`` is the highest ``score2`` of any frame;
      ``mean_virus_score`` the mean over scored chunks of each chunk's best
      ``score2``. Both are printed like the per-frame scores (float32 text) and are
      ``NA`` (with ``viral_fraction``) when nothing was scored.

    ``sequences_tsv`` is prepare's ``id  length  chunks`` table (every input
    sequence, in input order), so sequences without any scored frame appear too.
    Raises :class:`InputError` when the two files do not belong together.

    Memory does not depend on the input. Frames scored by ``predict`` come in input
    order (sequences as in the table, chunks increasing, a chunk's frames together), so
    both files are read once side by side. Frames in any other order are detected on
    the way (a sequence or a chunk that comes back, or a sequence the table lacks at
    that point) and the summary is then made again through external sorts by sequence
    ID, at most ``max_in_memory`` records held at a time. Either way the table's IDs
    are checked for duplicates by an external sort.
    """
    sequences_tsv, prediction_results, out = Path(sequences_tsv), Path(prediction_results), Path(out)
    if not 0.0 <= min_viral_fraction <= 1.0:
        raise ConfigError(f"--min-viral-fraction must lie between 0 and 1, got {min_viral_fraction}")
    workdir = out.parent
    summary = _Summary(sequences_tsv, prediction_results, min_viral_fraction)
    inputs = external_sort(_input_sequences(sequences_tsv), key=lambda s: s[0], directory=workdir, max_in_memory=max_in_memory)
    for _ in summary.unique(inputs):
        pass
    try:
        return summary.write(summary.in_input_order(), out)
    except _OutOfOrder:
        return summary.write(summary.sorted(workdir, max_in_memory), out)


class _Summary:
    """The two ways of making ``sequence_summary.tsv`` (see :func:`write_sequence_summary`)."""

    def __init__(self, sequences_tsv: Path, prediction_results: Path, min_viral_fraction: float) -> None:
        self.sequences_tsv = sequences_tsv
        self.prediction_results = prediction_results
        self.min_viral_fraction = min_viral_fraction

    def unique(self, inputs: Iterator[tuple[str, int, int, int]]) -> Iterator[tuple[str, int, int, int]]:
        """Pass through table rows sorted by ID, refusing a repeated ID."""
        previous: tuple[str, int, int, int] | None = None
        for item in inputs:
            if previous is not None and previous[0] == item[0]:
                raise InputError(
                    f"{self.sequences_tsv}: sequence ID {item[0]!r} appears on lines {previous[1]} and {item[1]}; "
                    f"IDs must be unique, rename the duplicates in the input"
                )
            previous = item
            yield item

    def row(self, seq_id: str, length: int, n_chunks: int, s: _SequenceScores | None) -> tuple[tuple[str, ...], bool, int, int]:
        """A summary row with (called virus, chunks scored, frames scored)."""
        if s is None:
            return (seq_id, str(length), str(n_chunks), "0", "0", "0", "NA", "NA", "NA", "no_frames"), False, 0, 0
        if s.max_chunk > n_chunks:
            raise InputError(
                f"{self.prediction_results}: sequence {seq_id!r} has a frame of chunk {s.max_chunk} but "
                f"{self.sequences_tsv} lists {n_chunks} chunks; the two files come from different runs"
            )
        fraction = s.viral_chunks / s.chunks_scored
        call = "virus" if fraction >= self.min_viral_fraction else "others"
        mean = s.sum_best_virus / s.n_best_virus if s.n_best_virus else math.nan
        row = (seq_id, str(length), str(n_chunks), str(s.chunks_scored), str(s.frames_scored), str(s.viral_chunks),
               f"{fraction:.4f}", _float32_text(s.max_virus_score), _float32_text(mean), call)
        return row, call == "virus", s.chunks_scored, s.frames_scored

    def _foreign(self, sequence_id: str) -> InputError:
        return InputError(
            f"{self.prediction_results}: sequence {sequence_id!r} was scored but is not in "
            f"{self.sequences_tsv}; the two files come from different runs"
        )

    def in_input_order(self) -> Iterator[tuple[tuple[str, ...], bool, int, int]]:
        """Both files side by side; raises :class:`_OutOfOrder` when the frames are not in table order."""
        scored = _per_sequence(_scored_frames(self.prediction_results))
        pending = next(scored, None)
        for seq_id, _, length, n_chunks in _input_sequences(self.sequences_tsv):
            if pending is not None and pending.sequence_id == seq_id:
                yield self.row(seq_id, length, n_chunks, pending)
                pending = next(scored, None)
            else:
                yield self.row(seq_id, length, n_chunks, None)
        if pending is not None:
            raise _OutOfOrder(pending.sequence_id)

    def sorted(self, workdir: Path, max_in_memory: int | None) -> Iterator[tuple[tuple[str, ...], bool, int, int]]:
        """Frames and table rows sorted by sequence ID, joined, then put back in table order."""
        frames = external_sort(_scored_frames(self.prediction_results), key=lambda f: (f[0], f[1]), directory=workdir,
                               max_in_memory=max_in_memory)
        scored = _per_sequence(frames)
        inputs = self.unique(external_sort(_input_sequences(self.sequences_tsv), key=lambda s: s[0], directory=workdir,
                                           max_in_memory=max_in_memory))

        def joined() -> Iterator[tuple[int, tuple[tuple[str, ...], bool, int, int]]]:
            pending = next(scored, None)
            for seq_id, ordinal, length, n_chunks in inputs:
                if pending is not None and pending.sequence_id < seq_id:
                    break  # a scored sequence that the table lacks
                if pending is None or pending.sequence_id != seq_id:
                    yield ordinal, self.row(seq_id, length, n_chunks, None)
                    continue
                yield ordinal, self.row(seq_id, length, n_chunks, pending)
                pending = next(scored, None)
            if pending is not None:
                raise self._foreign(pending.sequence_id)

        for _, result in external_sort(joined(), key=lambda r: r[0], directory=workdir, max_in_memory=max_in_memory):
            yield result

    @staticmethod
    def write(rows: Iterator[tuple[tuple[str, ...], bool, int, int]], out: Path) -> SummaryStats:
        counts = {"sequences": 0, "with_frames": 0, "viral": 0, "chunks_scored": 0, "frames_scored": 0}
        with atomic_open(out, "w") as handle:
            handle.write("\t".join(SUMMARY_HEADER) + "\n")
            for row, viral, chunks, n_frames in rows:
                counts["sequences"] += 1
                counts["with_frames"] += n_frames > 0
                counts["viral"] += viral
                counts["chunks_scored"] += chunks
                counts["frames_scored"] += n_frames
                handle.write("\t".join(row) + "\n")
        return SummaryStats(**counts)


class SummaryRow(NamedTuple):
    """One row of ``sequence_summary.tsv`` with its numbers parsed (NaN for ``NA``)."""

    sequence_id: str
    length: int
    chunks: int
    chunks_scored: int
    frames_scored: int
    viral_chunks: int
    viral_fraction: float
    max_virus_score: float
    mean_virus_score: float
    call: str


def _number(text: str) -> float:
    return math.nan if text == "NA" else float(text)


def iter_summary(path: str | Path) -> Iterator[SummaryRow]:
    """Stream the rows of a ``sequence_summary.tsv`` in file (input) order."""
    path = Path(path)
    rows = _tsv_rows(path, SUMMARY_HEADER, "run `virnucpro predict` first", "not the header of a sequence_summary.tsv")
    for number, f in rows:
        try:
            if len(f) != len(SUMMARY_HEADER):
                raise ValueError
            yield SummaryRow(
                f[0], int(f[1]), int(f[2]), int(f[3]), int(f[4]), int(f[5]),
                _number(f[6]), _number(f[7]), _number(f[8]), f[9],
            )
        except ValueError:
            raise InputError(f"{path}: line {number} is not a sequence_summary.tsv row") from None


# --------------------------------------------------------------------------- viral FASTA


def _fasta_header(record: Any) -> str:
    """The input's own title (``id description``), never the ID twice."""
    description = (getattr(record, "description", "") or "").strip()
    if not description or description == record.id:
        return record.id
    if description.split(None, 1)[0] == record.id:
        return description
    return f"{record.id} {description}"


def write_viral_fasta(input_path: str | Path, summary: str | Path, out: str | Path) -> int:
    """Write the input sequences whose summary ``call`` is ``virus``; return how many.

    Streams the input and the summary side by side: both are in input order, so
    memory does not depend on the input. Input records missing from the summary
    are skipped; a summary row never matched means the files do not belong
    together (:class:`InputError`). Sequences keep their case; 60 columns a line.
    """
    from virnucpro_core.seqio import read_records, write_fasta_wrapped

    summary = Path(summary)
    rows = iter_summary(summary)
    pending = next(rows, None)
    written = 0
    with atomic_open(out, "w") as handle:
        for record in read_records(input_path):
            if pending is None:
                break
            if record.id != pending.sequence_id:
                continue
            if pending.call == "virus":
                write_fasta_wrapped(handle, _fasta_header(record), str(record.seq), FASTA_WIDTH)
                written += 1
            pending = next(rows, None)
        if pending is not None:
            raise InputError(
                f"{summary}: sequence {pending.sequence_id!r} is not in {input_path} (or out of order); "
                f"give the same input the run was made from"
            )
    return written
