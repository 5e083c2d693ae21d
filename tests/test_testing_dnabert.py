"""write_tiny_dnabert: a seeded tiny DNABERT-S in the published folder's layout, of any shape."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from virnucpro_core.testing.dnabert import SPECIAL_TOKENS, mosaic_weight_shapes, write_tiny_dnabert


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    base = tmp_path_factory.mktemp("tiny_dnabert")
    return {
        "a": write_tiny_dnabert(base / "a", seed=0),
        "a_again": write_tiny_dnabert(base / "a_again", seed=0),
        "b": write_tiny_dnabert(base / "b", seed=1, hidden_size=24, num_layers=1, num_heads=6, intermediate_size=40,
                                vocab_size=64, weights="safetensors", alibi_starting_size=64),
    }


def test_writes_the_dnabert_s_folder_layout(folders):
    names = sorted(p.name for p in folders["a"].iterdir())
    assert names == ["bert_layers.py", "config.json", "configuration_bert.py", "pytorch_model.bin", "tokenizer.json",
                     "tokenizer_config.json"]
    assert "model.safetensors" in {p.name for p in folders["b"].iterdir()}
    tok_config = json.loads((folders["a"] / "tokenizer_config.json").read_text())
    assert tok_config["tokenizer_class"] == "PreTrainedTokenizerFast"  # loads on transformers 4.x and 5.x


def test_config_is_dnabert_s_own_with_the_shape_replaced(folders, data_dir):
    real = json.loads((data_dir / "dnabert_s_config.json").read_text())
    config = json.loads((folders["b"] / "config.json").read_text())
    shape = {"hidden_size": 24, "num_hidden_layers": 1, "num_attention_heads": 6, "intermediate_size": 40,
             "vocab_size": 64, "alibi_starting_size": 64}
    assert {k: config[k] for k in shape} == shape
    assert set(config) == set(real)
    assert {k: v for k, v in config.items() if k not in shape and k != "auto_map"} == {
        k: v for k, v in real.items() if k not in shape and k != "auto_map"
    }
    assert config["auto_map"] == {"AutoConfig": "configuration_bert.BertConfig", "AutoModel": "bert_layers.BertModel"}
    assert config["pad_token_id"] == 0  # as the real config, while the tokenizer pads with 3


def test_weights_have_dnabert_s_key_names_and_useful_scales(folders):
    state = torch.load(folders["a"] / "pytorch_model.bin", weights_only=True)
    shapes = mosaic_weight_shapes(hidden_size=32, num_layers=2, intermediate_size=64, vocab_size=128)
    assert {k: tuple(v.shape) for k, v in state.items()} == shapes
    assert "encoder.layer.1.attention.self.Wqkv.weight" in state and not any("position" in k for k in state)
    ln = state["encoder.layer.0.attention.output.LayerNorm.weight"]
    assert not torch.allclose(ln, torch.ones_like(ln))
    assert state["encoder.layer.1.mlp.wo.bias"].abs().max() > 0.05


def test_same_seed_same_bytes_other_seed_other_weights(folders):
    for name in ("tokenizer.json", "pytorch_model.bin", "config.json", "bert_layers.py"):
        assert (folders["a"] / name).read_bytes() == (folders["a_again"] / name).read_bytes(), name


def test_special_tokens_have_dnabert2_ids_and_wrap_every_sequence(folders):
    transformers = pytest.importorskip("transformers")
    tokenizer = transformers.AutoTokenizer.from_pretrained(folders["a"])
    assert [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    assert (tokenizer.pad_token_id, tokenizer.mask_token_id) == (3, 4)
    seq = "ACGTACGTAGCTAGCTAGCATCGATCGATTTTAGGAC"
    ids = tokenizer(seq)["input_ids"]
    assert ids[0] == 1 and ids[-1] == 2 and 0 not in ids
    pieces = tokenizer.convert_ids_to_tokens(ids[1:-1])
    assert "".join(pieces) == seq  # BPE segments the DNA without losing or adding bases
    assert max(len(p) for p in pieces) > 2  # merges learnt multi-base tokens
    assert tokenizer(["ACGT", seq], padding=True)["input_ids"][0][-1] == 3  # pads with [PAD]
    assert len(tokenizer) == 128


def test_stock_bert_variant_loads_with_the_auto_classes(tmp_path, monkeypatch):
    transformers = pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = write_tiny_dnabert(tmp_path / "bert", architecture="bert", max_position_embeddings=64)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    model = transformers.AutoModel.from_pretrained(folder)
    assert model.config.max_position_embeddings == 64 and model.config.pad_token_id == 0
    assert "embeddings.position_embeddings.weight" in model.state_dict()


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="architecture"):
        write_tiny_dnabert(tmp_path / "x", architecture="gpt")
    with pytest.raises(ValueError, match="not a multiple"):
        write_tiny_dnabert(tmp_path / "y", hidden_size=30, num_heads=4)


def test_the_published_key_layout_has_138_tensors_at_the_dnabert_s_shape():
    shapes = mosaic_weight_shapes(hidden_size=768, num_layers=12, intermediate_size=3072, vocab_size=4096)
    assert len(shapes) == 138  # as zhihan1996/DNABERT-S's pytorch_model.bin
    assert not any(k.startswith(("bert.", "cls.")) for k in shapes)
    assert shapes["pooler.dense.weight"] == (768, 768) and shapes["pooler.dense.bias"] == (768,)


def test_checkpoints_without_a_pooler_and_masked_lm_exports_hold_the_same_encoder(tmp_path):
    published = torch.load(write_tiny_dnabert(tmp_path / "a") / "pytorch_model.bin", weights_only=True)
    bare = torch.load(write_tiny_dnabert(tmp_path / "b", pooler=False) / "pytorch_model.bin", weights_only=True)
    masked = torch.load(write_tiny_dnabert(tmp_path / "c", masked_lm=True) / "pytorch_model.bin", weights_only=True)
    encoder = {k: v for k, v in published.items() if not k.startswith("pooler.")}
    assert len(published) == len(encoder) + 2 == 4 + 11 * 2 + 2
    assert bare.keys() == encoder.keys() and all(torch.equal(bare[k], v) for k, v in encoder.items())
    assert {k for k in masked if not k.startswith("cls.")} == {"bert." + k for k in encoder}
    assert all(torch.equal(masked["bert." + k], v) for k, v in encoder.items())
    assert sorted(k for k in masked if k.startswith("cls.")) == [
        "cls.predictions.bias", "cls.predictions.transform.LayerNorm.bias", "cls.predictions.transform.LayerNorm.weight",
        "cls.predictions.transform.dense.bias", "cls.predictions.transform.dense.weight"]
    assert masked["cls.predictions.bias"].shape == (128,)
