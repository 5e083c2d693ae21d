"""Loading: local folders, offline hub ids, remote code, and the repairs the loader makes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from virnucpro_dnabert_v1.loading import (
    disable_triton_attention,
    eager_init,
    load_dnabert,
    repair_alibi,
)

from virnucpro_core.errors import ModelError
from virnucpro_core.modelset import DNABERT_S_REVISION
from virnucpro_core.hub import cache_dir

HINT = "run `virnucpro models download` where there is network (it fills <models dir>/dnabert/DNABERT-S/)"


def test_missing_model_folder_is_one_line_model_error(tmp_path):
    missing = tmp_path / "DNABERT-S"
    with pytest.raises(ModelError) as info:
        load_dnabert(str(missing))
    message = str(info.value)
    assert message == (
        f"DNABERT-S model folder {missing} does not exist; put the files of zhihan1996/DNABERT-S there "
        f"(config.json, tokenizer files, weights and its *.py remote code) or {HINT}"
    )
    assert "\n" not in message


def test_folder_without_config_is_one_line_model_error(tmp_path):
    with pytest.raises(ModelError) as info:
        load_dnabert(str(tmp_path))
    assert str(info.value) == (
        f"{tmp_path} is not a Hugging Face model folder (no config.json); "
        f"put the files of zhihan1996/DNABERT-S there or {HINT}"
    )


def test_folder_without_weights_is_one_line_model_error(tiny_dir, tmp_path):
    import shutil

    broken = tmp_path / "no_weights"
    shutil.copytree(tiny_dir, broken)
    (broken / "model.safetensors").unlink()
    with pytest.raises(ModelError) as info:
        load_dnabert(str(broken))
    message = str(info.value)
    assert message.startswith(f"{broken}: cannot load the DNABERT-S model from this folder (OSError: ")
    assert "\n" not in message


def test_uncached_hub_id_offline_is_one_line_model_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError) as info:
        load_dnabert("virnucpro-tests/not-a-model", revision="0123abc")
    assert str(info.value) == (
        f"DNABERT-S model 'virnucpro-tests/not-a-model' at revision 0123abc is not in the Hugging Face cache "
        f"({cache_dir()}) and downloads are off (HF_HUB_OFFLINE is set); {HINT}, or give the path of a local model folder"
    )


#: nothing listens on the discard port of the loopback: connections are refused at once
REFUSED = "http://127.0.0.1:9"


def offline_env(tmp_path, **extra: str) -> dict[str, str]:
    """This process's environment with an empty Hugging Face home and the hub unreachable."""
    dropped = {"HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE"}  # and proxies: loopback is reached directly
    env = {k: v for k, v in os.environ.items() if k not in dropped and not k.lower().endswith("_proxy")}
    env.update(HF_HOME=str(tmp_path / "hf-home"), HF_ENDPOINT=REFUSED, **extra)
    return env


#: The command run in a subprocess after its heavy imports, timed from there: the time is the
#: command's own (registry, probe, error), not interpreter start-up on a busy machine.
TIMED_CLI = """
import sys, time
import torch, transformers, huggingface_hub
from virnucpro_core.cli import main
sys.argv = ["virnucpro", *sys.argv[1:]]
start = time.monotonic()
try:
    main()
finally:
    print(f"{time.monotonic() - start:.3f}")
"""


def embed_by_hub_id(tmp_path, env: dict[str, str], *flags: str) -> tuple[subprocess.CompletedProcess, float]:
    fasta = tmp_path / "n.fa"
    fasta.write_text(">a\nACGTACGTAGCTAGCTAGCATCGATCGAT\n")
    done = subprocess.run([sys.executable, "-c", TIMED_CLI, "embed", str(fasta), "--backend", "dnabert=v1",
                           "--model", "zhihan1996/DNABERT-S", "-o", str(tmp_path / "n.h5"), "--device", "cpu", *flags],
                          capture_output=True, text=True, env=env, timeout=300)
    return done, float(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("quiet", [True, False])
def test_an_unreachable_hub_fails_within_seconds_with_one_message(tmp_path, quiet):
    """No cache and no network: one probe, then one line; the libraries' minute of retries
    (two dozen warnings, each printed twice) must not happen, with or without -q."""
    done, seconds = embed_by_hub_id(tmp_path, offline_env(tmp_path), *(["-q"] if quiet else []))
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    error = (f"Error: DNABERT-S model 'zhihan1996/DNABERT-S' at revision {DNABERT_S_REVISION} is not in the Hugging Face cache ({tmp_path / 'hf-home' / 'hub'}) "
             f"and {REFUSED} cannot be reached (")
    assert lines[-1].startswith(error) and lines[-1].endswith(f"; {HINT}, or give the path of a local model folder")
    if quiet:
        assert len(lines) == 1, done.stderr
    assert not any("Retry" in line or "thrown while requesting" in line for line in lines), done.stderr
    assert "Traceback" not in done.stderr
    # the libraries' retries alone sleep 1+2+4+8+8 s per file
    assert seconds < 10, f"{seconds:.1f} s"
    assert not (tmp_path / "n.h5").exists()


def test_hf_hub_offline_fails_at_once_with_one_message(tmp_path):
    done, seconds = embed_by_hub_id(tmp_path, offline_env(tmp_path, HF_HUB_OFFLINE="1"), "-q")
    assert done.returncode == 1
    assert done.stderr == (
        f"Error: DNABERT-S model 'zhihan1996/DNABERT-S' at revision {DNABERT_S_REVISION} is not in the Hugging Face cache ({tmp_path / 'hf-home' / 'hub'}) "
        f"and downloads are off (HF_HUB_OFFLINE is set); {HINT}, or give the path of a local model folder\n"
    )
    assert seconds < 10, f"{seconds:.1f} s"


def test_a_cached_hub_id_loads_without_touching_the_network(tiny_dir, tmp_path, monkeypatch):
    """A snapshot in the cache is used as it is: no request at all, the commit from its folder."""
    import shutil
    import socket

    from huggingface_hub import constants

    commit = "89abcdef0123456789abcdef0123456789abcdef"
    root = tmp_path / "hub" / "models--virnucpro-tests--tiny"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    shutil.copytree(tiny_dir, root / "snapshots" / commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    attempts: list[object] = []

    def no_network(self, address):
        attempts.append(address)
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    loaded = load_dnabert("virnucpro-tests/tiny")
    assert attempts == []
    assert loaded.commit == commit and loaded.model_id == "virnucpro-tests/tiny"
    assert not loaded.model.training


def test_remote_code_is_announced_before_it_runs(mosaic_dir, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="virnucpro_dnabert_v1.loading"):
        loaded = load_dnabert(str(mosaic_dir))
    assert loaded.remote_code
    notices = [r.getMessage() for r in caplog.records if "running the model's own Python code" in r.getMessage()]
    assert notices == [
        "DNABERT-S: running the model's own Python code (trust_remote_code: mini_mosaic_layers.MiniMosaicModel) "
        f"from {mosaic_dir}; only load models you trust (SECURITY.md)"
    ]


def test_unknown_attention_choice_is_rejected(tiny_dir):
    with pytest.raises(ModelError, match=r"^DNABERT-S attention 'flash' is unknown; use 'torch' \(default\) or 'triton'$"):
        load_dnabert(str(tiny_dir), attention="flash")


def test_stock_bert_folder_loads_in_eval_mode(tiny_dir):
    loaded = load_dnabert(str(tiny_dir))
    assert not loaded.remote_code
    assert not loaded.model.training  # dropout off: embeddings are deterministic
    assert loaded.model_id == str(tiny_dir)
    assert loaded.tokenizer.pad_token_id == 3


def test_remote_code_folder_loads_with_alibi_on_the_cpu_and_triton_disabled(mosaic_dir):
    loaded = load_dnabert(str(mosaic_dir))
    assert loaded.remote_code
    assert type(loaded.model).__name__ == "MiniMosaicModel"
    assert not loaded.model.encoder.alibi.is_meta
    module = sys.modules[type(loaded.model.encoder.layer[0]).__module__]
    assert module.flash_attn_qkvpacked_func is None
    ids = loaded.tokenizer("ACGTAGGCTTAG", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        hidden = loaded.model(ids)[0]
    assert hidden.shape == (1, ids.shape[1], 32)


def test_plain_transformers_5_loading_fails_in_init_where_load_dnabert_builds_on_the_cpu(mosaic_dir):
    """transformers 5 builds models on the meta device; the remote ALiBi code then mixes
    meta and CPU tensors in ``__init__`` (observed with the real bert_layers.py)."""
    import transformers
    from transformers import AutoModel

    if int(transformers.__version__.split(".")[0]) < 5:
        pytest.skip("transformers 4 builds models on the CPU")
    with pytest.raises(RuntimeError, match="^Tensor on device meta is not on the expected device cpu!$"):
        AutoModel.from_pretrained(mosaic_dir, trust_remote_code=True)
    model = load_dnabert(str(mosaic_dir)).model
    assert model.encoder.alibi.device == torch.device("cpu")
    assert model.encoder.alibi.shape == (1, 4, 512, 512)
    assert not any(t.is_meta for t in model.state_dict().values())


def test_every_weight_in_the_folder_is_loaded_unchanged(model_dir):
    from safetensors.torch import load_file

    on_disk = load_file(str(model_dir / "model.safetensors"))
    loaded = load_dnabert(str(model_dir)).model.state_dict()
    assert set(on_disk) <= set(loaded)
    for key, tensor in on_disk.items():
        assert torch.equal(loaded[key], tensor.to(torch.float32)), key


def test_eager_init_keeps_the_identity_of_the_remote_class(mosaic_dir):
    from transformers import AutoConfig
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    config = AutoConfig.from_pretrained(mosaic_dir, trust_remote_code=True)
    remote = get_class_from_dynamic_module(config.auto_map["AutoModel"], str(mosaic_dir))
    eager = eager_init(remote)
    assert issubclass(eager, remote)
    assert (eager.__name__, eager.__qualname__, eager.__module__) == (
        remote.__name__,
        remote.__qualname__,
        remote.__module__,
    )
    model = load_dnabert(str(mosaic_dir)).model
    assert type(model).__module__ == remote.__module__  # where disable_triton_attention looks


def test_repair_alibi_rebuilds_an_alibi_tensor_left_on_meta(mosaic_dir):
    model = load_dnabert(str(mosaic_dir)).model
    ids = torch.tensor([[1, 20, 30, 2]])
    with torch.no_grad():
        expected = model(ids)[0]
    model.encoder.alibi = model.encoder.alibi.to("meta")
    with pytest.raises(NotImplementedError, match="meta tensor"), torch.no_grad():
        model(ids)
    assert repair_alibi(model) == 1
    assert repair_alibi(model) == 0
    assert model.encoder.alibi.shape == (1, 4, 512, 512)
    with torch.no_grad():
        assert torch.equal(model(ids)[0], expected)


def test_disable_triton_attention_switches_the_remote_code_to_pytorch(mosaic_dir):
    loaded = load_dnabert(str(mosaic_dir))
    module = sys.modules[type(loaded.model.encoder.layer[0]).__module__]
    kernel = sys.modules[module.__name__.rsplit(".", 1)[0] + ".mini_flash"].flash_attn_qkvpacked_func
    ids = torch.tensor([[1, 20, 30, 2]])
    module.flash_attn_qkvpacked_func = kernel  # as if Triton had imported
    try:
        with pytest.raises(RuntimeError, match="Triton FlashAttention kernel called"), torch.no_grad():
            loaded.model(ids)
        assert disable_triton_attention(loaded.model) == 1
        assert module.flash_attn_qkvpacked_func is None
        with torch.no_grad():
            loaded.model(ids)
    finally:
        module.flash_attn_qkvpacked_func = None


def test_checkpoints_without_a_pooler_load_with_a_log_line_and_embed_alike(init_tiny_dir, tmp_path, caplog):
    """DNABERT-2's masked-LM export and add_pooling_layer=False exports lack pooler.dense.*,
    which mean pooling never uses: they load, say so, and give the published layout's numbers."""
    import logging

    from virnucpro_core.testing.dnabert import write_tiny_dnabert
    from virnucpro_dnabert_v1.embedder import DnabertV1Embedder

    seqs = ["ACGTAGCTAGCTAGGATCCAGT" * 5, "TTAC", "GATTACA" * 40]
    reference = DnabertV1Embedder(load_dnabert(str(init_tiny_dir))).embed(seqs)
    for layout in ({"pooler": False}, {"masked_lm": True}):
        folder = write_tiny_dnabert(tmp_path / next(iter(layout)), seed=0, **layout)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="virnucpro_dnabert_v1.loading"):
            loaded = load_dnabert(str(folder))
        assert (f"DNABERT-S {folder}: the checkpoint has no pooler (pooler.dense.*), as masked-LM and "
                "add_pooling_layer=False exports; mean pooling does not use it") in caplog.messages, layout
        assert np.array_equal(DnabertV1Embedder(loaded).embed(seqs), reference), layout


def test_the_default_hub_id_loads_the_pinned_revision_and_checks_its_files(init_tiny_dir, tmp_path, monkeypatch):
    from huggingface_hub import constants

    from virnucpro_core import modelset
    from virnucpro_core.checksum import sha256_file

    revision = modelset.DNABERT_S_REVISION
    base = tmp_path / "hub" / "models--zhihan1996--DNABERT-S"
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text(revision)
    snapshot = base / "snapshots" / revision
    shutil.copytree(init_tiny_dir, snapshot)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    pins = {name: modelset.PinnedFile((snapshot / name).stat().st_size, sha256_file(snapshot / name), "the tiny model")
            for name in ("config.json", "pytorch_model.bin")}
    monkeypatch.setattr(modelset, "DNABERT_S_PINS", pins)
    loaded = load_dnabert(None)
    assert (loaded.commit, loaded.model_id) == (revision, f"zhihan1996/DNABERT-S@{revision}")
    monkeypatch.setattr(modelset, "DNABERT_S_PINS", {**pins, "config.json": modelset.PinnedFile(1_025, "0" * 64, "x")})
    size = (snapshot / "config.json").stat().st_size
    with pytest.raises(ModelError) as info:
        load_dnabert("zhihan1996/DNABERT-S")
    assert str(info.value) == (
        f"DNABERT-S model zhihan1996/DNABERT-S@{revision}: config.json is not the pinned file ({size:,} bytes, expected "
        f"1,025; pin from x); it was removed from the cache ({snapshot}): check the network proxy or mirror (HF_ENDPOINT) "
        "and load again"
    )
    assert not (snapshot / "config.json").exists()


def test_preflight_finds_the_model_and_its_width_without_loading_it(tiny_dir, tmp_path, monkeypatch):
    """What the core runs before any stage: a folder's config.json (its hidden_size is the width),
    or a hub id in the cache, else the same one-line error loading gives."""
    import shutil

    from huggingface_hub import constants

    from virnucpro_dnabert_v1.loading import preflight

    monkeypatch.setattr("transformers.AutoModel.from_pretrained", lambda *a, **k: pytest.fail("the preflight loaded the model"))
    width = json.loads((tiny_dir / "config.json").read_text())["hidden_size"]
    assert preflight(str(tiny_dir)) == width
    with pytest.raises(ModelError, match=f"^DNABERT-S model folder {tmp_path / 'nowhere'} does not exist"):
        preflight(str(tmp_path / "nowhere"))
    with pytest.raises(ModelError, match=r"is not a Hugging Face model folder \(no config\.json\)"):
        preflight(str(tmp_path))
    commit = "89abcdef0123456789abcdef0123456789abcdef"
    root = tmp_path / "hub" / "models--virnucpro-tests--tiny"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    shutil.copytree(tiny_dir, root / "snapshots" / commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert preflight("virnucpro-tests/tiny") == width
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match=r"^DNABERT-S model 'zhihan1996/DNABERT-S' at revision 00e47f96cdea35e4b6f5df89e5419cbe47d490c6 "
                                         r"is not in the Hugging Face cache .* "
                                         r"and downloads are off \(HF_HUB_OFFLINE is set\)"):
        preflight(None)


def test_a_checkpoint_with_only_unexpected_keys_is_one_line_model_error(model_dir, tmp_path):
    """transformers loads such a checkpoint with a multi-line report and random weights;
    the rows would be meaningless, so it is refused in one line naming a missing key."""
    import shutil

    broken = tmp_path / "renamed"
    shutil.copytree(model_dir, broken)
    weights = next(p for p in broken.iterdir() if p.name in ("model.safetensors", "pytorch_model.bin"))
    if weights.suffix == ".safetensors":
        from safetensors.torch import load_file, save_file

        save_file({f"unrelated.{k}": v for k, v in load_file(weights).items()}, weights, metadata={"format": "pt"})
    else:
        torch.save({f"unrelated.{k}": v for k, v in torch.load(weights, weights_only=True).items()}, weights)
    with pytest.raises(ModelError) as info:
        load_dnabert(str(broken))
    message = str(info.value)
    assert message.startswith(f"{broken}: the weights do not fit DNABERT-S's encoder (") and " missing, e.g. " in message
    assert "unexpected, e.g. 'unrelated." in message
    assert message.endswith("); the files are damaged or not a DNABERT-S checkpoint") and "\n" not in message
