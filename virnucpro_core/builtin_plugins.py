"""Built-in formats, registered through the same public hook as any plugin."""

from __future__ import annotations

from pathlib import Path

from virnucpro_core.formats.base import EmbeddingFormat, EmbeddingMeta
from virnucpro_core.hookspecs import hookimpl


def _hdf5_reader(path: Path):
    from virnucpro_core.formats.hdf5 import Hdf5Reader

    return Hdf5Reader(path)


def _hdf5_writer(path: Path, meta: EmbeddingMeta):
    from virnucpro_core.formats.hdf5 import Hdf5Writer

    return Hdf5Writer(path, meta)


def _pt_reader(path: Path):
    from virnucpro_core.formats.pt import PtReader

    return PtReader(path)


def _pt_writer(path: Path, meta: EmbeddingMeta):
    from virnucpro_core.formats.pt import PtWriter

    return PtWriter(path, meta)


@hookimpl
def register_formats(register) -> None:
    register(
        EmbeddingFormat(
            name="hdf5",
            suffixes=(".h5", ".hdf5"),
            open_reader=_hdf5_reader,
            open_writer=_hdf5_writer,
            description="HDF5: datasets 'ids' (UTF-8) and 'embeddings' (float32 N x dim); streams in both directions",
        )
    )
    register(
        EmbeddingFormat(
            name="pt",
            suffixes=(".pt",),
            open_reader=_pt_reader,
            open_writer=_pt_writer,
            description="the original VirNucPro torch.save layouts (DNABERT-S, ESM and merged); held in memory whole",
        )
    )
