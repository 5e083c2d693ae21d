"""The ``predict`` pipeline: prepare → embed + classify, part by part → report.

Each stage runs through the run directory's stage runner, so it is recorded in
``run.json`` and skipped by ``--resume`` once done. The middle stage (``classify``)
embeds each checkpoint part with both backends and scores it at once
(:mod:`virnucpro_core.partscore`), so no full embedding file is written unless
``--keep-embeddings`` asks for ``embeddings/nucleotide.h5`` and ``protein.h5`` (the
bytes the separate ``embed`` stages write). Counts are checked between stages: every
stop-free frame from prepare must be in both prepared files, in the same order, and have
exactly one scored line; a difference stops the run with a message.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from virnucpro_core.backends import Backend
from virnucpro_core.errors import VirnucproError
from virnucpro_core.runtime import RuntimeConfig

if TYPE_CHECKING:
    from virnucpro_core.engine.config import Shard
    from virnucpro_core.outputs import Outputs

log = logging.getLogger(__name__)

TINY_WARNING = "RANDOM TINY MODELS: these results are NOT biologically meaningful (models from `virnucpro models init-tiny`)"


@dataclass(frozen=True)
class PredictRequest:
    input_path: str
    outdir: Path
    model_type: int = 500
    chunk_size: int = 500
    models_dir: Path | None = None
    esm_model: str | None = None
    dnabert_model: str | None = None
    mlp: Path | None = None
    dnabert_revision: str | None = None
    min_viral_fraction: float = 0.5
    backend_specs: tuple[str, ...] = ()
    v1_fallback: bool = False
    progress: bool = True
    #: ``--force``: replace a finished run's outputs, or write into a folder that is not a run directory
    force: bool = False
    keep_embeddings: bool = False


@dataclass(frozen=True)
class PredictSummary:
    outdir: Path
    architecture: str
    counts: dict[str, dict[str, Any]]
    seconds: float
    tiny: bool
    resumed: bool
    notes: tuple[str, ...] = field(default_factory=tuple)

    def lines(self) -> list[str]:
        p = self.counts.get("prepare", {})
        c = self.counts.get("classify", {})
        r = self.counts.get("report", {})
        out = [
            f"architecture: {self.architecture}",
            f"{p.get('sequences', 0)} sequences ({p.get('bases', 0)} bp) -> {p.get('chunks', 0)} chunks -> "
            f"{p.get('frames', 0)} stop-free frames",
            f"{c.get('frames_scored', 0)} frames scored, {c.get('frames_viral', 0)} virus; "
            f"{r.get('viral_chunks', 0)} of {c.get('chunks', 0)} chunks viral; "
            f"{r.get('viral_sequences', 0)} of {p.get('sequences', 0)} sequences called virus",
            f"results in {self.outdir} ({self.seconds:.1f} s{', resumed' if self.resumed else ''})",
            *self.notes,
        ]
        if self.tiny:
            out.append("WARNING: " + TINY_WARNING)
        return out


def _model_identity(value: str | Path) -> dict[str, Any]:
    """What identifies a model for --resume: a hub name, or a local path with its size and mtime."""
    path = Path(str(value)).expanduser()
    if not path.exists():
        return {"name": str(value)}
    if path.is_dir():
        files = [p for p in path.rglob("*") if p.is_file()]
        return {"path": str(path.resolve()), "size": sum(p.stat().st_size for p in files),
                "mtime_ns": max((p.stat().st_mtime_ns for p in files), default=0)}
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def known_width(backend: Backend, model: str | None, *, published_set: bool) -> int | None:
    """The embedding width when it is known without loading the model, else ``None``.

    ``Backend.dim`` is the width of the backend's default model, so it is known when
    that model runs: no model given, the default's name, or the same model taken from a
    models directory of the published set (``virnucpro models download``: the file or
    folder carries the default's name, ``esm2/esm2_t36_3B_UR50D.pt``,
    ``dnabert/DNABERT-S``). Any other model (a tiny set, a user's checkpoint) is known
    only once loaded.
    """
    default = backend.default_model
    if model is None or model == default:
        return backend.dim
    if published_set and default and Path(str(model)).stem == Path(default).name:
        return backend.dim
    return None


def check_width(input_dim: int, mlp_path: Path, nucleotide: Backend, nucleotide_dim: int | None,
                protein: Backend, protein_dim: int | None) -> None:
    """Stop when the features cannot fit the MLP, naming every width that is known.

    Called before the first stage that embeds (widths of default models) and again once
    the nucleotide model has loaded (its real width), so a mismatch never costs an
    embedding stage that could have been avoided.
    """
    from virnucpro_core.errors import ModelError

    hint = "use the MLP trained for these models (the published ones need DNABERT-S 768 + ESM-2 3B 2560 = 3328)"
    if nucleotide_dim is not None and protein_dim is not None:
        if nucleotide_dim + protein_dim != input_dim:
            raise ModelError(
                f"{mlp_path}: the MLP expects {input_dim} features but the embeddings give {nucleotide_dim} nucleotide "
                f"({nucleotide.key}) + {protein_dim} protein ({protein.key}) = {nucleotide_dim + protein_dim}; {hint}"
            )
        return
    for dim, backend, modality in ((nucleotide_dim, nucleotide, "nucleotide"), (protein_dim, protein, "protein")):
        if dim is not None and dim >= input_dim:
            raise ModelError(
                f"{mlp_path}: the MLP expects {input_dim} features but the {modality} embeddings ({backend.key}) "
                f"alone give {dim}, leaving nothing for the other modality; {hint}"
            )


def batch_identity(options: Any) -> dict[str, int | None]:
    """The batch settings of one backend, for its checkpoint identity: batches can change
    the last bits of a row (padding, kernel choice), so parts made with other batches are
    never mixed into one file."""
    return {"batch_tokens": options.batch_tokens, "batch_size": options.batch_size}


def label_tiny(path: Path, format_name: str) -> None:
    """Say in an embeddings file that it came from random tiny models (HDF5 attribute ``warning``)."""
    if format_name == "hdf5":
        from virnucpro_core.formats.hdf5 import set_warning

        set_warning(path, TINY_WARNING)


def _precisions(runtime: RuntimeConfig, backends, device: str) -> str | dict[str, str]:
    """The precision each backend runs in (one value when they agree, as before)."""
    chosen = {m: runtime.precision_for(backends[m], device) for m in ("nucleotide", "protein")}
    return chosen["protein"] if len(set(chosen.values())) == 1 else chosen


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise VirnucproError(f"count check failed: {message}; this is a bug, please report it with run.json")


def run_predict(request: PredictRequest, runtime: RuntimeConfig, *, shard: "Shard | None" = None,
                log_level: int = logging.WARNING) -> PredictSummary:
    """Run every stage in ``request.outdir``. With ``shard`` (an array job), only prepare and
    this shard's embedding parts run, and a shard manifest is written for ``virnucpro aggregate``."""
    from virnucpro_core.atomic import atomic_open
    from virnucpro_core.backend_options import check_routing
    from virnucpro_core.checksum import sha256_file
    from virnucpro_core.classifier import load_mlp
    from virnucpro_core.cli import command_line
    from virnucpro_core.modelset import resolve_model_set
    from virnucpro_core.partscore import ScoreInputs, score_parts
    from virnucpro_core.preflight import check_backend
    from virnucpro_core.prepare import output_paths, prepare_file
    from virnucpro_core.registry import get_registry
    from virnucpro_core.report import write_sequence_summary, write_viral_fasta
    from virnucpro_core.rundir import Stage, describe_input, open_run
    from virnucpro_core.selection import parse_backend_options, resolve_backends

    start = time.monotonic()
    registry = get_registry()
    backends = resolve_backends(registry, parse_backend_options(request.backend_specs, v1_fallback=request.v1_fallback))
    models = resolve_model_set(request.model_type, models_dir=request.models_dir, esm_model=request.esm_model,
                               dnabert_model=request.dnabert_model, mlp=request.mlp)
    engine = runtime.engine(shard=shard, log_level=log_level)
    device = engine.devices[0]
    runtime.apply_threads()
    log.info("architecture: %s on %s", backends.architecture(), ", ".join(engine.devices))
    if models.tiny:
        log.warning(TINY_WARNING)
    if request.chunk_size != request.model_type:
        log.warning("--chunk-size %d differs from --model-type %d: the published MLP was trained on %d bp chunks",
                    request.chunk_size, request.model_type, request.model_type)

    # Which model feeds which backend: the published pair by default, the user's choice otherwise.
    model_for = {
        "protein": request.esm_model or (models.esm2 if backends["protein"].family == "esm2" else None),
        "nucleotide": request.dnabert_model or (models.dnabert if backends["nucleotide"].family == "dnabert" else None),
    }
    from virnucpro_core import modelset

    # DNABERT-S by hub id loads the pinned revision unless one is asked for (none while the pin is unset)
    pinned = modelset.DNABERT_S_REVISION if model_for["nucleotide"] == modelset.DEFAULT_DNABERT else None
    revision_for = {"protein": None, "nucleotide": request.dnabert_revision or pinned}
    mlp = load_mlp(models.mlp)  # a bad MLP must stop the run before hours of embedding, not after
    explicit = {"protein": request.esm_model, "nucleotide": request.dnabert_model}
    # The preflight: every option routed, every model found and checked, before open_run creates anything.
    check_routing(runtime.backend_options, [backends["nucleotide"], backends["protein"]])
    width = {modality: check_backend(backends[modality], runtime.embedder_options(
                 model_for[modality], backend=backends[modality], modality=modality, revision=revision_for[modality]))
             or known_width(backends[modality], model_for[modality],
                            published_set=models.root is not None and not models.tiny and not explicit[modality])
             for modality in ("nucleotide", "protein")}
    check_width(mlp.config.input_dim, models.mlp, backends["nucleotide"], width["nucleotide"],
                backends["protein"], width["protein"])
    mlp_identity = {"path": str(Path(models.mlp).resolve()), "sha256": sha256_file(models.mlp),
                    "input_dim": mlp.config.input_dim, "model_type": request.model_type}
    # What the embeddings depend on; --resume refuses a run where any of it differs.
    identity = {
        "inputs": [describe_input(request.input_path)],
        "parameters": {"chunk_size": request.chunk_size, "precision": _precisions(runtime, backends, device),
                       **({"backend_options": dict(runtime.backend_options)} if runtime.backend_options else {})},
        # without "dim": a backend's registered width is its default model's; the loaded one is recorded below
        "backends": {modality: {k: v for k, v in entry.items() if k != "dim"} for modality, entry in backends.manifest().items()},
        "models": {
            modality: {**(_model_identity(model_for[modality]) if model_for[modality] else {"name": "backend default"}),
                       **({"revision": revision_for[modality]} if revision_for[modality] else {})}
            for modality in ("protein", "nucleotide")
        },
    }
    info = {"architecture": backends.architecture(), "runtime": {**runtime.as_dict(), "device": device, "devices": list(engine.devices)},
            **({"shard": str(shard)} if shard is not None else {}),
            "tiny_models": models.tiny, "pid": os.getpid(), "command_line": command_line()}
    outdir = Path(request.outdir)
    prep = outdir / "prepare"
    prepared = output_paths(request.input_path, prep, request.chunk_size)
    chunked_fa, nucleotide_fa, protein_faa, sequences_tsv = prepared
    emb = outdir / "embeddings"  # only with --keep-embeddings
    nucleotide_h5, protein_h5 = emb / "nucleotide.h5", emb / "protein.h5"
    hdf5 = registry.get_format("hdf5")
    counts: dict[str, dict[str, Any]] = {}

    with open_run(outdir, "predict", identity, info=info, resume=runtime.resume, force_resume=runtime.force_resume,
                  force=request.force) as run:
        warning_file = outdir / "WARNING_TINY_MODELS.txt"
        if models.tiny:
            run.manifest["warning"] = TINY_WARNING
            with atomic_open(warning_file) as handle:
                handle.write(TINY_WARNING + "\n")
        else:
            warning_file.unlink(missing_ok=True)

        def do_prepare():
            prep.mkdir(parents=True, exist_ok=True)
            result = prepare_file(request.input_path, prep, request.chunk_size, progress=request.progress)
            return {"sequences": result.sequences, "bases": result.bases, "chunks": result.chunks,
                    "frames": result.frames, "empty_skipped": result.empty_skipped,
                    **({"rna_records": result.rna_records} if result.rna_records else {})}  # U read as T

        counts["prepare"] = dict(run.run_stage(Stage("prepare", prepared, do_prepare)))
        frames = counts["prepare"]["frames"]

        embed_options = {modality: runtime.embedder_options(model_for[modality], backend=backends[modality], modality=modality,
                                                             revision=revision_for[modality], show_progress=request.progress)
                         for modality in ("nucleotide", "protein")}
        kept = (nucleotide_h5, protein_h5) if request.keep_embeddings else None
        inputs = ScoreInputs(nucleotide_fa, protein_faa, run.checkpoints, backends["nucleotide"], embed_options["nucleotide"],
                             backends["protein"], embed_options["protein"], Path(models.mlp), mlp, width["protein"],
                             request.keep_embeddings)

        def do_classify():
            result = score_parts(inputs, outdir, engine=engine, part_size=runtime.checkpoint_every, resume=run.resumed,
                                 progress=request.progress, embeddings=kept,
                                 identity={"run": run.manifest["fingerprint"],
                                           **{f"{m}_{k}": v for m in ("nucleotide", "protein")
                                              for k, v in batch_identity(embed_options[m]).items()}})
            _check(result.plan.total_records == frames, f"{result.plan.total_records} frames in the prepared files for {frames} frames")
            if not result.complete:
                return result
            _check(result.frames == frames, f"{result.frames} frames scored for {frames} frames")
            if kept is not None and models.tiny:
                for target in kept:
                    label_tiny(target, hdf5.name)
            return {**result.counts(), **{m: {"backend": backends[m].describe(), "dim": int(dim), "model": model}
                                          for m, (dim, model) in result.widths.items()}}

        if shard is not None:  # a shard computes its parts; only the aggregate finishes the stage
            from virnucpro_core.engine.shards import write_predict_shard

            result = do_classify()
            stages = {"score": (result.plan, run.checkpoints / "score")}
            if kept is not None:
                stages.update({f"embed_{m}": (result.plan, run.checkpoints / m) for m in ("nucleotide", "protein")})
            write_predict_shard(outdir, shard, run.manifest, stages, request, runtime)
            run.finish("shard")
            counts["classify"] = {"parts_computed": result.computed, "parts_reused": result.reused}
            return PredictSummary(outdir, backends.architecture(), counts, time.monotonic() - start, models.tiny, run.resumed,
                                  notes=(f"shard {shard} done; join the shards with `virnucpro aggregate`",))

        outputs = [outdir / "prediction_results.txt", outdir / "prediction_results_highestscore.csv", *(kept or ())]
        counts["classify"] = dict(run.run_stage(Stage("classify", outputs, do_classify,
                                                      identity={"mlp": mlp_identity, "keep_embeddings": request.keep_embeddings})))
        for modality in ("nucleotide", "protein"):  # the width of the model that ran, not the registered default's
            loaded = counts["classify"].get(modality)
            if loaded:
                run.manifest.setdefault("backends", {})[modality] = {**backends.manifest()[modality], "dim": loaded["dim"],
                                                                     "model": loaded["model"]}
        run.save()

        def do_report():
            stats = write_sequence_summary(sequences_tsv, outdir / "prediction_results.txt", outdir / "sequence_summary.tsv",
                                           min_viral_fraction=request.min_viral_fraction)
            _check(stats.sequences == counts["prepare"]["sequences"],
                   f"{stats.sequences} rows in sequence_summary.tsv for {counts['prepare']['sequences']} input sequences")
            _check(stats.frames_scored == counts["classify"]["frames_scored"],
                   f"summary saw {stats.frames_scored} frames, classify scored {counts['classify']['frames_scored']}")
            written = write_viral_fasta(request.input_path, outdir / "sequence_summary.tsv", outdir / "viral_sequences.fa") \
                if request.input_path != "-" else _viral_from_prepared(chunked_fa, request.chunk_size, outdir)
            _check(written == stats.viral, f"{written} sequences in viral_sequences.fa, {stats.viral} called virus")
            return {"sequences": stats.sequences, "with_frames": stats.with_frames, "viral_sequences": stats.viral,
                    "chunks_scored": stats.chunks_scored, "viral_chunks": _viral_chunks(outdir)}

        counts["report"] = dict(run.run_stage(Stage("report", [outdir / "sequence_summary.tsv", outdir / "viral_sequences.fa"], do_report,
                                                  identity={"min_viral_fraction": request.min_viral_fraction})))
        run.manifest["counts"] = counts
        shutil.rmtree(run.checkpoints, ignore_errors=True)  # every stage is done; parts were merged
    return PredictSummary(outdir, backends.architecture(), counts, time.monotonic() - start, models.tiny, run.resumed)


def predict_outputs(input_path: str, outdir: Path, chunk_size: int) -> "Outputs":
    """Every name a predict run writes in ``outdir`` (and the checkpoint folder it deletes),
    for the check that none of them is an input (:mod:`virnucpro_core.outputs`)."""
    from virnucpro_core.outputs import Outputs
    from virnucpro_core.prepare import output_paths
    from virnucpro_core.rundir import CHECKPOINTS, LOCK, MANIFEST

    outdir = Path(outdir)
    names = (MANIFEST, LOCK, "WARNING_TINY_MODELS.txt", "embeddings/nucleotide.h5", "embeddings/protein.h5",
             "prediction_results.txt", "prediction_results_highestscore.csv", "sequence_summary.tsv",
             "viral_sequences.fa", "shard.json")
    return Outputs(files=(*output_paths(input_path, outdir / "prepare", chunk_size), *(outdir / n for n in names)),
                   folders=(outdir / CHECKPOINTS,))


def _viral_chunks(outdir: Path) -> int:
    with open(outdir / "prediction_results_highestscore.csv") as handle:
        next(handle, None)
        return sum(1 for line in handle if line.rstrip("\n").endswith("\tTrue"))


def _viral_from_prepared(chunked_fa: Path, chunk_size: int, outdir: Path) -> int:
    """stdin cannot be read twice: rebuild the viral sequences from the prepared chunks.

    Chunks overlap and cover their sequence, so chunk ``k`` contributes the bases up to
    where chunk ``k+1`` starts; this gives the input sequence exactly (case kept), without
    its description. Chunks come in input order, so one sequence is held at a time.
    """
    from itertools import groupby

    from virnucpro_core.atomic import atomic_open
    from virnucpro_core.chunking import chunk_starts
    from virnucpro_core.report import iter_summary
    from virnucpro_core.seqio import iter_fasta

    viral = {row.sequence_id: row.length for row in iter_summary(outdir / "sequence_summary.tsv") if row.call == "virus"}
    written = 0
    chunks = iter_fasta(chunked_fa)
    with atomic_open(outdir / "viral_sequences.fa") as handle:
        for seq_id, group in groupby(chunks, key=lambda item: item[0].rsplit("_chunk_", 1)[0]):
            if seq_id not in viral:
                continue
            starts = chunk_starts(viral[seq_id], chunk_size) + [viral[seq_id]]
            seq = "".join(chunk[: starts[i + 1] - starts[i]] for i, (_, chunk) in enumerate(group))
            handle.write(f">{seq_id}\n")
            for i in range(0, len(seq), 60):
                handle.write(seq[i : i + 60] + "\n")
            written += 1
    return written
