"""The original chunk rule, including its odd short last chunk."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from virnucpro_core.chunking import chunk_count, chunk_spans, chunk_starts, iter_chunks


def literal_original_starts(length: int, size: int) -> list[int]:
    """The original loop, step by step (shift list, zip, running move_step, ``if a > 1``)."""
    n = -(-length // size)
    overlap = n * size - length
    low = int(overlap / n)
    extra = overlap - low * (n - 1)
    shifts = [low + 1] * extra + [low] * (n - 1 - extra) + [0]
    starts, moved = [], 0
    for a, shift in zip(range(0, length, size), shifts):
        starts.append(a - moved if a > 1 else a)
        moved += shift
    return starts


def test_550_at_500_gives_500_and_276():
    # n=2, overlap=450, q=225, extra=225 > n-1: every shift is q+1=226 and the second chunk starts at 274.
    assert chunk_spans(550, 500) == [(0, 500), (274, 550)]


def test_evenly_overlapping_case():
    # 1100 at 500: n=3, overlap=400, q=133, extra=134 > 2 -> shifts 134,134: starts 0, 366, 732.
    assert chunk_starts(1100, 500) == [0, 366, 732]
    # 1400 at 500: n=3, overlap=100, q=33, extra=34 > 2 again; 1490: overlap=10, q=3, extra=4 > 2.
    assert chunk_starts(1490, 500) == [0, 496, 992]
    # 10010 at 500: n=21, overlap=490, q=23, extra=30 > 20; 10400: overlap=100, q=4, extra=20 -> even.
    starts = chunk_starts(10400, 500)
    assert starts[-1] + 500 == 10400 and len(starts) == 21


def test_exact_multiples_do_not_overlap():
    assert chunk_spans(1000, 500) == [(0, 500), (500, 1000)]
    assert chunk_spans(900, 300) == [(0, 300), (300, 600), (600, 900)]


def test_shorter_than_size_is_one_short_chunk():
    assert chunk_spans(1, 500) == [(0, 1)]
    assert chunk_spans(299, 300) == [(0, 299)]


def test_empty_sequence_has_no_chunks():
    assert chunk_starts(0, 500) == [] and chunk_count(0, 500) == 0


def test_bad_size():
    with pytest.raises(ValueError, match="chunk size must be a positive integer, got 0"):
        chunk_starts(10, 0)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 300, 500])
def test_matches_the_original_loop_for_every_length_up_to_2100(size):
    for length in range(1, 2101):
        assert chunk_starts(length, size) == literal_original_starts(length, size), (length, size)


@st.composite
def lengths_and_sizes(draw):
    size = draw(st.integers(1, 5000))
    n = draw(st.integers(1, 2000))
    return draw(st.integers((n - 1) * size + 1, n * size)), size


@settings(max_examples=300, deadline=None)
@given(case=lengths_and_sizes())
def test_chunks_cover_the_sequence_in_order(case):
    length, size = case
    spans = chunk_spans(length, size)
    assert len(spans) == -(-length // size)
    assert spans[0][0] == 0 and spans[-1][1] == length
    for (s0, e0), (s1, e1) in zip(spans, spans[1:]):
        assert s0 < s1 <= e0 and e0 - s0 == size  # every chunk but the last is full and they touch or overlap
    assert chunk_starts(length, size) == literal_original_starts(length, size)


def test_iter_chunks_names_and_keeps_case():
    seq = "acgT" * 150  # 600 bp at 500 -> n=2, overlap=400, q=200, extra=200 -> starts 0, 299
    assert list(iter_chunks("ctg1", seq, 500)) == [("ctg1_chunk_1", seq[:500]), ("ctg1_chunk_2", seq[299:600])]
