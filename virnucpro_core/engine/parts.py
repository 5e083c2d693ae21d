"""Checkpoint parts: the plan of what is done and what to compute, part files, assembly.

Part ``p`` holds input records ``p*size+1 .. (p+1)*size`` (1-based, as messages name
them) in one HDF5 file with ids and rows together, written atomically, so a part is
whole or absent whatever process wrote it. The plan is made once, in the process that
drives the run, so every executor (this process, worker processes, torchrun ranks,
array-job shards) computes exactly the parts it is given and nothing else.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Collection, Iterator, Mapping, Sequence

import numpy as np

from virnucpro_core.backends import Backend, Embedder
from virnucpro_core.errors import VirnucproError
from virnucpro_core.formats.base import EmbeddingFormat, EmbeddingMeta

log = logging.getLogger(__name__)

PART_GLOB = "part-*.h5"


def part_path(parts_dir: Path, index: int) -> Path:
    return Path(parts_dir) / f"part-{index:06d}.h5"


@dataclass(frozen=True)
class PartTask:
    """One part to compute: its records (ids and sequences) and where its file goes."""

    index: int
    first_record: int  # 1-based number of the part's first input record
    ids: tuple[str, ...]
    sequences: tuple[str, ...]
    path: Path

    @property
    def records(self) -> str:
        """``70001-80000``: the input records of the part, as error messages name them."""
        return f"{self.first_record}-{self.first_record + len(self.ids) - 1}"


@dataclass(frozen=True)
class PartPlan:
    """Which parts of the input exist already and which must be computed.

    ``dim``/``model`` come from the reused parts (``None`` when there are none); a
    computed part must have the same width.
    """

    total_records: int
    part_size: int
    parts: int
    todo: tuple[int, ...]
    reused: tuple[int, ...]
    dim: int | None = None
    model: str | None = None

    def select(self, keep: Callable[[int], bool]) -> tuple[int, ...]:
        return tuple(p for p in self.todo if keep(p))


def iter_groups(fasta: Path, size: int) -> Iterator[list[tuple[str, str]]]:
    from virnucpro_core.seqio import iter_fasta

    records = iter_fasta(fasta)
    while group := list(itertools.islice(records, size)):
        yield group


def plan_parts(fasta: Path, parts_dir: Path, part_size: int) -> PartPlan:
    """Read the input once: count its records and check each existing part against the
    ids it must hold. A part whose ids or width do not match is recomputed, never used."""
    from virnucpro_core.formats.hdf5 import Hdf5Reader

    total = index = 0
    todo: list[int] = []
    reused: list[int] = []
    dim = model = None
    for index, group in enumerate(iter_groups(fasta, part_size)):
        total += len(group)
        path = part_path(parts_dir, index)
        if path.exists():
            try:
                with Hdf5Reader(path) as reader:
                    if reader.ids() == [rid for rid, _ in group] and (dim is None or reader.meta.dim == dim):
                        dim, model = reader.meta.dim, reader.meta.model
                        reused.append(index)
                        continue
            except VirnucproError as exc:
                log.warning("%s", exc)
            log.warning("checkpoint %s does not match the input; recomputing it", path)
        todo.append(index)
    parts = len(todo) + len(reused)
    return PartPlan(total, part_size, parts, tuple(todo), tuple(reused), dim, model)


def iter_tasks(fasta: Path, parts_dir: Path, part_size: int, indices: Collection[int]) -> Iterator[PartTask]:
    """The parts ``indices`` of ``fasta`` as tasks, in input order, read lazily."""
    wanted = set(indices)
    if not wanted:
        return
    last = max(wanted)
    for index, group in enumerate(iter_groups(fasta, part_size)):
        if index in wanted:
            yield PartTask(index, index * part_size + 1, tuple(r for r, _ in group), tuple(s for _, s in group),
                           part_path(parts_dir, index))
        if index >= last:
            return


def part_meta(backend: Backend, dim: int, model: object, extra: Mapping[str, str] | None = None) -> EmbeddingMeta:
    return EmbeddingMeta(dim=dim, modality=backend.modality, backend=backend.family, version=backend.version,
                         package_version=backend.package_version, model=str(model),
                         extra={str(k): str(v) for k, v in dict(extra or {}).items()})


def embedder_attributes(embedder: Embedder) -> dict[str, str]:
    """How the embedder ran its last ``embed`` call (``Embedder.attributes``, optional):
    stored in the part file, so it depends on the part alone, not on which worker ran it."""
    return {str(k): str(v) for k, v in dict(getattr(embedder, "attributes", None) or {}).items()}


def merged_attributes(parts: Sequence[tuple[Mapping[str, str], int]]) -> dict[str, str]:
    """The output file's attributes from its parts' ``(attributes, rows)``, independent of
    which process computed which part: a key with one value in every part keeps it; a key
    whose values differ becomes their row-weighted mean when all are numbers (say a packing
    utilisation), else it is left out (the parts' values are in the log)."""
    keys = {key for attributes, _ in parts for key in attributes}
    merged: dict[str, str] = {}
    for key in sorted(keys):
        values = [(attributes.get(key), rows) for attributes, rows in parts]
        distinct = {value for value, _ in values}
        if len(distinct) == 1 and None not in distinct:
            merged[key] = values[0][0]
            continue
        try:
            numbers = [(float(value), rows) for value, rows in values]  # type: ignore[arg-type]
        except (TypeError, ValueError):
            log.debug("attribute %s differs between parts (%s); not recorded in the output file", key, sorted(map(str, distinct)))
            continue
        total = sum(rows for _, rows in numbers)
        merged[key] = f"{sum(v * rows for v, rows in numbers) / total:.4f}" if total else values[0][0]
    return merged


def check_output(array: np.ndarray, ids: Sequence[str], embedder: Embedder, backend: Backend) -> np.ndarray:
    """Refuse rows of the wrong shape and NaN/inf: a backend bug must not reach a part file."""
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


def compute_part(embedder: Embedder, backend: Backend, task: PartTask, progress: Callable[[int], None]) -> None:
    """Embed one part and write its file (atomically); ``progress(n)`` reports sequences."""
    array = embed_rows(embedder, backend, task.ids, task.sequences, progress)
    write_part(task.path, embedder, backend, task.ids, array)


def embed_rows(embedder: Embedder, backend: Backend, ids: Sequence[str], sequences: Sequence[str],
               progress: Callable[[int], None]) -> np.ndarray:
    """The checked rows of one part; ``progress(n)`` reports sequences, ``len(ids)`` in all."""
    reported = 0

    def on_progress(n: int) -> None:
        nonlocal reported
        reported += n
        progress(n)

    array = check_output(embedder.embed(list(sequences), progress=on_progress), ids, embedder, backend)
    if len(ids) > reported:
        progress(len(ids) - reported)
    return array


def write_part(path: Path, embedder: Embedder, backend: Backend, ids: Sequence[str], array: np.ndarray) -> None:
    """The part file of ``ids`` (atomically), with how the embedder ran its last call."""
    from virnucpro_core.formats.hdf5 import Hdf5Writer

    with Hdf5Writer(path, part_meta(backend, embedder.dim, embedder.model_id, embedder_attributes(embedder))) as writer:
        writer.write(list(ids), array)


def assemble(parts_dir: Path, parts: int, out: Path, fmt: EmbeddingFormat, meta: EmbeddingMeta, total: int) -> int:
    """Stream parts ``0..parts-1`` into ``out`` in input order; every record exactly once.
    The output's attributes are ``meta``'s plus the parts' merged ones (:func:`merged_attributes`)."""
    import dataclasses

    from virnucpro_core.formats.hdf5 import Hdf5Reader

    paths = [part_path(parts_dir, index) for index in range(parts)]
    recorded = []
    for index, path in enumerate(paths):
        if not path.exists():
            raise VirnucproError(f"{path}: checkpoint part {index} is missing; run again with --resume to compute it")
        with Hdf5Reader(path) as reader:
            if reader.meta.dim != meta.dim:
                raise VirnucproError(f"{path}: part has width {reader.meta.dim}, the others {meta.dim}; use --force-resume")
            recorded.append((reader.meta.extra, len(reader)))
    meta = dataclasses.replace(meta, extra={**merged_attributes(recorded), **dict(meta.extra)})
    if meta.extra:
        log.info("%s ran with %s", meta.backend or "backend", ", ".join(f"{k}={v}" for k, v in sorted(meta.extra.items())))
    written = 0
    with fmt.open_writer(out, meta) as writer:
        for path in paths:
            with Hdf5Reader(path) as reader:
                for batch_ids, batch in reader.iter_batches():
                    writer.write(batch_ids, batch)
                    written += len(batch_ids)
        if written != total:
            raise VirnucproError(f"{out}: {written} rows in the parts for {total} input records; this is a bug, please report it")
    return written


def finished_parts(parts_dir: Path) -> list[Path]:
    return sorted(Path(parts_dir).glob(PART_GLOB)) if Path(parts_dir).is_dir() else []
