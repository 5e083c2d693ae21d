"""The original VirNucPro .pt layouts, read from files the original tool wrote and
written back in the very same structure."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from virnucpro_core.errors import InputError, VirnucproError
from virnucpro_core.formats.base import EmbeddingMeta
from virnucpro_core.formats.pt import PtReader, PtWriter
from virnucpro_core.registry import load_registry

DATA = Path(__file__).parent / "data" / "original_format"
REF = DATA / "reference_vanilla_output"
DNABERT = REF / "output_1_DNABERT_S.pt"
ESM = REF / "output_1_ESM.pt"
MERGED = REF / "output_1_merged.pt"


def fasta_ids(path: Path) -> list[str]:
    return [line[1:].split()[0] for line in path.read_text().splitlines() if line.startswith(">")]


def raw(path: Path):
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_structure(ours, theirs) -> None:
    """Same keys, same container and element types, same values bit for bit."""
    assert type(ours) is type(theirs)
    if isinstance(theirs, dict):
        assert list(ours) == list(theirs)
        for key in theirs:
            assert_same_structure(ours[key], theirs[key])
    elif isinstance(theirs, list):
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            assert_same_structure(a, b)
    elif isinstance(theirs, torch.Tensor):
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
        assert torch.equal(ours, theirs)
        # each tensor owns exactly its own storage, as in the original file
        assert ours.untyped_storage().nbytes() == theirs.untyped_storage().nbytes()
    else:
        assert ours == theirs


def test_real_dnabert_file():
    with PtReader(DNABERT) as reader:
        assert reader.layout == "dnabert"
        assert reader.meta.modality == "nucleotide" and reader.meta.dim == 768
        assert reader.ids() == fasta_ids(DATA / "test_with_orfs_identified_nucleotide.fa")
        data = reader.read_rows(np.arange(len(reader)))
    original = raw(DNABERT)
    expected = np.array([item["mean_representation"] for item in original["data"]], dtype=np.float64)
    assert np.array_equal(data.astype(np.float64), expected)  # python floats were float32 values: no rounding


def test_real_esm_file_keeps_the_original_order():
    with PtReader(ESM) as reader:
        assert reader.meta.modality == "protein" and reader.meta.dim == 2560
        # the original ESM extraction batches by length, so its order differs from the .faa
        assert reader.ids() == raw(ESM)["proteins"]
        assert sorted(reader.ids()) == sorted(fasta_ids(DATA / "test_with_orfs_identified_protein.faa"))
        assert reader.ids() != fasta_ids(DATA / "test_with_orfs_identified_protein.faa")
        assert np.array_equal(reader.read_rows([2, 0]), torch.stack(raw(ESM)["data"])[[2, 0]].numpy())


def test_real_merged_file():
    with PtReader(MERGED) as reader:
        assert reader.meta.modality == "merged" and reader.meta.dim == 3328 == 768 + 2560
        assert reader.ids() == fasta_ids(DATA / "test_with_orfs_identified_nucleotide.fa")
        ids, batch = next(reader.iter_batches(10))
        assert ids == reader.ids() and np.array_equal(batch, raw(MERGED)["data"].numpy())


@pytest.mark.parametrize("path", [DNABERT, ESM, MERGED], ids=["dnabert", "esm", "merged"])
def test_writing_what_was_read_gives_the_original_structure_and_values(path, tmp_path):
    out = tmp_path / path.name
    with PtReader(path) as reader, PtWriter(out, reader.meta) as writer:
        for ids, batch in reader.iter_batches(3):  # several batches
            writer.write(ids, batch)
    assert_same_structure(raw(out), raw(path))


def test_dnabert_values_are_python_floats_and_esm_rows_separate_tensors(tmp_path):
    data = np.random.default_rng(1).standard_normal((2, 4)).astype(np.float32)
    with PtWriter(tmp_path / "n.pt", EmbeddingMeta(dim=4, modality="nucleotide")) as writer:
        writer.write(["a", "b"], data)
    obj = raw(tmp_path / "n.pt")
    assert obj == {
        "nucleotide": ["a", "b"],
        "data": [{"label": "a", "mean_representation": data[0].tolist()}, {"label": "b", "mean_representation": data[1].tolist()}],
    }
    assert all(type(v) is float for v in obj["data"][0]["mean_representation"])

    with PtWriter(tmp_path / "p.pt", EmbeddingMeta(dim=4, modality="protein")) as writer:
        writer.write(["a", "b"], data)
    obj = raw(tmp_path / "p.pt")
    assert obj["proteins"] == ["a", "b"]
    assert [t.shape for t in obj["data"]] == [torch.Size([4])] * 2
    assert obj["data"][0].untyped_storage().nbytes() == 16
    assert torch.equal(torch.stack(obj["data"]), torch.from_numpy(data))


def test_empty_merged_file_keeps_its_width(tmp_path):
    with PtWriter(tmp_path / "m.pt", EmbeddingMeta(dim=5, modality="merged")):
        pass
    assert raw(tmp_path / "m.pt")["data"].shape == (0, 5)
    with PtReader(tmp_path / "m.pt") as reader:
        assert len(reader) == 0 and reader.meta.dim == 5 and list(reader.iter_batches()) == []


def test_writer_refuses_unknown_modality_and_bad_rows(tmp_path):
    with pytest.raises(VirnucproError) as err:
        PtWriter(tmp_path / "x.pt", EmbeddingMeta(dim=3, modality="rna"))
    assert str(err.value) == f"{tmp_path / 'x.pt'}: the .pt format has no layout for modality 'rna'; it has: nucleotide, protein, merged"
    bad = np.ones((2, 3), dtype=np.float32)
    bad[0, 0] = np.nan
    with pytest.raises(VirnucproError, match=r"embedding of 'a' has NaN or infinite values"):
        with PtWriter(tmp_path / "x.pt", EmbeddingMeta(dim=3, modality="merged")) as writer:
            writer.write(["a", "b"], bad)
    assert list(tmp_path.iterdir()) == []


def save(path: Path, obj) -> Path:
    torch.save(obj, path)
    return path


def test_inconsistent_files_are_refused_with_one_line(tmp_path):
    t = torch.zeros(3)
    cases = {
        # the original merge's bug: every nucleotide ID, but rows only for the merged ones
        "short.pt": ({"ids": ["a", "b"], "data": torch.zeros(1, 3)}, "2 IDs in 'ids' but 1 rows in 'data'; the original merge writes every nucleotide ID"),
        "label.pt": (
            {"nucleotide": ["a", "b"], "data": [{"label": "a", "mean_representation": [0.0]}, {"label": "c", "mean_representation": [0.0]}]},
            "data[1] has label 'c' but 'nucleotide'[1] is 'b'; the file is inconsistent",
        ),
        "ragged.pt": ({"proteins": ["a", "b"], "data": [t, torch.zeros(4)]}, "the tensors in 'data' do not all have the same length"),
        "keys.pt": ({"x": [1]}, "not an original VirNucPro embeddings layout (found 'x'); expected 'nucleotide'+'data' (DNABERT-S), 'proteins'+'data' (ESM) or 'ids'+'data' (merged)"),
        "list.pt": ([t], "not an original VirNucPro embeddings layout (found list)"),
        "idtypes.pt": ({"ids": [1, 2], "data": torch.zeros(2, 3)}, "'ids' must be a list of ID strings"),
    }
    for name, (obj, message) in cases.items():
        path = save(tmp_path / name, obj)
        with pytest.raises(InputError) as err:
            PtReader(path)
        assert str(err.value).startswith(f"{path}: {message}")
        assert "\n" not in str(err.value)


def test_labels_key_of_training_files_is_accepted(tmp_path):
    path = save(tmp_path / "viral.pt", {"ids": ["a"], "data": torch.ones(1, 2), "labels": [1]})
    with PtReader(path) as reader:
        assert reader.ids() == ["a"] and reader.meta.dim == 2


def test_garbage_truncated_and_missing_files(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a torch file" * 50)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(ESM.read_bytes()[:5000])
    for path in (garbage, truncated):
        with pytest.raises(InputError) as err:
            PtReader(path)
        assert str(err.value) == f"{path}: cannot be read as a torch .pt file (truncated or not a .pt file)"
    with pytest.raises(InputError, match="no such embeddings file"):
        PtReader(tmp_path / "absent.pt")


class Payload:
    """Unpickling this would create a file: the reader must never get that far."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_pickles_with_code_are_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    with open(path, "wb") as handle:
        torch.save({"ids": ["a"], "data": Payload(str(marker))}, handle, pickle_module=pickle)
    with pytest.raises(InputError) as err:
        PtReader(path)
    assert str(err.value).startswith(f"{path}: holds objects other than tensors, lists, dicts and strings; refusing to unpickle it")
    assert not marker.exists()


def test_registered_as_the_builtin_pt_format(tmp_path):
    fmt = load_registry(entry_points=[]).format_for_path(tmp_path / "x.pt")
    assert fmt.name == "pt"
    with fmt.open_reader(MERGED) as reader:
        assert reader.meta.dim == 3328
