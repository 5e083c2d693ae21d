"""Six-frame translation with the original's quirks (dropped N codons, 3*aa+1 spans)."""

from __future__ import annotations

import random

from Bio.Data import CodonTable
from hypothesis import given, settings
from hypothesis import strategies as st

from virnucpro_core.testing.original import _identify, _translate
from virnucpro_core.translate import (
    STANDARD_CODE,
    Frame,
    identified_frames,
    reverse_complement,
    six_frames,
    translate_chunks,
)

ALPHABETS = ["ACGT", "ACG", "CGT", "ACGTN", "ACGTRYKMSWBDHVN", "ACGTacgtn", "ACGU-."]


def random_seq(seed: int, length: int, alphabet: str) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(alphabet) for _ in range(length))


def oracle_frames(chunk: str) -> list[Frame]:
    upper = chunk.upper()
    return [Frame(name[-2:], dna, aa) for name, dna, aa in _identify("", upper) if aa != ""]


def test_standard_code_is_ncbi_table_1():
    table = CodonTable.unambiguous_dna_by_id[1]
    expected = dict(table.forward_table) | {codon: "*" for codon in table.stop_codons}
    assert STANDARD_CODE == expected and len(STANDARD_CODE) == 64


def test_reverse_complement_leaves_non_acgt_letters_alone():
    # The original complements only ACGTacgt: R stays R (not Y), N stays N.
    assert reverse_complement("AACGTRNacgt") == "acgtNRACGTT"


def test_small_example_by_hand():
    # F1 ATG AAA -> MK, span chunk[0:7] clipped to 6 bases; F2 TGA is a stop; F3 GAA -> E, span [2:6].
    # Reverse complement TTTCAT: R1 TTT CAT -> FH; R2 TTC -> F, span rc[1:5]; R3 TCA -> S, span rc[2:6].
    assert identified_frames("atgAAA") == [
        Frame("F1", "ATGAAA", "MK"),
        Frame("F3", "GAAA", "E"),
        Frame("R1", "TTTCAT", "FH"),
        Frame("R2", "TTCA", "F"),
        Frame("R3", "TCAT", "S"),
    ]


def test_codons_with_n_are_dropped_and_shift_the_span():
    # ATG NNN AAA CCC: the NNN codon vanishes, so F1 is "MKP" and its span is 3*3+1 = 10 bases
    # from the start, which now ends inside the real codons (the original's behaviour).
    frames = {f.suffix: f for f in identified_frames("ATGNNNAAACCC")}
    assert frames["F1"] == Frame("F1", "ATGNNNAAAC", "MKP")


def test_sequences_shorter_than_a_codon_have_no_frames():
    assert identified_frames("") == []
    assert identified_frames("AC") == []
    assert six_frames("AC") == ["", "", "", "", "", ""]
    assert translate_chunks(["AC", "ATG", "A"]) == [[], [Frame("F1", "ATG", "M"), Frame("R1", "CAT", "H")], []]


def test_a_frame_of_only_dropped_codons_is_not_kept():
    # Protein "" has no '*', but prediction.py writes only non-empty proteins.
    assert identified_frames("NNNNNN") == []


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32), length=st.integers(0, 700), alphabet=st.sampled_from(ALPHABETS))
def test_six_frames_match_the_original(seed, length, alphabet):
    seq = random_seq(seed, length, alphabet).upper()
    assert six_frames(seq) == _translate(seq)


@settings(max_examples=100, deadline=None)
@given(
    seeds=st.lists(st.tuples(st.integers(0, 2**32), st.integers(0, 520), st.sampled_from(ALPHABETS)), min_size=1, max_size=12)
)
def test_batched_chunks_match_the_original_one_by_one(seeds):
    chunks = [random_seq(seed, length, alphabet) for seed, length, alphabet in seeds]
    batched = translate_chunks([c.upper() for c in chunks])
    assert batched == [oracle_frames(c) for c in chunks]


def test_stop_free_frames_are_found_in_long_random_batches():
    # No T on the forward strand means no stop codon in F1-F3: every frame must come back.
    chunks = [random_seq(i, 500, "ACGN") for i in range(50)] + [random_seq(99, 300, "ACGT")]
    batched = translate_chunks(chunks)
    assert all([f.suffix for f in frames][:3] == ["F1", "F2", "F3"] for frames in batched[:50])
    assert batched == [oracle_frames(c) for c in chunks]
