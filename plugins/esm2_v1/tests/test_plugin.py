"""The installed distribution registers esm2=v1 through the ``virnucpro`` entry point."""

from __future__ import annotations

from importlib import metadata

from virnucpro_core.backends import Embedder, EmbedderOptions
from virnucpro_core.registry import load_registry
from virnucpro_core.testing.contract import check_backend_descriptor
from virnucpro_esm2_v1 import loading


def test_entry_point_registers_esm2_v1():
    backend = load_registry().get_backend("esm2", "v1")
    assert backend.package == "virnucpro-esm2-v1"
    assert backend.package_version == metadata.version("virnucpro-esm2-v1")
    assert (backend.family, backend.version, backend.modality, backend.dim) == ("esm2", "v1", "protein", 2560)
    assert backend.default_model == loading.DEFAULT_MODEL == "esm2_t36_3B_UR50D"
    assert backend.unavailable_reason() is None
    [ep] = [ep for ep in metadata.entry_points(group="virnucpro") if ep.name == "esm2_v1"]
    assert ep.value == "virnucpro_esm2_v1.plugin"


def test_descriptor_is_well_formed_and_the_plugin_is_cheap_to_import():
    check_backend_descriptor(load_registry().get_backend("esm2", "v1"), module="virnucpro_esm2_v1.plugin")


def test_factory_builds_an_embedder_of_the_loaded_width(tiny_checkpoint):
    backend = load_registry().get_backend("esm2", "v1")
    embedder = backend.factory(EmbedderOptions(model=str(tiny_checkpoint)))
    try:
        assert isinstance(embedder, Embedder)
        assert embedder.model_id == str(tiny_checkpoint)
        assert embedder.dim == 32
        assert embedder.embed(["MKTAYIAKQR", "GG"]).shape == (2, 32)
    finally:
        embedder.close()
