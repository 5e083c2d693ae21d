"""Exact k-mer frequencies on sequences small enough to count by hand.

Columns are k-mers read as base-4 numbers with A=0, C=1, G=2, T=3:
ACGT = 0*64 + 1*16 + 2*4 + 3 = 27, CGTA = 108, GTAC = 177, TACG = 198, TTTT = 255.
"""

import numpy as np
import pytest

from virnucpro_core.backends import EmbedderOptions
from virnucpro_core.errors import BackendError
from virnucpro_kmer.embedder import KmerEmbedder, embedder_from_options, kmer_frequencies


def col(kmer: str) -> int:
    return int(kmer.translate(str.maketrans("ACGT", "0123")), 4)


def expected(k: int, **freqs: float) -> np.ndarray:
    row = np.zeros(4**k, dtype=np.float32)
    for kmer, f in freqs.items():
        row[col(kmer)] = f
    return row


def test_column_numbering_is_base4_with_acgt_digits():
    assert [col(k) for k in ("AAAA", "AAAC", "ACGT", "CGTA", "GTAC", "TACG", "TTTT")] == [0, 1, 27, 108, 177, 198, 255]


def test_frequencies_of_hand_counted_sequences():
    out = KmerEmbedder().embed(["ACGTACGT", "GATTACA", "AAAAA", "ttttt"])
    assert out.dtype == np.float32 and out.shape == (4, 256)
    # ACGTACGT has 5 windows: ACGT twice, CGTA, GTAC, TACG once each
    np.testing.assert_array_equal(out[0], expected(4, ACGT=0.4, CGTA=0.2, GTAC=0.2, TACG=0.2))
    np.testing.assert_array_equal(out[1], expected(4, GATT=0.25, ATTA=0.25, TTAC=0.25, TACA=0.25))
    np.testing.assert_array_equal(out[2], expected(4, AAAA=1.0))
    np.testing.assert_array_equal(out[3], expected(4, TTTT=1.0))  # upper-cased first


def test_windows_with_non_acgt_letters_are_skipped():
    # ACGTNACGT: only the two ACGT windows avoid the N
    out = KmerEmbedder().embed(["ACGTNACGT", "ACGT-RACGTU", "acgtéacgt"])
    for row in out:
        np.testing.assert_array_equal(row, expected(4, ACGT=1.0))


def test_sequences_without_a_valid_window_give_zero_rows():
    out = KmerEmbedder().embed(["", "ACG", "NNNNNNNN", "ACGNACGNACG"])
    np.testing.assert_array_equal(out, np.zeros((4, 256), dtype=np.float32))


def test_windows_never_cross_from_one_sequence_into_the_next():
    # concatenated these would spell ACGTAC; each alone is shorter than k
    out = kmer_frequencies(["ACG", "TAC", "", "GTACG"], 4)
    np.testing.assert_array_equal(out[:3], np.zeros((3, 256), dtype=np.float32))
    np.testing.assert_array_equal(out[3], expected(4, GTAC=0.5, TACG=0.5))


def test_rows_sum_to_one_when_any_window_counts():
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGTN"), size=n)) for n in rng.integers(4, 600, size=200)]
    sums = KmerEmbedder().embed(seqs).sum(axis=1)
    has_window = np.array([any(set(s[i : i + 4]) <= set("ACGT") for i in range(len(s) - 3)) for s in seqs])
    np.testing.assert_allclose(sums[has_window], 1.0, atol=1e-6)
    np.testing.assert_array_equal(sums[~has_window], 0.0)


def test_other_k():
    np.testing.assert_array_equal(KmerEmbedder(1).embed(["AACG"])[0], [0.5, 0.25, 0.25, 0.0])
    np.testing.assert_array_equal(KmerEmbedder(2).embed(["ACGTT"])[0], expected(2, AC=0.25, CG=0.25, GT=0.25, TT=0.25))


def test_batching_does_not_change_results_and_progress_counts_batches():
    rng = np.random.default_rng(1)
    seqs = ["".join(rng.choice(list("ACGTn"), size=n)) for n in rng.integers(0, 300, size=57)]
    whole = KmerEmbedder().embed(seqs)
    calls = []
    small = KmerEmbedder(batch_size=10, batch_bases=1000).embed(seqs, calls.append)
    np.testing.assert_array_equal(small, whole)
    assert sum(calls) == 57 and len(calls) > 6
    np.testing.assert_array_equal(np.stack([KmerEmbedder().embed([s])[0] for s in seqs]), whole)


def test_max_length_counts_only_the_first_bases():
    out = KmerEmbedder(max_length=5).embed(["ACGTATTTTTTT"])
    np.testing.assert_array_equal(out[0], expected(4, ACGT=0.5, CGTA=0.5))


def test_options_select_k_and_refuse_what_cannot_apply():
    default = embedder_from_options(EmbedderOptions())
    assert (default.k, default.dim, default.model_id) == (4, 256, "kmer-4")
    three = embedder_from_options(EmbedderOptions(extra={"k": "3"}, batch_size=7, max_length=100))
    assert (three.dim, three.model_id, three.batch_size, three.max_length) == (64, "kmer-3", 7, 100)
    assert embedder_from_options(EmbedderOptions(model="kmer-4", device="cuda:0", precision="bf16")).dim == 256

    with pytest.raises(BackendError, match=r"^kmer=v1: k must be a whole number from 1 to 8, got '9'$"):
        embedder_from_options(EmbedderOptions(extra={"k": "9"}))
    with pytest.raises(BackendError, match=r"^kmer=v1: k must be a whole number from 1 to 8, got 'four'$"):
        embedder_from_options(EmbedderOptions(extra={"k": "four"}))
    with pytest.raises(BackendError, match=r"^kmer=v1 does not know the option\(s\) kk; it takes only k"):
        embedder_from_options(EmbedderOptions(extra={"kk": "4"}))
    with pytest.raises(BackendError, match=r"^kmer=v1 has no model files .* model '/models/dnabert' was given; leave the model unset$"):
        embedder_from_options(EmbedderOptions(model="/models/dnabert"))
