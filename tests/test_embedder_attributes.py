"""An embedder's optional ``attributes`` (how it ran) end up in the embeddings file's ``extra``."""

from __future__ import annotations

import numpy as np

from virnucpro_core.backends import Backend, EmbedderOptions
from virnucpro_core.embedding import embed_fasta
from virnucpro_core.formats.hdf5 import Hdf5Reader
from virnucpro_core.registry import load_registry


class LengthEmbedder:
    """Two columns: the length and the GC count; says which 'path' it took."""

    model_id = "lengths"
    dim = 2

    def __init__(self, attributes):
        if attributes is not None:
            self.attributes = attributes

    def embed(self, sequences, progress=None):
        out = np.array([[len(s), s.count("G") + s.count("C")] for s in sequences], dtype=np.float32)
        if progress is not None:
            progress(len(sequences))
        return out

    def close(self):
        pass


def backend(attributes) -> Backend:
    return Backend(family="toy", version="v1", modality="nucleotide", dim=2, factory=lambda options: LengthEmbedder(attributes))


def run(tmp_path, attributes, *, name="out.h5"):
    fasta = tmp_path / "in.fa"
    fasta.write_text("".join(f">s{i}\n{'ACGT' * (i + 1)}\n" for i in range(5)))
    out = tmp_path / name
    embed_fasta(fasta, out, backend(attributes), EmbedderOptions(), fmt=load_registry().get_format("hdf5"),
                parts_dir=tmp_path / f"{name}.parts", checkpoint_every=2)
    with Hdf5Reader(out) as reader:
        return dict(reader.meta.extra)


def test_attributes_are_written_as_extra(tmp_path):
    assert run(tmp_path, {"attention": "sdpa_bucketed", "precision": "fp32"}) == {"attention": "sdpa_bucketed", "precision": "fp32"}


def test_an_embedder_without_attributes_writes_empty_extra(tmp_path):
    assert run(tmp_path, None) == {}


class PerCallEmbedder(LengthEmbedder):
    """Reports how its last call went, as esm2=v2 reports its packing utilisation."""

    def embed(self, sequences, progress=None):
        self.attributes = {"attention": "sdpa", "utilisation": f"{len(sequences) / 4:.4f}", "device": f"dev{len(sequences)}"}
        return super().embed(sequences, progress)


def test_attributes_that_differ_between_parts_are_merged_whatever_ran_them(tmp_path):
    """5 records in parts of 2: utilisations 0.5, 0.5, 0.25 weighted by rows; a text that differs is left out."""
    fasta = tmp_path / "in.fa"
    fasta.write_text("".join(f">s{i}\n{'ACGT' * (i + 1)}\n" for i in range(5)))
    toy = Backend(family="toy", version="v1", modality="nucleotide", dim=2, factory=lambda options: PerCallEmbedder(None))
    out = tmp_path / "out.h5"
    embed_fasta(fasta, out, toy, EmbedderOptions(), fmt=load_registry().get_format("hdf5"), parts_dir=tmp_path / "out.h5.parts",
                checkpoint_every=2)
    with Hdf5Reader(out) as reader:
        assert dict(reader.meta.extra) == {"attention": "sdpa", "utilisation": f"{(0.5 * 2 + 0.5 * 2 + 0.25 * 1) / 5:.4f}"}


def test_merged_attributes_rules():
    from virnucpro_core.engine.parts import merged_attributes

    assert merged_attributes([]) == {}
    assert merged_attributes([({"a": "x", "n": "1"}, 3), ({"a": "x", "n": "3"}, 1)]) == {"a": "x", "n": "1.5000"}
    assert merged_attributes([({"a": "x"}, 3), ({}, 1)]) == {}  # a key some parts lack is not the run's
