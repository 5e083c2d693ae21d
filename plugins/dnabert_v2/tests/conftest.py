"""Shared fixtures: tiny DNABERT-S folders in the real layout, and the golden reference.

- ``mosaic_dir``: :func:`virnucpro_core.testing.write_tiny_dnabert` with its defaults
  (4 heads, ``pytorch_model.bin``, VirNucPro's re-statement of the remote code, so
  ``dnabert=v1`` runs on it too); the folder ``virnucpro models init-tiny`` writes.
- ``odd_dir``: 6 heads (not a power of two), ``model.safetensors``.
- ``bert_dir``: a plain transformers BERT (position embeddings), the wrong architecture.
- ``GOLDEN``: a committed tiny model and the means the real DNABERT-S remote code gave
  for it (see ``data/golden/README.md``).

Hugging Face libraries are kept offline, and remote-code modules (``dnabert=v1``) are
cached in a temporary folder instead of ``~/.cache``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
_MODULES_CACHE = None if "HF_MODULES_CACHE" in os.environ else tempfile.mkdtemp(prefix="virnucpro-dnabert-v2-hf-modules-")
if _MODULES_CACHE is not None:
    os.environ["HF_MODULES_CACHE"] = _MODULES_CACHE

import pytest

from virnucpro_core.testing.simcuda.fixture import simcuda  # noqa: F401  (the simulated CUDA device fixture)

GOLDEN = Path(__file__).parent / "data" / "golden"


@pytest.fixture(scope="session", autouse=True)
def _remove_modules_cache():
    yield
    if _MODULES_CACHE is not None:
        shutil.rmtree(_MODULES_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def mosaic_dir(tmp_path_factory) -> Path:
    from virnucpro_core.testing.dnabert import write_tiny_dnabert

    return write_tiny_dnabert(tmp_path_factory.mktemp("mosaic") / "DNABERT-S-tiny", seed=0)


@pytest.fixture(scope="session")
def odd_dir(tmp_path_factory) -> Path:
    from virnucpro_core.testing.dnabert import write_tiny_dnabert

    return write_tiny_dnabert(tmp_path_factory.mktemp("odd") / "six_heads", hidden_size=24, num_heads=6,
                              intermediate_size=40, num_layers=3, seed=5, weights="safetensors")


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory) -> Path:
    from virnucpro_core.testing.dnabert import write_tiny_dnabert

    return write_tiny_dnabert(tmp_path_factory.mktemp("bert") / "plain_bert", architecture="bert", seed=2)


@pytest.fixture(params=["mosaic_dir", "odd_dir"])
def model_dir(request) -> Path:
    """Tests that take ``model_dir`` run on a power-of-two and a non-power-of-two head count."""
    return request.getfixturevalue(request.param)
