"""The installed package registers dnabert=v1 through the ``virnucpro`` entry point group."""

from __future__ import annotations

import numpy as np

from virnucpro_core.backends import Embedder, EmbedderOptions, version_sort_key
from virnucpro_core.registry import load_registry
from virnucpro_core.testing.contract import (
    check_backend_descriptor,
    check_embedder_contract,
)


def test_entry_point_registers_dnabert_v1_with_its_package():
    registry = load_registry(strict=False)  # other plugins' problems are not this package's
    assert [str(p) for p in registry.problems if p.package == "virnucpro-dnabert-v1"] == []
    assert registry.plugins["dnabert_v1"].package == "virnucpro-dnabert-v1"
    backend = registry.get_backend("dnabert", "v1")
    assert backend.package == "virnucpro-dnabert-v1"
    assert backend.package_version == "0.1.0"
    assert (backend.modality, backend.dim, backend.default_model) == ("nucleotide", 768, "zhihan1996/DNABERT-S")
    assert backend.unavailable_reason() is None
    assert backend.describe() == "dnabert=v1 (virnucpro-dnabert-v1 0.1.0)"
    newest = max((b for b in registry.list_backends() if b.family == "dnabert"), key=lambda b: version_sort_key(b.version))
    assert registry.get_backend("dnabert").key == newest.key  # v1 is the default only while no newer one is installed


def test_factory_builds_an_embedder_from_options(tiny_dir):
    backend = load_registry().get_backend("dnabert", "v1")
    embedder = backend.factory(EmbedderOptions(model=str(tiny_dir), device="cpu", batch_size=2))
    try:
        assert isinstance(embedder, Embedder)
        assert embedder.model_id == str(tiny_dir)
        assert embedder.dim == 32
        out = embedder.embed(["ACGT", "GGCATTAC", "A"])
        assert out.shape == (3, 32) and out.dtype == np.float32
    finally:
        embedder.close()


def test_backend_descriptor_is_well_formed_and_cheap_to_import():
    check_backend_descriptor(load_registry().get_backend("dnabert", "v1"), module="virnucpro_dnabert_v1.plugin")


def test_embedder_keeps_the_core_contract(model_dir):
    from virnucpro_dnabert_v1.embedder import DnabertV1Embedder
    from virnucpro_dnabert_v1.loading import load_dnabert

    embedder = DnabertV1Embedder(load_dnabert(str(model_dir)), batch_size=3)
    check_embedder_contract(embedder, ["ACGTAC", "GGGTTTAAACGTAGCTAGGATCCA" * 4, "TTAC", "A", "CCGGTTAACCGGTTAA" * 9])
