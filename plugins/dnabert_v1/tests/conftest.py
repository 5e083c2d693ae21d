"""Shared fixtures: tiny DNABERT-S stand-ins written to disk in the real formats.

- ``tiny_dir``: transformers' own ``BertModel`` + a BPE DNA tokenizer
  (:func:`virnucpro_core.testing.dnabert.write_tiny_dnabert` with ``architecture="bert"``).
- ``init_tiny_dir``: that function's default, the folder ``models init-tiny`` writes:
  DNABERT-S's layout with VirNucPro's re-statement of its remote code.
- ``mosaic_dir``: the same tokenizer with a miniature MosaicBERT loaded as remote code
  (``tests/remote_code``), the architecture class of the real DNABERT-S.

Nothing touches the network: Hugging Face libraries are put offline and remote-code
modules are cached in a temporary folder instead of ``~/.cache``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
_MODULES_CACHE = None if "HF_MODULES_CACHE" in os.environ else tempfile.mkdtemp(prefix="virnucpro-dnabert-hf-modules-")
if _MODULES_CACHE is not None:
    os.environ["HF_MODULES_CACHE"] = _MODULES_CACHE

import pytest

REMOTE_CODE = Path(__file__).parent / "remote_code"


def write_mini_mosaic(folder: Path, *, seed: int = 0) -> Path:
    """A model folder like DNABERT-S's: tokenizer files, config with ``auto_map``, *.py, weights."""
    import torch
    from transformers import AutoConfig, AutoModel

    from virnucpro_core.testing.dnabert import randomise_weights, write_tiny_dnabert

    write_tiny_dnabert(folder, seed=seed, architecture="bert")  # for its tokenizer; the stock BERT is replaced below
    for name in ("config.json", "model.safetensors"):
        (folder / name).unlink()
    for source in sorted(REMOTE_CODE.glob("*.py")):
        shutil.copy(source, folder / source.name)
    auto_map = {
        "AutoConfig": "mini_mosaic_config.MiniMosaicConfig",
        "AutoModel": "mini_mosaic_layers.MiniMosaicModel",
    }
    config = {
        "model_type": "bert",
        "architectures": ["MiniMosaicModel"],
        "auto_map": auto_map,
        "alibi_starting_size": 512,
        "vocab_size": 128,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 48,
        "type_vocab_size": 2,
        "pad_token_id": 0,
        "layer_norm_eps": 1e-12,
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.0,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    cfg = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    torch.manual_seed(seed)
    model = AutoModel.from_config(cfg, trust_remote_code=True)
    randomise_weights(model, seed)
    model.save_pretrained(folder)
    saved = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    saved["auto_map"] = auto_map  # whatever save_pretrained wrote, loading must go through remote code
    (folder / "config.json").write_text(json.dumps(saved, indent=2), encoding="utf-8")
    return folder


@pytest.fixture(scope="session", autouse=True)
def _remove_modules_cache():
    yield
    if _MODULES_CACHE is not None:
        shutil.rmtree(_MODULES_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    from virnucpro_core.testing.dnabert import write_tiny_dnabert

    return write_tiny_dnabert(tmp_path_factory.mktemp("tiny") / "tiny_dnabert", seed=0, architecture="bert")


@pytest.fixture(scope="session")
def init_tiny_dir(tmp_path_factory) -> Path:
    from virnucpro_core.testing.dnabert import write_tiny_dnabert

    return write_tiny_dnabert(tmp_path_factory.mktemp("init_tiny") / "DNABERT-S-tiny", seed=0)


@pytest.fixture(scope="session")
def mosaic_dir(tmp_path_factory) -> Path:
    return write_mini_mosaic(tmp_path_factory.mktemp("mosaic") / "mini_mosaic", seed=1)


@pytest.fixture(params=["tiny_dir", "mosaic_dir"])
def model_dir(request) -> Path:
    """Each test that takes ``model_dir`` runs on both architectures."""
    return request.getfixturevalue(request.param)
