"""write_tiny_dnabert: a seeded DNABERT-S look-alike that transformers loads offline."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from virnucpro_core.testing.dnabert import SPECIAL_TOKENS, write_tiny_dnabert


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    base = tmp_path_factory.mktemp("tiny_dnabert")
    return {
        "a": write_tiny_dnabert(base / "a", seed=0),
        "a_again": write_tiny_dnabert(base / "a_again", seed=0),
        "b": write_tiny_dnabert(base / "b", seed=1, hidden_size=16, num_layers=1, num_heads=2, vocab_size=64),
    }


def test_writes_a_hugging_face_folder(folders):
    names = sorted(p.name for p in folders["a"].iterdir())
    assert names == ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    tok_config = json.loads((folders["a"] / "tokenizer_config.json").read_text())
    assert tok_config["tokenizer_class"] == "PreTrainedTokenizerFast"  # loads on transformers 4.x and 5.x


def test_loads_offline_with_the_auto_classes(folders, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tokenizer = transformers.AutoTokenizer.from_pretrained(folders["a"])
    model = transformers.AutoModel.from_pretrained(folders["a"])
    assert model.config.model_type == "bert"
    assert (model.config.hidden_size, model.config.num_hidden_layers, model.config.num_attention_heads) == (32, 2, 4)
    assert (model.config.intermediate_size, model.config.vocab_size) == (64, 128)
    assert len(tokenizer) == 128


def test_special_tokens_have_dnabert2_ids_and_wrap_every_sequence(folders):
    tokenizer = transformers.AutoTokenizer.from_pretrained(folders["a"])
    assert [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    assert SPECIAL_TOKENS == ("[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]")
    assert (tokenizer.unk_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id) == (0, 1, 2)
    assert (tokenizer.pad_token_id, tokenizer.mask_token_id) == (3, 4)
    seq = "ACGTACGTAGCTAGCTAGCATCGATCGATTTTAGGAC"
    ids = tokenizer(seq)["input_ids"]
    assert ids[0] == 1 and ids[-1] == 2 and 0 not in ids
    pieces = tokenizer.convert_ids_to_tokens(ids[1:-1])
    assert "".join(pieces) == seq  # BPE segments the DNA without losing or adding bases
    assert max(len(p) for p in pieces) > 2  # merges learnt multi-base tokens
    assert tokenizer(["ACGT", seq], padding=True)["input_ids"][0][-1] == 3  # pads with [PAD]


def test_model_config_pad_id_is_0_like_the_real_config(folders):
    """The real DNABERT-S config.json says pad_token_id 0 while its tokenizer pads with 3."""
    config = json.loads((folders["a"] / "config.json").read_text())
    assert config["pad_token_id"] == 0


def test_same_seed_same_files_other_seed_other_model(folders):
    for name in ("tokenizer.json", "model.safetensors", "config.json"):
        assert (folders["a"] / name).read_bytes() == (folders["a_again"] / name).read_bytes(), name
    b = transformers.AutoModel.from_pretrained(folders["b"])
    assert (b.config.hidden_size, b.config.num_hidden_layers, b.config.vocab_size) == (16, 1, 64)


def test_weights_are_non_trivial_and_load_back_intact(folders):
    model = transformers.AutoModel.from_pretrained(folders["a"]).eval()
    state = model.state_dict()
    ln = state["encoder.layer.0.attention.output.LayerNorm.weight"]
    assert not torch.allclose(ln, torch.ones_like(ln))  # not BERT's 1/0 LayerNorm init
    assert state["encoder.layer.1.output.dense.bias"].abs().max() > 0.05
    ids = torch.tensor([[1, 20, 40, 60, 80, 2]])
    with torch.no_grad():
        hidden = model(ids)[0]
        explicit = model(ids, token_type_ids=torch.zeros_like(ids), attention_mask=torch.ones_like(ids))[0]
    assert hidden.shape == (1, 6, 32)
    assert 0.3 < hidden.std().item() < 3.0  # O(1) activations, not a near-identity network
    assert torch.equal(hidden, explicit)  # default buffers (token types) loaded sanely
    from safetensors.torch import load_file

    saved = load_file(folders["a"] / "model.safetensors")
    for key, value in saved.items():
        assert torch.equal(state[key], value), key
