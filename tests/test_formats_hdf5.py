"""The HDF5 embeddings format: layout, streaming writes, atomic commit, refusals."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from virnucpro_core.errors import InputError, VirnucproError
from virnucpro_core.formats.base import EmbeddingMeta
from virnucpro_core.formats.hdf5 import Hdf5Reader, Hdf5Writer
from virnucpro_core.registry import load_registry

META = EmbeddingMeta(
    dim=6, modality="protein", backend="esm2", version="v1", package_version="0.1.0",
    model="esm2_t6_8M_UR50D", extra={"precision": "fp32"},
)


def rows(n: int, dim: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def write(path: Path, ids: list[str], data: np.ndarray, meta: EmbeddingMeta = META, batch: int = 4) -> None:
    with Hdf5Writer(path, meta) as writer:
        for start in range(0, len(ids), batch):
            writer.write(ids[start : start + batch], data[start : start + batch])


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


def test_batches_written_in_pieces_read_back_exactly_in_any_batching(tmp_path):
    ids = [f"seq_{i}_chunk_1F{i % 3 + 1}" for i in range(11)]
    data = rows(11)
    path = tmp_path / "protein.h5"
    write(path, ids, data, batch=4)

    with Hdf5Reader(path) as reader:
        assert len(reader) == 11
        assert reader.ids() == ids
        assert reader.meta == META
        for batch_size in (1, 3, 11, 100):
            got_ids, got = [], []
            for batch_ids, batch in reader.iter_batches(batch_size):
                assert len(batch_ids) == len(batch) <= batch_size
                assert batch.dtype == np.float32
                got_ids += batch_ids
                got.append(batch)
            assert got_ids == ids
            assert np.array_equal(np.concatenate(got), data)


def test_read_rows_returns_rows_in_the_order_asked_with_repeats(tmp_path):
    ids = [f"r{i}" for i in range(50)]
    data = rows(50)
    path = tmp_path / "x.h5"
    write(path, ids, data, batch=7)
    with Hdf5Reader(path) as reader:
        for request in ([49, 0, 7, 7, 3], [5], list(range(50))[::-1], [0, 49], []):
            got = reader.read_rows(np.array(request, dtype=np.int64))
            assert got.shape == (len(request), 6)
            assert np.array_equal(got, data[request])
        with pytest.raises(IndexError, match="row 50 is out of range"):
            reader.read_rows([1, 50])


def test_sparse_read_rows_on_a_large_file_uses_point_selection_correctly(tmp_path):
    n = 5000
    ids = [f"r{i}" for i in range(n)]
    data = rows(n, dim=4)
    path = tmp_path / "big.h5"
    write(path, ids, data, meta=EmbeddingMeta(dim=4, modality="nucleotide"), batch=1000)
    request = np.array([4999, 3, 2500, 3, 4000])  # span far larger than the request
    with Hdf5Reader(path) as reader:
        assert np.array_equal(reader.read_rows(request), data[request])


def test_file_layout_and_attributes(tmp_path):
    path = tmp_path / "protein.h5"
    write(path, ["a", "b", "c"], rows(3))
    with h5py.File(path, "r") as f:
        assert set(f) == {"ids", "embeddings"}
        emb = f["embeddings"]
        assert emb.dtype == np.float32 and emb.shape == (3, 6)
        assert emb.chunks is not None and emb.maxshape == (None, 6)
        assert f["ids"].maxshape == (None,)
        assert h5py.check_string_dtype(f["ids"].dtype).encoding == "utf-8"
        attrs = dict(f.attrs)
    assert attrs["format_version"] == 1
    assert attrs["created_by"].startswith("virnucpro ")
    assert attrs["modality"] == "protein" and attrs["dim"] == 6
    assert (attrs["backend"], attrs["version"], attrs["package_version"], attrs["model"]) == (
        "esm2", "v1", "0.1.0", "esm2_t6_8M_UR50D",
    )
    assert attrs["extra"] == '{"precision": "fp32"}'


def test_unicode_ids_and_empty_files_round_trip(tmp_path):
    ids = ["contig_ä_1", "读段_2", "x y\tz"]
    data = rows(3)
    write(tmp_path / "u.h5", ids, data)
    with Hdf5Reader(tmp_path / "u.h5") as reader:
        assert reader.ids() == ids
    with Hdf5Writer(tmp_path / "empty.h5", META):
        pass
    with Hdf5Reader(tmp_path / "empty.h5") as reader:
        assert len(reader) == 0 and reader.ids() == [] and list(reader.iter_batches()) == []
        assert reader.read_rows([]).shape == (0, 6)


def test_nothing_appears_under_the_final_name_before_commit(tmp_path):
    path = tmp_path / "p.h5"
    writer = Hdf5Writer(path, META)
    writer.write(["a"], rows(1))
    assert not path.exists() and len(leftovers(tmp_path)) == 1
    writer.commit()
    assert path.exists() and leftovers(tmp_path) == []


def test_an_exception_inside_the_block_leaves_no_file_and_keeps_the_old_one(tmp_path):
    path = tmp_path / "p.h5"
    write(path, ["old"], rows(1))
    with pytest.raises(RuntimeError):
        with Hdf5Writer(path, META) as writer:
            writer.write(["new"], rows(1, seed=1))
            raise RuntimeError("crash mid-way")
    assert leftovers(tmp_path) == []
    with Hdf5Reader(path) as reader:
        assert reader.ids() == ["old"]


def test_writer_refuses_wrong_width_count_mismatch_and_non_finite_rows(tmp_path):
    path = tmp_path / "p.h5"
    with pytest.raises(VirnucproError) as err:
        with Hdf5Writer(path, META) as writer:
            writer.write(["a", "b"], rows(2, dim=5))
    assert str(err.value) == f"{path}: embeddings are 5 wide but the file holds 6-dim embeddings"

    with pytest.raises(VirnucproError, match=r"2 IDs but 3 embedding rows in one batch"):
        with Hdf5Writer(path, META) as writer:
            writer.write(["a", "b"], rows(3))

    bad = rows(3)
    bad[1, 2] = np.nan
    bad[2, 0] = np.inf
    with pytest.raises(VirnucproError) as err:
        with Hdf5Writer(path, META) as writer:
            writer.write(["a", "b", "c"], bad)
    assert str(err.value) == (
        f"{path}: embedding of 'b' has NaN or infinite values; "
        "the model overflowed (try --precision fp32) or its input was empty"
    )
    assert not path.exists() and leftovers(tmp_path) == []


def test_float64_rows_are_stored_as_float32(tmp_path):
    data = rows(2).astype(np.float64)
    write(tmp_path / "p.h5", ["a", "b"], data)
    with Hdf5Reader(tmp_path / "p.h5") as reader:
        assert np.array_equal(reader.read_rows([0, 1]), data.astype(np.float32))


def test_a_missing_folder_is_one_line(tmp_path):
    with pytest.raises(VirnucproError, match=r"cannot create .*nope/p\.h5: No such file or directory; check that the folder exists"):
        Hdf5Writer(tmp_path / "nope" / "p.h5", META)


def test_truncated_garbage_foreign_and_missing_files_are_one_line_input_errors(tmp_path):
    good = tmp_path / "good.h5"
    write(good, [f"r{i}" for i in range(200)], rows(200))
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"this is not HDF5\n" * 100)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["embeddings"] = np.zeros((2, 3), dtype=np.float32)

    unreadable = "cannot be read as HDF5 (truncated, still being written, or not an HDF5 file); recreate it with the command that made it"
    for path, message in (
        (truncated, f"{truncated}: {unreadable}"),
        (garbage, f"{garbage}: {unreadable}"),
        (foreign, f"{foreign}: not a VirNucPro embeddings file (no 'ids' dataset)"),
        (tmp_path / "absent.h5", f"{tmp_path / 'absent.h5'}: no such embeddings file"),
    ):
        with pytest.raises(InputError) as err:
            Hdf5Reader(path)
        assert str(err.value) == message
        assert "\n" not in str(err.value)


def test_ids_and_rows_that_disagree_are_refused(tmp_path):
    path = tmp_path / "damaged.h5"
    write(path, ["a", "b", "c"], rows(3))
    with h5py.File(path, "a") as f:
        f["ids"].resize((2,))
    with pytest.raises(InputError, match=r"2 IDs but 3 embedding rows; the file is damaged, recreate it"):
        Hdf5Reader(path)


def test_a_file_from_a_newer_virnucpro_asks_for_an_upgrade(tmp_path):
    path = tmp_path / "new.h5"
    write(path, ["a"], rows(1))
    with h5py.File(path, "a") as f:
        f.attrs["format_version"] = 2
    with pytest.raises(InputError, match=r"format_version 2 is newer than this virnucpro reads \(1\); upgrade virnucpro"):
        Hdf5Reader(path)


def test_registered_as_the_builtin_hdf5_format(tmp_path):
    registry = load_registry(entry_points=[])
    fmt = registry.format_for_path(tmp_path / "x.hdf5")
    assert fmt.name == "hdf5" and fmt.package == "virnucpro"
    with fmt.open_writer(tmp_path / "x.hdf5", META) as writer:
        writer.write(["a"], rows(1))
    with fmt.open_reader(tmp_path / "x.hdf5") as reader:
        assert reader.ids() == ["a"]
