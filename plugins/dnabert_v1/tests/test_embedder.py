"""Batched DNABERT-S embeddings must equal the original one-sequence-per-call numbers."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from virnucpro_dnabert_v1.embedder import DnabertV1Embedder, masked_mean, plan_batches
from virnucpro_dnabert_v1.loading import load_dnabert

from virnucpro_core.errors import ConfigError, InputError


def original_dnabert_s(tokenizer, model, seq: str) -> np.ndarray:
    """The original VirNucPro computation (units.extract_DNABERT_S), one sequence per call:
    tokenise, run ``model(input_ids)[0]`` without a mask, average every token position
    ([CLS] and [SEP] included)."""
    inputs = tokenizer(seq, return_tensors="pt")
    device = next(model.parameters()).device
    inputs = {k: v.to(device) for k, v in inputs.items()}
    with torch.no_grad():
        hidden_states = model(inputs["input_ids"])[0]
        embedding_mean = torch.mean(hidden_states, dim=1)
    return embedding_mean.squeeze().cpu().numpy()


def random_dna(rng: random.Random, length: int) -> str:
    return "".join(rng.choice("ACGT") for _ in range(length))


@pytest.fixture(scope="module")
def mixed_sequences() -> list[str]:
    """Lengths from 1 to 1000 bases in shuffled order, so every batch pads a lot."""
    rng = random.Random(7)
    lengths = [1, 2, 3, 7, 12, 30, 31, 64, 90, 150, 151, 250, 300, 301, 499, 500, 501, 700, 1000]
    seqs = [random_dna(rng, n) for n in lengths]
    seqs.append("ACGTNNNNRYACGT")  # ambiguity codes tokenise to [UNK]; still embedded, as in the original
    seqs.append("")  # only [CLS] [SEP]
    rng.shuffle(seqs)
    return seqs


def build(model_dir, **kwargs) -> DnabertV1Embedder:
    return DnabertV1Embedder(load_dnabert(str(model_dir)), **kwargs)


_ORIGINAL: dict[str, np.ndarray] = {}


def original_for(model_dir, sequences: list[str]) -> np.ndarray:
    """The original's numbers for ``sequences`` on the model in ``model_dir`` (computed once)."""
    key = f"{model_dir}:{hash(tuple(sequences))}"
    if key not in _ORIGINAL:
        loaded = load_dnabert(str(model_dir))
        _ORIGINAL[key] = np.stack([original_dnabert_s(loaded.tokenizer, loaded.model, s) for s in sequences])
    return _ORIGINAL[key]


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_batched_embeddings_equal_the_original_per_sequence_means(model_dir, mixed_sequences, batch_size):
    embedder = build(model_dir, batch_size=batch_size)
    got = embedder.embed(mixed_sequences)
    want = original_for(model_dir, mixed_sequences)
    assert got.dtype == np.float32
    assert got.shape == (len(mixed_sequences), embedder.dim)
    assert np.abs(got - want).max() <= 1e-5


@pytest.mark.parametrize("batch_size", [1, 64])
def test_runs_on_the_init_tiny_folder_through_its_remote_code(init_tiny_dir, mixed_sequences, batch_size):
    """The folder `virnucpro models init-tiny` writes: DNABERT-S's layout, VirNucPro's re-statement of its code."""
    loaded = load_dnabert(str(init_tiny_dir))
    assert loaded.remote_code and type(loaded.model).__module__.endswith("bert_layers")
    got = DnabertV1Embedder(loaded, batch_size=batch_size).embed(mixed_sequences)
    assert np.abs(got - original_for(init_tiny_dir, mixed_sequences)).max() <= 1e-5


def test_the_sequences_really_exercise_padding(model_dir, mixed_sequences):
    """Guard for the test above: averaging over padded positions too gives different numbers."""
    embedder = build(model_dir)
    ids = embedder.tokenize(mixed_sequences[:8])
    width = max(map(len, ids))
    batch = torch.full((len(ids), width), embedder.pad_id)
    mask = torch.zeros_like(batch)
    for row, seq_ids in enumerate(ids):
        batch[row, : len(seq_ids)] = torch.tensor(seq_ids)
        mask[row, : len(seq_ids)] = 1
    assert (mask == 0).any()
    with torch.no_grad():
        hidden = embedder.model(input_ids=batch, attention_mask=mask)[0]
    unmasked_mean = hidden.mean(dim=1).numpy()
    assert np.abs(unmasked_mean - embedder.embed(mixed_sequences[:8])).max() > 1e-2


def test_token_budget_batches_give_the_same_numbers(model_dir, mixed_sequences):
    by_tokens = build(model_dir, batch_tokens=400).embed(mixed_sequences)
    assert np.abs(by_tokens - original_for(model_dir, mixed_sequences)).max() <= 1e-5


def test_rows_follow_input_order(tiny_dir, mixed_sequences):
    embedder = build(tiny_dir, batch_size=4)
    forward = embedder.embed(mixed_sequences)
    backward = embedder.embed(mixed_sequences[::-1])
    np.testing.assert_allclose(backward[::-1], forward, rtol=0, atol=1e-5)
    for i in (0, 5, len(mixed_sequences) - 1):
        single = embedder.embed([mixed_sequences[i]])
        assert np.abs(single[0] - forward[i]).max() <= 1e-5
    # distinct sequences give distinct rows, so a permutation could not go unnoticed
    assert len({row.tobytes() for row in forward}) == len(set(mixed_sequences))


def test_duplicates_get_identical_rows(tiny_dir):
    embedder = build(tiny_dir, batch_size=2)
    seqs = ["ACGTTGCA" * 5, "GGGCCC", "ACGTTGCA" * 5, "GGGCCC", "T" * 90]
    out = embedder.embed(seqs)
    np.testing.assert_allclose(out[0], out[2], rtol=0, atol=1e-6)
    np.testing.assert_allclose(out[1], out[3], rtol=0, atol=1e-6)


def test_pads_with_the_tokenizers_pad_id_not_token_0(tiny_dir):
    embedder = build(tiny_dir, batch_size=8)
    assert embedder.pad_id == 3 and embedder.model.config.pad_token_id == 0  # as in the real DNABERT-S
    seen: list[torch.Tensor] = []

    def record(module, args, kwargs):
        seen.append(kwargs["input_ids"].clone())

    handle = embedder.model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        embedder.embed(["ACGT", "ACGTACGTTTGACCA" * 6])
    finally:
        handle.remove()
    (batch,) = seen
    short_row = batch[1]
    n_real = len(embedder.tokenize(["ACGT"])[0])
    assert short_row[:n_real].tolist()[0] == 1 and short_row[n_real - 1].item() == 2  # [CLS] ... [SEP]
    assert set(short_row[n_real:].tolist()) == {3}


def test_progress_reports_each_batch(tiny_dir, mixed_sequences):
    calls: list[int] = []
    build(tiny_dir, batch_size=5).embed(mixed_sequences, progress=calls.append)
    assert sum(calls) == len(mixed_sequences)
    assert len(mixed_sequences) == 21 and calls == [5, 5, 5, 5, 1]


def test_empty_input_gives_an_empty_matrix(tiny_dir):
    out = build(tiny_dir).embed([])
    assert out.shape == (0, 32) and out.dtype == np.float32


def test_dim_comes_from_the_loaded_model(tiny_dir, mosaic_dir):
    assert build(tiny_dir).dim == 32
    assert build(mosaic_dir).dim == 32


def test_max_length_keeps_the_first_bases(tiny_dir):
    rng = random.Random(3)
    seqs = [random_dna(rng, 400), random_dna(rng, 30)]
    truncated = build(tiny_dir, max_length=50).embed(seqs)
    full = build(tiny_dir)
    assert np.abs(truncated - full.embed([seqs[0][:50], seqs[1]])).max() <= 1e-5
    assert np.abs(truncated[0] - full.embed(seqs)[0]).max() > 1e-3  # default: no truncation, as the original


def test_too_long_for_absolute_positions_is_a_one_line_input_error(tmp_path):
    from virnucpro_core.testing.dnabert import write_tiny_dnabert

    folder = write_tiny_dnabert(tmp_path / "short", max_position_embeddings=16, architecture="bert")
    embedder = build(folder)
    seqs = ["ACGT", random_dna(random.Random(1), 300)]
    n = len(embedder.tokenize(seqs)[1])
    with pytest.raises(InputError) as info:
        embedder.embed(seqs)
    assert str(info.value) == (
        f"dnabert=v1: sequence 2 has {n} tokens but {folder} takes at most 16; cut it shorter or set max_length (bases) to truncate"
    )


def test_alibi_model_takes_sequences_longer_than_its_starting_size(mosaic_dir):
    """DNABERT-S has no position limit; ALiBi is rebuilt for longer inputs (here > 512 tokens)."""
    embedder = build(mosaic_dir, batch_size=2)
    long_seq = random_dna(random.Random(5), 3000)
    assert len(embedder.tokenize([long_seq])[0]) > 512
    seqs = [long_seq, "ACGTAGGT"]
    got = embedder.embed(seqs)
    want = np.stack([original_dnabert_s(embedder.tokenizer, embedder.model, s) for s in seqs])
    assert np.abs(got - want).max() <= 1e-5


@pytest.mark.parametrize(("precision", "bound"), [("bf16", 0.05), ("fp16", 0.006)])
def test_reduced_precision_runs_on_cpu_within_a_measured_bound(model_dir, mixed_sequences, precision, bound):
    """autocast: matmuls in half precision with fp32 accumulation, LayerNorm/softmax in fp32.

    Measured over seeds 0-2 of both tiny models on these sequences (pooled elements up
    to |3|): bf16 max |d| 0.011-0.019, mean |d| ~0.003, min cosine 0.99996; fp16 max |d|
    0.0014-0.0022. That is what the formats predict: unit roundoff 2^-9 (bf16) and 2^-12
    (fp16) relative, on O(1-3) values, compounded over two layers and then averaged.
    The bounds are ~2.7x the worst measurement. The lower bound proves the reduced
    precision really ran. (Real DNABERT-S has 12 layers: measure it on labels too.)
    """
    reference = original_for(model_dir, mixed_sequences)
    reduced = build(model_dir, precision=precision).embed(mixed_sequences)
    assert reduced.dtype == np.float32
    diff = np.abs(reduced - reference).max()
    assert 1e-6 < diff <= bound
    cosine = (reduced * reference).sum(1) / (np.linalg.norm(reduced, axis=1) * np.linalg.norm(reference, axis=1))
    assert cosine.min() > 0.9995


def test_unknown_precision_and_bad_batch_settings_are_config_errors(tiny_dir):
    loaded = load_dnabert(str(tiny_dir))
    with pytest.raises(ConfigError, match=r"^dnabert=v1: precision 'fp8' is unknown; choose one of fp32, bf16, fp16$"):
        DnabertV1Embedder(loaded, precision="fp8")
    with pytest.raises(ConfigError, match=r"^dnabert=v1: batch_size must be a positive number, got 0$"):
        DnabertV1Embedder(loaded, batch_size=0)


def test_plan_batches_sorts_longest_first_and_respects_both_limits():
    lengths = [5, 9, 2, 9, 7, 1]
    assert plan_batches(lengths, batch_size=2, batch_tokens=None) == [[1, 3], [4, 0], [2, 5]]
    # 20 padded tokens: [9,9] = 18 fits, a third row would be 27; [7,5] = 14, + 2 -> 21 > 20
    assert plan_batches(lengths, batch_size=None, batch_tokens=20) == [[1, 3], [4, 0], [2, 5]]
    assert plan_batches(lengths, batch_size=None, batch_tokens=4) == [[1], [3], [4], [0], [2, 5]]
    plan = plan_batches(lengths, batch_size=3, batch_tokens=1000)
    assert sorted(i for batch in plan for i in batch) == list(range(len(lengths)))


def test_masked_mean_ignores_masked_positions():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert masked_mean(hidden, mask).tolist() == [[2.0, 3.0]]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize(("precision", "bound"), [("fp32", 1e-5), ("bf16", 0.05), ("fp16", 0.006)])
def test_on_cuda_batched_equals_the_original_on_the_same_gpu(model_dir, mixed_sequences, precision, bound):
    embedder = build(model_dir, device="cuda", precision=precision, batch_size=8)
    got = embedder.embed(mixed_sequences)
    reference = np.stack([original_dnabert_s(embedder.tokenizer, embedder.model, s) for s in mixed_sequences])
    assert got.dtype == np.float32
    assert np.abs(got - reference).max() <= bound
    embedder.close()
