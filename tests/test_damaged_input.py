"""Damaged compressed files and files without any sequence: one line naming the file, never a traceback.

Through the command line (click's runner, in process), for ``prepare``, ``validate`` and
``predict``: the exit status is non-zero, the error is one line that names the file, and
no output file (finished or temporary) is left behind. The decompressors are fuzzed with
truncated and corrupted gzip, bzip2 and xz files.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import random
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from virnucpro_core.cli import cli
from virnucpro_core.validate import validate_file

COMPRESS = {"gz": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}


def _genome_fasta(records: int = 3, length: int = 1500, seed: int = 0) -> bytes:
    rng = random.Random(seed)
    out = []
    for index in range(records):
        seq = "".join(rng.choice("ACGT") for _ in range(length))
        out.append(f">contig{index + 1} len={length}\n" + "".join(seq[i : i + 60] + "\n" for i in range(0, length, 60)))
    return "".join(out).encode("ascii")


PLAIN = _genome_fasta()


def corrupt_deflate_gz() -> bytes:
    """A gzip member with a valid 10-byte header and a deflate stream that is not one (block type 3 is invalid)."""
    return gzip.compress(b"")[:10] + b"\xff" * 64


def _files_left(outdir: Path) -> list[str]:
    if not outdir.exists():
        return []
    return sorted(p.name for p in outdir.rglob("*") if p.is_file() and p.suffix in {".fa", ".faa", ".tsv", ".part", ".spool", ".h5"})


def _invoke(args: list[str]):
    result = CliRunner().invoke(cli, args)
    # An exception other than click's exit is what a user would see as a traceback.
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def assert_one_line_prepare_error(path: Path, outdir: Path, expect: str | None = None) -> str:
    result = _invoke(["prepare", str(path), "-o", str(outdir), "-q"])
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith(f"Error: {path}") and "Traceback" not in result.output
    if expect is not None:
        assert expect in lines[0]
    assert _files_left(outdir) == []
    return lines[0]


def assert_validate_refuses(path: Path, expect: str) -> None:
    result = _invoke(["validate", str(path)])
    assert result.exit_code == 1, result.output
    assert "NOT usable" in result.output.splitlines()[0]
    problems = [line for line in result.output.splitlines() if line.startswith("  - ") and expect in line]
    assert len(problems) == 1 and str(path) in problems[0], result.output


# --- Damaged compressed files ------------------------------------------------------------------


def test_a_gz_with_a_valid_header_and_a_corrupt_deflate_stream_is_one_line(tmp_path):
    path = tmp_path / "contigs.fa.gz"
    path.write_bytes(corrupt_deflate_gz())
    with pytest.raises(zlib.error):  # what the reader used to let through
        gzip.decompress(path.read_bytes())
    line = assert_one_line_prepare_error(path, tmp_path / "out", "cannot read the file")
    assert "invalid block type" in line and "truncated or corrupt" in line
    assert_validate_refuses(path, "cannot read the file")


@pytest.mark.parametrize("kind", sorted(COMPRESS))
def test_a_compressed_file_damaged_in_its_data_is_one_line(tmp_path, kind):
    data = bytearray(COMPRESS[kind](PLAIN))
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(b ^ 0x5A for b in data[middle : middle + 16])
    path = tmp_path / f"contigs.fa.{kind}"
    path.write_bytes(bytes(data))
    assert_one_line_prepare_error(path, tmp_path / "out", "cannot read the file")
    assert_validate_refuses(path, "cannot read the file")


@pytest.mark.parametrize("kind", sorted(COMPRESS))
def test_a_truncated_compressed_file_is_one_line(tmp_path, kind):
    data = COMPRESS[kind](PLAIN)
    path = tmp_path / f"contigs.fa.{kind}"
    path.write_bytes(data[: len(data) * 2 // 3])
    assert_one_line_prepare_error(path, tmp_path / "out", "cannot read the file")
    assert_validate_refuses(path, "cannot read the file")


@pytest.mark.parametrize("kind", sorted(COMPRESS))
def test_a_damaged_fastq_is_one_line(tmp_path, kind):
    reads = b"".join(b"@r%d\n%s\n+\n%s\n" % (i, b"ACGT" * 40, b"I" * 160) for i in range(300))
    data = COMPRESS[kind](reads)
    path = tmp_path / f"reads.fq.{kind}"
    path.write_bytes(data[:-12])
    assert_one_line_prepare_error(path, tmp_path / "out", "cannot read the file")
    assert_validate_refuses(path, "cannot read the file")


def _damage(draw, data: bytes) -> tuple[bytes, bool]:
    """Truncate ``data`` (always an error) or overwrite a few bytes of it (an error or, rarely, harmless)."""
    if draw(st.booleans()):
        return data[: draw(st.integers(1, len(data) - 1))], True
    damaged = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data) - 1))
        damaged[at] = draw(st.integers(0, 255).filter(lambda b, old=damaged[at]: b != old))
    return bytes(damaged), False


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), kind=st.sampled_from(sorted(COMPRESS)), fastq=st.booleans())
def test_fuzzed_compressed_files_never_give_a_traceback(tmp_path_factory, data, kind, fastq):
    content = (b"".join(b"@r%d x\n%s\n+\n%s\n" % (i, b"ACGTTGCA" * 20, b"F" * 160) for i in range(40))
               if fastq else _genome_fasta(records=2, length=900, seed=1))
    damaged, truncated = _damage(data.draw, COMPRESS[kind](content))
    work = tmp_path_factory.mktemp("fuzz")
    path = work / f"input.{'fq' if fastq else 'fa'}.{kind}"
    path.write_bytes(damaged)
    outdir = work / "out"
    result = _invoke(["prepare", str(path), "-o", str(outdir), "-q"])
    report = validate_file(path)  # never raises
    if truncated or result.exit_code != 0:
        assert result.exit_code == 1, result.output
        lines = result.output.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"Error: {path}"), result.output
        assert _files_left(outdir) == []
        assert not report.usable and len(report.problems) >= 1
    else:  # bytes that the checksums do not cover (e.g. gzip's mtime): the file is fine
        assert report.usable, report.problems
        assert sorted(p.name for p in outdir.iterdir()) == [
            "input_chunked500.fa", "input_identified_nucleotide.fa", "input_identified_protein.faa", "input_sequences.tsv",
            "run.json"]
    for problem in report.problems:
        assert "\n" not in problem


# --- No sequence data at all -------------------------------------------------------------------

NO_SEQUENCE = [
    ("header_only.fa", b">only a header\n"),
    ("headers.fa", b">a\n>b desc\n\n>c\n"),
    ("whitespace_seq.fa", b">a\n   \n\t\n>b\n"),
    ("empty_reads.fq", b"@r1\n\n+\n\n@r2\n\n+\n\n"),
    ("header_only.fa.gz", gzip.compress(b">x\n>y\n")),
]


@pytest.mark.parametrize("name, content", NO_SEQUENCE, ids=[n for n, _ in NO_SEQUENCE])
def test_records_without_any_sequence_are_an_error(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    assert_one_line_prepare_error(path, tmp_path / "out", "but no sequence data (every record is empty)")
    assert_validate_refuses(path, "but no sequence data (every record is empty)")


def test_empty_records_among_real_ones_stay_a_warning(tmp_path):
    path = tmp_path / "mixed.fa"
    path.write_bytes(b">a\n>b\nATGAAACCC\n>c\n")
    result = _invoke(["prepare", str(path), "-o", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "mixed_sequences.tsv").read_text() == "id\tlength\tchunks\na\t0\t0\nb\t9\t1\nc\t0\t0\n"
    report = validate_file(path)
    assert report.usable and report.problems == []
    assert "2 empty record(s), e.g. 'a', 'c': prepare skips them" in report.warnings


def test_stdin_without_sequence_is_an_error_and_leaves_no_spool(tmp_path):
    outdir = tmp_path / "out"
    result = CliRunner().invoke(cli, ["prepare", "-", "-o", str(outdir), "-q"], input=">a\n>b\n")
    assert result.exit_code == 1
    assert result.output.splitlines() == ["Error: stdin has 2 record(s) but no sequence data (every record is empty); "
                                          "give a FASTA or FASTQ file with at least one sequence"]
    assert _files_left(outdir) == []


# --- predict: the same errors, before any model is loaded --------------------------------------

PREDICT_CASES = [
    ("corrupt.fa.gz", corrupt_deflate_gz(), "cannot read the file"),
    ("truncated.fa.xz", lzma.compress(PLAIN)[:-40], "cannot read the file"),
    ("truncated.fa.bz2", bz2.compress(PLAIN)[:-20], "cannot read the file"),
    ("header_only.fa", b">nothing here\n", "but no sequence data"),
]


@pytest.mark.parametrize("name, content, expect", PREDICT_CASES, ids=[c[0] for c in PREDICT_CASES])
def test_predict_refuses_damaged_or_sequence_free_input_in_one_line(tmp_path, tiny_models, name, content, expect):
    path = tmp_path / name
    path.write_bytes(content)
    outdir = tmp_path / "run"
    result = _invoke(["predict", str(path), "-o", str(outdir), "--models-dir", str(tiny_models), "--device", "cpu", "-q"])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith(f"Error: {path}") and expect in errors[0], result.output
    assert "Traceback" not in result.output
    assert _files_left(outdir) == []
