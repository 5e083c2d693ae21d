"""Packed batches must give the one-sequence-per-call numbers, equal to dnabert=v1's on the same folder."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from virnucpro_core.errors import ConfigError
from virnucpro_core.testing.contract import check_embedder_contract
from virnucpro_dnabert_v2.embedder import DnabertV2Embedder, plan_batches, read_options
from virnucpro_dnabert_v2.loading import load_dnabert


def random_dna(rng: random.Random, length: int) -> str:
    return "".join(rng.choice("ACGT") for _ in range(length))


@pytest.fixture(scope="module")
def mixed_sequences() -> list[str]:
    """0 to 1000 bases and one of ~2200 tokens (past the 512 ALiBi start), shuffled."""
    rng = random.Random(11)
    lengths = [0, 1, 2, 3, 5, 8, 30, 64, 99, 150, 151, 300, 301, 499, 500, 501, 640, 777, 999, 1000, 7000]
    seqs = [random_dna(rng, n) for n in lengths] + ["ACGTNNNNRYACGT", "acgtacgtTTGA"]
    rng.shuffle(seqs)
    return seqs


def build(folder, **kwargs) -> DnabertV2Embedder:
    return DnabertV2Embedder(load_dnabert(str(folder)), **kwargs)


_V1: dict[str, np.ndarray] = {}


def v1_one_per_call(folder, sequences: list[str]) -> np.ndarray:
    """dnabert=v1 (transformers + the folder's remote code) as the original ran it: one sequence per call."""
    key = f"{folder}:{hash(tuple(sequences))}"
    if key not in _V1:
        from virnucpro_dnabert_v1.loading import load_dnabert as load_v1

        loaded = load_v1(str(folder))
        rows = []
        with torch.no_grad():
            for seq in sequences:
                ids = loaded.tokenizer(seq, return_tensors="pt")["input_ids"]
                rows.append(torch.mean(loaded.model(ids)[0], dim=1).squeeze(0).numpy())
        _V1[key] = np.stack(rows)
    return _V1[key]


@pytest.mark.parametrize("batch_tokens", [1, 300, 2500, 100000])
def test_packed_batches_equal_v1_one_sequence_per_call(model_dir, mixed_sequences, batch_tokens):
    pytest.importorskip("virnucpro_dnabert_v1")
    embedder = build(model_dir, batch_tokens=batch_tokens)
    got = embedder.embed(mixed_sequences)
    assert got.dtype == np.float32 and got.shape == (len(mixed_sequences), embedder.dim)
    assert np.abs(got - v1_one_per_call(model_dir, mixed_sequences)).max() <= 1e-5


def test_v2_equals_v1_batched_on_the_same_folder(model_dir, mixed_sequences):
    pytest.importorskip("virnucpro_dnabert_v1")
    from virnucpro_dnabert_v1.embedder import DnabertV1Embedder
    from virnucpro_dnabert_v1.loading import load_dnabert as load_v1

    v1 = DnabertV1Embedder(load_v1(str(model_dir)), batch_size=8).embed(mixed_sequences)
    assert np.abs(build(model_dir).embed(mixed_sequences) - v1).max() <= 1e-5


def test_tokens_equal_those_of_the_transformers_tokenizer(model_dir, mixed_sequences):
    transformers = pytest.importorskip("transformers")
    reference = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    assert build(model_dir).tokenize(mixed_sequences) == [reference(s)["input_ids"] for s in mixed_sequences]


def test_the_sequences_really_exercise_blocks_and_long_alibi(mosaic_dir, mixed_sequences):
    """Guard: the inputs span several SDPA blocks and one sequence passes 512 tokens."""
    embedder = build(mosaic_dir)
    lengths = [len(ids) for ids in embedder.tokenize(mixed_sequences)]
    assert max(lengths) > 512
    embedder._attend.prepare(sorted(lengths, reverse=True))
    _, blocks = embedder._attend._state
    assert len(blocks) >= 5 and any(block.valid.shape[0] > 1 and not bool(block.valid.all()) for block in blocks)


def test_guard_padded_keys_must_not_be_attended(mosaic_dir, mixed_sequences, monkeypatch):
    """Guard: padding keys with 0 instead of -inf changes the numbers."""
    import virnucpro_dnabert_v2.attention as attention

    want = build(mosaic_dir, batch_tokens=100000).embed(mixed_sequences)
    real_bias = attention.PackedAttention._blocks

    def zero_padding_bias(self, lengths, offsets):
        total, blocks = real_bias(self, lengths, offsets)
        return total, [attention._Block(b.index, b.valid, b.positions, torch.nan_to_num(b.bias, neginf=0.0)) for b in blocks]

    monkeypatch.setattr(attention.PackedAttention, "_blocks", zero_padding_bias)
    got = build(mosaic_dir, batch_tokens=100000).embed(mixed_sequences)
    assert np.abs(got - want).max() > 1e-3


def test_keeps_the_core_contract(model_dir):
    embedder = build(model_dir, batch_tokens=40)
    check_embedder_contract(embedder, ["ACGTAC", "GGGTTTAAACGTAGCTAGGATCCA" * 4, "TTAC", "A", "CCGGTTAACCGGTTAA" * 9])


def test_rows_follow_input_order_and_duplicates_match(mosaic_dir, mixed_sequences):
    """Duplicates land in different batches of different sizes: equal to fp32 rounding, not bit for bit
    (a row of a matrix product may round differently with the matrix's height)."""
    embedder = build(mosaic_dir, batch_size=3)
    doubled = mixed_sequences + mixed_sequences[::-1]
    out = embedder.embed(doubled)
    n = len(mixed_sequences)
    assert np.abs(out[:n] - out[n:][::-1]).max() <= 1e-6
    alone = np.stack([embedder.embed([s])[0] for s in mixed_sequences[:5]])
    assert np.abs(out[:5] - alone).max() <= 1e-6


def test_progress_counts_every_sequence_once(mosaic_dir, mixed_sequences):
    calls: list[int] = []
    build(mosaic_dir, batch_size=4).embed(mixed_sequences, progress=calls.append)
    assert sum(calls) == len(mixed_sequences) and max(calls) <= 4


def test_empty_input_and_closed_embedder(mosaic_dir):
    from virnucpro_core.errors import BackendError

    embedder = build(mosaic_dir)
    assert embedder.embed([]).shape == (0, 32)
    embedder.close()
    with pytest.raises(BackendError, match="closed"):
        embedder.embed(["ACGT"])


def test_max_length_keeps_the_first_bases(mosaic_dir):
    seqs = ["ACGTTGCA" * 20, "GATTACA"]
    truncated = build(mosaic_dir, max_length=50).embed(seqs)
    assert np.array_equal(truncated, build(mosaic_dir).embed([s[:50] for s in seqs]))


def test_plan_batches_respects_both_caps_and_loses_nothing():
    lengths = [5, 300, 2, 2, 80, 80, 1000, 7]
    batches = plan_batches(lengths, batch_tokens=200, batch_size=3)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert batches[0] == [6] and batches[1] == [1]  # longer than the budget: alone
    assert all(len(b) <= 3 and (len(b) == 1 or sum(lengths[i] for i in b) <= 200) for b in batches)


def test_options_are_read_from_extra_and_unknown_ones_refused():
    assert read_options({"attention": "sdpa"}) == {"attention": "sdpa"}
    with pytest.raises(ConfigError, match=r"unknown backend option colour; known: attention: "):
        read_options({"colour": "blue"})


def test_attention_choice_is_validated_and_recorded(mosaic_dir):
    assert build(mosaic_dir, attention="sdpa").attributes == {"attention": "sdpa_bucketed", "precision": "fp32"}
    assert build(mosaic_dir).attributes["attention"] == "sdpa_bucketed"  # auto on the CPU
    with pytest.raises(ConfigError, match=r"attention=flash cannot run here: flash-attn runs on CUDA only"):
        build(mosaic_dir, attention="flash")
    with pytest.raises(ConfigError, match=r"attention 'ring' is unknown; choose one of auto, flash, sdpa"):
        build(mosaic_dir, attention="ring")


def test_bad_settings_are_config_errors(mosaic_dir):
    loaded = load_dnabert(str(mosaic_dir))
    with pytest.raises(ConfigError, match="precision 'fp8' is unknown"):
        DnabertV2Embedder(loaded, precision="fp8")
    with pytest.raises(ConfigError, match="batch_tokens must be a positive number, got 0"):
        DnabertV2Embedder(loaded, batch_tokens=0)


def test_reduced_precision_stays_close_to_fp32_with_fp32_pooling(odd_dir, mixed_sequences):
    """bf16 linear layers (the CUDA mode, run on the CPU here): close, not equal, to fp32."""
    fp32 = build(odd_dir).embed(mixed_sequences)
    bf16_embedder = build(odd_dir, precision="bf16")
    bf16 = bf16_embedder.embed(mixed_sequences)
    assert bf16.dtype == np.float32 and bf16_embedder.attributes["precision"] == "bf16"
    cos = (fp32 * bf16).sum(1) / np.linalg.norm(fp32, axis=1) / np.linalg.norm(bf16, axis=1)
    assert cos.min() >= 0.999 and 0 < np.abs(bf16 - fp32).max() < 0.1


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@cuda
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_cuda_half_precision_matches_cpu_fp32(odd_dir, mixed_sequences, precision):
    want = build(odd_dir).embed(mixed_sequences)
    embedder = build(odd_dir, device="cuda", precision=precision)
    got = embedder.embed(mixed_sequences)
    cos = (want * got).sum(1) / np.linalg.norm(want, axis=1) / np.linalg.norm(got, axis=1)
    assert cos.min() >= 0.999
    ratio = np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert np.abs(ratio - 1).max() <= 0.005


@cuda
def test_cuda_fp32_sdpa_equals_cpu(odd_dir, mixed_sequences):
    want = build(odd_dir).embed(mixed_sequences)
    got = build(odd_dir, device="cuda", attention="sdpa").embed(mixed_sequences)
    assert np.abs(got - want).max() <= 1e-4
