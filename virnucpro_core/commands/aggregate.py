"""``virnucpro aggregate``: join the shard directories of an array job into one result."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import click

from virnucpro_core.commands.common import logging_options

log = logging.getLogger(__name__)


@click.command(name="aggregate")
@click.argument("shard_dirs", metavar="SHARD_DIR...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="For embed shards: the embeddings file (.h5, .pt). For predict shards: the run directory to create.")
@click.option("--format", "format_name", default=None, help="Output format of embed shards [from the file suffix].")
@click.option("--device", default="auto", show_default=True, help="Device for the classifier (predict shards).")
@click.option("-t", "--threads", type=int, default=None, help="CPU threads for torch (predict shards' classifier) [torch default].")
@logging_options
def aggregate(shard_dirs: tuple[Path, ...], output: Path, format_name: str | None, device: str, threads: int | None,
              verbose: int, quiet: bool, log_file: Path | None) -> None:
    """Check the shards of a `--shard i/N` array job and write the single-run result.

    Every part of the input must be in exactly one shard, and the shards must agree on
    the input checksum, backend, model, parameters and part size; a missing, duplicated
    or mismatched shard is an error naming it, and nothing is written. Embed shards give
    the same embeddings file as one `virnucpro embed`; predict shards give the same run
    directory as one `virnucpro predict` (results, summary, viral FASTA, run.json).

    \b
    Examples:
      virnucpro embed proteins.faa --backend esm2=v1 -o shards/0 --shard 0/2
      virnucpro embed proteins.faa --backend esm2=v1 -o shards/1 --shard 1/2
      virnucpro aggregate shards/0 shards/1 -o proteins.h5
      virnucpro predict contigs.fa -o runs/s0 --shard 0/2 ; virnucpro predict contigs.fa -o runs/s1 --shard 1/2
      virnucpro aggregate runs/s0 runs/s1 -o results
    """
    from virnucpro_core.engine.shards import aggregate_embed, check_shards
    from virnucpro_core.errors import ConfigError
    from virnucpro_core.logs import setup_logging
    from virnucpro_core.outputs import Outputs, refuse_inputs_as_outputs
    from virnucpro_core.registry import get_registry

    # the output may be a run directory (predict shards): it is checked below as a directory or a file
    refuse_inputs_as_outputs(Outputs(files=(output, *((log_file,) if log_file else ()))), shard_dirs, regular=False)
    setup_logging(verbose, quiet, log_file)
    shards = check_shards(list(shard_dirs))
    kind = shards[0].kind
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise ConfigError(f"{output} exists; choose another -o (aggregate never overwrites)")
    if kind == "embed":
        fmt = get_registry().format_for_path(output, format_name)
        output.parent.mkdir(parents=True, exist_ok=True)
        written = aggregate_embed(shards, output, fmt)
        warning = shards[0].extra.get("warning")
        if warning:  # tiny random models: the joined file says so, as a single `embed` would
            from virnucpro_core.pipeline import label_tiny

            label_tiny(output, fmt.name)
        click.echo(f"{written} sequences from {len(shards)} shards -> {output} ({fmt.name})")
        return
    _aggregate_predict(shards, output, device, threads, quiet, verbose)


def _aggregate_predict(shards, output: Path, device: str, threads: int | None, quiet: bool, verbose: int) -> None:
    from virnucpro_core.engine.shards import seed_predict_run
    from virnucpro_core.logs import FILE_ONLY
    from virnucpro_core.pipeline import PredictRequest, run_predict
    from virnucpro_core.runtime import RuntimeConfig

    try:
        request_json, runtime_json = seed_predict_run(shards, output)
        paths = {"models_dir", "mlp"}
        values = {k: (Path(v) if k in paths and v is not None else tuple(v) if isinstance(v, list) else v)
                  for k, v in request_json.items()}
        request = PredictRequest(outdir=output, **{**values, "progress": not quiet})
        runtime = RuntimeConfig(device=device, threads=threads, resume=True, **runtime_json)
        summary = run_predict(request, runtime, log_level=logging.WARNING if quiet else logging.INFO)
    except BaseException:
        shutil.rmtree(output, ignore_errors=True)  # no half-aggregated run directory
        raise
    for line in summary.lines():
        click.echo(line)
        log.info(line, extra=FILE_ONLY)
