"""``virnucpro merge``: join nucleotide and protein embeddings by ID into one feature file."""

from __future__ import annotations

from pathlib import Path

import click


@click.command(name="merge")
@click.argument("nucleotide", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("protein", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Merged file (.h5, or .pt for the original {'ids', 'data'} layout).")
@click.option("--strict", is_flag=True, help="Refuse (write nothing) when an ID is in only one file.")
@click.option("--batch-size", type=click.IntRange(min=1), default=4096, show_default=True, help="Rows per streamed batch.")
@click.option("--force", is_flag=True, help="Replace OUTPUT if it exists (refused otherwise).")
def merge(nucleotide: Path, protein: Path, output: Path, strict: bool, batch_size: int, force: bool) -> None:
    """Merge NUCLEOTIDE and PROTEIN embeddings by ID: nucleotide columns first, as the original.

    Rows follow the nucleotide file's order. An ID found in only one file is counted and
    reported (and left out), never misaligned; --strict refuses instead. An existing
    OUTPUT is refused unless --force.

    \b
    Examples:
      virnucpro merge res/embeddings/nucleotide.h5 res/embeddings/protein.h5 -o merged.h5
      virnucpro merge output_1_DNABERT_S.pt output_1_ESM.pt -o output_1_merged.pt
    """
    from virnucpro_core.merge import merge_files
    from virnucpro_core.outputs import Outputs, refuse_existing, refuse_inputs_as_outputs

    refuse_inputs_as_outputs(Outputs(files=(output,)), (nucleotide, protein))
    refuse_existing(output, force=force)

    stats = merge_files(nucleotide, protein, output, batch_size=batch_size, strict=strict)
    click.echo(f"{stats.summary()} -> {output}")
