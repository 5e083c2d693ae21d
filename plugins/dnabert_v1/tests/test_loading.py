"""Loading: local folders, offline hub ids, remote code, and the repairs the loader makes."""

from __future__ import annotations

import sys

import pytest
import torch
from virnucpro_dnabert_v1.loading import (
    disable_triton_attention,
    load_dnabert,
    repair_alibi,
)

from virnucpro_core.errors import ModelError

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
        "DNABERT-S model 'virnucpro-tests/not-a-model' at revision 0123abc is not in the Hugging Face cache "
        f"and downloads are off (HF_HUB_OFFLINE is set); {HINT}, or give the path of a local model folder"
    )


def test_unknown_attention_choice_is_rejected(tiny_dir):
    with pytest.raises(ModelError, match=r"^DNABERT-S attention 'flash' is unknown; use 'torch' \(default\) or 'triton'$"):
        load_dnabert(str(tiny_dir), attention="flash")


def test_stock_bert_folder_loads_in_eval_mode(tiny_dir):
    loaded = load_dnabert(str(tiny_dir))
    assert not loaded.remote_code
    assert not loaded.model.training  # dropout off: embeddings are deterministic
    assert loaded.model_id == str(tiny_dir)
    assert loaded.tokenizer.pad_token_id == 3


def test_remote_code_folder_loads_with_alibi_repaired_and_triton_disabled(mosaic_dir):
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


def test_repair_alibi_rebuilds_what_transformers_left_on_meta(mosaic_dir):
    """transformers 5 instantiates on the meta device; plain tensor attributes stay there."""
    from transformers import AutoModel

    raw = AutoModel.from_pretrained(mosaic_dir, trust_remote_code=True)
    sys.modules[type(raw).__module__].flash_attn_qkvpacked_func = None
    if not raw.encoder.alibi.is_meta:
        pytest.skip("this transformers version does not build models on the meta device")
    with pytest.raises(NotImplementedError, match="meta tensor"):
        raw(torch.tensor([[1, 20, 30, 2]]))
    assert repair_alibi(raw) == 1
    assert repair_alibi(raw) == 0
    fixed = load_dnabert(str(mosaic_dir)).model
    ids = torch.tensor([[1, 20, 30, 2]])
    with torch.no_grad():
        assert torch.equal(raw(ids)[0], fixed(ids)[0])


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
