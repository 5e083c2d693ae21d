"""Reading and writing sequence files, the way the original VirNucPro saw them.

Input is FASTA or FASTQ, plain or gzip/bzip2/xz compressed (detected from the magic
bytes, so a misnamed file still opens), or ``-`` for stdin. Records are streamed one at
a time: memory holds the current record only. Parsing is delegated to Biopython's
``SimpleFastaParser`` / ``FastqGeneralIterator`` so identifiers are exactly Biopython's
``record.id`` (the title up to the first whitespace), which the original used to name
chunks.

``prepare`` cannot hold even one record whole (a chromosome is tens of megabases), and
Biopython's FASTA parser always builds the whole record. For it,
:meth:`RecordStream.fasta_blocks` is a small scanner of its own that hands out the text
in blocks split at the headers, keeping ``SimpleFastaParser``'s rules
exactly (see there); :func:`record_ids` and :func:`sequence_from_lines` turn a block's
pieces into IDs and sequence. FASTQ reads are short, so :meth:`RecordStream.fastq_batches`
keeps Biopython's ``FastqGeneralIterator`` and only groups its records.

Everything a user can fix (binary data, a truncated archive, a FASTQ record whose
quality is shorter than its sequence, text that is neither format) becomes an
:class:`~virnucpro_core.errors.InputError` naming the file, the record and what to do.
"""

from __future__ import annotations

import bz2
import contextlib
import functools
import gzip
import io
import itertools
import lzma
import re
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator, NamedTuple, TextIO

from virnucpro_core.errors import InputError

#: Wrap width of the original's chunk file (Biopython ``SeqIO.write(..., "fasta")``).
FASTA_WIDTH = 60

_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
)
_COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz")
_SEQUENCE_SUFFIXES = (".fasta", ".fastq", ".fa", ".fna", ".ffn", ".fas", ".fsa", ".fq")

#: What Biopython's FASTA parser removes from sequence lines (1.88 ``FastaIterator``).
_SEQ_WHITESPACE = str.maketrans("", "", " \t\r\n")

#: Characters of decompressed text :meth:`RecordStream.fasta_blocks` reads at a time.
BLOCK_CHARS = 1 << 18
#: Records per batch of :meth:`RecordStream.fastq_batches`.
FASTQ_BATCH = 4096
#: A header line inside a block (a block that begins a line gets a newline put in front).
_HEADER_SPLIT = re.compile("\n>(.*)")
_NO_ID = ("",)

#: IUPAC nucleotide codes (DNA and RNA), either case; gaps ``-`` and ``.`` are tolerated
#: (the original silently drops codons containing them, as it does for N).
IUPAC_NUCLEOTIDE = frozenset("ACGTURYSWKMBDHVNacgturyswkmbdhvn-.")


@dataclass(frozen=True, slots=True)
class SeqRecord:
    """One input record: ``id`` (title up to the first whitespace), full ``description`` (title), ``seq``."""

    id: str
    description: str
    seq: str


def display_name(path: str | Path) -> str:
    """How a path is named in messages (``stdin`` for ``-``)."""
    return "stdin" if str(path) == "-" else str(path)


def input_stem(path: str | Path) -> str:
    """The base name of output files made from ``path``.

    ``reads.fastq.gz`` -> ``reads``, ``lambda.fa`` -> ``lambda``, ``-`` -> ``stdin``.
    One compression suffix and then one sequence suffix are removed (case-insensitive);
    other names keep their full file name.
    """
    if str(path) == "-":
        return "stdin"
    name = Path(path).name
    lower = name.lower()
    for suffix in _COMPRESSED_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            name, lower = name[: -len(suffix)], lower[: -len(suffix)]
            break
    for suffix in _SEQUENCE_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    return name


class _Prefixed(io.RawIOBase):
    """A raw stream that yields ``prefix`` and then the rest of ``stream``.

    Lets us sniff magic bytes from a pipe (stdin cannot seek back).
    """

    def __init__(self, prefix: bytes, stream: IO[bytes]):
        self._prefix = prefix
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        if self._prefix:
            n = min(len(view), len(self._prefix))
            view[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        data = self._stream.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            with contextlib.suppress(Exception):
                self._stream.close()
        super().close()


def _open_binary(path: str | Path) -> tuple[IO[bytes], str]:
    """Open ``path`` (or stdin for ``-``) as decompressed bytes; return the stream and its compression."""
    if str(path) == "-":
        raw: IO[bytes] = sys.stdin.buffer
        # stdin is not ours to close: hand a non-closing view to the wrapper.
        raw = _NoClose(raw)
    else:
        try:
            raw = open(path, "rb")
        except FileNotFoundError:
            raise InputError(f"{path}: no such file; check the path") from None
        except IsADirectoryError:
            raise InputError(f"{path} is a directory; give a FASTA or FASTQ file") from None
        except PermissionError:
            raise InputError(f"{path}: permission denied; check the file's permissions") from None
    magic = raw.read(6)
    stream: IO[bytes] = io.BufferedReader(_Prefixed(magic, raw), buffer_size=1 << 20)
    for prefix, kind in _MAGIC:
        if magic.startswith(prefix):
            if kind == "gzip":
                inner: IO[bytes] = gzip.GzipFile(fileobj=stream, mode="rb")
            elif kind == "bzip2":
                inner = bz2.BZ2File(stream, mode="rb")
            else:
                inner = lzma.LZMAFile(stream, mode="rb")
            # The decompressors leave a file object they were given open; close both.
            return io.BufferedReader(_Owned(inner, stream), buffer_size=1 << 20), kind
    return stream, "none"


class _Owned(io.RawIOBase):
    """Read through ``inner``; closing closes ``inner`` and then ``outer``."""

    def __init__(self, inner: IO[bytes], outer: IO[bytes]):
        self._inner = inner
        self._outer = outer

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        return self._inner.readinto(buffer)

    def close(self) -> None:
        if not self.closed:
            try:
                self._inner.close()
            finally:
                self._outer.close()
        super().close()


class _NoClose(io.RawIOBase):
    def __init__(self, stream: IO[bytes]):
        self._stream = stream

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        return self._stream.read(n)

    def readinto(self, buffer) -> int:
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def open_text(path: str | Path) -> TextIO:
    """Open a sequence file (or ``-`` for stdin) as text, decompressing by magic bytes.

    Universal newlines are on, so CRLF files read like LF files. Bytes that are not UTF-8
    come through as lone surrogates (``surrogateescape``), so the record that holds them
    can be named (see :func:`is_binary_character`).
    """
    binary, _ = _open_binary(path)
    return io.TextIOWrapper(binary, encoding="utf-8", errors="surrogateescape", newline=None)


class _Lines:
    """A text handle with one line pushed back: what Biopython's parsers need after sniffing."""

    def __init__(self, first: str, handle: TextIO):
        self._first: str | None = first
        self._handle = handle

    def read(self, n: int = -1) -> str:  # Biopython probes text mode with read(0)
        if n == 0:
            return ""
        raise io.UnsupportedOperation("read")

    def readline(self) -> str:
        if self._first is not None:
            line, self._first = self._first, None
            return line
        return self._handle.readline()

    # An iterator of its own, not a generator: Biopython loops over the handle several
    # times, and closing a ``yield from`` generator would close the file underneath.
    def __iter__(self) -> "_Lines":
        return self

    def __next__(self) -> str:
        if self._first is not None:
            line, self._first = self._first, None
            return line
        return next(self._handle)


#: What the decompressors raise for a damaged or truncated file: gzip raises ``zlib.error``
#: for a corrupt deflate stream (after a valid header), ``BadGzipFile``/``EOFError`` for a
#: bad header or trailer and a truncated stream; bz2 ``OSError``/``EOFError``; xz ``LZMAError``/``EOFError``.
_READ_ERRORS = (EOFError, OSError, zlib.error, lzma.LZMAError, gzip.BadGzipFile)
#: Control characters (other than tab/CR/LF) and undecodable bytes: not a text file.
_BINARY = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\udc80-\udcff]")


class FastaBlock(NamedTuple):
    """A block of FASTA text, split at the record headers.

    ``head`` is sequence text that continues the record begun in an earlier block;
    ``titles[i]`` is a header line without its ``>`` and newline (not yet stripped) and
    ``bodies[i]`` that record's sequence lines in this block (newlines still in; the last
    record may continue in the next block, even in the middle of a line). Turn them into IDs with :func:`record_ids`
    and into sequence with :func:`sequence_from_lines` (or, for text made only of
    sequence letters and newlines, by deleting the newlines).
    """

    head: str
    titles: list[str]
    bodies: list[str]


class RecordStream:
    """Stream the records of a FASTA/FASTQ file; a context manager.

    ``format`` is ``"fasta"``, ``"fastq"`` or ``None`` (no records: empty or blank),
    ``compression`` is ``"none"``, ``"gzip"``, ``"bzip2"`` or ``"xz"``, ``empty`` is True
    when the (decompressed) file has no bytes at all, and ``last_id`` is the ID of the
    last record yielded (error messages name it).
    """

    def __init__(self, path: str | Path):
        self.path = path
        self.name = display_name(path)
        binary, self.compression = _open_binary(path)
        self._handle = io.TextIOWrapper(binary, encoding="utf-8", errors="surrogateescape", newline=None)
        self.format: str | None = None
        self.empty = True
        self.last_id: str | None = None
        self._first: str | None = None
        try:
            for line in self._handle:
                self.empty = False
                if line.strip():
                    self._first = line
                    break
        except _READ_ERRORS as exc:
            self.close()
            raise self._read_error(exc) from None
        if self._first is not None:
            lead = self._first.lstrip()[0]
            if lead == ">":
                self.format = "fasta"
            elif lead == "@":
                self.format = "fastq"
            else:
                self.close()
                if _BINARY.search(self._first):
                    raise InputError(f"{self.name} contains binary data, not FASTA/FASTQ text; give a FASTA or FASTQ file (plain, .gz, .bz2 or .xz)")
                raise InputError(
                    f"{self.name} is neither FASTA nor FASTQ (first line starts with {self._first.lstrip()[:1]!r}, "
                    "expected '>' or '@'); give a FASTA or FASTQ file"
                )

    def _read_error(self, exc: BaseException) -> InputError:
        where = f" after record '{self.last_id}'" if self.last_id is not None else ""
        return InputError(f"{self.name}: cannot read the file{where} ({exc}); the file is probably truncated or corrupt, re-download or re-compress it")

    def __iter__(self) -> Iterator[SeqRecord]:
        if self._first is None:
            return
        first = self._first.lstrip()
        if self.format == "fasta":
            from Bio.SeqIO.FastaIO import SimpleFastaParser

            # The FASTA parser only iterates, so a C-level chain is enough (no per-line Python call).
            source = SimpleFastaParser(itertools.chain([first], self._handle))
        else:
            from Bio.SeqIO.QualityIO import FastqGeneralIterator

            source = ((title, seq) for title, seq, _ in FastqGeneralIterator(_Lines(first, self._handle)))
        while True:
            try:
                title, seq = next(source)
            except StopIteration:
                return
            except _READ_ERRORS as exc:
                raise self._read_error(exc) from None
            except ValueError as exc:  # Biopython's FASTQ complaints
                after = f" (after record '{self.last_id}')" if self.last_id is not None else " (first record)"
                raise InputError(f"{self.name}: malformed FASTQ{after}: {exc} Fix or re-export the file.") from None
            bad = _BINARY.search(title)
            if bad:
                raise InputError(
                    f"{self.name}: the header of the record after '{self.last_id}' contains binary data "
                    f"({describe_bad_character(bad.group())}); give a FASTA or FASTQ text file"
                    if self.last_id is not None else
                    f"{self.name}: the first record's header contains binary data "
                    f"({describe_bad_character(bad.group())}); give a FASTA or FASTQ text file"
                )
            if "\t" in seq:
                seq = seq.translate(_SEQ_WHITESPACE)
            record_id = title.split(None, 1)[0] if title.strip() else ""
            self.last_id = record_id
            yield SeqRecord(record_id, title, seq)

    def fasta_blocks(self, block_chars: int | None = None, tee: TextIO | None = None) -> Iterator[FastaBlock]:
        """The FASTA text as :class:`FastaBlock` pieces, about ``block_chars`` (:data:`BLOCK_CHARS`) characters at a time.

        Biopython's parsers hold a whole record, which for a chromosome is what we must
        avoid; this scanner holds one block. It keeps ``SimpleFastaParser``'s reading:
        blank lines before the first header are skipped (the sniffer already did that,
        and a first line indented before its ``>`` is taken as a header, as
        :meth:`__iter__` does), every line starting with ``>`` is a header whose title is
        the rest of the line, and the sequence is every other line right-stripped,
        joined, with spaces (and tabs, as Biopython's ``FastaIterator``) removed.

        A block ends at a line end or inside a sequence line, after a character that is
        not whitespace: right-stripping each piece of a line then equals right-stripping
        the line (the whitespace that ends a piece is kept for the next block, where it is
        either inside the line or at its end). A header line is always whole. So a block
        holds about ``block_chars`` characters, however long the lines are.

        ``tee`` receives the text exactly as scanned (how stdin is kept for a second
        reading). Set :attr:`last_id` to the last complete record so that a read error
        names it.
        """
        if self.format != "fasta":
            raise ValueError(f"{self.name} is not FASTA")
        block_chars = block_chars or BLOCK_CHARS
        carry = self._first.lstrip()  # the sniffed first line, a header
        line_start = True  # does the next block begin at the start of a line?
        eof = False
        while not eof:
            try:
                data = self._handle.read(block_chars)
            except _READ_ERRORS as exc:
                raise self._read_error(exc) from None
            if data:
                text = carry + data if carry else data
                cut = text.rfind("\n") + 1
                if cut < len(text) and not ((cut or line_start) and text[cut] == ">"):
                    # A sequence line goes on: take it up to its last non-whitespace character.
                    end = len(text)
                    while end > cut and text[end - 1].isspace():
                        end -= 1
                    cut = end
                if cut == 0:  # a header line not yet complete, or only whitespace so far
                    carry = text
                    continue
                carry = text[cut:]
                text = text[:cut]
            else:
                eof = True
                text = carry if not carry or carry.endswith("\n") else carry + "\n"
                if not text:
                    break
            if tee is not None:
                tee.write(text)
            pieces = _HEADER_SPLIT.split("\n" + text if line_start else text)
            line_start = text[-1] == "\n"
            yield FastaBlock(pieces[0], pieces[1::2], pieces[2::2])

    def fastq_batches(self, records: int | None = None) -> Iterator[tuple[list[str], list[str]]]:
        """``(titles, sequences)`` of up to ``records`` (:data:`FASTQ_BATCH`) FASTQ records at a time, read by Biopython.

        A malformed record or a read error is raised after the records before it have
        been handed out, so the caller reports problems in file order.
        """
        if self.format != "fastq":
            raise ValueError(f"{self.name} is not FASTQ")
        from Bio.SeqIO.QualityIO import FastqGeneralIterator

        records = records or FASTQ_BATCH
        source = FastqGeneralIterator(_Lines(self._first.lstrip(), self._handle))
        while True:
            titles: list[str] = []
            seqs: list[str] = []
            unreadable: BaseException | None = None
            malformed: ValueError | None = None
            try:
                for title, seq, _ in itertools.islice(source, records):
                    titles.append(title)
                    seqs.append(seq)
            except _READ_ERRORS as exc:
                unreadable = exc
            except ValueError as exc:  # Biopython's FASTQ complaints
                malformed = exc
            if titles:
                self.last_id = (titles[-1].split(None, 1) or _NO_ID)[0]
            error: InputError | None = None
            if unreadable is not None:
                error = self._read_error(unreadable)
            elif malformed is not None:
                after = f" (after record '{self.last_id}')" if self.last_id is not None else " (first record)"
                error = InputError(f"{self.name}: malformed FASTQ{after}: {malformed} Fix or re-export the file.")
            if titles:
                yield titles, seqs
            if error is not None:
                raise error
            if len(titles) < records:
                return

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._handle.close()

    def __enter__(self) -> "RecordStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_records(path: str | Path) -> Iterator[SeqRecord]:
    """Yield the records of a FASTA or FASTQ file (format detected from its first non-blank character).

    An empty or blank file yields nothing; callers decide whether that is an error.
    """
    with RecordStream(path) as stream:
        yield from stream


def record_ids(titles: list[str]) -> list[str]:
    """Biopython's ``record.id`` of each title: up to the first whitespace, ``''`` for a blank title."""
    joined = "".join(titles)
    if joined.isprintable() and " " not in joined:  # no whitespace at all: the titles are the IDs
        return titles
    return [(title.split(None, 1) or _NO_ID)[0] for title in titles]


def sequence_from_lines(text: str) -> str:
    """The sequence Biopython reads from FASTA sequence lines: each right-stripped, joined, spaces and tabs removed."""
    return "".join([line.rstrip() for line in text.split("\n")]).translate(_SEQ_WHITESPACE)


def is_plain_sequence(text: str) -> bool:
    """True when ``text`` holds only :data:`IUPAC_NUCLEOTIDE` letters and newlines (fast, C speed).

    Such lines need no stripping: deleting the newlines gives the sequence.
    """
    try:
        return not text.encode("ascii").translate(None, _PLAIN_BYTES)
    except UnicodeEncodeError:
        return False


def iter_fasta(path: str | Path) -> Iterator[tuple[str, str]]:
    """Yield ``(id, seq)`` from a FASTA file such as the identified nucleotide/protein files we write."""
    for record in read_records(path):
        yield record.id, record.seq


def format_fasta_wrapped(title: str, seq: str, width: int = FASTA_WIDTH) -> str:
    """One FASTA record as Biopython's ``SeqIO.write(record, handle, "fasta")`` writes it.

    The header is the title as given, the sequence wrapped at ``width`` columns; an
    empty sequence gives the header line alone (as Biopython does).
    """
    if len(seq) <= width:
        return f">{title}\n{seq}\n" if seq else f">{title}\n"
    return f">{title}\n" + "\n".join(map(seq.__getitem__, _line_slices(len(seq), width))) + "\n"


@functools.lru_cache(maxsize=64)
def _line_slices(length: int, width: int) -> tuple[slice, ...]:
    return tuple(slice(i, i + width) for i in range(0, length, width))


def format_fasta_batch(titles: list[str], seqs: list[str], width: int = FASTA_WIDTH) -> str:
    """:func:`format_fasta_wrapped` of many records, joined (short records take a quicker path)."""
    out = []
    append = out.append
    w2, w3 = 2 * width, 3 * width
    for title, seq in zip(titles, seqs):
        n = len(seq)
        if n <= width:
            append(f">{title}\n{seq}\n" if n else f">{title}\n")
        elif n <= w2:
            append(f">{title}\n{seq[:width]}\n{seq[width:]}\n")
        elif n <= w3:
            append(f">{title}\n{seq[:width]}\n{seq[width:w2]}\n{seq[w2:]}\n")
        else:
            append(f">{title}\n" + "\n".join(map(seq.__getitem__, _line_slices(n, width))) + "\n")
    return "".join(out)


def format_fasta_joined(titles: list[str], joined: str, lengths: list[int], width: int = FASTA_WIDTH) -> str:
    """:func:`format_fasta_batch` of records given as one string ``joined`` cut at ``lengths``.

    The newlines of every line break are put in with one numpy insertion over the whole
    batch, so each record costs one slice and one header. Text that is not ASCII (never
    a checked nucleotide sequence) takes :func:`format_fasta_batch`.
    """
    import numpy as np

    try:
        data = np.frombuffer(joined.encode("ascii"), dtype=np.uint8)
    except UnicodeEncodeError:
        offsets = list(itertools.accumulate(lengths, initial=0))
        return format_fasta_batch(titles, [joined[a:b] for a, b in zip(offsets, offsets[1:])], width)
    size = np.asarray(lengths, dtype=np.int64)
    start = np.cumsum(size) - size
    lines = -(-size // width)  # 0 for an empty record: its header alone, as Biopython writes it
    after = np.cumsum(lines)  # newlines up to the end of each record
    count = int(after[-1]) if after.size else 0
    line = np.arange(count) - np.repeat(after - lines, lines)  # line number within its record
    at = np.repeat(start, lines) + width * (line + 1)
    at = np.minimum(at, np.repeat(start + size, lines))  # a record's last line ends where the record does
    text = np.insert(data, at, 10).tobytes().decode("ascii")
    begin = (start + after - lines).tolist()
    end = (start + size + after).tolist()
    return "".join([f">{title}\n{text[a:b]}" for title, a, b in zip(titles, begin, end)])


def format_fasta_line(title: str, seq: str) -> str:
    """One FASTA record on two lines, as the original writes its identified frames."""
    return f">{title}\n{seq}\n"


def write_fasta_wrapped(handle: TextIO, title: str, seq: str, width: int = FASTA_WIDTH) -> None:
    handle.write(format_fasta_wrapped(title, seq, width))


def write_fasta_line(handle: TextIO, title: str, seq: str) -> None:
    handle.write(format_fasta_line(title, seq))


def first_non_nucleotide(seq: str) -> tuple[int, str] | None:
    """The first (0-based position, character) of ``seq`` outside :data:`IUPAC_NUCLEOTIDE`, or None."""
    try:
        data = seq.encode("ascii")
    except UnicodeEncodeError as exc:
        earlier = first_non_nucleotide(seq[: exc.start])
        return earlier if earlier is not None else (exc.start, seq[exc.start])
    if not data.translate(None, _IUPAC_BYTES):  # C speed: delete every valid byte, see if any is left
        return None
    pos = next(i for i, byte in enumerate(data) if byte not in _IUPAC_SET)
    return pos, seq[pos]


def is_nucleotide(seq: str) -> bool:
    """True when ``seq`` holds only :data:`IUPAC_NUCLEOTIDE` characters (fast; no position)."""
    try:
        return not seq.encode("ascii").translate(None, _IUPAC_BYTES)
    except UnicodeEncodeError:
        return False


_IUPAC_BYTES = "".join(sorted(IUPAC_NUCLEOTIDE)).encode("ascii")
_IUPAC_SET = frozenset(_IUPAC_BYTES)
_PLAIN_BYTES = _IUPAC_BYTES + b"\n"


_RNA_TO_DNA = str.maketrans("Uu", "Tt")


def has_t_u(seq: str) -> tuple[bool, bool]:
    """Whether ``seq`` holds T and whether it holds U (either case), at C speed."""
    return ("T" in seq or "t" in seq), ("U" in seq or "u" in seq)


def rna_as_dna(seq: str) -> str:
    """``seq`` with U read as T (case kept): an RNA record gives the results of its DNA.
    Only records without T reach here with U (:func:`mixed_t_u_error` refuses the others)."""
    return seq.translate(_RNA_TO_DNA) if "U" in seq or "u" in seq else seq


def mixed_t_u_error(name: str, record_id: str | None) -> InputError:
    """The error for a record holding both T and U: neither DNA nor RNA, so no reading is safe."""
    return InputError(f"{name}: record '{record_id}' holds both T and U; U is read as T only in a record without T (RNA): "
                      "fix that record (e.g. replace its U with T) and run again")


def rna_warning(name: str, records: int) -> str:
    """The one warning for RNA input."""
    return f"{name}: {records} record(s) hold U and no T (RNA); U is read as T, so they give the results of their DNA"


def not_nucleotide_hint(ch: str) -> str:
    """What a character outside the nucleotide codes most likely means, for the error's hint:
    a letter suggests a protein file, a digit a GenBank/EMBL flat file or numbered lines,
    ``@``/``+`` a FASTQ record pasted into a FASTA file."""
    if ch.isdigit():
        return "digits in a sequence: is this a GenBank/EMBL file or a FASTA with numbered lines? give plain FASTA"
    if ch in "@+":
        return "is a FASTQ record inside this FASTA file? give FASTQ records in a FASTQ file of their own"
    if ch.isalpha() or ch == "*":
        return "is this a protein FASTA?"
    return "give only nucleotide letters in sequence lines"


def is_binary_character(ch: str) -> bool:
    """Control characters other than tab/CR/LF, and undecodable bytes, mean the input is not text."""
    return _BINARY.match(ch) is not None


def describe_bad_character(ch: str) -> str:
    """``'E'`` for a printable character, ``byte 0x00`` (binary) otherwise."""
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, carried by surrogateescape
        return f"byte 0x{code - 0xDC00:02x}"
    if ch.isprintable():
        return repr(ch)
    return f"byte 0x{code:02x}" if code < 256 else repr(ch)
