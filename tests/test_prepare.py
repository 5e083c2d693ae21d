"""``prepare_file`` reproduces the original preprocessing byte for byte, streaming and atomically."""

from __future__ import annotations

import bz2
import gzip
import io
import logging
import lzma
import random
import re
import shutil
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from virnucpro_core.cli import cli
from virnucpro_core.errors import InputError
from virnucpro_core.prepare import PrepareResult, prepare_file
from virnucpro_core.testing.original import original_prepare

DATA = Path(__file__).parent / "data"
ORIGINAL = DATA / "original_lambda"
LAMBDA_GZ = DATA / "genomes" / "lambda_NC_001416.fa.gz"


def outputs(result: PrepareResult) -> tuple[bytes, bytes, bytes]:
    return result.chunked.read_bytes(), result.nucleotide.read_bytes(), result.protein.read_bytes()


def fasta(records: list[tuple[str, str]], width: int = 70, newline: str = "\n") -> str:
    out = []
    for title, seq in records:
        out.append(f">{title}{newline}")
        out += [seq[i : i + width] + newline for i in range(0, len(seq), width)]
    return "".join(out)


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


@pytest.mark.parametrize("size", [300, 500])
def test_lambda_is_byte_identical_to_the_original_tool(tmp_path, size):
    source = tmp_path / "lambda.fa.gz"
    shutil.copy(LAMBDA_GZ, source)
    result = prepare_file(source, tmp_path / "out", size)
    assert result.chunked == tmp_path / "out" / f"lambda_chunked{size}.fa"
    assert result.nucleotide.name == "lambda_identified_nucleotide.fa"
    assert result.protein.name == "lambda_identified_protein.faa"
    assert result.chunked.read_bytes() == (ORIGINAL / f"lambda_chunked{size}.fa").read_bytes()
    assert result.nucleotide.read_bytes() == (ORIGINAL / f"lambda_{size}_identified_nucleotide.fa").read_bytes()
    assert result.protein.read_bytes() == (ORIGINAL / f"lambda_{size}_identified_protein.faa").read_bytes()
    n_frames = result.protein.read_text().count(">")
    assert (result.sequences, result.bases, result.frames, result.empty_skipped) == (1, 48502, n_frames, 0)
    assert result.chunks == result.chunked.read_text().count(">") == -(-48502 // size)
    assert result.sequences_tsv.read_text() == f"id\tlength\tchunks\ngi|9626243|ref|NC_001416.1|\t48502\t{result.chunks}\n"


ORIGINAL_FORMAT = DATA / "original_format"


def test_the_original_tools_own_outputs_on_orf_bearing_contigs_are_reproduced(tmp_path):
    """Real original output with stop-free frames in several strands (not lambda): test_with_orfs.fa at 500 bp."""
    source = tmp_path / "test_with_orfs.fa"
    shutil.copy(ORIGINAL_FORMAT / "test_with_orfs.fa", source)
    result = prepare_file(source, tmp_path / "out", 500)
    assert result.chunked.read_bytes() == (ORIGINAL_FORMAT / "test_with_orfs_chunked500.fa").read_bytes()
    assert result.nucleotide.read_bytes() == (ORIGINAL_FORMAT / "test_with_orfs_identified_nucleotide.fa").read_bytes()
    assert result.protein.read_bytes() == (ORIGINAL_FORMAT / "test_with_orfs_identified_protein.faa").read_bytes()
    assert result.frames == (ORIGINAL_FORMAT / "test_with_orfs_identified_protein.faa").read_text().count(">") > 0
    # the same through the command line, and from a compressed copy
    gz = tmp_path / "test_with_orfs.fa.gz"
    gz.write_bytes(gzip.compress(source.read_bytes()))
    cli_run = CliRunner().invoke(cli, ["prepare", str(gz), "-o", str(tmp_path / "cli"), "-q"])
    assert cli_run.exit_code == 0, cli_run.output
    for name in ("test_with_orfs_chunked500.fa", "test_with_orfs_identified_nucleotide.fa", "test_with_orfs_identified_protein.faa"):
        assert (tmp_path / "cli" / name).read_bytes() == (ORIGINAL_FORMAT / name).read_bytes(), name


#: "AGCNUu-" is RNA: prepare reads its U as T, so the original is given the same records with T
ALPHABETS = ["ACGT", "ACG", "CGTa", "acgtn", "ACGTN", "ACGTRYKMSWBDHVN", "ACGNacgn", "AGCNUu-"]


def as_dna(records: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The non-empty records with U read as T, as the original tool must see them."""
    return [(title, seq.replace("U", "T").replace("u", "t")) for title, seq in records if seq]


@st.composite
def multi_record_fasta(draw):
    records = []
    for index in range(draw(st.integers(1, 6))):
        length = draw(
            st.one_of(
                st.integers(0, 12),
                st.integers(285, 315),
                st.integers(485, 515),
                st.sampled_from([550, 600, 899, 900, 901, 1000, 1001, 1200]),
                st.integers(0, 1200),
            )
        )
        rng = random.Random(draw(st.integers(0, 2**32)))
        alphabet = draw(st.sampled_from(ALPHABETS))
        seq = "".join(rng.choice(alphabet) for _ in range(length))
        description = draw(st.sampled_from(["", " some description", "\tx=1 y=2"]))
        records.append((f"r{index}{description}", seq))
    width = draw(st.sampled_from([60, 61, 80, 1000]))
    return records, width


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=multi_record_fasta(), size=st.sampled_from([300, 500]))
def test_random_inputs_match_the_original(tmp_path_factory, case, size):
    records, width = case
    work = tmp_path_factory.mktemp("prop")
    (work / "ours.fa").write_text(fasta(records, width))
    # The original crashes on empty records, so it gets the file without them.
    (work / "theirs.fa").write_text(fasta(as_dna(records), width))
    if not any(seq for _, seq in records):  # no sequence data at all: refused, nothing written
        with pytest.raises(InputError, match=r"ours.fa has \d+ record\(s\) but no sequence data"):
            prepare_file(work / "ours.fa", work / "p", size)
        assert listing(work / "p") == []
        return
    ours = prepare_file(work / "ours.fa", work / "p", size)
    theirs = original_prepare(work / "theirs.fa", work / "o", size)
    assert outputs(ours) == tuple(path.read_bytes() for path in theirs)
    assert ours.empty_skipped == sum(1 for _, seq in records if not seq)
    rows = ours.sequences_tsv.read_text().splitlines()[1:]
    assert [row.split("\t")[:2] for row in rows] == [[t.split()[0], str(len(s))] for t, s in records]


def test_550_bp_at_500_gives_a_276_bp_second_chunk(tmp_path):
    seq = "".join(random.Random(5).choice("ACGT") for _ in range(550))
    (tmp_path / "s.fa").write_text(f">s\n{seq}\n")
    result = prepare_file(tmp_path / "s.fa", tmp_path, 500)
    wrap = lambda s: "".join(s[i : i + 60] + "\n" for i in range(0, len(s), 60))  # noqa: E731
    assert result.chunked.read_text() == f">s_chunk_1\n{wrap(seq[:500])}>s_chunk_2\n{wrap(seq[274:])}"
    assert len(seq[274:]) == 276


SMALL = [("c1 first contig", "ATGAAACCCGGGTTTAAAcccgggNNNATGCAT" * 20), ("c2", "GATTACA" * 100), ("c3", "acg")]


@pytest.fixture
def expected(tmp_path):
    (tmp_path / "ref.fa").write_text(fasta(SMALL))
    return outputs(prepare_file(tmp_path / "ref.fa", tmp_path / "ref", 300))


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress, lzma.compress])
def test_compressed_inputs_give_the_same_outputs(tmp_path, expected, compress):
    (tmp_path / "in.fasta.gz").write_bytes(compress(fasta(SMALL).encode()))
    assert outputs(prepare_file(tmp_path / "in.fasta.gz", tmp_path / "c", 300)) == expected


def test_stdin_gives_the_same_outputs_named_stdin(tmp_path, expected, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(gzip.compress(fasta(SMALL).encode()))))
    result = prepare_file("-", tmp_path / "s", 300)
    assert result.chunked.name == "stdin_chunked300.fa"
    assert outputs(result) == expected


def test_crlf_and_blank_lines_give_the_same_outputs(tmp_path, expected):
    text = "\r\n\r\n" + fasta(SMALL, width=50, newline="\r\n").replace(">c2", "\r\n>c2")
    (tmp_path / "in.fa").write_bytes(text.encode())
    assert outputs(prepare_file(tmp_path / "in.fa", tmp_path / "w", 300)) == expected


def test_fastq_gives_the_same_outputs_as_fasta(tmp_path, expected):
    fastq = "".join(f"@{title}\n{seq}\n+\n{'I' * len(seq)}\n" for title, seq in SMALL)
    (tmp_path / "reads.fq").write_text(fastq)
    result = prepare_file(tmp_path / "reads.fq", tmp_path / "q", 300)
    assert result.chunked.name == "reads_chunked300.fa"
    assert outputs(result) == expected


def test_descriptions_are_dropped_from_chunk_ids_and_case_is_kept(tmp_path):
    (tmp_path / "in.fa").write_text(">ctg7 len=12 cov=3.5\nacgtACGTacgt\n")
    result = prepare_file(tmp_path / "in.fa", tmp_path, 500)
    assert result.chunked.read_text() == ">ctg7_chunk_1\nacgtACGTacgt\n"
    # Translation sees the upper-cased chunk: F1 ACG TAC GTA CGT = TYVR, span [0:13] clipped to 12 bases.
    assert result.nucleotide.read_text().startswith(">ctg7_chunk_1F1\nACGTACGTACGT\n>ctg7_chunk_1F2\nCGTACGTACG\n")
    assert result.protein.read_text().startswith(">ctg7_chunk_1F1\nTYVR\n>ctg7_chunk_1F2\nRTY\n")


def test_empty_records_are_skipped_with_a_warning_and_listed(tmp_path, caplog):
    (tmp_path / "in.fa").write_text(">a\nATGAAA\n>empty one\n>b\nATG\n")
    with caplog.at_level(logging.WARNING):
        result = prepare_file(tmp_path / "in.fa", tmp_path, 500)
    assert (result.sequences, result.bases, result.chunks, result.empty_skipped) == (3, 9, 2, 1)
    assert result.sequences_tsv.read_text() == "id\tlength\tchunks\na\t6\t1\nempty\t0\t0\nb\t3\t1\n"
    assert "record 'empty' is empty (length 0); skipped" in caplog.text
    assert result.chunked.read_text() == ">a_chunk_1\nATGAAA\n>b_chunk_1\nATG\n"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_goes_to_stderr_when_it_is_a_terminal(tmp_path, monkeypatch, capsys):
    shutil.copy(LAMBDA_GZ, tmp_path / "lambda.fa.gz")
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    prepare_file(tmp_path / "lambda.fa.gz", tmp_path / "o", 500, progress=True)
    assert "prepare" in terminal.getvalue() and "bp" in terminal.getvalue(), repr(terminal.getvalue())
    assert capsys.readouterr().out == ""


def test_no_progress_bar_when_stderr_is_not_a_terminal(tmp_path, monkeypatch):
    shutil.copy(LAMBDA_GZ, tmp_path / "lambda.fa.gz")
    log_file = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log_file)
    prepare_file(tmp_path / "lambda.fa.gz", tmp_path / "o", 500, progress=True)
    assert log_file.getvalue() == ""


BLOCKING = [
    ("empty.fa", b"", r"empty.fa is empty; give a FASTA or FASTQ file with at least one sequence"),
    ("blank.fa", b"\n \n", r"blank.fa contains no records \(only blank lines\)"),
    ("empty.fa.gz", gzip.compress(b""), r"empty.fa.gz is empty"),
    (
        "proteins.faa",
        b">p1 kinase\nMKVLAAGIVGLL\n",
        r"proteins.faa: record 'p1' contains 'L' at position 4, which is not an IUPAC nucleotide code \(is this a protein FASTA\?\); "
        r"VirNucPro needs DNA: give nucleotide sequences, or replace unknown letters with N",
    ),
    ("bin.fa", b">a\nACGT\n>b\nAC\x00GT\n", r"bin.fa: record 'b' contains binary data \(byte 0x00 at position 3\); give a FASTA or FASTQ text file"),
    ("bin2.fa", b">a\nACGT\n>b\nACG\xffT\n", r"bin2.fa: record 'b' contains binary data \(byte 0xff at position 4\)"),
    ("blob.bin", b"\x7fELF\x02\x01\x01\x00", r"blob.bin contains binary data, not FASTA/FASTQ text"),
    ("text.txt", b"hello world\n", r"text.txt is neither FASTA nor FASTQ"),
    (
        "dups.fa",
        b">x one\nACGT\n>y\nACGT\n>x two\nACGT\n",
        r"dups.fa: record ID 'x' occurs twice \(records 1 and 3\), which would make chunk IDs ambiguous; "
        r"make the IDs unique \(e.g. `seqkit rename`\) and run again",
    ),
    ("bad.fq", b"@r1\nACGT\n+\nIII\n", r"bad.fq: malformed FASTQ \(first record\): Lengths of sequence and quality values differs for r1 \(4 and 3\)"),
]


@pytest.mark.parametrize("name, content, message", BLOCKING, ids=[b[0] for b in BLOCKING])
def test_blocking_problems_raise_one_line_and_leave_nothing(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    out = tmp_path / "out"
    with pytest.raises(InputError, match=message) as info:
        prepare_file(tmp_path / name, out, 500)
    assert "\n" not in str(info.value)
    assert listing(out) == []


def test_a_late_error_keeps_earlier_outputs_untouched(tmp_path):
    (tmp_path / "in.fa").write_text(">a\nACGTACGT\n")
    first = prepare_file(tmp_path / "in.fa", tmp_path / "out", 500)
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    # 1.5 Mbp before the duplicate: several batches are already written to the temporary files.
    body = "".join(f">b{i}\n{'ACGTTGCA' * 125}\n" for i in range(1500))
    (tmp_path / "in.fa").write_text(">a\nACGTACGT\n" + body + ">a\nAC\n")
    with pytest.raises(InputError, match="record ID 'a' occurs twice"):
        prepare_file(tmp_path / "in.fa", tmp_path / "out", 500)
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before
    assert first.chunked.exists()


@pytest.mark.parametrize("name, content, message", BLOCKING[:5], ids=[b[0] for b in BLOCKING[:5]])
def test_cli_prepare_exits_non_zero_with_the_message(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["prepare", str(tmp_path / name), "-o", str(out), "-q"])
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, result.output
    assert re.search(message, lines[0])
    assert [n for n in listing(out) if n.endswith((".fa", ".faa", ".tsv", ".part"))] == []


# --- Constant memory: a record is never held whole -------------------------------------------


def random_chromosome(length: int, seed: int) -> str:
    """Random DNA with runs of N and stretches of lower case (soft-masked repeats), as assemblies have."""
    import numpy as np

    rng = np.random.default_rng(seed)
    seq = np.frombuffer(b"ACGT", dtype=np.uint8)[rng.integers(0, 4, length)].copy()
    for start in rng.integers(0, length - 5000, 40).tolist():
        seq[start : start + int(rng.integers(1, 5000))] = ord("N")
    for start in rng.integers(0, length - 20000, 40).tolist():
        seq[start : start + int(rng.integers(1, 20000))] |= 0x20  # lower case
    return seq.tobytes().decode("ascii")


def test_a_chromosome_sized_record_is_cut_across_blocks_and_batches_like_the_original(tmp_path):
    from virnucpro_core import prepare, seqio

    big = random_chromosome(2_000_000, seed=11)
    records = [("chr1 two megabases", big), ("plasmid", big[:1234]), ("chr2", big[7:600_007])]
    (tmp_path / "asm.fa").write_text(fasta(records, width=70))
    # 2 Mbp spans several scanner blocks and translation batches, none aligned with lines or chunks.
    assert len(big) > 4 * seqio.BLOCK_CHARS and len(big) > 2 * prepare.BATCH_BASES
    ours = prepare_file(tmp_path / "asm.fa", tmp_path / "ours", 500)
    theirs = original_prepare(tmp_path / "asm.fa", tmp_path / "theirs", 500)
    assert outputs(ours) == tuple(path.read_bytes() for path in theirs)
    assert ours.sequences_tsv.read_text() == "id\tlength\tchunks\nchr1\t2000000\t4000\nplasmid\t1234\t3\nchr2\t600000\t1200\n"


def test_memory_does_not_grow_with_the_length_of_a_single_line_record(tmp_path, monkeypatch):
    """A 4x longer one-line record peaks at the same traced memory: only a block and a batch are held."""
    import tracemalloc

    from virnucpro_core import prepare, seqio

    monkeypatch.setattr(seqio, "BLOCK_CHARS", 1 << 16)
    monkeypatch.setattr(prepare, "BATCH_BASES", 1 << 16)
    peaks = []
    for length in (500_000, 2_000_000):
        path = tmp_path / f"one_line_{length}.fa"
        path.write_text(f">chr\n{random_chromosome(length, seed=length)}\n")
        tracemalloc.start()
        try:
            prepare_file(path, tmp_path / f"out{length}", 500)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    # Holding the record whole would cost several bytes per base: over 4 MB more for the longer one.
    assert peaks[1] - peaks[0] < 400_000, peaks
    assert peaks[1] < 4_000_000, peaks


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=multi_record_fasta(), size=st.sampled_from([300, 500]), block=st.sampled_from([7, 61, 500]),
       batch=st.sampled_from([1, 299, 5000]), one_line=st.booleans())
def test_tiny_blocks_and_batches_give_the_original_outputs(tmp_path_factory, case, size, block, batch, one_line):
    from virnucpro_core import prepare, seqio

    records, width = case
    width = 10**6 if one_line else width
    work = tmp_path_factory.mktemp("tiny")
    (work / "ours.fa").write_text(fasta(records, width))
    (work / "theirs.fa").write_text(fasta(as_dna(records), width))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(seqio, "BLOCK_CHARS", block)
        patch.setattr(prepare, "BATCH_BASES", batch)
        if not any(seq for _, seq in records):  # no sequence data at all: refused, nothing written
            with pytest.raises(InputError, match="but no sequence data"):
                prepare_file(work / "ours.fa", work / "p", size)
            assert listing(work / "p") == []
            return
        ours = prepare_file(work / "ours.fa", work / "p", size)
    theirs = original_prepare(work / "theirs.fa", work / "o", size)
    assert outputs(ours) == tuple(path.read_bytes() for path in theirs)
    rows = ours.sequences_tsv.read_text().splitlines()[1:]
    assert [row.split("\t")[:2] for row in rows] == [[t.split()[0], str(len(s))] for t, s in records]


# --- stdin is kept in a temporary file for the second reading, and never left behind ----------


def feed_stdin(monkeypatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


def test_stdin_fasta_is_spooled_in_the_output_directory_and_removed(tmp_path, monkeypatch, expected):
    from virnucpro_core import prepare

    seen_during_pass_2 = []
    real = prepare.identified_fasta

    def watching(*args):
        seen_during_pass_2.append(listing(tmp_path / "s"))
        return real(*args)

    monkeypatch.setattr(prepare, "identified_fasta", watching)
    feed_stdin(monkeypatch, bz2.compress(fasta(SMALL).encode()))
    result = prepare_file("-", tmp_path / "s", 300)
    assert outputs(result) == expected
    assert any(re.fullmatch(r"\.virnucpro-stdin-.*\.spool", name) for name in seen_during_pass_2[0])
    assert listing(tmp_path / "s") == ["stdin_chunked300.fa", "stdin_identified_nucleotide.fa",
                                       "stdin_identified_protein.faa", "stdin_sequences.tsv"]


@pytest.mark.parametrize(
    "content, message",
    [
        (fasta(SMALL) + ">c4\nACGTQ\n", r"stdin: record 'c4' contains 'Q' at position 5"),
        (fasta(SMALL) + ">c2 again\nACGT\n", r"stdin: record ID 'c2' occurs twice \(records 2 and 4\)"),
    ],
)
def test_stdin_errors_leave_nothing_behind(tmp_path, monkeypatch, content, message):
    feed_stdin(monkeypatch, content.encode())
    with pytest.raises(InputError, match=message):
        prepare_file("-", tmp_path / "out", 300)
    assert listing(tmp_path / "out") == []


def test_a_failure_while_writing_leaves_neither_spool_nor_outputs(tmp_path, monkeypatch):
    from virnucpro_core import prepare

    def disk_full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(prepare, "identified_fasta", disk_full)
    feed_stdin(monkeypatch, fasta(SMALL).encode())
    from virnucpro_core.errors import OutputWriteError

    with pytest.raises(OutputWriteError, match=r"^.*/out/\S+: No space left on device; free space there"):  # names the file
        prepare_file("-", tmp_path / "out", 300)
    assert listing(tmp_path / "out") == []


def test_a_file_changed_between_the_two_readings_is_refused(tmp_path, monkeypatch):
    from virnucpro_core import prepare

    path = tmp_path / "in.fa"
    path.write_text(fasta(SMALL))
    real = prepare._survey

    def survey_then_append(*args, **kwargs):
        lengths = real(*args, **kwargs)
        path.write_text(fasta(SMALL[:1] + [("c2", "GATTACA" * 101)] + SMALL[2:]))  # another writer at work
        return lengths

    monkeypatch.setattr(prepare, "_survey", survey_then_append)
    with pytest.raises(InputError, match=r"in.fa changed while it was being read \(at record 'c2'\); "
                                         r"run again once nothing is writing to it"):
        prepare_file(path, tmp_path / "out", 300)
    assert listing(tmp_path / "out") == []


def test_fastq_batches_give_the_same_outputs_and_report_problems_in_file_order(tmp_path, monkeypatch, expected):
    from virnucpro_core import seqio

    monkeypatch.setattr(seqio, "FASTQ_BATCH", 2)
    fastq = "".join(f"@{title}\n{seq}\n+\n{'I' * len(seq)}\n" for title, seq in SMALL)
    (tmp_path / "reads.fq").write_text(fastq)
    assert outputs(prepare_file(tmp_path / "reads.fq", tmp_path / "q", 300)) == expected
    # Record 2 is protein and record 3 is malformed: record 2's problem comes first, as in a single pass.
    (tmp_path / "bad.fq").write_text("@r1\nACGT\n+\nIIII\n@r2\nMKVL\n+\nIIII\n@r3\nACGT\n+\nII\n")
    with pytest.raises(InputError, match=r"bad.fq: record 'r2' contains 'L' at position 4"):
        prepare_file(tmp_path / "bad.fq", tmp_path / "b", 300)


@pytest.mark.parametrize("text,hint", [
    (">a\nACGTACGT\n@read1\nACGT\n+\nIIII\n", "'@' at position 9, which is not an IUPAC nucleotide code (is a FASTQ record "
     "inside this FASTA file? give FASTQ records in a FASTQ file of their own)"),
    (">a\n        1 acgtacgtac gtacgtacgt\n", "'1' at position 1, which is not an IUPAC nucleotide code (digits in a sequence: "
     "is this a GenBank/EMBL file or a FASTA with numbered lines? give plain FASTA)"),
    (">a\nMKVL\n", "'L' at position 4, which is not an IUPAC nucleotide code (is this a protein FASTA?)"),
])
def test_the_hint_fits_the_character_that_is_not_a_nucleotide(tmp_path, text, hint):
    (tmp_path / "x.fa").write_text(text)
    with pytest.raises(InputError) as err:
        prepare_file(tmp_path / "x.fa", tmp_path / "out", 500)
    assert str(err.value) == (f"{tmp_path / 'x.fa'}: record 'a' contains {hint}; VirNucPro needs DNA: give nucleotide "
                              "sequences, or replace unknown letters with N")
