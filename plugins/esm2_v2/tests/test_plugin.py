"""esm2=v2 is registered, becomes the default ESM-2 backend, and is wired through the CLI."""

from __future__ import annotations

import json
from importlib import metadata

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from virnucpro_core.backends import Embedder, EmbedderOptions
from virnucpro_core.cli import cli
from virnucpro_core.errors import ConfigError, VirnucproError
from virnucpro_core.registry import load_registry
from virnucpro_core.runtime import RuntimeConfig
from virnucpro_core.selection import parse_backend_options, resolve_backends
from virnucpro_core.testing.contract import check_backend_descriptor, check_embedder_contract
from virnucpro_esm2_v2.embedder import Esm2V2Embedder
from virnucpro_esm2_v2.equivalence import RowComparison


def test_entry_point_registers_esm2_v2():
    backend = load_registry().get_backend("esm2", "v2")
    assert backend.package == "virnucpro-esm2-v2"
    assert backend.package_version == metadata.version("virnucpro-esm2-v2")
    assert (backend.family, backend.version, backend.modality, backend.dim) == ("esm2", "v2", "protein", 2560)
    assert backend.default_model == "esm2_t36_3B_UR50D"
    assert backend.unavailable_reason() is None
    assert (backend.default_precision("cuda:0"), backend.default_precision("cpu")) == ("fp16", "fp32")
    for words in ("flash-attn", "varlen_attn", "SDPA", "fp16 on CUDA", "fp32 on CPU"):
        assert words in backend.description


def test_descriptor_is_well_formed_and_the_plugin_is_cheap_to_import():
    check_backend_descriptor(load_registry().get_backend("esm2", "v2"), module="virnucpro_esm2_v2.plugin")


def test_v2_is_the_default_and_v1_fallback_chooses_v1():
    registry = load_registry()
    assert resolve_backends(registry, parse_backend_options([]))["protein"].key == "esm2=v2"
    assert resolve_backends(registry, parse_backend_options([], v1_fallback=True))["protein"].key == "esm2=v1"
    assert resolve_backends(registry, parse_backend_options(["esm2=v1"]))["protein"].key == "esm2=v1"


def test_backends_command_lists_v2_with_attention_and_precision():
    result = CliRunner().invoke(cli, ["backends", "--json"])
    assert result.exit_code == 0, result.output
    [row] = [b for b in json.loads(result.output) if (b["family"], b["version"]) == ("esm2", "v2")]
    assert row["available"] and row["package"] == "virnucpro-esm2-v2"
    assert "exact SDPA over length buckets" in row["description"] and "fp16 on CUDA, fp32 on CPU" in row["description"]


def test_backends_long_listing_shows_the_description():
    result = CliRunner().invoke(cli, ["backends", "-l"])
    assert result.exit_code == 0, result.output
    assert "esm2=v2     protein     2560  virnucpro-esm2-v2" in result.output
    assert "\nesm2=v2: ESM-2 over packed variable-length batches" in result.output
    assert "precision: fp16 on CUDA, fp32 on CPU" in result.output


def test_precision_defaults_resolve_per_backend_and_device():
    v2 = load_registry().get_backend("esm2", "v2")
    assert RuntimeConfig(device="cpu").embedder_options(None, backend=v2).precision == "fp32"
    assert RuntimeConfig(device="cpu", precision="bf16").embedder_options(None, backend=v2).precision == "bf16"
    assert RuntimeConfig().precision_for(v2, "cuda:0") == "fp16"
    assert RuntimeConfig(precision="fp32").precision_for(v2, "cuda:0") == "fp32"


def test_keeps_the_embedder_contract(tiny_checkpoint, real_proteins):
    embedder = Esm2V2Embedder.from_options(EmbedderOptions(model=str(tiny_checkpoint), batch_tokens=900))
    assert isinstance(embedder, Embedder)
    check_embedder_contract(embedder, real_proteins[:40] + ["M", "WW"])


def test_a_forced_attention_that_cannot_run_here_is_a_one_line_error(tiny_checkpoint):
    with pytest.raises(ConfigError, match=r"attention=torch-varlen cannot run on cpu .*needs CUDA; choose one of sdpa-bucketed or auto"):
        Esm2V2Embedder.from_options(EmbedderOptions(model=str(tiny_checkpoint), extra={"attention": "torch-varlen"}))
    with pytest.raises(ConfigError, match="unknown attention implementation 'nope'"):
        Esm2V2Embedder.from_options(EmbedderOptions(model=str(tiny_checkpoint), extra={"attention": "nope"}))


def test_out_of_memory_halves_the_budget_and_gives_the_same_rows(monkeypatch, tiny_checkpoint, real_proteins, caplog):
    """The trigger is simulated (no GPU here); the retry path, re-packing and row assignment are real."""
    seqs = real_proteins[:150]
    clean = Esm2V2Embedder.from_options(EmbedderOptions(model=str(tiny_checkpoint), batch_tokens=4000))
    expected = clean.embed(seqs)
    embedder = Esm2V2Embedder.from_options(EmbedderOptions(model=str(tiny_checkpoint), batch_tokens=4000))
    forward = embedder.model.forward

    def forward_with_small_memory(batch, attention):
        if batch.pack.total_tokens > 1000:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return forward(batch, attention)

    monkeypatch.setattr(embedder.model, "forward", forward_with_small_memory)
    with caplog.at_level("WARNING"):
        got = embedder.embed(seqs)
    assert RowComparison.of(got, expected).max_abs.max() <= 1e-5
    assert embedder.batch_tokens <= 1000 and embedder.oom_retries >= 1
    assert "out of memory" in caplog.text and "retrying with batches of up to" in caplog.text

    def always_oom(batch, attention):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(embedder.model, "forward", always_oom)
    with pytest.raises(VirnucproError, match="ran out of memory on cpu with a single protein of 5 residues"):
        embedder.embed(["MKTLV"])


def test_embed_command_records_attention_precision_and_packing(tmp_path, tiny_checkpoint, real_proteins):
    faa = tmp_path / "p.faa"
    faa.write_text("".join(f">p{i}\n{s}\n" for i, s in enumerate(real_proteins[:60])))
    out = tmp_path / "p.h5"
    result = CliRunner().invoke(cli, ["embed", str(faa), "--backend", "esm2", "--model", str(tiny_checkpoint), "-o", str(out),
                                      "--device", "cpu", "-q", "--batch-tokens", "1500",
                                      "--backend-option", "esm2:attention=sdpa-bucketed"])
    assert result.exit_code == 0, result.output
    with h5py.File(out) as f:
        assert f.attrs["backend"] == "esm2" and f.attrs["version"] == "v2"
        extra = json.loads(f.attrs["extra"])
        emb = f["embeddings"][:]
    assert extra["attention"] == "sdpa-bucketed" and extra["precision"] == "fp32" and extra["batch_tokens"] == "1500"
    assert 0.5 < float(extra["packing_utilisation"]) <= 1
    ref = tmp_path / "v1.h5"
    result = CliRunner().invoke(cli, ["embed", str(faa), "--backend", "esm2=v1", "--model", str(tiny_checkpoint), "-o", str(ref),
                                      "--device", "cpu", "-q"])
    assert result.exit_code == 0, result.output
    with h5py.File(ref) as f:
        assert not RowComparison.of(emb, f["embeddings"][:]).fp32_failures()


def test_a_malformed_backend_option_is_a_one_line_error(tmp_path, tiny_checkpoint):
    faa = tmp_path / "p.faa"
    faa.write_text(">p\nMKV\n")
    result = CliRunner().invoke(cli, ["embed", str(faa), "--backend", "esm2=v2", "--model", str(tiny_checkpoint),
                                      "-o", str(tmp_path / "o.h5"), "--backend-option", "attention"])
    assert result.exit_code == 2
    assert result.output.startswith("Error: --backend-option 'attention': expected [FAMILY:]KEY=VALUE")


def test_backend_options_are_checked_before_anything_is_written(tmp_path, tiny_checkpoint):
    """An option esm2=v2 does not take, and a kernel that cannot run on a CPU: one line, no output folder."""
    from virnucpro_esm2_v2.embedder import OPTION_KEYS
    from virnucpro_esm2_v2.plugin import OPTIONS

    assert tuple(option.key for option in OPTIONS) == tuple(OPTION_KEYS)  # declared = what the embedder reads
    faa = tmp_path / "p.faa"
    faa.write_text(">p\nMKV\n")
    out = tmp_path / "new" / "o.h5"
    for option, expected in (
        ("colour=blue", "Error: --backend-option colour=blue: no backend of this run takes colour (esm2=v2 takes "
                        "attention=auto|flash-attn|torch-varlen|sdpa-bucketed)\n"),
        ("esm2:attention=fast", "Error: --backend-option esm2:attention=fast: esm2=v2 takes "
                                "attention=auto|flash-attn|torch-varlen|sdpa-bucketed\n"),
        ("esm2:attention=torch-varlen", "Error: esm2=v2: attention=torch-varlen cannot run on cpu in torch.float32: needs CUDA; "
                                        "choose one of sdpa-bucketed or auto\n"),
    ):
        result = CliRunner().invoke(cli, ["embed", str(faa), "--backend", "esm2=v2", "--model", str(tiny_checkpoint),
                                          "-o", str(out), "--device", "cpu", "-q", "--backend-option", option])
        assert (result.exit_code, result.output) == (2, expected)
        assert not out.parent.exists()


def test_non_finite_rows_are_refused_with_a_precision_hint(monkeypatch, tmp_path, tiny_checkpoint):
    import virnucpro_esm2_v2.embedder as module

    original = module.Esm2V2Embedder.embed
    monkeypatch.setattr(module.Esm2V2Embedder, "embed", lambda self, seqs, progress=None: original(self, seqs, progress) * np.inf)
    faa = tmp_path / "p.faa"
    faa.write_text(">p1\nMKV\n")
    result = CliRunner().invoke(cli, ["embed", str(faa), "--backend", "esm2=v2", "--model", str(tiny_checkpoint),
                                      "-o", str(tmp_path / "o.h5"), "-q", "--device", "cpu"])
    assert result.exit_code == 1 and "NaN/inf" in result.output and "try --precision bf16 or fp32" in result.output


def test_synthetic_weights_load_strictly_in_fair_esm_and_match_v2():
    """The fair-esm-free random checkpoint of the benchmark/GPU check has fair-esm's exact layout."""
    import esm

    from virnucpro_esm2_v1.embedder import Esm2V1Embedder
    from virnucpro_esm2_v2.synthetic import random_checkpoint_data

    data = random_checkpoint_data(2, 48, 6, seed=4)
    model, alphabet = esm.pretrained.load_model_and_alphabet_core("esm2_t2_synthetic", data)  # strict load_state_dict
    seqs = ["MKTAYIAKQR", "G", "PLLVVAAGWW" * 12]
    ref = Esm2V1Embedder(model.eval(), alphabet, model_id="synthetic").embed(seqs)
    got = Esm2V2Embedder.from_checkpoint_data(random_checkpoint_data(2, 48, 6, seed=4), model_id="synthetic").embed(seqs)
    assert not RowComparison.of(got, ref).fp32_failures()


@pytest.mark.parametrize("amx,avx512_bf16,warns", [(False, False, True), (False, True, False), (True, False, False)])
def test_bf16_on_a_cpu_warns_only_where_it_is_emulated(monkeypatch, tiny_checkpoint, caplog, amx, avx512_bf16, warns):
    """An AVX512-BF16 CPU without AMX runs bf16 natively (faster than fp32): no warning there."""
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    with caplog.at_level("WARNING"):
        Esm2V2Embedder.from_options(EmbedderOptions(model=str(tiny_checkpoint), precision="bf16"))
    emulated = [r.getMessage() for r in caplog.records if "emulated" in r.getMessage()]
    assert emulated == ([f"esm2=v2: this CPU has neither AMX tiles nor AVX512-BF16 (torch reports "
                         f"{torch.backends.cpu.get_cpu_capability()}); bf16 matmuls are emulated here and much slower "
                         "than fp32, use --precision fp32"] if warns else [])
