"""dnabert=v2 against the real DNABERT-S remote code: committed reference means (see data/golden/README.md).

The reference numbers were made once, outside this repository, by the real
``bert_layers.py`` (DNABERT-2/-S hub snapshot, PyTorch attention path) on the
committed tiny model, one sequence per call, ``torch.mean`` over every token. The
model has 12 heads like DNABERT-S (not a power of two), and the inputs run from 0 to
1000 bp plus four sequences of more than 512 tokens (the ALiBi starting size).
"""

from __future__ import annotations

import gzip
import json
import random

import numpy as np
import pytest

from conftest import GOLDEN
from virnucpro_dnabert_v2.embedder import DnabertV2Embedder
from virnucpro_dnabert_v2.loading import load_dnabert


def golden_sequences() -> list[str]:
    lines = gzip.open(GOLDEN / "sequences.fa.gz", "rt").read().splitlines()
    return [line for line in lines if not line.startswith(">")]


@pytest.fixture(scope="module")
def golden():
    seqs = golden_sequences()
    want = np.load(GOLDEN / "reference_means.npy")
    assert want.shape == (len(seqs), 48) and want.dtype == np.float32
    return seqs, want


def test_the_golden_set_covers_0_to_1000_bp_and_more_than_512_tokens(golden):
    seqs, _ = golden
    lengths = [len(s) for s in seqs]
    assert set(range(0, 101)) <= set(lengths) and max(l for l in lengths if l <= 1000) == 1000
    embedder = DnabertV2Embedder(load_dnabert(str(GOLDEN / "model")))
    tokens = [len(ids) for ids in embedder.tokenize(seqs)]
    assert min(tokens) == 2 and sum(t > 512 for t in tokens) >= 4
    meta = json.loads((GOLDEN / "meta.json").read_text())
    assert meta["shape"]["num_heads"] == 12


@pytest.mark.parametrize("batch_tokens", [1, 600, 4000, 200000])
def test_v2_equals_the_real_remote_code_one_sequence_per_call(golden, batch_tokens):
    seqs, want = golden
    order = list(range(len(seqs)))
    random.Random(batch_tokens).shuffle(order)
    embedder = DnabertV2Embedder(load_dnabert(str(GOLDEN / "model")), batch_tokens=batch_tokens)
    got = embedder.embed([seqs[i] for i in order])
    assert np.abs(got - want[order]).max() <= 1e-5
    assert embedder.attributes["attention"] == "sdpa_bucketed"


def test_guard_power_of_two_slopes_for_twelve_heads_would_fail_the_golden_test(golden, monkeypatch):
    """Guard: the golden set distinguishes MosaicBERT's 12-head slopes from the naive 2^(-8k/n)."""
    import virnucpro_dnabert_v2.alibi as alibi

    monkeypatch.setattr(alibi, "alibi_slopes", lambda n: [2.0 ** (-8.0 * (k + 1) / n) for k in range(n)])
    seqs, want = golden
    got = DnabertV2Embedder(load_dnabert(str(GOLDEN / "model"))).embed(seqs)
    assert np.abs(got - want).max() > 1e-3


def test_guard_leaving_cls_and_sep_out_of_the_mean_would_fail(golden, monkeypatch):
    import virnucpro_dnabert_v2.model as model

    original = model.segment_means

    def without_specials(hidden, lengths):
        import torch

        keep = torch.ones(hidden.shape[0], dtype=torch.bool)
        ends = torch.cumsum(lengths, 0)
        keep[ends - 1] = False
        keep[ends - lengths] = False
        return original(hidden[keep], lengths - 2)

    monkeypatch.setattr(model, "segment_means", without_specials)
    seqs, want = golden
    long_enough = [i for i, s in enumerate(seqs) if len(s) > 20]
    got = DnabertV2Embedder(load_dnabert(str(GOLDEN / "model"))).embed([seqs[i] for i in long_enough])
    assert np.abs(got - want[long_enough]).max() > 1e-3
