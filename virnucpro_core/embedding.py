"""The embed stage: FASTA in, one embeddings file out, rows in input order.

Work is cut into *parts* of ``checkpoint_every`` sequences. Each part is written to its
own HDF5 file (ids and embeddings together, atomically), so an interrupted run resumes
from the last finished part; a part whose ids do not match the input is recomputed,
never dropped. The default part size, 10,000 sequences, is the original's
``split_fasta_file(..., 10000)``: the original batched ESM-2 within each such file, so
equal parts give the same batches, hence the same numbers to the last bit. When all parts exist they are streamed into the output file in the
requested format and the parts are removed. Counts are checked at every step: every
input record gives exactly one output row.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping


from virnucpro_core.backends import Backend, EmbedderOptions
from virnucpro_core.errors import ConfigError, VirnucproError
from virnucpro_core.engine.config import EngineConfig
from virnucpro_core.engine.failures import WorkerStats
from virnucpro_core.engine.parts import PartPlan, finished_parts
from virnucpro_core.formats.base import EmbeddingFormat

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbedResult:
    path: Path
    sequences: int
    dim: int
    model: str
    parts_computed: int
    parts_reused: int
    seconds: float
    plan: PartPlan | None = None
    #: False for a shard: only its parts were computed and nothing was assembled
    complete: bool = True
    workers: tuple[WorkerStats, ...] = ()

    @property
    def sequences_computed(self) -> int:
        """Records this attempt embedded (a resume reuses the others): what a rate may count."""
        if self.plan is None:
            return self.sequences
        size, total = self.plan.part_size, self.plan.total_records
        return self.sequences - sum(min(size, total - p * size) for p in self.plan.reused)

    def counts(self) -> dict[str, int | float | str]:
        return {
            "sequences": self.sequences,
            "dim": self.dim,
            "model": self.model,
            "parts_computed": self.parts_computed,
            "parts_reused": self.parts_reused,
            "seconds": round(self.seconds, 3),
            **({"workers": {f"{w.worker} ({w.device})": {"parts": w.parts, "sequences": w.sequences}
                            for w in self.workers}} if len(self.workers) > 1 else {}),
        }


PARTS_JSON = "parts.json"


def _check_parts_identity(parts_dir: Path, identity: dict[str, Any], checkpoint_every: int) -> int:
    """Record (or, resuming, compare) what the parts in ``parts_dir`` were made with."""
    from virnucpro_core.atomic import write_json_atomic

    path = parts_dir / PARTS_JSON
    if path.exists():
        stored = json.loads(path.read_text())
        if stored.get("identity") != json.loads(json.dumps(identity, default=str)):
            changed = sorted(k for k in set(stored.get("identity", {})) | set(identity)
                             if stored.get("identity", {}).get(k) != identity.get(k))
            raise ConfigError(
                f"{parts_dir}: the checkpoints were made with other settings (changed: {', '.join(changed)}); "
                "use --force-resume to discard them"
            )
        if stored["checkpoint_every"] != checkpoint_every:
            log.info("resuming with the part size of the checkpoints (%d sequences)", stored["checkpoint_every"])
        return int(stored["checkpoint_every"])
    write_json_atomic(path, {"identity": identity, "checkpoint_every": checkpoint_every})
    return checkpoint_every


def embed_fasta(
    fasta: Path,
    out: Path,
    backend: Backend,
    options: EmbedderOptions,
    *,
    fmt: EmbeddingFormat,
    parts_dir: Path,
    checkpoint_every: int = 10_000,
    resume: bool = False,
    progress: bool = False,
    identity: Mapping[str, Any] | None = None,
    engine: EngineConfig | None = None,
) -> EmbedResult:
    """Embed every record of ``fasta`` with ``backend`` into ``out`` (format ``fmt``).

    ``identity`` describes what the parts depend on (input, backend, model, precision);
    it is stored in ``parts_dir/parts.json`` with the part size, and a resume whose
    identity differs is refused rather than mixing two models' rows in one file. On
    resume the stored part size wins, so part boundaries line up with the finished parts.

    ``engine`` says where parts run (:mod:`virnucpro_core.engine`): here, on worker
    processes, on torchrun ranks, or only this shard's parts (then nothing is
    assembled and the result has ``complete=False``). A failure that leaves no finished
    part removes ``parts_dir``, so nothing blocks a plain retry.
    """
    from virnucpro_core.engine.parts import assemble, part_meta, plan_parts
    from virnucpro_core.engine.run import compute_parts
    from virnucpro_core.progress import progress_bar
    from virnucpro_core.engine.stop import RunInterrupted

    engine = engine or EngineConfig(devices=(options.device,))
    start = time.monotonic()
    if not resume and parts_dir.exists():
        shutil.rmtree(parts_dir)
    parts_dir.mkdir(parents=True, exist_ok=True)
    done_parts = 0
    plan = None
    try:
        checkpoint_every = _check_parts_identity(parts_dir, dict(identity or {}), checkpoint_every)
        plan = plan_parts(fasta, parts_dir, checkpoint_every)
        done_parts = len(plan.reused)
        todo = plan.select(engine.keeps)
        reused_records = plan.total_records - sum(min(checkpoint_every, plan.total_records - p * checkpoint_every) for p in plan.todo)
        bar = progress_bar(total=plan.total_records, initial=reused_records, unit="seq", desc=f"embed {backend.key}",
                           enabled=progress)

        def on_part(task) -> None:
            nonlocal done_parts
            done_parts += 1

        try:
            outcome = compute_parts(fasta, parts_dir, plan, todo, backend, options, engine, on_progress=bar.update, on_part=on_part)
        finally:
            bar.close()
    except RunInterrupted as exc:
        total_parts = plan.parts if plan is not None else "?"
        # counted on disk: under torchrun the other ranks' parts never pass through on_part here
        done_parts = max(done_parts, min(len(finished_parts(parts_dir)), plan.parts if plan is not None else 0))
        raise exc.with_progress(f"{done_parts} of {total_parts} parts done ({backend.key})") from None
    except BaseException:
        if not finished_parts(parts_dir):
            shutil.rmtree(parts_dir, ignore_errors=True)  # nothing computed: nothing may block a retry
        raise
    if plan.dim is not None and outcome.dim is not None and outcome.dim != plan.dim:
        raise VirnucproError(f"{parts_dir}: checkpoints have width {plan.dim} but the model gives {outcome.dim}; use --force-resume")
    dim = outcome.dim or plan.dim
    model = outcome.model or plan.model
    seconds = time.monotonic() - start
    if engine.shard is not None:
        return EmbedResult(parts_dir, plan.total_records, int(dim or backend.dim), str(model or ""), outcome.computed,
                           len(plan.reused), seconds, plan=plan, complete=False, workers=outcome.stats)
    if dim is None:  # no records at all
        dim, model = backend.dim, options.model or backend.default_model or ""
    written = assemble(parts_dir, plan.parts, out, fmt, part_meta(backend, dim, model), plan.total_records)
    if written != plan.total_records:
        raise VirnucproError(f"{out}: wrote {written} rows for {plan.total_records} input records; this is a bug, please report it")
    shutil.rmtree(parts_dir, ignore_errors=True)
    return EmbedResult(out, plan.total_records, int(dim), str(model), outcome.computed, len(plan.reused),
                       time.monotonic() - start, plan=plan, workers=outcome.stats)
