"""The classify stage: merge nucleotide and protein embeddings by ID and score them.

Streams: the merger yields batches in nucleotide-file order (as the original), each
batch is scored by the MLP and written to ``prediction_results.txt`` at once, then the
per-chunk consensus file is derived from it. Nothing held in memory grows with the
input (see :mod:`virnucpro_core.merge` and :func:`virnucpro_core.report.write_consensus`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from virnucpro_core.errors import InputError, ModelError
from virnucpro_core.merge import MergeStats

if TYPE_CHECKING:
    from virnucpro_core.classifier import MLPClassifier

log = logging.getLogger(__name__)

PREDICTIONS = "prediction_results.txt"
CONSENSUS = "prediction_results_highestscore.csv"


@dataclass(frozen=True)
class ClassifyResult:
    predictions: Path
    consensus: Path
    frames_scored: int
    frames_viral: int
    chunks: int
    merge: MergeStats

    def counts(self) -> dict[str, int]:
        return {
            "frames_scored": self.frames_scored,
            "frames_viral": self.frames_viral,
            "chunks": self.chunks,
            "missing_in_protein": self.merge.missing_in_protein,
            "missing_in_nucleotide": self.merge.missing_in_nucleotide,
        }


def classify_embeddings(
    nucleotide: Path,
    protein: Path,
    mlp: Path,
    outdir: Path,
    *,
    device: str = "cpu",
    nucleotide_format: str | None = None,
    protein_format: str | None = None,
    batch_size: int = 4096,
    model: "MLPClassifier | None" = None,
) -> ClassifyResult:
    """Write the two original result files for the frames present in both embedding files.

    ``model`` is the MLP already loaded from ``mlp`` (the pipeline loads it before embedding).
    """
    import numpy as np

    from virnucpro_core.classifier import load_mlp, predicted_classes, score
    from virnucpro_core.merge import Merger
    from virnucpro_core.registry import get_registry
    from virnucpro_core.report import PredictionWriter, write_consensus

    registry = get_registry()
    model = model if model is not None else load_mlp(mlp)
    input_dim = model.config.input_dim
    predictions, consensus = outdir / PREDICTIONS, outdir / CONSENSUS
    nuc_fmt = registry.format_for_path(nucleotide, nucleotide_format)
    prot_fmt = registry.format_for_path(protein, protein_format)
    scored = viral = 0
    outdir.mkdir(parents=True, exist_ok=True)
    with nuc_fmt.open_reader(Path(nucleotide)) as nuc, prot_fmt.open_reader(Path(protein)) as prot:
        merger = Merger(nuc, prot, batch_size, workdir=outdir)
        if merger.stats.merged and merger.meta.dim != input_dim:  # empty files only know their backend's default width
            raise ModelError(
                f"{mlp}: the MLP expects {input_dim} features but the embeddings give {merger.meta.dim} "
                f"({nuc.meta.dim} nucleotide + {prot.meta.dim} protein); use the MLP trained for these models "
                "(the published ones need DNABERT-S 768 + ESM-2 3B 2560)"
            )
        for problem in merger.stats.problems():
            log.warning("%s: %s", outdir, problem)
        with PredictionWriter(predictions) as writer:
            for ids, features in merger:
                bad = ~np.isfinite(features).all(axis=1)
                if bad.any():
                    raise InputError(
                        f"{nucleotide} / {protein}: the embeddings of {ids[int(np.flatnonzero(bad)[0])]!r} hold NaN or "
                        "infinite values; embed again (with --precision fp32) before classifying"
                    )
                probs = score(model, features, device=device)
                writer.write(ids, probs)
                scored += len(ids)
                viral += int((predicted_classes(probs) == 1).sum())
    if scored != merger.stats.merged:
        raise InputError(f"{nucleotide}: scored {scored} frames but {merger.stats.merged} were merged; a file changed while running?")
    chunks = write_consensus(predictions, consensus)
    return ClassifyResult(predictions, consensus, scored, viral, chunks, merger.stats)
