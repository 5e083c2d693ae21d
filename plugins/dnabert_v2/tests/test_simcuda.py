"""dnabert=v2's CUDA-only branches on simulated GPUs (``virnucpro_core.testing.simcuda``): flash-attn's
varlen kernel with ALiBi slopes (its contract checked: fp16/bf16, int32 ``cu_seqlens``, fp32 slopes of
shape ``(heads,)``), SDPA in half precision, fp32 on the device, the fallback when flash-attn is
installed but does not import, the row-count guard, and the CLI on ``--gpus 0,1``.

References are the CPU's fp32 rows; half precision is held to the GPU check's bounds (per-sequence
cosine >= 0.999, norm ratio within 0.5%), fp32 to the CPU bound of this suite (max |diff| <= 1e-4)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from virnucpro_core.errors import ConfigError, VirnucproError
from virnucpro_core.testing.simcuda import SimConfig, child_environment
from virnucpro_dnabert_v2 import embedder as embedder_module
from virnucpro_dnabert_v2.attention import FLASH, SDPA
from virnucpro_dnabert_v2.embedder import DnabertV2Embedder
from virnucpro_dnabert_v2.loading import load_dnabert

MIN_COSINE = 0.999
NORM_TOLERANCE = 0.005


@pytest.fixture(scope="module")
def sequences() -> list[str]:
    rng = random.Random(5)
    lengths = [0, 1, 3, 8, 30, 64, 150, 151, 300, 301, 499, 500, 777, 1000, 2600]
    seqs = ["".join(rng.choice("ACGT") for _ in range(n)) for n in lengths] + ["ACGTNNNNRYACGT"]
    rng.shuffle(seqs)
    return seqs


def build(folder: Path, **kwargs) -> DnabertV2Embedder:
    return DnabertV2Embedder(load_dnabert(str(folder)), batch_tokens=400, **kwargs)


def assert_within_gpu_bounds(got: np.ndarray, want: np.ndarray) -> None:
    norms = np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    cosine = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cosine.min() >= MIN_COSINE and np.abs(norms - 1).max() <= NORM_TOLERANCE, (cosine.min(), np.abs(norms - 1).max())


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_flash_attn_with_alibi_on_the_second_gpu_is_within_the_gpu_bounds(simcuda, model_dir, sequences, precision):
    want = build(model_dir).embed(sequences)
    sim = simcuda(devices=2, flash_attn="ok")
    embedder = build(model_dir, device="cuda:1", precision=precision)
    assert embedder.attention == FLASH and embedder.attributes["attention"] == FLASH
    assert_within_gpu_bounds(embedder.embed(sequences), want)
    assert sim.kernel_calls and set(sim.kernel_calls) == {"flash_attn_varlen_func"}


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_sdpa_in_half_precision_on_a_gpu_is_within_the_gpu_bounds(simcuda, odd_dir, sequences, precision):
    want = build(odd_dir).embed(sequences)
    simcuda(devices=1)
    embedder = build(odd_dir, device="cuda:0", precision=precision)
    assert embedder.attention == SDPA  # flash-attn absent
    assert_within_gpu_bounds(embedder.embed(sequences), want)


def test_fp32_on_a_simulated_gpu_equals_the_cpu(simcuda, odd_dir, sequences):
    want = build(odd_dir).embed(sequences)
    simcuda(devices=2, flash_attn="ok")
    embedder = build(odd_dir, device="cuda:1")
    assert embedder.attention == SDPA  # flash-attn computes in half precision only
    assert np.abs(embedder.embed(sequences) - want).max() <= 1e-4


def test_an_installed_flash_attn_that_does_not_import_falls_back_to_sdpa(simcuda, mosaic_dir, sequences):
    want = build(mosaic_dir).embed(sequences)
    simcuda(devices=1, flash_attn="broken")
    embedder = build(mosaic_dir, device="cuda:0", precision="bf16")
    assert embedder.attention == SDPA
    assert_within_gpu_bounds(embedder.embed(sequences), want)
    with pytest.raises(ConfigError, match=r"attention=flash cannot run here: flash-attn is installed but does not import "
                                          r"\(ImportError: .*undefined symbol"):
        build(mosaic_dir, device="cuda:0", precision="bf16", attention="flash")


def test_a_sequence_lost_by_the_batch_plan_is_caught(monkeypatch, mosaic_dir, sequences):
    real = embedder_module.plan_batches

    def dropping(lengths, batch_tokens, batch_size):
        first, *rest = real(lengths, batch_tokens, batch_size)
        return [first[:-1], *rest] if len(first) > 1 else rest

    monkeypatch.setattr(embedder_module, "plan_batches", dropping)
    with pytest.raises(VirnucproError, match=r"dnabert=v2: sequence #\d+ got 0 rows; this is a bug"):
        build(mosaic_dir).embed(sequences)


def test_embed_on_two_simulated_gpus_gives_the_cpus_numbers(tmp_path, mosaic_dir, sequences):
    fasta = tmp_path / "n.fa"
    fasta.write_text("".join(f">s{i}\n{seq}\n" for i, seq in enumerate(sequences) if seq))
    kept = [seq for seq in sequences if seq]
    want = build(mosaic_dir).embed(kept)
    out = tmp_path / "n.h5"
    env = child_environment(SimConfig(devices=2, flash_attn="ok"), dict(os.environ))
    result = subprocess.run([sys.executable, "-m", "virnucpro_core.testing.simcuda", "--devices", "2", "--flash-attn", "ok", "--",
                             "virnucpro", "embed", str(fasta), "--backend", "dnabert=v2", "--model", str(mosaic_dir), "-o", str(out),
                             "--gpus", "0,1", "--checkpoint-every", "8", "--precision", "bf16", "-q"],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    with h5py.File(out) as f:
        ids = [i.decode() if isinstance(i, bytes) else i for i in f["ids"][:]]
        got = f["embeddings"][:]
        assert '"attention": "flash_attn_varlen"' in f.attrs["extra"]
    assert ids == [f"s{i}" for i, seq in enumerate(sequences) if seq]
    assert_within_gpu_bounds(got, want)


@pytest.mark.parametrize("fault", ["FlashAttention only supports Ampere GPUs or newer.", "unexpected keyword argument 'alibi_slopes'"])
def test_a_flash_attn_that_imports_but_fails_on_this_gpu_falls_back_to_sdpa(simcuda, monkeypatch, mosaic_dir, sequences, caplog,
                                                                            fault):
    """An importable flash-attn can still refuse the GPU (before Ampere) or predate alibi_slopes (< 2.4)."""
    want = build(mosaic_dir).embed(sequences)
    simcuda(devices=1, flash_attn="ok")

    def refusing(*args, **kwargs):
        raise RuntimeError(fault)

    monkeypatch.setattr(sys.modules["flash_attn"], "flash_attn_varlen_func", refusing)
    with caplog.at_level("WARNING"):
        embedder = build(mosaic_dir, device="cuda:0", precision="bf16")
    assert embedder.attention == SDPA and embedder.attributes["attention"] == SDPA
    assert "flash-attn fails on cuda:0" in caplog.text and fault in caplog.text
    assert_within_gpu_bounds(embedder.embed(sequences), want)
    with pytest.raises(ConfigError, match="attention=flash fails on cuda:0: RuntimeError: "):
        build(mosaic_dir, device="cuda:0", precision="bf16", attention="flash")
