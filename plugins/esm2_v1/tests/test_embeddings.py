"""esm2=v1 gives the original VirNucPro's ESM-2 features, row for row, in input order."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from virnucpro_core.backends import Embedder, EmbedderOptions
from virnucpro_core.errors import ConfigError, InputError
from virnucpro_core.testing.contract import check_embedder_contract
from virnucpro_esm2_v1.embedder import Esm2V1Embedder

from conftest import random_protein

FP32_ATOL = 1e-5


def original_extract_esm(fasta_file, model, alphabet, truncation_seq_length=1024, toks_per_batch=2048):
    """A re-statement of the original ``units.extract_esm`` loop (model already loaded,
    CPU, no output file): returns ``(labels, [tensor(dim)])`` in the order it made them."""
    import esm

    model.eval()
    dataset = esm.FastaBatchedDataset.from_file(fasta_file)
    batches = dataset.get_batch_indices(toks_per_batch, extra_toks_per_seq=1)
    data_loader = torch.utils.data.DataLoader(dataset, collate_fn=alphabet.get_batch_converter(), batch_sampler=batches)
    repr_layers = [model.num_layers]
    proteins, data = [], []
    with torch.no_grad():
        for labels, strs, toks in data_loader:
            out = model(toks, repr_layers=repr_layers, return_contacts=False)
            representations = {layer: t for layer, t in out["representations"].items()}
            for i, label in enumerate(labels):
                truncate_len = min(truncation_seq_length, len(strs[i]))
                means = {layer: t[i, 1 : truncate_len + 1].mean(0).clone() for layer, t in representations.items()}
                proteins.append(label)
                data.append(means[model.num_layers])
    return proteins, data, batches


def write_fasta(path, seqs):
    path.write_text("".join(f">p{i} some description\n{s}\n" for i, s in enumerate(seqs)))
    return str(path)


def per_row_max_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.float64) - b.astype(np.float64)).max(axis=1)


@pytest.fixture(scope="module")
def embedder(tiny_checkpoint):
    e = Esm2V1Embedder.from_options(EmbedderOptions(model=str(tiny_checkpoint)))
    yield e
    e.close()


@pytest.mark.parametrize("toks_per_batch", [2048, 300])
def test_equals_the_original_extract_esm_per_sequence(tmp_path, tiny_checkpoint, stock_model, proteins, toks_per_batch):
    model, alphabet = stock_model
    labels, data, original_batches = original_extract_esm(
        write_fasta(tmp_path / "p.fa", proteins), model, alphabet, toks_per_batch=toks_per_batch
    )
    ours = Esm2V1Embedder.from_options(EmbedderOptions(model=str(tiny_checkpoint), batch_tokens=toks_per_batch))
    assert ours.plan_batches(proteins) == original_batches  # same batch composition, same run order
    got = ours.embed(proteins)
    # fair-esm's labels are whole header lines, description included
    expected = np.stack([data[labels.index(f"p{i} some description")].numpy() for i in range(len(proteins))])
    diff = per_row_max_diff(got, expected)
    worst = int(diff.argmax())
    assert diff.max() <= FP32_ATOL, f"protein {worst} (length {len(proteins[worst])}) differs by {diff.max():.3g}"
    if toks_per_batch == 300:  # the 1100-residue protein exceeds the budget and ran alone
        assert [len(b) for b in original_batches if any(len(proteins[i]) == 1100 for i in b)] == [1]


def test_batches_count_one_extra_token_per_sequence_like_the_original(tiny_checkpoint):
    """BOS and EOS are two tokens, but the original budgets ``len + 1``: three proteins
    of 99 fit a 300-token batch (3 x 100), a fourth does not."""
    e = Esm2V1Embedder.from_options(EmbedderOptions(model=str(tiny_checkpoint), batch_tokens=300))
    assert e.plan_batches(["A" * 99] * 4) == [[0, 1, 2], [3]]
    assert e.plan_batches(["A" * 50, "A" * 400, "A" * 10]) == [[2, 0], [1]]  # too long: alone


def stock_forward_mean(model, alphabet, seq: str, max_length: int = 1024) -> np.ndarray:
    """Independent: one sequence, BOS + residues + EOS, stock forward, mean over residues."""
    toks = torch.tensor([[alphabet.cls_idx, *alphabet.encode(seq), alphabet.eos_idx]])
    with torch.no_grad():
        rep = model(toks, repr_layers=[model.num_layers])["representations"][model.num_layers][0]
    return rep[1 : 1 + min(len(seq), max_length)].mean(0).numpy()


def test_equals_the_stock_forward_one_sequence_at_a_time(embedder, stock_model, proteins):
    model, alphabet = stock_model
    expected = np.stack([stock_forward_mean(model, alphabet, s) for s in proteins])
    got = embedder.embed(proteins)
    diff = per_row_max_diff(got, expected)
    assert diff.max() <= FP32_ATOL
    norm_ratio = np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
    assert np.abs(norm_ratio - 1).max() <= 1e-5


def test_token_dropout_rescale_is_in_effect(embedder, stock_model, proteins):
    model, alphabet = stock_model
    assert model.token_dropout is True
    got = embedder.embed(proteins[:8])
    model.token_dropout = False
    try:
        without = np.stack([stock_forward_mean(model, alphabet, s) for s in proteins[:8]])
    finally:
        model.token_dropout = True
    assert per_row_max_diff(got, without).min() > 1e-3  # every row shows the missing 0.88


def test_pooling_stops_at_max_length(tiny_checkpoint, stock_model, proteins):
    model, alphabet = stock_model
    long = next(s for s in proteins if len(s) == 1100)
    default = Esm2V1Embedder.from_options(EmbedderOptions(model=str(tiny_checkpoint)))
    assert default.max_length == 1024
    toks = torch.tensor([[alphabet.cls_idx, *alphabet.encode(long), alphabet.eos_idx]])
    with torch.no_grad():
        rep = model(toks, repr_layers=[model.num_layers])["representations"][model.num_layers][0]
    first_1024 = rep[1:1025].mean(0).numpy()
    all_1100 = rep[1:1101].mean(0).numpy()
    got = default.embed([long])[0]
    assert np.abs(got - first_1024).max() <= FP32_ATOL
    assert np.abs(got - all_1100).max() > 1e-3
    shorter = Esm2V1Embedder.from_options(EmbedderOptions(model=str(tiny_checkpoint), max_length=50))
    assert np.abs(shorter.embed([long])[0] - rep[1:51].mean(0).numpy()).max() <= FP32_ATOL


def test_rows_follow_input_order_for_shuffled_lengths(embedder):
    rng = random.Random(3)
    lengths = list(range(5, 400, 13))
    rng.shuffle(lengths)
    seqs = [random_protein(rng, n) for n in lengths]
    together = embedder.embed(seqs)
    alone = np.stack([embedder.embed([s])[0] for s in seqs])
    assert per_row_max_diff(together, alone).max() <= FP32_ATOL
    reversed_rows = embedder.embed(seqs[::-1])
    assert per_row_max_diff(reversed_rows[::-1], together).max() <= FP32_ATOL


def test_keeps_the_embedder_contract(embedder, proteins):
    assert isinstance(embedder, Embedder)
    assert embedder.dim == 32
    check_embedder_contract(embedder, proteins[:12], atol=FP32_ATOL)


def test_progress_is_reported_per_batch(tiny_checkpoint, proteins):
    e = Esm2V1Embedder.from_options(EmbedderOptions(model=str(tiny_checkpoint), batch_tokens=400))
    counts: list[int] = []
    e.embed(proteins, counts.append)
    assert counts == [len(b) for b in e.plan_batches(proteins)]
    assert sum(counts) == len(proteins) and len(counts) > 1


def test_batch_size_caps_sequences_per_batch_without_changing_results(embedder, tiny_checkpoint, proteins):
    capped = Esm2V1Embedder.from_options(EmbedderOptions(model=str(tiny_checkpoint), batch_size=3))
    assert max(len(b) for b in capped.plan_batches(proteins)) == 3
    assert per_row_max_diff(capped.embed(proteins), embedder.embed(proteins)).max() <= FP32_ATOL


def test_empty_input_and_empty_protein(embedder):
    assert embedder.embed([]).shape == (0, 32)
    with pytest.raises(InputError) as info:
        embedder.embed(["MKV", ""])
    assert str(info.value) == "protein #2 of 2 is empty; ESM-2 has no residue to average (remove it before embedding)"


def test_unknown_precision_is_a_config_error(tiny_checkpoint):
    with pytest.raises(ConfigError, match=r"precision 'fp8' is not supported by esm2=v1; choose one of fp32, bf16, fp16"):
        Esm2V1Embedder.from_options(EmbedderOptions(model=str(tiny_checkpoint), precision="fp8"))


# Reduced precision. bf16 keeps 8 significant bits: unit roundoff u = 2**-8. Along the
# path to the pooled vector the activations are rounded about (2 + 4 * layers) times
# (embedding weights, the 0.88 rescale; per layer: LayerNorm, attention output, FFN
# output, residual sum). First-order error analysis bounds the relative error of each
# row by that many u, and averaging over residues only shrinks it. For the 2-layer tiny
# model that is 10 u = 0.039 in relative norm and, per element, 10 u times the row's
# largest magnitude. Measured on these proteins: 0.0099 relative norm, 0.027 max |delta|
# (row max |x| 2.1); fp16 (u = 2**-11): 0.0013 and 0.0029.
@pytest.mark.parametrize("precision, unit_roundoff", [("bf16", 2.0**-8), ("fp16", 2.0**-11)])
def test_reduced_precision_stays_within_its_rounding_bound(embedder, tiny_checkpoint, proteins, precision, unit_roundoff):
    reference = embedder.embed(proteins)
    low = Esm2V1Embedder.from_options(EmbedderOptions(model=str(tiny_checkpoint), precision=precision))
    assert next(low.model.parameters()).dtype == {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    got = low.embed(proteins)
    assert got.dtype == np.float32
    budget = (2 + 4 * low.model.num_layers) * unit_roundoff
    delta = got.astype(np.float64) - reference
    rel_norm = np.linalg.norm(delta, axis=1) / np.linalg.norm(reference, axis=1)
    assert rel_norm.max() <= budget
    assert (np.abs(delta).max(axis=1) <= budget * np.abs(reference).max(axis=1)).all()
    assert np.abs(delta).max() > 0  # the cast really happened
