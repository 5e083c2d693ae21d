"""Result files: the original's two files byte for byte, our per-sequence summary and viral FASTA."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from virnucpro_core.errors import ConfigError, InputError
from virnucpro_core.report import (
    PredictionWriter,
    SummaryStats,
    iter_predictions,
    iter_summary,
    parse_frame_id,
    prediction_label,
    write_consensus,
    write_sequence_summary,
    write_viral_fasta,
)

REFERENCE = Path(__file__).parent / "data" / "original_format" / "reference_vanilla_output"
HEADER = "Sequence_ID\tPrediction\tscore1\tscore2\n"


def read_reference_scores() -> tuple[list[str], np.ndarray]:
    ids, probs = [], []
    for line in (REFERENCE / "prediction_results.txt").read_text().splitlines()[1:]:
        seq_id, _label, s1, s2 = line.split("\t")
        ids.append(seq_id)
        probs.append((np.float32(s1), np.float32(s2)))
    return ids, np.array(probs, dtype=np.float32)


def predictions_file(path: Path, rows: list[tuple[str, float, float]]) -> Path:
    """A prediction_results.txt written by our writer from (frame id, score1, score2)."""
    with PredictionWriter(path) as out:
        out.write([r[0] for r in rows], np.array([(r[1], r[2]) for r in rows], dtype=np.float32).reshape(-1, 2))
    return path


# ------------------------------------------------------------------ prediction_results.txt


def test_writer_reproduces_the_original_file_byte_for_byte(tmp_path):
    ids, probs = read_reference_scores()
    out = tmp_path / "prediction_results.txt"
    with PredictionWriter(out) as writer:  # two batches, as the classifier feeds it
        writer.write(ids[:3], probs[:3])
        writer.write(ids[3:], probs[3:])
    assert writer.rows == 4
    assert out.read_bytes() == (REFERENCE / "prediction_results.txt").read_bytes()


def test_scores_print_as_numpy_float32_str_not_as_float64():
    # 0.12100612 is the float32 shortest text; the float64 widening would print 0.12100612372159958.
    lines = []
    with _capture(lines) as writer:
        writer.write(["a_chunk_1F1", "a_chunk_1F2"], np.array([[0.12100612, 0.8789939], [1e-5, 0.99999]]))
    assert lines == [
        HEADER,
        "a_chunk_1F1\tvirus\t0.12100612\t0.8789939\n",
        "a_chunk_1F2\tvirus\t1e-05\t0.99999\n",
    ]


class _capture:
    """PredictionWriter into a temporary file whose lines land in a list."""

    def __init__(self, lines: list[str]) -> None:
        import tempfile

        self.lines = lines
        self.dir = tempfile.TemporaryDirectory()
        self.writer = PredictionWriter(Path(self.dir.name) / "p.txt")

    def __enter__(self) -> PredictionWriter:
        return self.writer.__enter__()

    def __exit__(self, *exc):
        self.writer.__exit__(*exc)
        self.lines.extend(self.writer.path.read_text().splitlines(keepends=True))
        self.dir.cleanup()


@pytest.mark.parametrize(
    ("score1", "score2", "label"),
    [
        (0.4, 0.6, "virus"),
        (0.6, 0.4, "others"),
        (0.5, 0.5, "others"),  # torch.max returns the first index on a tie
        (math.nan, 0.5, "others"),  # ... and the index of a NaN
        (0.5, math.nan, "virus"),
        (math.nan, math.nan, "others"),
    ],
)
def test_label_follows_torch_max(score1, score2, label):
    assert prediction_label(score1, score2) == label


def test_writer_leaves_no_file_when_the_run_fails(tmp_path):
    out = tmp_path / "prediction_results.txt"
    with pytest.raises(RuntimeError, match="boom"):
        with PredictionWriter(out) as writer:
            writer.write(["x_chunk_1F1"], np.array([[0.5, 0.5]], dtype=np.float32))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_writer_rejects_probabilities_of_the_wrong_shape(tmp_path):
    with PredictionWriter(tmp_path / "p.txt") as writer:
        with pytest.raises(ValueError, match=r"expected probabilities of shape \(2, 2\), got \(2, 3\)"):
            writer.write(["a", "b"], np.zeros((2, 3), dtype=np.float32))


def test_reading_back_gives_the_float32_values(tmp_path):
    ids, probs = read_reference_scores()
    rows = list(iter_predictions(REFERENCE / "prediction_results.txt"))
    assert [r.frame_id for r in rows] == ids
    assert np.array_equal(np.array([(r.score1, r.score2) for r in rows], dtype=np.float32), probs)
    assert [r.line for r in rows] == [2, 3, 4, 5]


def test_a_file_that_is_not_a_prediction_file_is_refused(tmp_path):
    bad = tmp_path / "prediction_results.txt"
    bad.write_text("id,score\nx,1\n")
    with pytest.raises(InputError) as err:
        write_consensus(bad, tmp_path / "c.csv")
    assert str(err.value) == (
        f"{bad}: line 1 is 'id,score', expected the tab-separated header "
        "Sequence_ID, Prediction, score1, score2; is this a prediction_results.txt?"
    )
    assert not (tmp_path / "c.csv").exists()


def test_a_missing_prediction_file_says_what_to_run(tmp_path):
    with pytest.raises(InputError, match=r"prediction_results.txt: no such file; run `virnucpro predict`"):
        write_consensus(tmp_path / "prediction_results.txt", tmp_path / "c.csv")


# ------------------------------------------------------------------ prediction_results_highestscore.csv


def test_consensus_reproduces_the_original_file_byte_for_byte(tmp_path):
    out = tmp_path / "prediction_results_highestscore.csv"
    assert write_consensus(REFERENCE / "prediction_results.txt", out) == 2
    assert out.read_bytes() == (REFERENCE / "prediction_results_highestscore.csv").read_bytes()


# Made by the original's pandas code (read_csv, str[:-2], groupby().apply(determine_virus),
# to_csv(sep="\t", index=False)) with pandas 3.1.1 on exactly this input.
ODD_INPUT = (
    HEADER
    + "b_chunk_10F1\tvirus\t0.1\t0.9\n"
    + "b_chunk_2F1\tothers\t0.6\t0.4\n"
    + "B_chunk_1R3\tothers\t0.5\t0.5\n"
    + "\u00e9_chunk_1F1\tothers\tnan\t0.5\n"
    + 'a"q_chunk_1F1\tothers\t0.7\t0.3\n'
    + "b_chunk_10R1\tvirus\t0.95\t0.05\n"
    + "z_chunk_1F1\tvirus\tnan\tnan\n"
    + "NA_chunk_1F1\tvirus\t0.2\t0.8\n"
)
ODD_EXPECTED = (
    "Modified_ID\tIs_Virus\n"
    "B_chunk_1\tTrue\n"
    "NA_chunk_1\tTrue\n"
    '"a""q_chunk_1"\tFalse\n'
    "b_chunk_10\tFalse\n"
    "b_chunk_2\tFalse\n"
    "z_chunk_1\tFalse\n"
    "\u00e9_chunk_1\tFalse\n"
)


@pytest.mark.parametrize("max_in_memory", [1, 3, 1000])
def test_consensus_is_sorted_by_chunk_id_like_pandas_groupby(tmp_path, max_in_memory):
    """Code-point order (chunk_10 before chunk_2), ties are virus, NaN skipped, quotes doubled;
    identical whether the sort spills to disk (1, 3) or not (1000)."""
    source = tmp_path / "prediction_results.txt"
    source.write_text(ODD_INPUT, encoding="utf-8")
    out = tmp_path / "prediction_results_highestscore.csv"
    assert write_consensus(source, out, max_in_memory=max_in_memory) == 7
    assert out.read_text(encoding="utf-8") == ODD_EXPECTED
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([source.name, out.name])  # no run files left


def test_consensus_of_no_frames_is_the_header(tmp_path):
    source = tmp_path / "prediction_results.txt"
    source.write_text(HEADER)
    out = tmp_path / "c.csv"
    assert write_consensus(source, out) == 0
    assert out.read_text() == "Modified_ID\tIs_Virus\n"


frame_ids = st.builds(
    lambda seq, k, frame: f"{seq}_chunk_{k}{frame}",
    st.sampled_from(["a", "b", "B", "a_chunk_1", "x.y"]),
    st.integers(1, 12),
    st.sampled_from(["F1", "F2", "F3", "R1", "R2", "R3"]),
)
probabilities = st.floats(0, 1, width=32)


@settings(max_examples=40, deadline=None)
@given(rows=st.lists(st.tuples(frame_ids, probabilities, probabilities), max_size=40), spill=st.integers(1, 8))
def test_consensus_matches_a_plain_group_by(tmp_path_factory, rows, spill):
    tmp = tmp_path_factory.mktemp("consensus")
    source = predictions_file(tmp / "p.txt", rows)
    best: dict[str, list[float]] = {}
    for frame_id, s1, s2 in rows:
        b = best.setdefault(frame_id[:-2], [-1.0, -1.0])
        b[0], b[1] = max(b[0], s1), max(b[1], s2)
    expected = "Modified_ID\tIs_Virus\n" + "".join(f"{k}\t{best[k][1] >= best[k][0]}\n" for k in sorted(best))
    write_consensus(source, tmp / "c.csv", max_in_memory=spill)
    assert (tmp / "c.csv").read_text() == expected


# ------------------------------------------------------------------ sequence_summary.tsv

SEQUENCES_TSV = (
    "id\tlength\tchunks\n"
    "contig_A\t1200\t3\n"
    "read_B\t300\t1\n"
    "ambig_chunk_7\t700\t2\n"  # an input ID that itself contains _chunk_
    "empty_C\t450\t1\n"  # no stop-free frame anywhere
)
FRAMES = [  # deliberately not in input order
    ("read_B_chunk_1F1", 0.5, 0.5),  # a tie: viral by the consensus rule
    ("contig_A_chunk_3F2", 0.4, 0.6),
    ("ambig_chunk_7_chunk_2R3", 0.6, 0.4),
    ("contig_A_chunk_1F1", 0.2, 0.8),
    ("contig_A_chunk_2R1", 0.9, 0.1),
    ("contig_A_chunk_1R2", 0.7, 0.3),  # chunk 1: best virus 0.8 >= best others 0.7 -> viral
    ("contig_A_chunk_3F3", 0.45, 0.55),
]
SUMMARY_HEADER = (
    "sequence_id\tlength\tchunks\tchunks_scored\tframes_scored\tviral_chunks\t"
    "viral_fraction\tmax_virus_score\tmean_virus_score\tcall\n"
)


@pytest.fixture
def run(tmp_path):
    (tmp_path / "sequences.tsv").write_text(SEQUENCES_TSV)
    predictions_file(tmp_path / "prediction_results.txt", FRAMES)
    return tmp_path


@pytest.mark.parametrize("max_in_memory", [1, 2, 100])
def test_summary_has_one_row_per_input_sequence_in_input_order(run, max_in_memory):
    stats = write_sequence_summary(
        run / "sequences.tsv", run / "prediction_results.txt", run / "sequence_summary.tsv", max_in_memory=max_in_memory
    )
    assert (run / "sequence_summary.tsv").read_text() == SUMMARY_HEADER + (
        # contig_A: chunks 1 and 3 viral of 3 scored; mean of chunk bests (0.8 + 0.1 + 0.6) / 3
        "contig_A\t1200\t3\t3\t5\t2\t0.6667\t0.8\t0.5\tvirus\n"
        "read_B\t300\t1\t1\t1\t1\t1.0000\t0.5\t0.5\tvirus\n"
        "ambig_chunk_7\t700\t2\t1\t1\t0\t0.0000\t0.4\t0.4\tothers\n"
        "empty_C\t450\t1\t0\t0\t0\tNA\tNA\tNA\tno_frames\n"
    )
    assert stats == SummaryStats(sequences=4, with_frames=3, viral=2, chunks_scored=5, frames_scored=7)


def test_the_call_compares_the_unrounded_fraction(run):
    # contig_A has 2/3 = 0.66666... viral chunks: printed 0.6667 but below a 0.6667 cut.
    stats = write_sequence_summary(
        run / "sequences.tsv", run / "prediction_results.txt", run / "s.tsv", min_viral_fraction=0.6667
    )
    calls = {row.sequence_id: row.call for row in iter_summary(run / "s.tsv")}
    assert calls == {"contig_A": "others", "read_B": "virus", "ambig_chunk_7": "others", "empty_C": "no_frames"}
    assert stats.viral == 1
    write_sequence_summary(run / "sequences.tsv", run / "prediction_results.txt", run / "s.tsv", min_viral_fraction=2 / 3)
    assert next(iter_summary(run / "s.tsv")).call == "virus"


def test_a_fraction_outside_zero_to_one_is_refused(run):
    with pytest.raises(ConfigError, match=r"^--min-viral-fraction must lie between 0 and 1, got 1.5$"):
        write_sequence_summary(run / "sequences.tsv", run / "prediction_results.txt", run / "s.tsv", min_viral_fraction=1.5)


def test_frame_ids_split_on_the_last_chunk_marker():
    frame = parse_frame_id("ambig_chunk_7_chunk_12R3")
    assert (frame.sequence_id, frame.chunk, frame.frame, frame.chunk_id) == ("ambig_chunk_7", 12, "R3", "ambig_chunk_7_chunk_12")
    assert parse_frame_id("x_chunk_1X1") is None
    assert parse_frame_id("x_1F1") is None
    assert parse_frame_id("x_chunk_F1") is None


def test_summary_refuses_frames_of_a_sequence_it_does_not_know(run):
    predictions_file(run / "prediction_results.txt", FRAMES + [("stranger_chunk_1F1", 0.1, 0.9)])
    with pytest.raises(InputError) as err:
        write_sequence_summary(run / "sequences.tsv", run / "prediction_results.txt", run / "s.tsv")
    assert str(err.value) == (
        f"{run / 'prediction_results.txt'}: sequence 'stranger' was scored but is not in "
        f"{run / 'sequences.tsv'}; the two files come from different runs"
    )
    assert not (run / "s.tsv").exists()


def test_summary_refuses_a_chunk_beyond_the_sequence(run):
    predictions_file(run / "prediction_results.txt", FRAMES + [("read_B_chunk_2F1", 0.1, 0.9)])
    with pytest.raises(InputError, match=r"sequence 'read_B' has a frame of chunk 2 but .* lists 1 chunks"):
        write_sequence_summary(run / "sequences.tsv", run / "prediction_results.txt", run / "s.tsv")


def test_summary_refuses_duplicate_input_ids(run):
    (run / "sequences.tsv").write_text(SEQUENCES_TSV + "read_B\t300\t1\n")
    with pytest.raises(InputError) as err:
        write_sequence_summary(run / "sequences.tsv", run / "prediction_results.txt", run / "s.tsv")
    assert str(err.value) == (
        f"{run / 'sequences.tsv'}: sequence ID 'read_B' appears on lines 3 and 6; "
        "IDs must be unique, rename the duplicates in the input"
    )


def test_summary_refuses_a_frame_id_of_another_shape(run):
    predictions_file(run / "prediction_results.txt", [("contig_A_part1", 0.1, 0.9)])
    with pytest.raises(InputError) as err:
        write_sequence_summary(run / "sequences.tsv", run / "prediction_results.txt", run / "s.tsv")
    assert str(err.value) == (
        f"{run / 'prediction_results.txt'}: line 2: frame ID 'contig_A_part1' is not "
        "<sequence id>_chunk_<k><F|R><1-3>; was this file made by virnucpro?"
    )


def test_summary_of_a_run_without_frames_calls_everything_no_frames(tmp_path):
    (tmp_path / "sequences.tsv").write_text(SEQUENCES_TSV)
    (tmp_path / "prediction_results.txt").write_text(HEADER)
    stats = write_sequence_summary(tmp_path / "sequences.tsv", tmp_path / "prediction_results.txt", tmp_path / "s.tsv")
    assert stats == SummaryStats(sequences=4, with_frames=0, viral=0, chunks_scored=0, frames_scored=0)
    assert {row.call for row in iter_summary(tmp_path / "s.tsv")} == {"no_frames"}


# ------------------------------------------------------------------ viral FASTA


def _input_fasta(path: Path, extra_first: bool = False) -> tuple[Path, dict[str, str]]:
    rng = np.random.default_rng(7)
    seqs = {sid: "".join(rng.choice(list("acgtACGTN"), size=n)) for sid, n in
            [("contig_A", 1200), ("read_B", 300), ("ambig_chunk_7", 700), ("empty_C", 450)]}
    text = ">not_in_summary\nACGT\n" if extra_first else ""
    text += ">contig_A  a host contig, 1200 bp\n" + seqs["contig_A"] + "\n"
    text += ">read_B\n" + seqs["read_B"][:100] + "\n" + seqs["read_B"][100:] + "\n"
    text += ">ambig_chunk_7\n" + seqs["ambig_chunk_7"] + "\n>empty_C\n" + seqs["empty_C"] + "\n"
    path.write_text(text)
    return path, seqs


def _wrapped(seq: str) -> str:
    return "".join(seq[i : i + 60] + "\n" for i in range(0, len(seq), 60))


def test_viral_fasta_holds_the_sequences_called_virus_with_their_headers(run):
    source, seqs = _input_fasta(run / "input.fa", extra_first=True)
    write_sequence_summary(run / "sequences.tsv", run / "prediction_results.txt", run / "sequence_summary.tsv")
    out = run / "viral.fasta"
    assert write_viral_fasta(source, run / "sequence_summary.tsv", out) == 2
    assert out.read_text() == (
        ">contig_A  a host contig, 1200 bp\n" + _wrapped(seqs["contig_A"]) + ">read_B\n" + _wrapped(seqs["read_B"])
    )


def test_viral_fasta_refuses_an_input_that_lacks_a_summarised_sequence(run):
    write_sequence_summary(run / "sequences.tsv", run / "prediction_results.txt", run / "sequence_summary.tsv")
    other = run / "other.fa"
    other.write_text(">contig_A\nACGT\n>read_B\nACGT\n")
    with pytest.raises(InputError) as err:
        write_viral_fasta(other, run / "sequence_summary.tsv", run / "viral.fasta")
    assert str(err.value) == (
        f"{run / 'sequence_summary.tsv'}: sequence 'ambig_chunk_7' is not in {other} (or out of order); "
        "give the same input the run was made from"
    )
    assert not (run / "viral.fasta").exists()
