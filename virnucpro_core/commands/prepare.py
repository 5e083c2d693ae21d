"""``virnucpro prepare``: chunk, six-frame translate and keep stop-free frames."""

from __future__ import annotations

from pathlib import Path

import click

from virnucpro_core.commands.common import logging_options


@click.command(name="prepare")
@click.argument("input_path", metavar="INPUT")
@click.option("-o", "--outdir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output directory (created).")
@click.option("--chunk-size", type=click.IntRange(min=1), default=500, show_default=True, help="Chunk length in bp; the published models use 300 or 500.")
@click.option("--resume", is_flag=True, help="Skip the work if OUTDIR already holds this exact prepare run.")
@click.option("--force", is_flag=True, help="Replace the outputs of a finished prepare run in OUTDIR.")
@click.option("--force-resume", is_flag=True, help="Discard an unfinished run in OUTDIR and redo it.")
@logging_options
def prepare(input_path: str, outdir: Path, chunk_size: int, resume: bool, force: bool, force_resume: bool, verbose: int, quiet: bool, log_file: Path | None) -> None:
    """Cut INPUT into chunks and write the frames the models will see.

    INPUT is FASTA or FASTQ, plain or .gz/.bz2/.xz, or - for stdin. Writes, exactly
    as the original VirNucPro does:

    \b
      OUTDIR/<stem>_chunked<N>.fa               chunks (60-column FASTA)
      OUTDIR/<stem>_identified_nucleotide.fa    the 3*aa+1 bp span of each stop-free frame
      OUTDIR/<stem>_identified_protein.faa      its translation (IDs end F1..F3, R1..R3)
      OUTDIR/<stem>_sequences.tsv               id, length, chunks of every input record
      OUTDIR/run.json                           manifest: input checksum, parameters, counts

    \b
    Example:
      virnucpro prepare contigs.fa.gz -o prep/ --chunk-size 300
    """
    from virnucpro_core.logs import setup_logging
    from virnucpro_core.outputs import Outputs, refuse_inputs_as_outputs, refuse_not_directory
    from virnucpro_core.prepare import output_paths, prepare_file
    from virnucpro_core.rundir import LOCK, MANIFEST, Stage, describe_input, open_run

    refuse_inputs_as_outputs(Outputs(files=(log_file,) if log_file else ()), [input_path], option="--log-file", regular=False)
    refuse_inputs_as_outputs(Outputs(files=(*output_paths(input_path, outdir, chunk_size), outdir / MANIFEST, outdir / LOCK)), [input_path])
    refuse_not_directory(outdir)
    setup_logging(verbose, quiet, log_file)
    identity = {"inputs": [describe_input(input_path)], "parameters": {"chunk_size": chunk_size}}
    with open_run(outdir, "prepare", identity, resume=resume, force_resume=force_resume, force=force) as run:
        def do_prepare():
            return _prepare_counts(prepare_file(input_path, outdir, chunk_size, progress=not quiet))

        counts = run.run_stage(Stage("prepare", output_paths(input_path, outdir, chunk_size), do_prepare))
    click.echo(
        f"{counts['sequences']} sequences ({counts['bases']} bp) -> {counts['chunks']} chunks -> "
        f"{counts['frames']} stop-free frames in {outdir}"
        + (f"; {counts['empty_skipped']} empty record(s) skipped" if counts.get("empty_skipped") else "")
    )


def _prepare_counts(result) -> dict:
    return {
        "sequences": result.sequences,
        "bases": result.bases,
        "chunks": result.chunks,
        "frames": result.frames,
        "empty_skipped": result.empty_skipped,
        **({"rna_records": result.rna_records} if result.rna_records else {}),  # U read as T
    }
