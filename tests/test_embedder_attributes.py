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
