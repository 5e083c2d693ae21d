"""CUDA out-of-memory retries of dnabert=v2, on a simulated GPU whose varlen kernel fails above a token count.

The simulator (``oom_above_tokens``) raises ``torch.cuda.OutOfMemoryError`` from flash-attn's
varlen kernel when a batch has more tokens than the limit, so these tests run the flash path
(bf16). The 24 sequences below make 1895, 1821, 1749, 1932 and 255 tokens under a budget of 2000:
every batch of that plan but the last is over a limit of 1500, and halving the first batch's
1895 tokens gives a budget of 947.
"""

from __future__ import annotations

import random
import sys

import numpy as np
import pytest

from virnucpro_core.errors import BackendError
from virnucpro_dnabert_v2.attention import FLASH, SDPA
from virnucpro_dnabert_v2.embedder import DnabertV2Embedder, plan_batches
from virnucpro_dnabert_v2.loading import load_dnabert

BUDGET = 2000
LIMIT = 1500
LOWERED = 1895 // 2


@pytest.fixture(scope="module")
def sequences() -> list[str]:
    rng = random.Random(3)
    return ["".join(rng.choice("ACGT") for _ in range(rng.randint(200, 1400))) for _ in range(24)]


def build(folder, **kwargs) -> DnabertV2Embedder:
    return DnabertV2Embedder(load_dnabert(str(folder)), device="cuda:0", precision="bf16", **kwargs)


def record_kernel_tokens(monkeypatch) -> list[int]:
    """Tokens of every flash-attn call (one per layer and batch), recorded before the simulated kernel runs.

    Call it after starting ``simcuda`` and before building an embedder, which looks the kernel up once.
    """
    flash = sys.modules["flash_attn"]
    kernel = flash.flash_attn_varlen_func
    tokens: list[int] = []

    def recording(q, *args, **kwargs):
        tokens.append(int(q.shape[0]))
        return kernel(q, *args, **kwargs)

    monkeypatch.setattr(flash, "flash_attn_varlen_func", recording)
    return tokens


def test_the_sequences_make_the_plan_the_tests_rely_on(mosaic_dir, sequences):
    """Guard: under the budget every batch but the last is over the limit; halving the first gives LOWERED."""
    lengths = [len(ids) for ids in DnabertV2Embedder(load_dnabert(str(mosaic_dir))).tokenize(sequences)]
    totals = [sum(lengths[i] for i in batch) for batch in plan_batches(lengths, BUDGET, None)]
    assert totals == [1895, 1821, 1749, 1932, 255]
    assert max(lengths) < LOWERED


def test_an_error_on_the_first_batch_lowers_the_budget_once_and_changes_no_row(simcuda, mosaic_dir, sequences, caplog):
    simcuda(devices=1, flash_attn="ok", oom_above_tokens=LIMIT)
    embedder = build(mosaic_dir, batch_tokens=BUDGET)
    assert embedder.attention == FLASH
    with caplog.at_level("WARNING"):
        got = embedder.embed(sequences)
    assert embedder.batch_tokens == LOWERED and embedder.oom_retries == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [f"dnabert=v2: out of memory on cuda:0 with 4 sequences (1895 tokens); batch token budget {BUDGET} -> "
                        f"{LOWERED} for the rest of the run"]
    # the same batches as a run planned at the lowered budget from the start, so the same bytes
    assert np.array_equal(got, build(mosaic_dir, batch_tokens=LOWERED).embed(sequences))


def test_the_lowered_budget_stays_for_the_next_embed_call(simcuda, monkeypatch, mosaic_dir, sequences, caplog):
    simcuda(devices=1, flash_attn="ok", oom_above_tokens=LIMIT)
    kernel_tokens = record_kernel_tokens(monkeypatch)
    embedder = build(mosaic_dir, batch_tokens=BUDGET)
    first = embedder.embed(sequences)
    del kernel_tokens[:]
    caplog.clear()
    with caplog.at_level("WARNING"):
        again = embedder.embed(sequences)
    assert embedder.batch_tokens == LOWERED and embedder.oom_retries == 1 and "out of memory" not in caplog.text
    assert kernel_tokens and max(kernel_tokens) <= LOWERED
    assert np.array_equal(again, first)


def test_batches_planned_under_the_old_budget_are_split_before_they_run(simcuda, monkeypatch, mosaic_dir, sequences):
    """Batches 2-4 of the first plan (1821, 1749, 1932 tokens) would each fail and halve the budget again."""
    simcuda(devices=1, flash_attn="ok", oom_above_tokens=LIMIT)
    kernel_tokens = record_kernel_tokens(monkeypatch)
    embedder = build(mosaic_dir, batch_tokens=BUDGET)
    probe_calls = len(kernel_tokens)
    embedder.embed(sequences)
    calls = kernel_tokens[probe_calls:]
    assert calls[0] == 1895  # the first batch fails in the first layer ...
    assert max(calls[1:]) <= LOWERED  # ... and nothing after it is larger than the lowered budget
    assert [n for n in calls if n > LIMIT] == [1895]


def test_every_sequence_gets_one_row_when_the_budget_is_lowered_twice(simcuda, monkeypatch, mosaic_dir, sequences, caplog):
    """Limit 900: 1895 fails (budget 947), [482] and [476] run, [472, 465] fails (budget 468), the rest runs alone or in pairs."""
    simcuda(devices=1, flash_attn="ok", oom_above_tokens=900)
    embedder = build(mosaic_dir, batch_tokens=BUDGET)
    run = embedder._run_batch
    finished: list[int] = []

    def recording(token_ids, batch):
        rows = run(token_ids, batch)
        finished.extend(batch)
        return rows

    monkeypatch.setattr(embedder, "_run_batch", recording)
    progress: list[int] = []
    with caplog.at_level("WARNING"):
        got = embedder.embed(sequences, progress=progress.append)
    assert embedder.oom_retries == 2 and embedder.batch_tokens == 937 // 2
    assert "budget 2000 -> 947" in caplog.text and "budget 947 -> 468" in caplog.text
    assert sorted(finished) == list(range(len(sequences)))  # every sequence in exactly one batch that ran
    assert sum(progress) == len(sequences)
    assert np.array_equal(got, build(mosaic_dir, batch_tokens=468).embed(sequences))


def test_with_only_batch_size_the_failing_batch_gives_the_budget(simcuda, mosaic_dir, sequences, caplog):
    """No token budget to halve: the first batch (8 sequences, 3716 tokens) stands in for it. Under a limit
    of 1900 every batch of 8 or fewer sequences and at most 1858 tokens fits, so the budget is lowered once."""
    simcuda(devices=1, flash_attn="ok", oom_above_tokens=1900)
    embedder = build(mosaic_dir, batch_size=8)
    assert embedder.batch_tokens is None
    with caplog.at_level("WARNING"):
        got = embedder.embed(sequences)
    assert embedder.batch_tokens == 1858 and embedder.oom_retries == 1
    assert ("with 8 sequences (3716 tokens); batch token budget none (--batch-size only) -> 1858 for the rest of the run"
            in caplog.text)
    assert np.array_equal(got, build(mosaic_dir, batch_size=8, batch_tokens=1858).embed(sequences))


def test_a_single_sequence_that_does_not_fit_is_a_one_line_backend_error(simcuda, mosaic_dir):
    simcuda(devices=1, flash_attn="ok", oom_above_tokens=100)
    embedder = build(mosaic_dir)
    rng = random.Random(1)
    seqs = ["ACGTAC", "".join(rng.choice("ACGT") for _ in range(1000)), "GATTACA"]
    with pytest.raises(BackendError) as caught:
        embedder.embed(seqs)
    message = str(caught.value)
    assert message == ("dnabert=v2 ran out of memory on cuda:0 with a single sequence (#2 of 3 in this call: 1000 bases, "
                       "359 tokens); smaller batches cannot help one sequence: use a GPU with more free memory, --device cpu, "
                       "or shorter sequences (a smaller --chunk-size, or --max-length)")
    assert caught.value.__cause__ is None and caught.value.__context__ is None


def test_an_error_in_the_flash_probe_leaves_the_budget_alone(simcuda, mosaic_dir, caplog):
    """Guard: the probe's two sequences (12 tokens) run as one batch outside embed(); an out-of-memory
    error there falls back to SDPA instead of lowering the whole run's budget to a few tokens."""
    simcuda(devices=1, flash_attn="ok", oom_above_tokens=8)
    with caplog.at_level("WARNING"):
        embedder = build(mosaic_dir, batch_tokens=BUDGET)
    assert embedder.attention == SDPA and "flash-attn fails on cuda:0 (OutOfMemoryError" in caplog.text
    assert embedder.batch_tokens == BUDGET and embedder.oom_retries == 0
