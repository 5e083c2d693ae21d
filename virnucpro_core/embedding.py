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

import itertools
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from virnucpro_core.backends import Backend, Embedder, EmbedderOptions
from virnucpro_core.errors import ConfigError, VirnucproError
from virnucpro_core.formats.base import EmbeddingFormat, EmbeddingMeta

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

    def counts(self) -> dict[str, int | float | str]:
        return {
            "sequences": self.sequences,
            "dim": self.dim,
            "model": self.model,
            "parts_computed": self.parts_computed,
            "parts_reused": self.parts_reused,
            "seconds": round(self.seconds, 3),
        }


def count_records(path: Path) -> int:
    """Number of records, read exactly as the embed loop reads them (FASTA or FASTQ,
    plain or compressed), so the two counts agree whatever the file looks like."""
    from virnucpro_core.seqio import read_records

    return sum(1 for _ in read_records(path))


def _groups(path: Path, size: int) -> Iterator[list[tuple[str, str]]]:
    from virnucpro_core.seqio import iter_fasta

    records = iter_fasta(path)
    while group := list(itertools.islice(records, size)):
        yield group


def _check_output(array: np.ndarray, ids: list[str], embedder: Embedder, backend: Backend) -> np.ndarray:
    if not isinstance(array, np.ndarray) or array.shape != (len(ids), embedder.dim):
        shape = getattr(array, "shape", type(array).__name__)
        raise VirnucproError(
            f"backend {backend.describe()} returned {shape} for {len(ids)} sequences of width {embedder.dim}; "
            "this is a bug in the backend, please report it"
        )
    array = np.asarray(array, dtype=np.float32)
    bad = ~np.isfinite(array).all(axis=1)
    if bad.any():
        first = ids[int(np.flatnonzero(bad)[0])]
        raise VirnucproError(
            f"backend {backend.describe()} produced NaN/inf for {int(bad.sum())} sequence(s), first {first!r}; "
            "try --precision bf16 or fp32"
        )
    return array


PARTS_JSON = "parts.json"


def _meta(backend: Backend, dim: int, model: object, extra: Mapping[str, str] | None = None) -> EmbeddingMeta:
    return EmbeddingMeta(dim=dim, modality=backend.modality, backend=backend.family, version=backend.version,
                         package_version=backend.package_version, model=str(model), extra=dict(extra or {}))


def embedder_attributes(embedder: Embedder) -> dict[str, str]:
    """What the embedder reports about how it ran (``attributes()``, optional in the
    protocol: esm2=v2 gives its attention kernel, precision and packing utilisation),
    stored in the output file's attributes."""
    attributes = getattr(embedder, "attributes", None)
    return {str(k): str(v) for k, v in attributes().items()} if callable(attributes) else {}


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
) -> EmbedResult:
    """Embed every record of ``fasta`` with ``backend`` into ``out`` (format ``fmt``).

    ``identity`` describes what the parts depend on (input, backend, model, precision);
    it is stored in ``parts_dir/parts.json`` with the part size, and a resume whose
    identity differs is refused rather than mixing two models' rows in one file. On
    resume the stored part size wins, so part boundaries line up with the finished parts.
    """
    from tqdm import tqdm

    from virnucpro_core.formats.hdf5 import Hdf5Reader, Hdf5Writer

    start = time.monotonic()
    total = count_records(fasta)
    if not resume and parts_dir.exists():
        shutil.rmtree(parts_dir)
    parts_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_every = _check_parts_identity(parts_dir, dict(identity or {}), checkpoint_every)

    embedder: Embedder | None = None
    computed = reused = done = 0
    dim = model = None
    attributes: dict[str, str] = {}
    part_paths: list[Path] = []
    bar = tqdm(total=total, unit="seq", desc=f"embed {backend.key}", disable=not progress, leave=False)
    try:
        for index, group in enumerate(_groups(fasta, checkpoint_every)):
            ids = [record_id for record_id, _ in group]
            part = parts_dir / f"part-{index:06d}.h5"
            part_paths.append(part)
            if part.exists():
                with Hdf5Reader(part) as reader:
                    if reader.ids() == ids and (dim is None or reader.meta.dim == dim):
                        dim, model = reader.meta.dim, reader.meta.model
                        attributes = attributes or dict(reader.meta.extra)
                        reused += 1
                        done += len(ids)
                        bar.update(len(ids))
                        continue
                log.warning("checkpoint %s does not match the input; recomputing it", part)
            if embedder is None:
                log.info("loading %s (model %s) on %s, %s", backend.describe(), options.model or backend.default_model, options.device, options.precision)
                embedder = backend.factory(options)
                if dim is not None and embedder.dim != dim:
                    raise VirnucproError(f"{parts_dir}: checkpoints have width {dim} but the model gives {embedder.dim}; use --force-resume")
                dim, model = embedder.dim, embedder.model_id
            reported = 0

            def on_progress(n: int) -> None:
                nonlocal reported
                reported += n
                bar.update(n)

            array = embedder.embed([seq for _, seq in group], progress=on_progress)
            array = _check_output(array, ids, embedder, backend)
            bar.update(max(0, len(ids) - reported))
            attributes = embedder_attributes(embedder)
            with Hdf5Writer(part, _meta(backend, dim, model, attributes)) as writer:
                writer.write(ids, array)
            computed += 1
            done += len(ids)
    finally:
        bar.close()
        if embedder is not None:
            embedder.close()

    if done != total:
        raise VirnucproError(f"{fasta}: read {done} records but counted {total}; the file changed while running?")
    if dim is None:  # no records at all
        dim, model = backend.dim, options.model or backend.default_model or ""
    if attributes:
        log.info("%s ran with %s", backend.key, ", ".join(f"{k}={v}" for k, v in sorted(attributes.items())))
    written = 0
    with fmt.open_writer(out, _meta(backend, dim, model, attributes)) as writer:
        for part in part_paths:
            with Hdf5Reader(part) as reader:
                for batch_ids, batch in reader.iter_batches():
                    writer.write(batch_ids, batch)
                    written += len(batch_ids)
    if written != total:
        raise VirnucproError(f"{out}: wrote {written} rows for {total} input records; this is a bug, please report it")
    shutil.rmtree(parts_dir, ignore_errors=True)
    return EmbedResult(out, total, int(dim), str(model), computed, reused, time.monotonic() - start)
