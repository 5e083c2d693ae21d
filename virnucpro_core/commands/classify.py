"""``virnucpro classify``: embeddings in, the original result files out."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from virnucpro_core.commands.common import logging_options

log = logging.getLogger(__name__)


@click.command(name="classify")
@click.option("--nucleotide", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Nucleotide (DNABERT-S) embeddings, any registered format.")
@click.option("--protein", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Protein (ESM-2) embeddings, any registered format.")
@click.option("--mlp", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path), help="The MLP: the original 300_model.pth/500_model.pth, or .safetensors from `virnucpro models import-mlp`.")
@click.option("-o", "--outdir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Directory for the result files.")
@click.option("--nucleotide-format", default=None, help="Format of --nucleotide [from its suffix].")
@click.option("--protein-format", default=None, help="Format of --protein [from its suffix].")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--force", is_flag=True, help="Replace result files already in OUTDIR (refused otherwise).")
@logging_options
def classify(nucleotide: Path, protein: Path, mlp: Path, outdir: Path, nucleotide_format: str | None, protein_format: str | None,
             device: str, force: bool, verbose: int, quiet: bool, log_file: Path | None) -> None:
    """Merge embeddings by ID, score each frame with the MLP, write the original result files.

    \b
      OUTDIR/prediction_results.txt               Sequence_ID, Prediction (virus|others), score1, score2
      OUTDIR/prediction_results_highestscore.csv  per chunk: Modified_ID, Is_Virus (tab-separated)

    IDs present in only one file are counted and reported, never silently dropped.
    Result files already in OUTDIR are refused unless --force.

    \b
    Example (the original tool's own .pt files work too):
      virnucpro classify --nucleotide output_1_DNABERT_S.pt --protein output_1_ESM.pt --mlp 500_model.pth -o results/
    """
    from virnucpro_core.classify import CONSENSUS, PREDICTIONS, classify_embeddings
    from virnucpro_core.devices import resolve_device
    from virnucpro_core.logs import setup_logging
    from virnucpro_core.outputs import Outputs, refuse_existing, refuse_inputs_as_outputs, refuse_not_directory

    results = (outdir / PREDICTIONS, outdir / CONSENSUS)
    inputs = (nucleotide, protein, mlp, mlp.with_suffix(".json"))
    refuse_inputs_as_outputs(Outputs(files=(log_file,) if log_file else ()), inputs, option="--log-file", regular=False)
    refuse_not_directory(outdir)
    refuse_inputs_as_outputs(Outputs(files=results), inputs)
    for path in results:
        refuse_existing(path, force=force)
    setup_logging(verbose, quiet, log_file)
    warning = tiny_warning(mlp, nucleotide, protein)
    if warning:
        log.warning(warning)
    result = classify_embeddings(nucleotide, protein, mlp, outdir, device=resolve_device(device),
                                 nucleotide_format=nucleotide_format, protein_format=protein_format)
    click.echo(f"{result.merge.summary()}")
    click.echo(f"{result.frames_scored} frames scored ({result.frames_viral} virus) in {result.chunks} chunks -> "
               f"{result.predictions}, {result.consensus}")
    if warning:
        click.echo("WARNING: " + warning)


def tiny_warning(mlp: Path, *embeddings: Path) -> str | None:
    """The tiny-model warning when the MLP comes from an init-tiny set (or was converted from
    one) or an input says so."""
    from virnucpro_core.classifier import mlp_warning
    from virnucpro_core.formats.hdf5 import read_warning
    from virnucpro_core.modelset import in_tiny_set
    from virnucpro_core.pipeline import TINY_WARNING

    if in_tiny_set(mlp):
        return TINY_WARNING
    if found := mlp_warning(mlp):  # a tiny MLP converted by `models import-mlp`
        return found
    for path in embeddings:
        if path.suffix.lower() in (".h5", ".hdf5") and (found := read_warning(path)):
            return found
    return None
