"""``virnucpro convert``: read embeddings with one registered format, write another.

An adapter between formats is nothing more than this: the reader's batches go
straight to the writer, so memory stays at one batch when both formats stream
(HDF5), and the only formats that hold a file whole are those that cannot do
otherwise (the original ``.pt`` layouts).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from virnucpro_core.errors import InputError

if TYPE_CHECKING:
    from virnucpro_core.registry import Registry


@dataclass(frozen=True)
class ConvertResult:
    """What a conversion did."""

    rows: int
    dim: int
    modality: str
    src_format: str
    dst_format: str


def convert_embeddings(
    src: str | Path,
    dst: str | Path,
    *,
    src_format: str | None = None,
    dst_format: str | None = None,
    batch_size: int = 4096,
    force: bool = False,
    registry: "Registry | None" = None,
) -> ConvertResult:
    """Copy every ``(id, row)`` of ``src`` into a new ``dst``, batch by batch.

    Formats are the ones named, else inferred from the file suffixes. ``dst`` appears
    only once complete (the writers write to a temporary name and rename). An existing
    ``dst`` is refused unless ``force`` (as ``embed`` refuses its output): embeddings
    are expensive to recompute, and a typo in OUT must not replace them.
    """
    if registry is None:
        from virnucpro_core.registry import get_registry

        registry = get_registry()
    from virnucpro_core.outputs import Outputs, refuse_existing, refuse_inputs_as_outputs

    src, dst = Path(src), Path(dst)
    refuse_inputs_as_outputs(Outputs(files=(dst,)), (src,), option="OUT")
    refuse_existing(dst, force=force, option="OUT")
    reader_fmt = _format(registry, src, src_format, "--from")
    writer_fmt = _format(registry, dst, dst_format, "--to")
    rows = 0
    with reader_fmt.open_reader(src) as reader:
        meta = reader.meta
        expected = len(reader)
        dst.parent.mkdir(parents=True, exist_ok=True)
        with writer_fmt.open_writer(dst, meta) as writer:
            for ids, batch in reader.iter_batches(batch_size):
                writer.write(ids, batch)
                rows += len(ids)
            if rows != expected:
                raise InputError(f"{src}: the file says it holds {expected} embeddings but {rows} were read; it is damaged")
    return ConvertResult(rows=rows, dim=meta.dim, modality=meta.modality, src_format=reader_fmt.name, dst_format=writer_fmt.name)


def _format(registry: "Registry", path: Path, name: str | None, option: str):
    """The named format, else the one the suffix says; the error names ``option``."""
    if name:
        return registry.get_format(name)
    lower = path.name.lower()
    for fmt in registry.list_formats():
        if any(lower.endswith(suffix) for suffix in fmt.suffixes):
            return fmt
    known = ", ".join(f"{f.name} ({' '.join(f.suffixes)})" for f in registry.list_formats())
    raise InputError(f"{path}: cannot tell the embedding format from the file name; give {option} FORMAT, one of: {known}")


@click.command(name="convert")
@click.argument("src", metavar="IN", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("dst", metavar="OUT", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--from", "src_format", metavar="FORMAT", help="Format of IN [from its suffix: .h5/.hdf5 = hdf5, .pt = pt].")
@click.option("--to", "dst_format", metavar="FORMAT", help="Format of OUT [from its suffix].")
@click.option("--batch-size", type=click.IntRange(min=1), default=4096, show_default=True, help="Embeddings per batch read and written.")
@click.option("--force", is_flag=True, help="Replace OUT if it exists (refused otherwise).")
def convert(src: Path, dst: Path, src_format: str | None, dst_format: str | None, batch_size: int, force: bool) -> None:
    """Convert an embeddings file IN to another format, written to OUT.

    Formats are registered by plugins; the built-ins are `hdf5` (streams) and `pt`,
    the original VirNucPro layouts: DNABERT-S ({'nucleotide', 'data'}), ESM
    ({'proteins', 'data'}) and merged ({'ids', 'data'}), chosen by the file's
    modality. IDs and values are copied exactly; the .pt layouts store no
    backend/model metadata, so that is lost when writing .pt. An existing OUT is
    refused unless --force.

    \b
    Examples:
      virnucpro convert run/embeddings/protein.h5 protein_ESM.pt
      virnucpro convert output_1_DNABERT_S.pt nucleotide.h5
      virnucpro convert merged.bin merged.pt --from hdf5
    """
    result = convert_embeddings(src, dst, src_format=src_format, dst_format=dst_format, batch_size=batch_size, force=force)
    click.echo(
        f"converted {result.rows} {result.modality} embeddings (dim {result.dim}) "
        f"from {src} ({result.src_format}) to {dst} ({result.dst_format})"
    )
