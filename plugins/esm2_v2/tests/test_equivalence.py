"""esm2=v2 gives fair-esm's numbers (esm2=v1, the stock forward), protein by protein, in fp32.

Bounds per protein (never cosine alone): max |Δ| <= 1e-4 * (1 + max |x|) and the norm
ratio within 1e-4, for every attention implementation that runs on this machine. The
guard tests patch the *v2* module with each of the predecessor's bugs and show that the
same check then fails, so the check can see them.
"""

from __future__ import annotations

import functools
import random

import numpy as np
import pytest
import torch

from virnucpro_core.backends import EmbedderOptions
from virnucpro_esm2_v1.embedder import Esm2V1Embedder
from virnucpro_esm2_v2 import attention as attn
from virnucpro_esm2_v2 import batching, model
from virnucpro_esm2_v2.embedder import Esm2V2Embedder
from virnucpro_esm2_v2.equivalence import RowComparison

from conftest import random_protein

CPU_ATTENTION = attn.available("cpu", torch.float32)


def v1_rows(checkpoint, seqs, **options):
    """esm2=v1's rows (fair-esm's stock forward), computed once per model, proteins and options."""
    return _v1_rows(str(checkpoint), tuple(seqs), tuple(sorted(options.items())))


@functools.lru_cache(maxsize=None)
def _v1_rows(checkpoint, seqs, options):
    embedder = Esm2V1Embedder.from_options(EmbedderOptions(model=checkpoint, **dict(options)))
    try:
        rows = embedder.embed(list(seqs))
    finally:
        embedder.close()
    rows.setflags(write=False)
    return rows


def v2_embedder(checkpoint, attention=None, **options):
    extra = {"attention": attention} if attention else {}
    return Esm2V2Embedder.from_options(EmbedderOptions(model=str(checkpoint), extra=extra, **options))


def assert_equivalent(got, ref, seqs):
    cmp = RowComparison.of(got, ref)
    bad = cmp.fp32_failures()
    assert not bad, (f"{len(bad)} of {len(seqs)} proteins differ, first #{bad[0]} (length {len(seqs[bad[0]])}): "
                     f"max|d| {cmp.max_abs[bad[0]]:.3g} (scale {cmp.scale[bad[0]]:.3g}), norm ratio {cmp.norm_ratio[bad[0]]:.8f}")
    return cmp


def test_sdpa_is_the_cpu_path():
    assert CPU_ATTENTION == ["sdpa-bucketed"]
    assert attn.unavailable_reason("torch-varlen", "cpu", torch.float16) == "needs CUDA"


@pytest.mark.parametrize("attention", CPU_ATTENTION)
@pytest.mark.parametrize("batch_tokens", [None, 700])
def test_real_proteins_match_fair_esm(checkpoint, real_proteins, attention, batch_tokens):
    assert len(real_proteins) > 300
    ref = v1_rows(checkpoint, real_proteins)
    embedder = v2_embedder(checkpoint, attention, batch_tokens=batch_tokens)
    got = embedder.embed(real_proteins)
    assert embedder.attributes["attention"] == attention
    assert embedder.call_stats.batches > 1
    assert_equivalent(got, ref, real_proteins)


@pytest.fixture(scope="module")
def edge_proteins() -> list[str]:
    rng = random.Random(3)
    return [random_protein(rng, n) for n in (1, 1100, 2, 1, 37, 700, 3, 166, 1030)] + ["M", "W", "XXXX", "A.-B"]


@pytest.mark.parametrize("attention", CPU_ATTENTION)
def test_edge_cases_match_fair_esm(checkpoint, edge_proteins, attention):
    """Single residues, longer than max_length (1024), and very different lengths in ONE pack."""
    ref = v1_rows(checkpoint, edge_proteins)
    embedder = v2_embedder(checkpoint, attention, batch_tokens=100_000)
    assert embedder.embed(edge_proteins).shape == (len(edge_proteins), embedder.dim)
    assert embedder.stats.batches == 1  # everything went through one packed stream
    assert_equivalent(embedder.embed(edge_proteins), ref, edge_proteins)
    for k, seq in enumerate(edge_proteins[:4]):  # a batch of one
        assert_equivalent(embedder.embed([seq]), ref[k : k + 1], [seq])


def test_a_smaller_max_length_pools_the_same_residues_as_v1(tiny_checkpoint, edge_proteins):
    ref = v1_rows(tiny_checkpoint, edge_proteins, max_length=30)
    assert_equivalent(v2_embedder(tiny_checkpoint, max_length=30).embed(edge_proteins), ref, edge_proteins)


def test_budget_smaller_than_a_protein_runs_it_alone(tiny_checkpoint, edge_proteins):
    ref = v1_rows(tiny_checkpoint, edge_proteins)
    embedder = v2_embedder(tiny_checkpoint, batch_tokens=64)
    assert_equivalent(embedder.embed(edge_proteins), ref, edge_proteins)
    assert 0 < float(embedder.attributes["packing_utilisation"]) <= 1


# -- guards: each bug of the predecessor, patched into v2, must fail the same check --------

def _no_rescale(monkeypatch):
    monkeypatch.setattr(model, "MASK_RATIO_TRAIN", 0.0)


def _eos_in_mean(monkeypatch):
    monkeypatch.setattr(batching, "pooled_span", lambda residues, max_length: (1, min(residues + 1, max_length + 1)))


def _tanh_gelu(monkeypatch):
    import torch.nn.functional as F

    monkeypatch.setattr(model, "gelu", lambda x: F.gelu(x, approximate="tanh"))


@pytest.mark.parametrize("bug", [_no_rescale, _eos_in_mean, _tanh_gelu], ids=["no-0.88-rescale", "eos-in-mean", "tanh-gelu"])
def test_each_known_bug_fails_the_check(monkeypatch, guard_checkpoint, real_proteins, bug):
    ref = v1_rows(guard_checkpoint, real_proteins)
    assert_equivalent(v2_embedder(guard_checkpoint).embed(real_proteins), ref, real_proteins)  # the unpatched v2 passes
    bug(monkeypatch)
    cmp = RowComparison.of(v2_embedder(guard_checkpoint).embed(real_proteins), ref)
    assert cmp.fp32_failures(), f"the check did not catch {bug.__name__}: {cmp.summary()}"


def test_positions_restart_at_zero_for_every_protein():
    assert batching.token_positions([3, 1, 2]).tolist() == [0, 1, 2, 0, 0, 1]


def test_positions_numbered_across_the_pack_fail_the_check(monkeypatch, tiny_checkpoint, real_proteins):
    """Rotary embeddings are relative, so a constant offset per protein cancels in q.k in exact
    arithmetic; numbering across the pack shows only through fp32 angle rounding at large
    offsets. A pack of ~920K tokens (the real proteins 20 times, each compared with its own
    v1 row) makes it visible; the correct per-protein numbering passes the same check."""
    seqs = real_proteins * 20
    ref = np.tile(v1_rows(tiny_checkpoint, real_proteins), (20, 1))
    embedder = v2_embedder(tiny_checkpoint, batch_tokens=10**7)
    assert_equivalent(embedder.embed(seqs), ref, seqs)
    assert embedder.stats.batches == 1
    monkeypatch.setattr(batching, "token_positions", lambda lengths: np.arange(int(sum(lengths)), dtype=np.int64))
    cmp = RowComparison.of(v2_embedder(tiny_checkpoint, batch_tokens=10**7).embed(seqs), ref)
    assert cmp.fp32_failures(), f"the check did not catch positions across the pack: {cmp.summary()}"
