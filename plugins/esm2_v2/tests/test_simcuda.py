"""esm2=v2's CUDA-only branches on simulated GPUs (``virnucpro_core.testing.simcuda``): the attention
probe and auto-selection, fp16/bf16 through each varlen path, the token budget from the device's own
free memory, out-of-memory retries that lower the budget once and keep it, the device-to-host copy
ordered on the model device's stream, the broken-flash-attn fallback, torch 2.10's varlen signature,
and the CLI on ``cuda:1``, on ``--gpus 0,1`` workers and under torchrun.

References are the CPU's fp32 rows of the same proteins with the same token budget; reduced
precision is held to the GPU check's bounds (per-protein cosine >= 0.999, norm ratio within 0.5%),
fp32 to the CPU equivalence bound."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from virnucpro_core.backends import EmbedderOptions
from virnucpro_core.errors import ConfigError, VirnucproError
from virnucpro_core.testing.simcuda import SimConfig, child_environment
from virnucpro_esm2_v2 import embedder as embedder_module
from virnucpro_esm2_v2.embedder import (ACTIVATION_ELEMENTS_PER_DIM, CUDA_MAX_BATCH_TOKENS, CUDA_MEMORY_SHARE, Esm2V2Embedder,
                                        token_budget)
from virnucpro_esm2_v2.equivalence import RowComparison

BATCH_TOKENS = 3000


def build(checkpoint: Path, device: str = "cpu", precision: str = "fp32", attention: str | None = None,
          batch_tokens: int | None = BATCH_TOKENS) -> Esm2V2Embedder:
    extra = {"attention": attention} if attention else {}
    return Esm2V2Embedder.from_options(EmbedderOptions(model=str(checkpoint), device=device, precision=precision,
                                                       batch_tokens=batch_tokens, extra=extra))


@pytest.fixture(scope="module")
def proteins(real_proteins) -> list[str]:
    return real_proteins[:120]


@pytest.fixture(scope="module")
def reference(tiny_checkpoint, proteins) -> np.ndarray:
    return build(tiny_checkpoint).embed(proteins)


def assert_reduced_bounds(got: np.ndarray, reference: np.ndarray) -> None:
    comparison = RowComparison.of(got, reference)
    assert not comparison.reduced_failures(), comparison.summary()


def test_the_probe_plans_its_batch_from_the_real_token_counts(tiny_checkpoint):
    """The probe once planned packs of [5, 3] tokens for proteins of 6 and 3: every kernel 'failed'."""
    embedder = build(tiny_checkpoint)
    assert embedder.probe_attention("sdpa-bucketed", forced=True) == "sdpa-bucketed"


@pytest.mark.parametrize("flash_attn, torch_varlen, chosen", [
    ("ok", "2.11", "flash-attn"),
    ("absent", "2.11", "torch-varlen"),
    ("broken", "2.10", "torch-varlen"),
    ("absent", "absent", "sdpa-bucketed"),
])
def test_auto_picks_the_best_kernel_that_runs_on_the_second_gpu(simcuda, tiny_checkpoint, proteins, reference, caplog,
                                                                 flash_attn, torch_varlen, chosen):
    simcuda(devices=2, flash_attn=flash_attn, torch_varlen=torch_varlen)
    embedder = build(tiny_checkpoint, device="cuda:1", precision="fp16")
    assert torch.cuda.current_device() == 0  # nothing bound cuda:1: the copy must be ordered on cuda:1's own stream
    assert embedder.attention == chosen
    got = embedder.embed(proteins)
    assert np.isfinite(got).all()
    assert_reduced_bounds(got, reference)
    assert embedder.attributes["attention"] == chosen


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("attention", ["flash-attn", "torch-varlen", "sdpa-bucketed"])
def test_each_attention_path_in_each_half_precision_is_within_the_gpu_bounds(simcuda, tiny_checkpoint, proteins, reference,
                                                                            attention, precision):
    sim = simcuda(devices=1, flash_attn="ok", torch_varlen="2.10" if precision == "bf16" else "2.11")
    embedder = build(tiny_checkpoint, device="cuda:0", precision=precision, attention=attention)
    assert embedder.attention == attention
    assert_reduced_bounds(embedder.embed(proteins), reference)
    if attention != "sdpa-bucketed":
        assert sim.kernel_calls and all(call.startswith(("flash_attn", "varlen_attn")) for call in sim.kernel_calls)


def test_fp32_on_a_simulated_gpu_equals_the_cpu_within_the_fp32_bound(simcuda, tiny_checkpoint, proteins, reference):
    simcuda(devices=2)
    embedder = build(tiny_checkpoint, device="cuda:1", precision="fp32")
    assert embedder.attention == "sdpa-bucketed"  # FlashAttention has no fp32 kernels
    comparison = RowComparison.of(embedder.embed(proteins), reference)
    assert not comparison.fp32_failures(), comparison.summary()


def test_a_forced_kernel_that_cannot_run_is_a_one_line_error(simcuda, tiny_checkpoint):
    simcuda(devices=1, flash_attn="broken")
    with pytest.raises(ConfigError, match=r"attention=flash-attn cannot run on cuda in torch.float16: "
                                          r"flash-attn is installed but does not import \(ImportError: .*undefined symbol"):
        build(tiny_checkpoint, device="cuda:0", precision="fp16", attention="flash-attn")
    simcuda(devices=1, torch_varlen="absent")
    with pytest.raises(ConfigError, match="attention=torch-varlen cannot run .* has no torch.nn.attention.varlen"):
        build(tiny_checkpoint, device="cuda:0", precision="bf16", attention="torch-varlen")


def faulty_kernel(kind: str):
    def kernel(q, *args, **kwargs):
        if kind == "raises":
            raise RuntimeError("CUDA error: no kernel image is available for execution on the device")
        return torch.full_like(q, float("nan"))  # a fault that surfaces only in the rows

    return kernel


@pytest.mark.parametrize("kind, text", [("raises", "no kernel image is available"), ("nan", "non-finite values")])
def test_a_kernel_that_fails_inside_the_probe_is_logged_and_auto_falls_back(simcuda, monkeypatch, tiny_checkpoint, caplog,
                                                                           kind, text):
    simcuda(devices=1, flash_attn="ok")
    monkeypatch.setattr(sys.modules["flash_attn"], "flash_attn_varlen_func", faulty_kernel(kind))
    with caplog.at_level("WARNING"):
        embedder = build(tiny_checkpoint, device="cuda:0", precision="fp16")
    assert embedder.attention == "torch-varlen"
    assert "attention flash-attn fails on cuda:0" in caplog.text and text in caplog.text
    with pytest.raises(ConfigError, match=f"attention=flash-attn fails on cuda:0: .*{text}"):
        build(tiny_checkpoint, device="cuda:0", precision="fp16", attention="flash-attn")


def test_the_token_budget_fits_the_free_memory_of_an_h200_a_24_gb_and_a_16_gb_card():
    """ESM-2 3B in fp16 (2560 wide, ~5.7 GB of weights, 0.5 GB for the CUDA context)."""
    weights, context, dim = 5.7e9, 0.5e9, 2560
    per_token = ACTIVATION_ELEMENTS_PER_DIM * dim * 2
    budgets = {}
    for name, total in (("H200", 141e9), ("24 GB", 24e9), ("16 GB", 16e9)):
        free = total - weights - context
        budgets[name] = token_budget(int(free), dim, 2)
        assert 1024 <= budgets[name] <= CUDA_MAX_BATCH_TOKENS
        assert budgets[name] * per_token <= CUDA_MEMORY_SHARE * free
    assert budgets["H200"] == CUDA_MAX_BATCH_TOKENS
    assert budgets["16 GB"] < budgets["24 GB"] <= budgets["H200"]
    assert token_budget(0, dim, 2) == 1024


def test_the_budget_comes_from_the_free_memory_of_the_models_own_device(simcuda, tiny_checkpoint):
    sim = simcuda(devices=2, memory_gib=(141, 0.6), used_gib=0.5)
    small = build(tiny_checkpoint, device="cuda:1", precision="fp16", batch_tokens=None)
    free = sim.mem_get_info(1)[0]
    assert small.budget_source == "free device memory"
    assert small.batch_tokens == token_budget(free, small.dim, 2) < CUDA_MAX_BATCH_TOKENS
    large = build(tiny_checkpoint, device="cuda:0", precision="fp16", batch_tokens=None)
    assert large.batch_tokens == CUDA_MAX_BATCH_TOKENS


def test_one_out_of_memory_error_lowers_the_budget_once_and_it_stays_lowered(simcuda, tiny_checkpoint, proteins, reference,
                                                                            caplog):
    """Batches prepared ahead under the old budget are split, not run whole (each would halve it again)."""
    limit = 1500
    sim = simcuda(devices=1, oom_above_tokens=limit)
    embedder = build(tiny_checkpoint, device="cuda:0", precision="fp16", attention="torch-varlen", batch_tokens=4000)
    with caplog.at_level("WARNING"):
        got = embedder.embed(proteins)
    assert_reduced_bounds(got, reference)
    assert limit // 2 < embedder.batch_tokens <= limit
    retries = embedder.oom_retries
    assert 1 <= retries <= 2 and caplog.text.count("out of memory on cuda:0") == retries
    calls = len(sim.kernel_calls)
    assert_reduced_bounds(embedder.embed(proteins), reference)
    assert embedder.oom_retries == retries  # the lowered budget is kept for the next call
    assert len(sim.kernel_calls) > calls


def test_a_single_protein_that_does_not_fit_is_a_one_line_error(simcuda, tiny_checkpoint):
    simcuda(devices=1, oom_above_tokens=10)
    embedder = build(tiny_checkpoint, device="cuda:0", precision="fp16", attention="torch-varlen")
    with pytest.raises(VirnucproError, match="ran out of memory on cuda:0 with a single protein of 20 residues"):
        embedder.embed(["M" * 20])


def test_a_protein_lost_by_the_packing_is_caught(monkeypatch, tiny_checkpoint, proteins):
    real = embedder_module.plan_packs

    def dropping(tokens, budget, max_sequences=None):
        first, *rest = real(tokens, budget, max_sequences)
        return [type(first)(first.indices[:-1], first.tokens[:-1]), *rest]

    embedder = build(tiny_checkpoint)
    monkeypatch.setattr(embedder_module, "plan_packs", dropping)
    with pytest.raises(VirnucproError, match=r"protein #\d+ got 0 rows; this is a bug"):
        embedder.embed(proteins[:30])


def test_a_batch_that_returns_the_wrong_number_of_rows_is_caught(monkeypatch, tiny_checkpoint, proteins):
    embedder = build(tiny_checkpoint)
    forward = embedder.model.forward
    monkeypatch.setattr(embedder.model, "forward", lambda batch, attention: forward(batch, attention)[:-1])
    with pytest.raises(VirnucproError, match=r"a batch of \d+ proteins gave rows of shape"):
        embedder.embed(proteins[:30])


# -- the CLI on simulated GPUs, through the launcher ----------------------------------------------


@pytest.fixture(scope="module")
def faa(tmp_path_factory, proteins) -> Path:
    path = tmp_path_factory.mktemp("faa") / "p.faa"
    path.write_text("".join(f">p{i}\n{seq}\n" for i, seq in enumerate(proteins)))
    return path


def simulated(*command: str, devices: int = 2) -> subprocess.CompletedProcess:
    env = child_environment(SimConfig(devices=devices), dict(os.environ))
    return subprocess.run([sys.executable, "-m", "virnucpro_core.testing.simcuda", "--devices", str(devices), "--", *command],
                          capture_output=True, text=True, env=env, timeout=600)


def rows_of(path: Path) -> tuple[list[str], np.ndarray]:
    with h5py.File(path) as f:
        return [i.decode() if isinstance(i, bytes) else i for i in f["ids"][:]], f["embeddings"][:]


@pytest.mark.parametrize("where", [["--device", "cuda:1"], ["--gpus", "0,1", "--checkpoint-every", "50"], ["torchrun"]],
                         ids=["cuda:1", "gpus-0-1", "torchrun"])
def test_embed_on_simulated_gpus_gives_the_cpus_numbers(tmp_path, tiny_checkpoint, faa, proteins, reference, where):
    out = tmp_path / "x.h5"
    args = ["embed", str(faa), "--backend", "esm2=v2", "--model", str(tiny_checkpoint), "-o", str(out), "-q",
            "--batch-tokens", str(BATCH_TOKENS)]
    if where == ["torchrun"]:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "virnucpro_core",
                   *args, "--checkpoint-every", "50"]
    else:
        command = ["virnucpro", *args, *where]
    result = simulated(*command)
    assert result.returncode == 0, result.stdout + result.stderr
    ids, got = rows_of(out)
    assert ids == [f"p{i}" for i in range(len(proteins))]
    assert_reduced_bounds(got, reference)  # fp16 on CUDA by default
    with h5py.File(out) as f:
        assert '"precision": "fp16"' in f.attrs["extra"] and '"attention": "torch-varlen"' in f.attrs["extra"]
