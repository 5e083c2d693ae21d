"""The engine's own checks, each against the input itself rather than another engine path:
parts are assembled in input order, a backend's wrong row shape is refused before a part
file exists, and a resume reuses only parts whose IDs are the input's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from virnucpro_core.backends import Backend
from virnucpro_core.errors import VirnucproError
from virnucpro_core.formats.base import EmbeddingMeta
from virnucpro_core.formats.hdf5 import Hdf5Reader, Hdf5Writer

DIM = 3
BACKEND = Backend(family="check", version="v1", modality="nucleotide", dim=DIM, factory=lambda options: None,
                  description="test", default_model="check")


class RowsOf:
    """An embedder whose row for a sequence is (len, first base code, index in its call),
    or whose output has a wrong shape when asked."""

    model_id = "check"
    dim = DIM

    def __init__(self, shape_change: tuple[int, int] = (0, 0)) -> None:
        self.shape_change = shape_change

    def embed(self, sequences, progress=None):
        rows, cols = len(sequences) + self.shape_change[0], DIM + self.shape_change[1]
        out = np.zeros((max(rows, 0), cols), np.float32)
        for i, seq in enumerate(sequences[: out.shape[0]]):
            out[i, 0] = len(seq)
        return out

    def close(self) -> None:
        pass


def write_fasta(path: Path, count: int) -> list[tuple[str, str]]:
    records = [(f"s{i}", "ACGT" * (i + 1)) for i in range(count)]
    path.write_text("".join(f">{rid}\n{seq}\n" for rid, seq in records))
    return records


def test_parts_are_assembled_in_input_order(tmp_path):
    from virnucpro_core.engine.parts import assemble, compute_part, iter_tasks, part_meta
    from virnucpro_core.registry import get_registry

    records = write_fasta(tmp_path / "in.fa", 23)
    parts = tmp_path / "parts"
    parts.mkdir()
    for task in reversed(list(iter_tasks(tmp_path / "in.fa", parts, 5, range(5)))):  # computed in any order
        compute_part(RowsOf(), BACKEND, task, lambda n: None)
    out = tmp_path / "out.h5"
    written = assemble(parts, 5, out, get_registry().get_format("hdf5"), part_meta(BACKEND, DIM, "check"), 23)
    assert written == 23
    with Hdf5Reader(out) as reader:
        assert reader.ids() == [rid for rid, _ in records]
        assert reader.read_rows(np.arange(23))[:, 0].tolist() == [float(len(seq)) for _, seq in records]


@pytest.mark.parametrize("change, shape", [((0, 1), "(4, 4)"), ((-1, 0), "(3, 3)"), ((1, 0), "(5, 3)")])
def test_a_backend_returning_the_wrong_shape_is_refused_before_a_part_exists(tmp_path, change, shape):
    from virnucpro_core.engine.parts import compute_part, iter_tasks

    write_fasta(tmp_path / "in.fa", 4)
    parts = tmp_path / "parts"
    parts.mkdir()
    (task,) = iter_tasks(tmp_path / "in.fa", parts, 4, [0])
    with pytest.raises(VirnucproError) as refused:
        compute_part(RowsOf(change), BACKEND, task, lambda n: None)
    assert str(refused.value) == (f"backend {BACKEND.describe()} returned {shape} for 4 sequences of width {DIM}; "
                                  "this is a bug in the backend, please report it")
    assert list(parts.iterdir()) == []


def test_resume_reuses_only_parts_whose_ids_are_the_inputs(tmp_path):
    from virnucpro_core.engine.parts import part_meta, part_path, plan_parts

    records = write_fasta(tmp_path / "in.fa", 12)
    parts = tmp_path / "parts"
    parts.mkdir()
    meta = part_meta(BACKEND, DIM, "check")
    good = [rid for rid, _ in records[0:4]]
    same_count_other_ids = [rid for rid, _ in records[4:7]] + ["intruder"]
    for index, ids in ((0, good), (1, same_count_other_ids), (2, list(reversed([rid for rid, _ in records[8:12]])))):
        with Hdf5Writer(part_path(parts, index), meta) as writer:
            writer.write(ids, np.zeros((len(ids), DIM), np.float32))
    plan = plan_parts(tmp_path / "in.fa", parts, 4)
    assert plan.reused == (0,)
    assert plan.todo == (1, 2)  # other IDs, and the right IDs in another order, are recomputed
    assert plan.total_records == 12 and plan.parts == 3


def _shard(folder: Path, index: int, parts: list[int], *, records: int = 50, part_size: int = 20, total: int = 3) -> Path:
    import json

    from virnucpro_core.engine.parts import part_path

    (folder / "parts").mkdir(parents=True)
    for p in parts:
        part_path(folder / "parts", p).write_bytes(b"")  # check_shards looks at presence; contents are checked when read
    (folder / "shard.json").write_text(json.dumps({
        "kind": "embed", "shard": {"index": index, "count": 2}, "identity": {"input": "x"},
        "stages": {"embed": {"parts_dir": "parts", "records": records, "part_size": part_size, "parts_total": total,
                             "parts": parts}},
    }))
    return folder


@pytest.mark.parametrize("first, second, message", [
    (dict(parts=[0]), dict(parts=[2]), "embed: part(s) [1] of 3 are in no shard; rerun the shard jobs with --resume"),
    (dict(parts=[0, 1]), dict(parts=[1, 2]), "{s1}: part 1 of embed is also in {s0}; give each shard once"),
    (dict(parts=[0, 2]), dict(parts=[1], records=51),
     "{s1}: shard made with other settings than {s0} (differs: records/part size); give the shards of one job"),
    (dict(parts=[0, 2]), dict(parts=[1], part_size=10),
     "{s1}: shard made with other settings than {s0} (differs: records/part size); give the shards of one job"),
], ids=["part-in-no-shard", "part-in-two-shards", "records-mismatch", "part-size-mismatch"])
def test_aggregate_refuses_shards_that_do_not_hold_every_part_exactly_once(tmp_path, first, second, message):
    from virnucpro_core.engine.shards import check_shards
    from virnucpro_core.errors import InputError

    s0, s1 = _shard(tmp_path / "s0", 0, **first), _shard(tmp_path / "s1", 1, **second)
    with pytest.raises(InputError) as refused:
        check_shards([s0, s1])
    assert str(refused.value) == message.format(s0=s0, s1=s1)


def test_aggregate_accepts_shards_that_hold_every_part_once(tmp_path):
    from virnucpro_core.engine.shards import check_shards

    shards = check_shards([_shard(tmp_path / "s1", 1, [1]), _shard(tmp_path / "s0", 0, [0, 2])])
    assert [m.shard.index for m in shards] == [0, 1]
