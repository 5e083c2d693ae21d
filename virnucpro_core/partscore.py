"""Per-part scoring: ``predict`` without full embedding files.

One job per checkpoint part embeds the part's frames with both backends (both models
resident in the process that runs it), scores them with the MLP and writes the part's
*raw score file* atomically; the embeddings live only in memory unless
``--keep-embeddings`` asks for the part files the ``embed`` stage writes (then they are
assembled into ``embeddings/*.h5`` exactly as the staged run does). Prepare writes the
nucleotide and protein FASTAs in the same frame order, so part ``p`` is the same frames
in both; the plan checks it record by record.

Why raw files and not final lines: the MLP's numbers depend on which rows share a batch
(BLAS kernels), and the staged ``classify`` scores the frames in batches of
:data:`SCORE_BATCH` counted from the first frame, as the original's ``DataLoader`` did.
To give the same bytes, every batch here is the same rows: a part job scores the
batches that lie wholly inside its part and keeps the features of the rows at its edges
(fewer than ``2 * SCORE_BATCH``). The process that drives the run *finalises* parts in
order as soon as they exist: it scores the batches that straddle part boundaries and
writes ``scores-NNNNNN.tsv``, the result lines of the batches that end in that part;
raw files whose rows are all final are deleted at once. So the scratch disk of a run is
the parts being computed plus those finished ahead of the first missing one, never the
input's embeddings. ``prediction_results.txt`` is the header plus the score files in
order.

Resume: a part is done when its score file or its raw file exists (atomic renames). An
array-job shard keeps its raw files (their neighbours are in other shards);
``virnucpro aggregate`` copies them and the finalising happens there.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection, Iterator, Mapping

import numpy as np

from virnucpro_core.backends import Backend, EmbedderOptions
from virnucpro_core.errors import VirnucproError

log = logging.getLogger(__name__)

#: rows per MLP batch, from the first frame on: the staged classify's (and the original's)
SCORE_BATCH = 256
SCORES_GLOB = "scores-*.tsv"
WIDTHS_JSON = "widths.json"


def raw_path(parts_dir: Path, index: int) -> Path:
    """The raw score file of part ``index`` (named like embedding parts, so shards carry it)."""
    from virnucpro_core.engine.parts import part_path

    return part_path(parts_dir, index)


def scores_path(parts_dir: Path, index: int) -> Path:
    return Path(parts_dir) / f"scores-{index:06d}.tsv"


@dataclass(frozen=True)
class Layout:
    """Where the parts and the MLP batches of ``total`` frames begin and end (0-based rows).

    Batch boundaries are the multiples of ``batch`` and ``total``. Part ``p``'s *interior*
    is its whole batches; the score file of part ``p`` holds the batches that end in it:
    rows ``[floor(start), floor(end))``.
    """

    total: int
    part_size: int
    batch: int = SCORE_BATCH

    @property
    def parts(self) -> int:
        return -(-self.total // self.part_size)

    def span(self, p: int) -> tuple[int, int]:
        return p * self.part_size, min((p + 1) * self.part_size, self.total)

    def floor(self, row: int) -> int:
        return self.total if row >= self.total else row // self.batch * self.batch

    def ceil(self, row: int) -> int:
        return min(-(-row // self.batch) * self.batch, self.total)

    def next_boundary(self, row: int) -> int:
        return min((row // self.batch + 1) * self.batch, self.total)

    def interior(self, p: int) -> tuple[int, int]:
        """``(a, b)``: rows ``[a, b)`` are whole batches inside part ``p``; ``a == b == end`` when none."""
        start, end = self.span(p)
        a, b = self.ceil(start), self.floor(end)
        return (a, b) if a < b else (end, end)

    def covers(self, p: int) -> tuple[int, int]:
        start, end = self.span(p)
        return self.floor(start), self.floor(end)


# -- raw score files ------------------------------------------------------------------


@dataclass(frozen=True)
class RawPart:
    """A part job's output: its ids, the scores of its interior, the features of its edges."""

    first_row: int
    ids: tuple[str, ...]
    interior: tuple[int, int]
    scores: np.ndarray  # (b - a, classes), float32
    head: np.ndarray  # features of rows [first_row, a)
    tail: np.ndarray  # features of rows [b, end)
    widths: Mapping[str, Any]

    @property
    def end(self) -> int:
        return self.first_row + len(self.ids)

    def edge(self, start: int, stop: int) -> tuple[list[str], np.ndarray]:
        """Ids and features of rows ``[start, stop)``, which lie in the head or the tail."""
        a, b = self.interior
        s = self.first_row
        if stop <= a:
            return list(self.ids[start - s : stop - s]), self.head[start - s : stop - s]
        if start >= b:
            return list(self.ids[start - s : stop - s]), self.tail[start - b : stop - b]
        raise AssertionError(f"rows {start}-{stop} are not at an edge of the part ({a}-{b} are scored); this is a bug")


def raw_part(first_row: int, ids: tuple[str, ...], features: np.ndarray, interior: tuple[int, int], mlp: Any, device: str,
             widths: Mapping[str, Any]) -> RawPart:
    """Score the whole batches ``interior`` of a part's ``features``; keep the edge rows' features."""
    from virnucpro_core.classifier import score

    a, b = interior
    # from a batch boundary: score() cuts the rows at SCORE_BATCH, the batches classify scores
    scores = score(mlp, features[a - first_row : b - first_row], device=device, batch_size=SCORE_BATCH)
    return RawPart(first_row, tuple(ids), (a, b), scores, features[: a - first_row], features[b - first_row :], widths)


def write_raw(path: Path, raw: RawPart) -> None:
    import h5py

    from virnucpro_core.atomic import atomic_path

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as handle:
            handle.create_dataset("ids", data=np.array(raw.ids, dtype=object), dtype=h5py.string_dtype("utf-8"))
            handle.create_dataset("scores", data=raw.scores)
            handle.create_dataset("head", data=raw.head)
            handle.create_dataset("tail", data=raw.tail)
            handle.attrs["first_row"] = raw.first_row
            handle.attrs["interior"] = list(raw.interior)
            handle.attrs["widths"] = json.dumps(dict(raw.widths), sort_keys=True)


def read_raw(path: Path) -> RawPart:
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            ids = tuple(x.decode() if isinstance(x, bytes) else str(x) for x in handle["ids"][()])
            a, b = (int(x) for x in handle.attrs["interior"])
            return RawPart(int(handle.attrs["first_row"]), ids, (a, b), handle["scores"][()], handle["head"][()],
                           handle["tail"][()], json.loads(handle.attrs["widths"]))
    except (OSError, KeyError, ValueError) as exc:
        raise VirnucproError(f"{path}: damaged score checkpoint ({type(exc).__name__}); it is recomputed with --resume") from None


# -- the part job ---------------------------------------------------------------------


@dataclass(frozen=True)
class ScoreTask:
    """One part: its frames in both modalities and where its files go."""

    index: int
    first_record: int  # 1-based
    ids: tuple[str, ...]
    nucleotide: tuple[str, ...]
    protein: tuple[str, ...]
    interior: tuple[int, int]
    path: Path
    nucleotide_part: Path | None = None  # with --keep-embeddings
    protein_part: Path | None = None

    @property
    def records(self) -> str:
        return f"{self.first_record}-{self.first_record + len(self.ids) - 1}"


def iter_frames(nucleotide_fa: Path, protein_fa: Path) -> Iterator[tuple[str, str, str]]:
    """``(id, nucleotide, protein)`` of every frame; refuses files whose frames differ."""
    from virnucpro_core.seqio import iter_fasta

    for number, pair in enumerate(itertools.zip_longest(iter_fasta(nucleotide_fa), iter_fasta(protein_fa)), start=1):
        nuc, prot = pair
        if nuc is None or prot is None or nuc[0] != prot[0]:
            first = f"{nuc[0] if nuc else 'nothing'} in {nucleotide_fa}, {prot[0] if prot else 'nothing'} in {protein_fa}"
            raise VirnucproError(f"count check failed: frame {number} is {first}; the prepared files do not match, "
                                 "run again with --force-resume")
        yield nuc[0], nuc[1], prot[1]


@dataclass(frozen=True)
class ScoreJob:
    """Embed both modalities of a part, score it, write its raw score file (picklable)."""

    nucleotide_fa: Path
    protein_fa: Path
    parts_dir: Path
    layout: Layout
    nucleotide_key: str
    nucleotide_options: EmbedderOptions
    protein_key: str
    protein_options: EmbedderOptions
    mlp: Path
    protein_width: int | None = None  # known before loading (a default model), to fail before loading it
    nucleotide_parts: Path | None = None  # --keep-embeddings
    protein_parts: Path | None = None

    @property
    def device(self) -> str:
        return self.nucleotide_options.device

    def on(self, device: str) -> "ScoreJob":
        return dataclasses.replace(
            self, nucleotide_options=dataclasses.replace(self.nucleotide_options, device=device, show_progress=False),
            protein_options=dataclasses.replace(self.protein_options, device=device, show_progress=False))

    def describe(self) -> str:
        return (f"{self.nucleotide_key} (model {self.nucleotide_options.model or 'default'}) and {self.protein_key} "
                f"(model {self.protein_options.model or 'default'}) with the MLP on {self.device}")

    def shared_paths(self) -> tuple[Path, ...]:
        return (self.nucleotide_fa, self.protein_fa, self.parts_dir)

    def tasks(self, indices: Collection[int]) -> Iterator[ScoreTask]:
        from virnucpro_core.engine.parts import part_path

        wanted = set(indices)
        if not wanted:
            return
        size = self.layout.part_size
        frames = iter_frames(self.nucleotide_fa, self.protein_fa)
        for index in range(max(wanted) + 1):
            group = list(itertools.islice(frames, size))
            if index in wanted:
                keep = self.nucleotide_parts is not None and self.protein_parts is not None
                yield ScoreTask(index, index * size + 1, tuple(g[0] for g in group), tuple(g[1] for g in group),
                                tuple(g[2] for g in group), self.layout.interior(index), raw_path(self.parts_dir, index),
                                part_path(self.nucleotide_parts, index) if keep else None,
                                part_path(self.protein_parts, index) if keep else None)

    def open(self, backends: Mapping[str, Backend] | None = None) -> "ScoreWork":
        from virnucpro_core.classifier import load_mlp
        from virnucpro_core.engine.work import resolve_backend
        from virnucpro_core.pipeline import check_width

        mlp = load_mlp(self.mlp)
        nucleotide = resolve_backend(self.nucleotide_key, backends)
        protein = resolve_backend(self.protein_key, backends)
        nuc = nucleotide.factory(self.nucleotide_options)
        try:
            # before the (larger) protein model loads, as the staged run checks after its nucleotide stage
            check_width(mlp.config.input_dim, self.mlp, nucleotide, nuc.dim, protein, self.protein_width)
            prot = protein.factory(self.protein_options)
        except BaseException:
            nuc.close()
            raise
        work = ScoreWork(nucleotide, nuc, protein, prot, mlp, self.device)
        try:
            check_width(mlp.config.input_dim, self.mlp, nucleotide, nuc.dim, protein, prot.dim)
        except BaseException:
            work.close()
            raise
        return work


@dataclass
class ScoreWork:
    """Both embedders and the MLP, loaded once in the process that computes parts."""

    nucleotide_backend: Backend
    nucleotide: Any
    protein_backend: Backend
    protein: Any
    mlp: Any
    device: str

    @property
    def dim(self) -> int:
        return self.nucleotide.dim + self.protein.dim

    @property
    def model_id(self) -> str:
        return f"{self.nucleotide.model_id} + {self.protein.model_id}"

    def compute(self, task: ScoreTask, progress: Callable[[int], None]) -> None:
        from virnucpro_core.engine.parts import embed_rows, write_part

        nuc = embed_rows(self.nucleotide, self.nucleotide_backend, task.ids, task.nucleotide, lambda n: None)
        if task.nucleotide_part is not None:
            write_part(task.nucleotide_part, self.nucleotide, self.nucleotide_backend, task.ids, nuc)
        prot = embed_rows(self.protein, self.protein_backend, task.ids, task.protein, progress)
        if task.protein_part is not None:
            write_part(task.protein_part, self.protein, self.protein_backend, task.ids, prot)
        features = np.concatenate([nuc, prot], axis=1)  # nucleotide columns first, as the merge
        del nuc, prot
        widths = {"nucleotide": [self.nucleotide.dim, str(self.nucleotide.model_id)],
                  "protein": [self.protein.dim, str(self.protein.model_id)]}
        write_raw(task.path, raw_part(task.first_record - 1, task.ids, features, task.interior, self.mlp, self.device, widths))

    def close(self) -> None:
        try:
            self.nucleotide.close()
        finally:
            self.protein.close()


# -- the plan and the finaliser ---------------------------------------------------------


@dataclass(frozen=True)
class ScorePlan:
    layout: Layout
    todo: tuple[int, ...]
    reused: tuple[int, ...]
    finalised: int  # parts 0..finalised-1 have their score file

    def select(self, keep: Callable[[int], bool]) -> tuple[int, ...]:
        return tuple(p for p in self.todo if keep(p))

    def as_part_plan(self) -> Any:
        from virnucpro_core.engine.parts import PartPlan

        return PartPlan(self.layout.total, self.layout.part_size, self.layout.parts, self.todo, self.reused)


def _score_ids(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as handle:
        return [line.split("\t", 1)[0] for line in handle]


def plan_score_parts(nucleotide_fa: Path, protein_fa: Path, parts_dir: Path, part_size: int,
                     embedding_dirs: tuple[Path, Path] | None = None) -> ScorePlan:
    """See which parts of the prepared frames are done, comparing every id.

    A part is done when its score file holds exactly the ids it covers, in order, and so do
    those of every part before it (score files are finalised in order from part 0), or
    when its raw file holds exactly the part's ids. With ``embedding_dirs`` a part also
    needs its two embedding parts. The frames are read twice (once to count them, checking
    both files agree, once for the ids), holding one part and one MLP batch of ids at a
    time, so planning costs the same memory at any input size.
    """
    from virnucpro_core.engine.parts import part_path

    layout = Layout(sum(1 for _ in iter_frames(nucleotide_fa, protein_fa)), part_size)
    ids = (frame[0] for frame in iter_frames(nucleotide_fa, protein_fa))
    window: list[str] = []  # ids of rows [window_start, end of the current part)
    window_start = 0
    finalised = 0
    todo, reused = [], []
    for p in range(layout.parts):
        start, end = layout.span(p)
        window.extend(itertools.islice(ids, end - start))
        part_ids = tuple(window[start - window_start :])
        lo, hi = layout.covers(p)  # lo == window_start: the score files tile the rows
        covered = window[lo - window_start : hi - window_start]
        del window[: hi - window_start]
        window_start = hi

        path = scores_path(parts_dir, p)
        if finalised == p and path.exists():
            if _score_ids(path) == covered:
                finalised = p + 1
            else:
                log.warning("checkpoint %s does not match the input; recomputing from part %d", path, p)
        if p >= finalised:
            path.unlink(missing_ok=True)

        has_embeddings = embedding_dirs is None or all(part_path(d, p).exists() for d in embedding_dirs)
        if p < finalised and has_embeddings:
            reused.append(p)
            continue
        path = raw_path(parts_dir, p)
        if path.exists() and has_embeddings:
            try:
                if read_raw(path).ids == part_ids:
                    reused.append(p)
                    continue
            except VirnucproError as exc:
                log.warning("%s", exc)
            log.warning("checkpoint %s does not match the input; recomputing it", path)
        todo.append(p)
    return ScorePlan(layout, tuple(todo), tuple(reused), finalised)


@dataclass
class _Pending:
    """Rows waiting for the rest of their batch: ids and features from ``start`` on (< one batch)."""

    start: int
    ids: list[str] = field(default_factory=list)
    rows: list[np.ndarray] = field(default_factory=list)

    @property
    def end(self) -> int:
        return self.start + len(self.ids)

    def add(self, ids: list[str], rows: np.ndarray) -> None:
        self.ids.extend(ids)
        self.rows.append(rows)

    def take(self, start: int, stop: int) -> tuple[list[str], np.ndarray]:
        rows = np.concatenate(self.rows) if self.rows else np.empty((0, 0), dtype=np.float32)
        return self.ids[start - self.start : stop - self.start], rows[start - self.start : stop - self.start]


class Finaliser:
    """Turns raw score files into score files in part order, in the driving process.

    ``advance()`` finalises every part it can (called after each finished part and at the
    end); raw files whose rows are all in score files are deleted at once.
    """

    def __init__(self, parts_dir: Path, plan: ScorePlan, model: Any, device: str) -> None:
        self.parts_dir = Path(parts_dir)
        self.layout = plan.layout
        self.model = model
        self.device = device
        self.next = plan.finalised
        self.widths: dict[str, Any] | None = None
        widths_file = self.parts_dir / WIDTHS_JSON
        if widths_file.exists():
            self.widths = json.loads(widths_file.read_text())
        covered = self.layout.floor(self.layout.span(self.next)[0]) if self.next < self.layout.parts else self.layout.total
        self.pending = _Pending(covered)
        for j in range(self.next):
            start, end = self.layout.span(j)
            path = raw_path(self.parts_dir, j)
            if end <= covered:
                path.unlink(missing_ok=True)  # every row is in a score file
            else:  # its last rows wait for the next part's
                self.pending.add(*self._read(path).edge(max(start, covered), end))

    def _read(self, path: Path) -> RawPart:
        raw = read_raw(path)
        if self.widths is None:
            from virnucpro_core.atomic import write_json_atomic

            self.widths = dict(raw.widths)
            write_json_atomic(self.parts_dir / WIDTHS_JSON, self.widths)
        elif json.loads(json.dumps(dict(raw.widths))) != self.widths:
            raise VirnucproError(f"{path}: made with models of widths {dict(raw.widths)}, the other parts with {self.widths}; "
                                 "use --force-resume")
        return raw

    def advance(self) -> None:
        while self.next < self.layout.parts and raw_path(self.parts_dir, self.next).exists():
            self._finalise(self.next)
            self.next += 1

    def _finalise(self, p: int) -> None:
        from virnucpro_core.atomic import atomic_open
        from virnucpro_core.classifier import score
        from virnucpro_core.report import prediction_lines

        raw = self._read(raw_path(self.parts_dir, p))
        start, end = self.layout.span(p)
        lo, hi = self.layout.covers(p)
        if raw.first_row != start or raw.end != end or self.pending.start != lo or self.pending.end != start:
            raise VirnucproError(f"{raw_path(self.parts_dir, p)}: rows {raw.first_row}-{raw.end} do not follow rows "
                                 f"{self.pending.start}-{self.pending.end}; this is a bug, please report it")
        a, b = raw.interior
        chunks = []
        row = lo
        while row < hi:
            stop = self.layout.next_boundary(row)
            if a <= row and stop <= b:  # the batches inside the part: scored by the part job
                stop = b
                ids, probs = list(raw.ids[row - start : stop - start]), raw.scores[row - a : stop - a]
            else:  # a batch across the part's start or end: the same rows as classify's batch
                before_ids, before = self.pending.take(row, min(stop, start)) if row < start else ([], None)
                ids, features = raw.edge(max(row, start), stop)
                if before is not None and len(before_ids):
                    ids, features = before_ids + ids, np.concatenate([before, features])
                probs = score(self.model, features, device=self.device, batch_size=SCORE_BATCH)
            chunks.append(prediction_lines(ids, probs))
            row = stop
        with atomic_open(scores_path(self.parts_dir, p)) as handle:
            handle.write("".join(chunks))
        waiting = _Pending(hi)
        if hi < start:
            waiting.add(*self.pending.take(hi, start))
        waiting.add(*raw.edge(max(hi, start), end))
        self.pending = waiting
        for j in range(p + 1):
            if self.layout.span(j)[1] <= hi:
                raw_path(self.parts_dir, j).unlink(missing_ok=True)


def write_predictions(parts_dir: Path, layout: Layout, out: Path) -> tuple[int, int]:
    """``prediction_results.txt``: the header and every part's score file, in order.
    Returns ``(frames, viral frames)``; every frame must be there exactly once."""
    from virnucpro_core.atomic import atomic_open
    from virnucpro_core.report import PREDICTIONS_HEADER

    frames = viral = 0
    with atomic_open(out) as handle:
        handle.write("\t".join(PREDICTIONS_HEADER) + "\n")
        for p in range(layout.parts):
            path = scores_path(parts_dir, p)
            if not path.exists():
                raise VirnucproError(f"{path}: the scores of part {p} are missing; run again with --resume")
            with open(path, encoding="utf-8") as part:
                for line in part:
                    handle.write(line)
                    frames += 1
                    viral += line.split("\t", 2)[1] == "virus"
    if frames != layout.total:
        raise VirnucproError(f"count check failed: {frames} scored frames for {layout.total} frames; this is a bug, please report it")
    return frames, viral


# -- the stage ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoreResult:
    """What the per-part scoring did; ``plan`` is the part plan as shards record it."""

    frames: int
    frames_viral: int
    chunks: int
    widths: Mapping[str, Any]
    computed: int
    reused: int
    seconds: float
    plan: Any
    complete: bool = True
    workers: tuple = ()

    def counts(self) -> dict[str, Any]:
        return {"frames_scored": self.frames, "frames_viral": self.frames_viral, "chunks": self.chunks,
                "missing_in_protein": 0, "missing_in_nucleotide": 0, "parts_computed": self.computed,
                "parts_reused": self.reused, "seconds": round(self.seconds, 3),
                **({"workers": {str(w.worker): {"device": w.device, "parts": w.parts, "sequences": w.sequences,
                                                "seconds": round(w.seconds, 3)} for w in self.workers}}
                   if self.workers else {})}


@dataclass(frozen=True)
class ScoreInputs:
    """The stage's inputs and settings (the pipeline's resolved backends and options)."""

    nucleotide_fa: Path
    protein_fa: Path
    checkpoints: Path
    nucleotide: Backend
    nucleotide_options: EmbedderOptions
    protein: Backend
    protein_options: EmbedderOptions
    mlp_path: Path
    mlp: Any
    protein_width: int | None
    keep_embeddings: bool


def score_parts(inputs: ScoreInputs, outdir: Path, *, engine: Any, part_size: int, resume: bool, progress: bool,
                identity: Mapping[str, Any], embeddings: tuple[Path, Path] | None = None) -> ScoreResult:
    """Embed and score every frame part by part (see the module docstring) and write
    ``prediction_results.txt`` and the consensus; with ``embeddings`` (``--keep-embeddings``)
    also the two embedding files, byte for byte those of the staged run."""
    from virnucpro_core.progress import progress_bar

    from virnucpro_core.classify import CONSENSUS, PREDICTIONS
    from virnucpro_core.embedding import _check_parts_identity
    from virnucpro_core.engine.run import run_job
    from virnucpro_core.engine.stop import RunInterrupted
    from virnucpro_core.report import write_consensus

    start = time.monotonic()
    parts_dir = inputs.checkpoints / "score"
    keep = embeddings is not None
    embedding_dirs = (inputs.checkpoints / "nucleotide", inputs.checkpoints / "protein") if keep else None
    folders = (parts_dir, *(embedding_dirs or ()))
    if not resume:
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    identity = {**dict(identity), "keep_embeddings": keep}
    for folder in folders:  # the embedding part folders carry one too, so shards can be joined
        part_size = _check_parts_identity(folder, identity, part_size)
    plan = plan_score_parts(inputs.nucleotide_fa, inputs.protein_fa, parts_dir, part_size, embedding_dirs)
    layout = plan.layout
    finaliser = None if engine.shard is not None else Finaliser(parts_dir, plan, inputs.mlp, engine.devices[0])
    todo = plan.select(engine.keeps)
    done = len(plan.reused)
    job = ScoreJob(inputs.nucleotide_fa, inputs.protein_fa, parts_dir, layout, inputs.nucleotide.key, inputs.nucleotide_options,
                   inputs.protein.key, inputs.protein_options, inputs.mlp_path, inputs.protein_width,
                   *(embedding_dirs or (None, None)))
    reused_rows = layout.total - sum(len(range(*layout.span(p))) for p in plan.todo)
    bar = progress_bar(total=layout.total, initial=reused_rows, unit="frame", desc="embed + score", enabled=progress)

    def on_part(task: Any) -> None:
        nonlocal done
        done += 1
        if finaliser is not None:
            finaliser.advance()

    try:
        try:
            if finaliser is not None:
                finaliser.advance()  # parts finished by an earlier attempt
            outcome = run_job(job, todo, {inputs.nucleotide.key: inputs.nucleotide, inputs.protein.key: inputs.protein},
                              engine, on_progress=bar.update, on_part=on_part)
        finally:
            bar.close()
    except RunInterrupted as exc:
        raise exc.with_progress(f"{done} of {layout.parts} parts done (embed + score)") from None
    if finaliser is None:
        return ScoreResult(0, 0, 0, {}, outcome.computed, len(plan.reused), time.monotonic() - start,
                           plan.as_part_plan(), complete=False, workers=outcome.stats)
    finaliser.advance()
    if finaliser.next != layout.parts:
        raise VirnucproError(f"{raw_path(parts_dir, finaliser.next)}: part {finaliser.next} was not computed; run again with --resume")
    frames, viral = write_predictions(parts_dir, layout, outdir / PREDICTIONS)
    chunks = write_consensus(outdir / PREDICTIONS, outdir / CONSENSUS)
    widths = finaliser.widths or {}
    if embeddings is not None:
        _assemble_embeddings(inputs, layout, embedding_dirs, embeddings, widths)  # type: ignore[arg-type]
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
    return ScoreResult(frames, viral, chunks, widths, outcome.computed, len(plan.reused), time.monotonic() - start,
                       plan.as_part_plan(), workers=outcome.stats)


def _assemble_embeddings(inputs: ScoreInputs, layout: Layout, dirs: tuple[Path, Path], outs: tuple[Path, Path],
                         widths: Mapping[str, Any]) -> None:
    """The staged run's ``embeddings/*.h5`` from the kept parts, as ``embed_fasta`` assembles them."""
    from virnucpro_core.engine.parts import assemble, part_meta
    from virnucpro_core.registry import get_registry

    hdf5 = get_registry().get_format("hdf5")
    for modality, backend, options, folder, out in (("nucleotide", inputs.nucleotide, inputs.nucleotide_options, dirs[0], outs[0]),
                                                    ("protein", inputs.protein, inputs.protein_options, dirs[1], outs[1])):
        if modality in widths:
            dim, model = int(widths[modality][0]), str(widths[modality][1])
        else:  # no frames at all
            dim, model = backend.dim, options.model or backend.default_model or ""
        out.parent.mkdir(parents=True, exist_ok=True)
        written = assemble(folder, layout.parts, out, hdf5, part_meta(backend, dim, model), layout.total)
        if written != layout.total:
            raise VirnucproError(f"{out}: wrote {written} rows for {layout.total} frames; this is a bug, please report it")
