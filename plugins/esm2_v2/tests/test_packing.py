"""Packing: every protein in exactly one batch, within the budget, longest first; tokens as fair-esm's."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from virnucpro_core.errors import InputError
from virnucpro_esm2_v2.packing import PackingStats, plan_packs, split_pack
from virnucpro_esm2_v2.tokens import CLS, EOS, MASK, PAD, VOCABULARY, encode


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=3, max_value=3000), max_size=200), st.integers(min_value=1, max_value=5000),
       st.one_of(st.none(), st.integers(min_value=1, max_value=50)))
def test_every_index_once_within_budget(tokens, budget, max_sequences):
    packs = plan_packs(tokens, budget, max_sequences)
    assert sorted(i for p in packs for i in p.indices) == list(range(len(tokens)))
    for p in packs:
        assert p.tokens == tuple(tokens[i] for i in p.indices)
        assert p.total_tokens <= budget or len(p) == 1  # only a lone protein may exceed the budget
        if max_sequences:
            assert len(p) <= max_sequences
    order = [tokens[i] for p in packs for i in p.indices]
    assert order == sorted(order, reverse=True)  # sorted by length, longest first
    stats = PackingStats()
    for p in packs:
        stats.add(p, budget)
    assert stats.sequences == len(tokens) and 0 <= stats.utilisation <= 1


def test_split_pack_keeps_the_input_positions():
    [pack] = plan_packs([10, 40, 30, 20], 100)
    parts = split_pack(pack, 50)
    assert [p.indices for p in parts] == [(1,), (2, 3), (0,)]
    assert [p.tokens for p in parts] == [(40,), (30, 20), (10,)]


def test_utilisation_counts_a_lone_oversized_protein_as_full():
    stats = PackingStats()
    for p in plan_packs([500, 60, 30], 100):
        stats.add(p, 100)
    assert stats.tokens == 590 and stats.capacity == 500 + 100
    assert stats.utilisation == pytest.approx(590 / 600)


def test_vocabulary_is_fair_esms():
    import esm

    alphabet = esm.Alphabet.from_architecture("ESM-1b")
    assert tuple(alphabet.all_toks) == VOCABULARY
    assert (alphabet.cls_idx, alphabet.padding_idx, alphabet.eos_idx, alphabet.mask_idx) == (CLS, PAD, EOS, MASK)
    assert alphabet.prepend_bos and alphabet.append_eos
    rng = random.Random(0)
    for _ in range(50):
        protein = "".join(rng.choice("LAGVSERTIDPKQNFYMHWCXBUZO.-") for _ in range(rng.randint(1, 80)))
        assert encode(protein, 1, 1).tolist() == [CLS, *alphabet.encode(protein), EOS]


@pytest.mark.parametrize("protein, letter", [("MKJV", "J"), ("mkv", "m"), ("MK*", "*"), ("MKé", "é")])
def test_a_letter_outside_the_alphabet_is_a_one_line_error(protein, letter):
    with pytest.raises(InputError) as info:
        encode(protein, 3, 9)
    assert str(info.value).startswith(f"protein #3 of 9 contains {letter!r}, which is not in ESM-2's alphabet")
    assert "\n" not in str(info.value)
