"""Reading FASTA/FASTQ the way the original saw it, from any file a user may have."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import sys
from pathlib import Path

import pytest
from Bio import SeqIO
from hypothesis import given, settings
from hypothesis import strategies as st
from Bio.Seq import Seq
from Bio.SeqRecord import SeqRecord as BioRecord

from virnucpro_core.errors import InputError
from virnucpro_core.seqio import (
    FastaBlock,
    RecordStream,
    describe_bad_character,
    is_binary_character,
    SeqRecord,
    first_non_nucleotide,
    format_fasta_line,
    format_fasta_wrapped,
    input_stem,
    iter_fasta,
    is_plain_sequence,
    open_text,
    read_records,
    record_ids,
    sequence_from_lines,
)

DATA = Path(__file__).parent / "data"
FASTA = ">seq1 first record\nACGTAC\nGTACGT\n>seq2\nnnnACGT\n"


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_fasta_records_have_biopython_ids_and_joined_sequences(tmp_path):
    records = list(read_records(write(tmp_path / "x.fa", FASTA)))
    assert records == [
        SeqRecord("seq1", "seq1 first record", "ACGTACGTACGT"),
        SeqRecord("seq2", "seq2", "nnnACGT"),
    ]


def test_ids_match_biopython_record_id(tmp_path):
    text = ">a|b|c desc here\nAC\n>  spaced\tid x\nGT\n>tab\tsep\nAA\n>\nCC\n"
    path = write(tmp_path / "x.fa", text)
    ours = [r.id for r in read_records(path)]
    assert ours == [r.id for r in SeqIO.parse(path, "fasta")] == ["a|b|c", "spaced", "tab", ""]


def test_crlf_blank_lines_spaces_and_tabs_are_ignored_in_sequences(tmp_path):
    text = "\r\n\r\n>s1 d\r\nAC GT\r\n\r\nAC\tGT  \r\n>s2\r\nTT\r\n"
    assert [(r.id, r.seq) for r in read_records(write(tmp_path / "x.fa", text))] == [("s1", "ACGTACGT"), ("s2", "TT")]


def test_fastq_is_detected_and_read(tmp_path):
    text = "\n@r1 lane 1\nACGT\n+\nIIII\n@r2\nAC\nGT\n+r2\n@III\n"
    with RecordStream(write(tmp_path / "reads.txt", text)) as stream:
        assert (stream.format, stream.compression) == ("fastq", "none")
        assert list(stream) == [SeqRecord("r1", "r1 lane 1", "ACGT"), SeqRecord("r2", "r2", "ACGT")]


@pytest.mark.parametrize(
    "compress, kind",
    [(gzip.compress, "gzip"), (bz2.compress, "bzip2"), (lzma.compress, "xz")],
)
def test_compression_is_detected_from_magic_bytes_not_the_name(tmp_path, compress, kind):
    path = write(tmp_path / "misnamed.fa", compress(FASTA.encode()))
    with RecordStream(path) as stream:
        assert stream.compression == kind
        assert [r.seq for r in stream] == ["ACGTACGTACGT", "nnnACGT"]


def test_stdin_plain_and_compressed(monkeypatch):
    for payload in (FASTA.encode(), gzip.compress(FASTA.encode())):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(payload)))
        assert [r.id for r in read_records("-")] == ["seq1", "seq2"]


def test_open_text_reads_decompressed_text(tmp_path):
    path = write(tmp_path / "x.fa.xz", lzma.compress(b"hello\r\nworld\n"))
    with open_text(path) as handle:
        assert handle.read() == "hello\nworld\n"


def test_empty_and_blank_files_yield_nothing(tmp_path):
    with RecordStream(write(tmp_path / "empty.fa", "")) as stream:
        assert (stream.empty, stream.format, list(stream)) == (True, None, [])
    with RecordStream(write(tmp_path / "blank.fa", "\n  \n")) as stream:
        assert (stream.empty, stream.format, list(stream)) == (False, None, [])


def test_text_that_is_neither_format_is_refused(tmp_path):
    with pytest.raises(InputError, match=r"notes.txt is neither FASTA nor FASTQ \(first line starts with 'A', expected '>' or '@'\)"):
        list(read_records(write(tmp_path / "notes.txt", "ACGT\n")))


def test_binary_data_is_refused(tmp_path):
    with pytest.raises(InputError, match="image.png contains binary data"):
        list(read_records(write(tmp_path / "image.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")))
    with pytest.raises(InputError, match=r"x.fa: the header of the record after 'a' contains binary data \(byte 0xff\)"):
        list(read_records(write(tmp_path / "x.fa", b">a\nACGT\n>b\xff\nACGT\n")))


def test_undecodable_bytes_in_a_sequence_reach_the_record_check(tmp_path):
    # The reader does not give up on the whole file; prepare/validate name the record and position.
    (a, b) = read_records(write(tmp_path / "x.fa", b">a\nACGT\n>b\nAC\xff\xfe\n"))
    assert first_non_nucleotide(b.seq) == (2, "\udcff")
    assert describe_bad_character("\udcff") == "byte 0xff" and is_binary_character("\udcff")


def test_malformed_fastq_names_the_record(tmp_path):
    path = write(tmp_path / "bad.fq", "@r1\nACGT\n+\nIIII\n@r2\nACGT\n+\nII\n")
    with pytest.raises(InputError, match=r"bad.fq: malformed FASTQ \(after record 'r1'\): Lengths of sequence and quality values differs for r2 \(4 and 2\)"):
        list(read_records(path))


def test_truncated_gzip_is_refused(tmp_path):
    data = gzip.compress((">a\n" + "ACGT" * 5000 + "\n").encode())
    path = write(tmp_path / "cut.fa.gz", data[: len(data) // 2])
    with pytest.raises(InputError, match="cut.fa.gz: cannot read the file .*truncated or corrupt"):
        list(read_records(path))


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        list(read_records(tmp_path / "absent.fa"))


@pytest.mark.parametrize(
    "name, stem",
    [
        ("lambda.fa.gz", "lambda"),
        ("reads.fastq.bz2", "reads"),
        ("x.FASTA", "x"),
        ("genes.ffn", "genes"),
        ("contigs.fna.xz", "contigs"),
        ("a.b.fq", "a.b"),
        ("sample.txt", "sample.txt"),
        ("sample.gz", "sample"),
        ("-", "stdin"),
        ("/some/dir/lambda_NC_001416.fa.gz", "lambda_NC_001416"),
    ],
)
def test_input_stem(name, stem):
    assert input_stem(name) == stem


@pytest.mark.parametrize("length", [0, 1, 59, 60, 61, 119, 120, 121, 500])
def test_wrapped_writer_matches_biopython(length):
    seq = ("ACGTN" * 200)[:length]
    handle = io.StringIO()
    SeqIO.write(BioRecord(Seq(seq), id="x_chunk_1", description=""), handle, "fasta")
    assert format_fasta_wrapped("x_chunk_1", seq) == handle.getvalue()


def test_line_writer_and_iter_fasta_round_trip(tmp_path):
    path = write(tmp_path / "p.faa", format_fasta_line("a_chunk_1F1", "MKV" * 50) + format_fasta_line("a_chunk_1R2", "W"))
    assert list(iter_fasta(path)) == [("a_chunk_1F1", "MKV" * 50), ("a_chunk_1R2", "W")]


def test_first_non_nucleotide():
    assert first_non_nucleotide("ACGTRYSWKMBDHVNUacgtn-.") is None
    assert first_non_nucleotide("ACGTE") == (4, "E")
    assert first_non_nucleotide("AC\x00") == (2, "\x00")
    assert first_non_nucleotide("ACé") == (2, "é")


# --- The FASTA block scanner prepare uses: the same records as Biopython, a block at a time ---


def scanned(path: Path, block_chars: int | None = None) -> list[tuple[str, str]]:
    """Records put together from fasta_blocks, as prepare does (pieces of a record may be in several blocks)."""
    records: list[tuple[str, list[str]]] = []
    with RecordStream(path) as stream:
        for head, titles, bodies in stream.fasta_blocks(block_chars):
            if head:
                records[-1][1].append(sequence_from_lines(head))
            for record_id, body in zip(record_ids(titles), bodies):
                records.append((record_id, [sequence_from_lines(body)]))
    return [(record_id, "".join(parts)) for record_id, parts in records]


TITLES = ["a", "b desc", "c\tx=1", "", " ", "d\x0c", "e\u2003f", "é x", "r|1|x  ", "g  h"]
LINES = [
    "ACGT", "acgtn", "AC GT", "AC\tGT", "ACGT  ", "ACGT\x0c", "\x0cACGT", "AC\x1cGT", "ACGT\xa0", "  >y", "",
    " ", "N" * 70, "ACGTTGCA" * 40, "MKV", "ACGT\u2003",
]


@st.composite
def messy_fasta(draw):
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    out = ["" for _ in range(draw(st.integers(0, 2)))]  # blank lines before the first record
    for index in range(draw(st.integers(1, 5))):
        out.append(f">{index}{draw(st.sampled_from(TITLES))}")
        out += draw(st.lists(st.sampled_from(LINES), max_size=6))
    return newline.join(out) + draw(st.sampled_from(["", newline]))


@settings(max_examples=150, deadline=None)
@given(text=messy_fasta(), block_chars=st.sampled_from([1, 2, 3, 5, 8, 13, 64, None]))
def test_fasta_blocks_give_biopythons_records_at_any_block_size(tmp_path_factory, text, block_chars):
    path = tmp_path_factory.mktemp("scan") / "x.fa"
    path.write_bytes(text.encode())
    assert scanned(path, block_chars) == [(r.id, r.seq) for r in read_records(path)]


def test_a_line_longer_than_a_block_is_cut_where_stripping_it_changes_nothing(tmp_path):
    # Biopython right-strips whole lines: a form feed ending a line goes, one inside a line stays.
    path = write(tmp_path / "x.fa", ">a\nACGTACGTAC\x0c\x0c\n>b\nACGTA\x0c\x0cCGTAC\n")
    assert scanned(path, 4) == scanned(path) == [("a", "ACGTACGTAC"), ("b", "ACGTA\x0c\x0cCGTAC")]
    with RecordStream(path) as stream:
        blocks = list(stream.fasta_blocks(4))
    # A piece holds at most two blocks' worth (what was carried plus what was read) and the newline put in front.
    assert max(len(piece) for block in blocks for piece in [block.head, *block.bodies]) <= 2 * 4 + 1


def test_a_sequence_line_starting_with_gt_after_a_cut_is_not_a_header(tmp_path):
    path = write(tmp_path / "x.fa", ">a\nACGTACGT>b\n")
    assert scanned(path, 3) == scanned(path) == [("a", "ACGTACGT>b")]


def test_fasta_blocks_split_at_headers(tmp_path):
    path = write(tmp_path / "x.fa", "\n  >a one\nAC\nGT\n>b\n\n>c\nTT\n")
    with RecordStream(path) as stream:
        assert list(stream.fasta_blocks()) == [FastaBlock("", ["a one", "b", "c"], ["\nAC\nGT", "\n", "\nTT\n"])]
    # A sequence line may end a block before its newline (here: the file's end); trailing whitespace waits.
    path = write(tmp_path / "y.fa", ">c\nTT\nGG \x0c")
    with RecordStream(path) as stream:
        assert list(stream.fasta_blocks()) == [FastaBlock("", ["c"], ["\nTT\nGG"]), FastaBlock(" \x0c\n", [], [])]


def test_fasta_blocks_tee_receives_the_text_scanned(tmp_path):
    path = write(tmp_path / "x.fa.gz", gzip.compress(b"\r\n>a\r\nACGT\r\n>b\r\nGG"))
    tee = io.StringIO()
    with RecordStream(path) as stream:
        list(stream.fasta_blocks(3, tee=tee))
    assert tee.getvalue() == ">a\nACGT\n>b\nGG"


def test_record_ids_and_plain_sequence():
    assert record_ids(["a", "b c", "", " ", "d\te", "f\x1cg"]) == ["a", "b", "", "", "d", "f"]
    assert is_plain_sequence("ACGTN\nacgt-.\n") and not is_plain_sequence("AC GT") and not is_plain_sequence("ACé")
    assert sequence_from_lines("\nAC GT\t\nAC\x0c\n") == "ACGTAC"


def test_fastq_batches_hand_out_records_before_a_malformed_one(tmp_path):
    path = write(tmp_path / "r.fq", "@r1 x\nACGT\n+\nIIII\n@r2\nAC\n+\nII\n@r3\nACGT\n+\nII\n")
    got = []
    message = r"r.fq: malformed FASTQ \(after record 'r2'\): Lengths of sequence and quality values differs for r3"
    with RecordStream(path) as stream, pytest.raises(InputError, match=message):
        got.extend(stream.fastq_batches(2))
    assert got == [(["r1 x", "r2"], ["ACGT", "AC"])]
