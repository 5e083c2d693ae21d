"""The installed package registers dnabert=v2, the default DNABERT backend."""

from __future__ import annotations

import numpy as np

from virnucpro_core.backends import Embedder, EmbedderOptions
from virnucpro_core.registry import load_registry
from virnucpro_core.testing.contract import check_backend_descriptor


def test_entry_point_registers_dnabert_v2_as_the_default_dnabert():
    registry = load_registry(strict=False)
    assert [str(p) for p in registry.problems if p.package == "virnucpro-dnabert-v2"] == []
    backend = registry.get_backend("dnabert", "v2")
    assert (backend.package, backend.package_version) == ("virnucpro-dnabert-v2", "0.1.0")
    assert (backend.modality, backend.dim, backend.default_model) == ("nucleotide", 768, "zhihan1996/DNABERT-S")
    assert backend.unavailable_reason() is None
    assert registry.get_backend("dnabert").key == "dnabert=v2"


def test_backend_descriptor_is_well_formed_and_cheap_to_import():
    check_backend_descriptor(load_registry().get_backend("dnabert", "v2"), module="virnucpro_dnabert_v2.plugin")


def test_factory_reads_options_including_extra(mosaic_dir):
    backend = load_registry().get_backend("dnabert", "v2")
    embedder = backend.factory(EmbedderOptions(model=str(mosaic_dir), batch_tokens=50, extra={"attention": "sdpa"}))
    try:
        assert isinstance(embedder, Embedder)
        assert (embedder.model_id, embedder.dim, embedder.batch_tokens) == (str(mosaic_dir), 32, 50)
        assert embedder.attributes["attention"] == "sdpa_bucketed"
        out = embedder.embed(["ACGT", "GGCATTAC", "A"])
        assert out.shape == (3, 32) and out.dtype == np.float32
    finally:
        embedder.close()
