"""Reading and writing sequence files, the way the original VirNucPro saw them.

Input is FASTA or FASTQ, plain or gzip/bzip2/xz compressed (detected from the magic
bytes, so a misnamed file still opens), or ``-`` for stdin. Records are streamed one at
a time: memory holds the current record only. Parsing is delegated to Biopython's
``SimpleFastaParser`` / ``FastqGeneralIterator`` so identifiers are exactly Biopython's
``record.id`` (the title up to the first whitespace), which the original used to name
chunks.

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
import lzma
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator, TextIO

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
                return gzip.GzipFile(fileobj=stream, mode="rb"), kind
            if kind == "bzip2":
                return bz2.BZ2File(stream, mode="rb"), kind
            return lzma.LZMAFile(stream, mode="rb"), kind
    return stream, "none"


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

    Universal newlines are on, so CRLF files read like LF files. Undecodable bytes raise
    ``UnicodeDecodeError`` while reading; :func:`read_records` turns that into an
    :class:`InputError`.
    """
    binary, _ = _open_binary(path)
    return io.TextIOWrapper(binary, encoding="utf-8", errors="strict", newline=None)


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

    def __iter__(self) -> Iterator[str]:
        if self._first is not None:
            line, self._first = self._first, None
            yield line
        yield from self._handle


_READ_ERRORS = (UnicodeDecodeError, EOFError, OSError, lzma.LZMAError, gzip.BadGzipFile)


class RecordStream:
    """Stream the records of a FASTA/FASTQ file; a context manager.

    ``format`` is ``"fasta"``, ``"fastq"`` or ``None`` (no records: empty or blank),
    ``compression`` is ``"none"``, ``"gzip"``, ``"bzip2"`` or ``"xz"``, and
    ``bytes_read`` tells :func:`read_records`' callers whether the file was empty.
    """

    def __init__(self, path: str | Path):
        self.path = path
        self.name = display_name(path)
        binary, self.compression = _open_binary(path)
        self._handle = io.TextIOWrapper(binary, encoding="utf-8", errors="strict", newline=None)
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
                if any(is_binary_character(ch) for ch in self._first):
                    raise InputError(f"{self.name} contains binary data, not FASTA/FASTQ text; give a FASTA or FASTQ file (plain, .gz, .bz2 or .xz)")
                raise InputError(
                    f"{self.name} is neither FASTA nor FASTQ (first line starts with {self._first.lstrip()[:1]!r}, "
                    "expected '>' or '@'); give a FASTA or FASTQ file"
                )

    def _read_error(self, exc: BaseException) -> InputError:
        where = f" after record '{self.last_id}'" if self.last_id is not None else ""
        if isinstance(exc, UnicodeDecodeError):
            return InputError(f"{self.name} contains binary data{where} (byte 0x{exc.object[exc.start]:02x} is not text); give a FASTA or FASTQ text file, plain or compressed")
        return InputError(f"{self.name}: cannot read the file{where} ({exc}); the file is probably truncated or corrupt, re-download or re-compress it")

    def __iter__(self) -> Iterator[SeqRecord]:
        if self._first is None:
            return
        lines = _Lines(self._first.lstrip(), self._handle)
        if self.format == "fasta":
            from Bio.SeqIO.FastaIO import SimpleFastaParser

            source = ((title, seq) for title, seq in SimpleFastaParser(lines))
        else:
            from Bio.SeqIO.QualityIO import FastqGeneralIterator

            source = ((title, seq) for title, seq, _ in FastqGeneralIterator(lines))
        while True:
            try:
                title, seq = next(source)
            except StopIteration:
                return
            except ValueError as exc:  # Biopython's FASTQ complaints
                after = f" (after record '{self.last_id}')" if self.last_id is not None else " (first record)"
                raise InputError(f"{self.name}: malformed FASTQ{after}: {exc} Fix or re-export the file.") from None
            except _READ_ERRORS as exc:
                raise self._read_error(exc) from None
            if "\t" in seq:
                seq = seq.translate(_SEQ_WHITESPACE)
            record_id = title.split(None, 1)[0] if title.strip() else ""
            self.last_id = record_id
            yield SeqRecord(record_id, title, seq)

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
        body = f"{seq}\n" if seq else ""
    else:
        body = "\n".join([seq[i : i + width] for i in range(0, len(seq), width)]) + "\n"
    return f">{title}\n{body}"


def format_fasta_line(title: str, seq: str) -> str:
    """One FASTA record on two lines, as the original writes its identified frames."""
    return f">{title}\n{seq}\n"


def write_fasta_wrapped(handle: TextIO, title: str, seq: str, width: int = FASTA_WIDTH) -> None:
    handle.write(format_fasta_wrapped(title, seq, width))


def write_fasta_line(handle: TextIO, title: str, seq: str) -> None:
    handle.write(format_fasta_line(title, seq))


def first_non_nucleotide(seq: str) -> tuple[int, str] | None:
    """The first (0-based position, character) of ``seq`` outside :data:`IUPAC_NUCLEOTIDE`, or None."""
    import numpy as np

    try:
        data = seq.encode("ascii")
    except UnicodeEncodeError as exc:
        return exc.start, seq[exc.start]
    flags = _bad_byte_table()[np.frombuffer(data, dtype=np.uint8)]
    if not flags.any():
        return None
    pos = int(flags.argmax())
    return pos, seq[pos]


@functools.cache
def _bad_byte_table():
    import numpy as np

    table = np.ones(256, dtype=bool)
    for ch in IUPAC_NUCLEOTIDE:
        table[ord(ch)] = False
    return table


def is_binary_character(ch: str) -> bool:
    """Control characters other than tab/newline mean the input is not a text file."""
    return (ord(ch) < 32 and ch not in "\t\r\n") or ord(ch) == 127


def describe_bad_character(ch: str) -> str:
    """``'E'`` for a printable character, ``byte 0x00`` (binary) otherwise."""
    if ch.isprintable() and ord(ch) < 128:
        return repr(ch)
    return f"byte 0x{ord(ch):02x}" if ord(ch) < 256 else repr(ch)
