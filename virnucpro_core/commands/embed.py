"""``virnucpro embed``: one FASTA file → one embeddings file, with any backend."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import click

from virnucpro_core.commands.common import device_options, logging_options, parallel_options

if TYPE_CHECKING:
    from virnucpro_core.outputs import Outputs

log = logging.getLogger(__name__)


@click.command(name="embed")
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="Embeddings file to write (.h5 for HDF5, .pt for the original layout); with --shard, the shard directory.")
@click.option("--backend", "backend_spec", required=True, metavar="FAMILY[=VERSION]", help="e.g. esm2=v1, dnabert=v1, or just esm2 for the newest available (see `virnucpro backends`).")
@click.option("--model", default=None, help="Model name or local path [the models directory's, else the backend's default, e.g. esm2_t36_3B_UR50D].")
@click.option("--models-dir", type=click.Path(file_okay=False, path_type=Path), envvar="VIRNUCPRO_MODELS", default=None, help="Directory from `virnucpro models download` (or init-tiny): its ESM-2 or DNABERT-S model, as for predict [env VIRNUCPRO_MODELS].")
@click.option("--revision", default=None, help="Pin the model revision (Hugging Face commit) for backends that load from the hub.")
@click.option("--format", "format_name", default=None, help="Output format [from the file suffix; hdf5 for .h5]. See `virnucpro backends --all`.")
@click.option("--max-length", type=click.IntRange(min=1), default=None, help="Residues/bases pooled per sequence [backend default; esm2: 1024 like the original].")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=None, help="Sequences per checkpoint part [10000, the original's file size, which keeps its ESM-2 batches].")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="TOML file with a [runtime] table (device, devices, precision, batch_tokens, ...); flags override it.")
@click.option("--resume", is_flag=True, help="Continue from the checkpoint parts of an interrupted run (OUTPUT.parts/).")
@click.option("--force", is_flag=True, help="Replace OUTPUT if it exists (refused otherwise).")
@click.option("--force-resume", is_flag=True, help="Discard the checkpoint parts of an interrupted run (OUTPUT.parts/) and start over.")
@device_options
@parallel_options
@logging_options
def embed(input_path: Path, output: Path, backend_spec: str, model: str | None, models_dir: Path | None, revision: str | None,
          format_name: str | None, max_length: int | None, checkpoint_every: int | None, config_file: Path | None, resume: bool,
          force: bool, force_resume: bool, verbose: int, quiet: bool, log_file: Path | None, shard: str | None, **runtime_flags) -> None:
    """Embed every sequence of INPUT (FASTA) and write one row per sequence, in input order.

    The HDF5 output has datasets `ids` (UTF-8) and `embeddings` (float32, N x dim) and
    attributes naming the backend, its version and package version, the model and dim.
    It is written under a temporary name and renamed only when complete. Work is cut
    into checkpoint parts; with several devices one worker process per device takes
    parts as it finishes them. Ctrl-C (or SIGTERM) keeps finished parts and prints the
    command that continues. The model and --backend-option values are checked before
    anything is written (the preflight).

    \b
    Examples:
      virnucpro embed prep/x_identified_protein.faa --backend esm2=v1 -o protein.h5
      virnucpro embed prep/x_identified_nucleotide.fa --backend dnabert -o nucleotide.h5 --device cuda:1
      virnucpro embed proteins.faa --backend esm2=v1 --gpus 2,3 -o p.h5          # 2 workers, GPUs 2 and 3
      virnucpro embed seqs.fa --backend kmer=v1 --devices cpu,cpu --threads 1 -o k.h5
      virnucpro embed proteins.faa --backend esm2=v1 --models-dir ~/virnucpro-models -o p.h5
      virnucpro embed proteins.faa --backend esm2=v1 -o p.h5 --resume           # after an interruption
      virnucpro embed proteins.faa --backend esm2=v1 -o p.h5 --force            # replace a finished p.h5
      virnucpro embed proteins.faa --backend esm2=v1 --shard 0/4 -o shards/0    # array job 0 of 4, then:
      virnucpro aggregate shards/0 shards/1 shards/2 shards/3 -o p.h5
      torchrun --nproc-per-node 4 -m virnucpro_core embed proteins.faa --backend esm2=v1 -o p.h5
      virnucpro embed proteins.faa --backend esm2=v2 --device cuda:0 --precision bf16 -o p.h5
      virnucpro embed proteins.faa --backend esm2=v2 --backend-option esm2:attention=sdpa-bucketed -o p.h5
      virnucpro embed seqs.fa --backend kmer=v1 --backend-option k=3 -o k3.h5  # one backend: no family needed
    """
    from virnucpro_core.commands.common import runtime_from_options
    from virnucpro_core.engine.distributed import context_from_env, follow
    from virnucpro_core.engine.stop import graceful_stop
    from virnucpro_core.logs import setup_logging
    from virnucpro_core.outputs import Outputs, refuse_inputs_as_outputs

    dist = context_from_env()
    if dist is None or dist.is_driver:  # before anything is written, the log file included
        inputs = (input_path, model, models_dir)
        refuse_inputs_as_outputs(Outputs(files=(log_file,) if log_file else ()), inputs, option="--log-file", regular=False)
        refuse_inputs_as_outputs(embed_outputs(output, sharded=shard is not None), inputs)
    setup_logging(verbose, quiet, log_file)
    runtime = runtime_from_options(dict(runtime_flags, checkpoint_every=checkpoint_every, resume=resume,
                                        force_resume=force_resume, config_file=config_file))
    runtime.apply_threads()
    with graceful_stop():
        if dist is not None and not dist.is_driver:
            follow(dist)  # rank 0 checks, plans and assembles; this rank computes its share
            return
        _embed(input_path, output, backend_spec, model, models_dir, revision, format_name, max_length, runtime, shard, quiet, verbose,
               force)
    if dist is not None:
        from virnucpro_core.engine.distributed import release

        release(dist)


def embed_outputs(output: Path, *, sharded: bool) -> "Outputs":
    """What ``embed -o OUTPUT`` writes: the file (or, with --shard, the shard directory's
    manifest) and the checkpoint folder it deletes once done."""
    from virnucpro_core.outputs import Outputs

    if sharded:
        return Outputs(files=(output / "shard.json", output / ".virnucpro.lock"), folders=(output / "parts",))
    return Outputs(files=(output, output.with_name(f".{output.name}.lock")), folders=(output.with_name(output.name + ".parts"),))


def _embed(input_path: Path, output: Path, backend_spec: str, model: str | None, models_dir: Path | None, revision: str | None, format_name: str | None,
           max_length: int | None, runtime, shard_text: str | None, quiet: bool, verbose: int, force: bool = False) -> None:
    from virnucpro_core.embedding import embed_fasta
    from virnucpro_core.logs import FILE_ONLY
    from virnucpro_core.engine.config import Shard
    from virnucpro_core.engine.parts import finished_parts
    from virnucpro_core.errors import BackendError, ConfigError
    from virnucpro_core.registry import get_registry
    from virnucpro_core.rundir import describe_input, remove_stale_temporaries, run_lock
    from virnucpro_core.pipeline import batch_identity, label_tiny
    from virnucpro_core.backend_options import check_routing
    from virnucpro_core.preflight import check_backend
    from virnucpro_core.selection import parse_backend_options
    from virnucpro_core.validate import check_embed_input

    shard = Shard.parse(shard_text) if shard_text else None
    engine = runtime.engine(shard=shard, log_level=logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO))
    registry = get_registry()
    ((family, version),) = parse_backend_options([backend_spec]).items()
    backend = registry.get_backend(family, version)
    reason = backend.unavailable_reason()
    if reason:
        raise BackendError(f"backend {backend.describe()} cannot run here: {reason}; choose another with --backend (see `virnucpro backends`)")
    # bad input: one line, before any model loads; the ID check's sort spills (anonymous files) where the output goes
    spill = next(folder for folder in (output.absolute(), *output.absolute().parents) if folder.is_dir())
    found = check_embed_input(input_path, backend.modality, backend.key, workdir=spill)
    if found.nucleotide_like:
        log.warning("%s: %d of %d records look like DNA (only A, C, G, T/U, N), but %s embeds proteins; "
                    "check that this is the protein file", input_path, found.nucleotide_like, found.records, backend.key)
    tiny = False
    if model is None:
        from virnucpro_core.modelset import model_from_models_dir

        model, tiny = model_from_models_dir(backend.family, models_dir)
    if tiny:
        from virnucpro_core.pipeline import TINY_WARNING

        log.warning(TINY_WARNING)
    if shard is None:
        fmt = registry.format_for_path(output, format_name)
        parts = output.with_name(output.name + ".parts")
        lock, folder, stale = output.with_name(f".{output.name}.lock"), output.parent, [f".{output.name}.*.part", f"{parts.name}/.*.part"]
    else:
        fmt = registry.get_format("hdf5")
        parts = output / "parts"
        lock, folder, stale = output / ".virnucpro.lock", output, ["**/.*.part"]
    if output.exists() and shard is None and output.is_dir():
        raise ConfigError(f"{output} is a directory; -o names the embeddings file (a directory only with --shard)")
    options = runtime.embedder_options(model, backend=backend, revision=revision, max_length=max_length, show_progress=not quiet)
    check_routing(runtime.backend_options, [backend])
    check_backend(backend, options)  # the preflight: model found, options checked, before anything is written
    output.mkdir(parents=True, exist_ok=True) if shard is not None else output.parent.mkdir(parents=True, exist_ok=True)
    identity = {"input": describe_input(input_path), "backend": backend.key, "package_version": backend.package_version,
                "model": model, "revision": revision, "precision": options.precision, "max_length": max_length,
                **batch_identity(options), **({"backend_options": dict(options.extra)} if options.extra else {})}
    with run_lock(folder, lock):
        remove_stale_temporaries(folder, stale)
        if parts.exists() and not finished_parts(parts):
            shutil.rmtree(parts)  # a run that computed no part leaves nothing to resume
        done_marker = output / "shard.json" if shard is not None else output
        if done_marker.exists() and not force:
            raise ConfigError(f"{done_marker} exists; choose another -o or pass --force to replace it")
        if done_marker.exists() and shard is not None:  # a finished shard's parts are its output: --force replaces them
            shutil.rmtree(parts, ignore_errors=True)
            done_marker.unlink()
        if runtime.force_resume:
            shutil.rmtree(parts, ignore_errors=True)
        elif parts.exists() and not runtime.resume:
            raise ConfigError(f"{parts} holds checkpoints of an interrupted run; pass --resume to continue or --force-resume to discard them")
        log.info("backend %s on %s", backend.describe(), ", ".join(engine.devices))
        result = embed_fasta(input_path, output, backend, options, fmt=fmt, parts_dir=parts,
                             checkpoint_every=runtime.checkpoint_every, resume=runtime.resume, progress=not quiet,
                             identity=identity, engine=engine)
        if shard is not None:
            from virnucpro_core.engine.shards import write_embed_shard

            from virnucpro_core.pipeline import TINY_WARNING

            write_embed_shard(output, shard, identity, result, backend, warning=TINY_WARNING if tiny else None)
        elif tiny:
            label_tiny(output, fmt.name)
    rate = result.sequences_computed / result.seconds if result.seconds > 0 else 0.0  # a resume's reused parts took no time
    resumed = f", {result.parts_reused} part(s) resumed" if result.parts_reused else ""
    if shard is not None:
        mine = sum(1 for p in range(result.plan.parts) if p % shard.count == shard.index)
        line = (f"shard {shard}: {mine} of {result.plan.parts} parts ({result.sequences} sequences in all) -> {output} "
                f"(dim {result.dim}, model {result.model}{resumed}); join the shards with `virnucpro aggregate`")
        click.echo(line)
        log.info(line, extra=FILE_ONLY)
        return
    line = f"{result.sequences} sequences -> {output} ({fmt.name}, dim {result.dim}, model {result.model}; {rate:.1f} seq/s{resumed})"
    click.echo(line)
    log.info(line, extra=FILE_ONLY)  # the line that ended the run ends --log-file too
