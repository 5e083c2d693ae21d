"""``virnucpro predict``: the whole published method, stage by stage, resumable."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from virnucpro_core.commands.common import backend_options, device_options, logging_options, parallel_options, resume_options

log = logging.getLogger(__name__)


@click.command(name="predict")
@click.argument("input_path", metavar="INPUT")
@click.option("-o", "--outdir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Run directory (created; holds every output and run.json).")
@click.option("--model-type", type=click.Choice(["300", "500"]), default="500", show_default=True, help="Which published MLP to use; also sets --chunk-size.")
@click.option("--chunk-size", type=click.IntRange(min=1), default=None, help="Chunk length in bp [= --model-type]. Other sizes do not match the published MLPs.")
@click.option("--models-dir", type=click.Path(file_okay=False, path_type=Path), envvar="VIRNUCPRO_MODELS", default=None, help="Directory from `virnucpro models download` (or init-tiny) [env VIRNUCPRO_MODELS].")
@click.option("--esm-model", default=None, help="ESM-2 model name or checkpoint path [models dir, else esm2_t36_3B_UR50D].")
@click.option("--dnabert-model", default=None, help="DNABERT-S Hugging Face id or folder [models dir, else zhihan1996/DNABERT-S].")
@click.option("--dnabert-revision", default=None, help="Pin the DNABERT-S Hugging Face revision (commit) when it is loaded by id.")
@click.option("--mlp", type=click.Path(dir_okay=False, path_type=Path), default=None, help="MLP file (.pth original or .safetensors) [models dir].")
@click.option("--force", is_flag=True, help="Replace the outputs of a finished run in OUTDIR, or write into an OUTDIR that is not a run directory (files the run does not own are kept).")
@click.option("--keep-embeddings", is_flag=True, default=False, help="Also write embeddings/nucleotide.h5 and protein.h5 (13.3 KB per frame at the published widths). By default each part's embeddings are scored at once and never stored.")
@click.option("--min-viral-fraction", type=click.FloatRange(0.0, 1.0), default=0.5, show_default=True, help="sequence_summary.tsv calls a sequence virus when at least this fraction of its scored chunks is viral.")
@backend_options
@device_options
@parallel_options
@resume_options
@logging_options
def predict(input_path: str, outdir: Path, model_type: str, chunk_size: int | None, models_dir: Path | None, esm_model: str | None,
            dnabert_model: str | None, dnabert_revision: str | None, mlp: Path | None, force: bool, keep_embeddings: bool, min_viral_fraction: float, backend_specs: tuple[str, ...], v1_fallback: bool,
            verbose: int, quiet: bool, log_file: Path | None, shard: str | None, **runtime_flags) -> None:
    """Predict which sequences of INPUT are viral.

    INPUT is FASTA or FASTQ (plain, .gz, .bz2, .xz, or - for stdin). Stages: prepare
    (chunk + six-frame translation), then part by part: embed nucleotide (DNABERT-S),
    embed protein (ESM-2) and classify (MLP), then report. A part's embeddings are
    scored as soon as they exist and are not kept unless --keep-embeddings is given, so
    the scratch disk is a few parts, not the input's embeddings. Each stage's output is
    recorded in OUTDIR/run.json; --resume continues an interrupted run.
    Before prepare writes anything, every model, --backend-option and embedding width is
    checked (the preflight): a missing model or a wrong option fails within seconds, in one
    line, and OUTDIR is not created.

    \b
    Outputs in OUTDIR:
      prediction_results.txt               per frame: virus|others, score1 (others), score2 (virus)
      prediction_results_highestscore.csv  per chunk: Is_Virus (the original consensus)
      sequence_summary.tsv                 per input sequence: chunks, viral fraction, scores, call
      viral_sequences.fa                   the input sequences called virus
      prepare/, run.json                   prepared frames and the run manifest
      embeddings/                          nucleotide.h5, protein.h5 (only with --keep-embeddings)

    \b
    Examples:
      virnucpro models download --models-dir ~/virnucpro-models          # once, online
      virnucpro predict contigs.fa -o results --models-dir ~/virnucpro-models
      virnucpro predict reads.fq.gz -o results --model-type 300 --device cuda:1 --precision bf16
      virnucpro predict contigs.fa -o results --keep-embeddings    # also write embeddings/*.h5
      virnucpro predict contigs.fa -o results --resume             # after an interruption (Ctrl-C, SIGTERM, a crash)
      virnucpro predict contigs.fa -o results --force              # replace a finished run's outputs
      virnucpro predict contigs.fa -o results --backend-option esm2:attention=sdpa-bucketed   # for ESM-2 only
      virnucpro predict contigs.fa -o results --backend-option esm2:attention=flash-attn --backend-option dnabert:attention=flash
      virnucpro predict contigs.fa -o results --gpus 2,3           # one worker on GPU 2, one on GPU 3
      virnucpro predict contigs.fa -o results --parallel           # one worker on every visible GPU
      virnucpro predict contigs.fa -o shard0 --shard 0/2           # array job 0 of 2 (then shard 1/2), then:
      virnucpro aggregate shard0 shard1 -o results
      torchrun --nproc-per-node 4 -m virnucpro_core predict contigs.fa -o results
      virnucpro models init-tiny /tmp/tiny && virnucpro predict contigs.fa -o smoke --models-dir /tmp/tiny
    """
    from virnucpro_core.commands.common import runtime_from_options
    from virnucpro_core.engine.config import Shard
    from virnucpro_core.engine.distributed import context_from_env, follow, release
    from virnucpro_core.engine.stop import graceful_stop
    from virnucpro_core.logs import FILE_ONLY, setup_logging
    from virnucpro_core.outputs import Outputs, refuse_foreign_directory, refuse_inputs_as_outputs
    from virnucpro_core.pipeline import PredictRequest, predict_outputs, run_predict

    dist = context_from_env()
    if dist is None or dist.is_driver:  # before anything is written, the log file included
        inputs = (input_path, esm_model, dnabert_model, mlp, models_dir)
        refuse_inputs_as_outputs(Outputs(files=(log_file,) if log_file else ()), inputs, option="--log-file", regular=False)
        refuse_inputs_as_outputs(predict_outputs(input_path, outdir, chunk_size or int(model_type)), inputs)
        refuse_foreign_directory(outdir, force=force, ignore=(log_file,))  # --resume too: it starts a run where none is
    setup_logging(verbose, quiet, log_file)
    runtime = runtime_from_options(runtime_flags)
    if dist is not None and not dist.is_driver:
        runtime.apply_threads()
        with graceful_stop():
            follow(dist)  # rank 0 prepares, classifies and reports; this rank embeds its share of the parts
        return
    request = PredictRequest(
        input_path=input_path,
        outdir=outdir,
        model_type=int(model_type),
        chunk_size=chunk_size or int(model_type),
        models_dir=models_dir,
        esm_model=esm_model,
        dnabert_model=dnabert_model,
        dnabert_revision=dnabert_revision,
        mlp=mlp,
        min_viral_fraction=min_viral_fraction,
        backend_specs=tuple(backend_specs),
        v1_fallback=v1_fallback,
        progress=not quiet,
        force=force,
        keep_embeddings=keep_embeddings,
    )
    shard_spec = Shard.parse(shard) if shard else None
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    with graceful_stop():
        summary = run_predict(request, runtime, shard=shard_spec, log_level=level)
    if dist is not None:
        release(dist)
    lines = summary.lines()[:2] + list(summary.notes) if shard_spec is not None else summary.lines()
    for line in lines:
        click.echo(line)
        log.info(line, extra=FILE_ONLY)  # the final summary belongs in --log-file too
