"""``virnucpro embed``: one FASTA file → one embeddings file, with any backend."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import click

from virnucpro_core.commands.common import device_options, logging_options

log = logging.getLogger(__name__)


@click.command(name="embed")
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Embeddings file to write (.h5 for HDF5, .pt for the original layout).")
@click.option("--backend", "backend_spec", required=True, metavar="FAMILY[=VERSION]", help="e.g. esm2=v1, dnabert=v1, or just esm2 for the newest available (see `virnucpro backends`).")
@click.option("--model", default=None, help="Model name or local path [the backend's default, e.g. esm2_t36_3B_UR50D].")
@click.option("--revision", default=None, help="Pin the model revision (Hugging Face commit) for backends that load from the hub.")
@click.option("--format", "format_name", default=None, help="Output format [from the file suffix; hdf5 for .h5]. See `virnucpro backends --all`.")
@click.option("--max-length", type=click.IntRange(min=1), default=None, help="Residues/bases pooled per sequence [backend default; esm2: 1024 like the original].")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=None, help="Sequences per checkpoint part [10000, the original's file size, which keeps its ESM-2 batches].")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="TOML file with a [runtime] table (device, precision, batch_tokens, ...); flags override it.")
@click.option("--resume", is_flag=True, help="Continue from the checkpoint parts of an interrupted run (OUTPUT.parts/).")
@click.option("--force-resume", is_flag=True, help="Discard OUTPUT and its checkpoint parts and start over.")
@device_options
@logging_options
def embed(input_path: Path, output: Path, backend_spec: str, model: str | None, revision: str | None, format_name: str | None, max_length: int | None,
          checkpoint_every: int | None, config_file: Path | None, resume: bool, force_resume: bool, device: str,
          precision: str | None, batch_tokens: int | None, batch_size: int | None, threads: int | None,
          backend_option_values: tuple[str, ...], verbose: int, quiet: bool, log_file: Path | None) -> None:
    """Embed every sequence of INPUT (FASTA) and write one row per sequence, in input order.

    The HDF5 output has datasets `ids` (UTF-8) and `embeddings` (float32, N x dim) and
    attributes naming the backend, its version and package version, the model and dim.
    It is written under a temporary name and renamed only when complete.

    \b
    Examples:
      virnucpro embed prep/x_identified_protein.faa --backend esm2=v1 -o protein.h5
      virnucpro embed prep/x_identified_nucleotide.fa --backend dnabert -o nucleotide.h5 --device cuda:1
      virnucpro embed proteins.faa --backend esm2=v1 --model esm2_t33_650M_UR50D -o p.pt
      virnucpro embed proteins.faa --backend esm2=v2 --device cuda:0 --precision bf16 -o p.h5
      virnucpro embed proteins.faa --backend esm2=v2 --backend-option attention=sdpa-bucketed -o p.h5
    """
    from virnucpro_core.embedding import embed_fasta
    from virnucpro_core.errors import ConfigError
    from virnucpro_core.logs import setup_logging
    from virnucpro_core.registry import get_registry
    from virnucpro_core.commands.common import runtime_from_options
    from virnucpro_core.rundir import describe_input
    from virnucpro_core.selection import parse_backend_options

    setup_logging(verbose, quiet, log_file)
    runtime = runtime_from_options(dict(device=device, precision=precision, batch_tokens=batch_tokens, batch_size=batch_size,
                                        threads=threads, checkpoint_every=checkpoint_every, resume=resume,
                                        force_resume=force_resume, config_file=config_file,
                                        backend_option_values=backend_option_values))
    runtime.apply_threads()
    registry = get_registry()
    ((family, version),) = parse_backend_options([backend_spec]).items()
    backend = registry.get_backend(family, version)
    reason = backend.unavailable_reason()
    if reason:
        from virnucpro_core.errors import BackendError

        raise BackendError(f"backend {backend.describe()} cannot run here: {reason}; choose another with --backend (see `virnucpro backends`)")
    fmt = registry.format_for_path(output, format_name)
    parts = output.with_name(output.name + ".parts")
    if force_resume:
        shutil.rmtree(parts, ignore_errors=True)
        output.unlink(missing_ok=True)
    elif output.exists():
        raise ConfigError(f"{output} exists; choose another -o or pass --force-resume to replace it")
    elif parts.exists() and not resume:
        raise ConfigError(f"{parts} holds checkpoints of an interrupted run; pass --resume to continue or --force-resume to discard them")
    output.parent.mkdir(parents=True, exist_ok=True)
    options = runtime.embedder_options(model, backend=backend, revision=revision, max_length=max_length, show_progress=not quiet)
    log.info("backend %s", backend.describe())
    result = embed_fasta(input_path, output, backend, options, fmt=fmt, parts_dir=parts,
                         checkpoint_every=runtime.checkpoint_every, resume=runtime.resume, progress=not quiet,
                         identity={"input": describe_input(input_path), "backend": backend.key,
                                   "package_version": backend.package_version, "model": model, "revision": revision,
                                   "precision": options.precision, "max_length": max_length,
                                   **({"backend_options": dict(options.extra)} if options.extra else {})})
    rate = result.sequences / result.seconds if result.seconds > 0 else 0.0
    click.echo(f"{result.sequences} sequences -> {output} ({fmt.name}, dim {result.dim}, model {result.model}; "
               f"{rate:.1f} seq/s" + (f", {result.parts_reused} part(s) resumed" if result.parts_reused else "") + ")")
