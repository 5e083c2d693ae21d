"""Merging nucleotide and protein embeddings by ID."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from virnucpro_core.errors import InputError
from virnucpro_core.formats.base import EmbeddingMeta
from virnucpro_core.formats.hdf5 import Hdf5Reader, Hdf5Writer
from virnucpro_core.formats.pt import PtReader
from virnucpro_core.merge import MergeStats, Merger, merge_embeddings, merge_files
from virnucpro_core.registry import load_registry

REF = Path(__file__).parent / "data" / "original_format" / "reference_vanilla_output"
NUC_META = EmbeddingMeta(dim=3, modality="nucleotide", backend="dnabert", version="v1", model="tiny-dnabert")
PROT_META = EmbeddingMeta(dim=4, modality="protein", backend="esm2", version="v2", model="tiny-esm")


def h5(path: Path, meta: EmbeddingMeta, ids: list[str], seed: int) -> tuple[Path, dict[str, np.ndarray]]:
    data = np.random.default_rng(seed).standard_normal((len(ids), meta.dim)).astype(np.float32)
    with Hdf5Writer(path, meta) as writer:
        writer.write(ids, data)
    return path, dict(zip(ids, data))


def collect(batches) -> tuple[list[str], np.ndarray]:
    ids, rows = [], []
    for batch_ids, batch in batches:
        assert len(batch_ids) == len(batch)
        ids += batch_ids
        rows.append(batch)
    return ids, np.concatenate(rows)


def test_merging_the_original_tools_files_gives_its_merged_file_exactly(tmp_path):
    with PtReader(REF / "output_1_DNABERT_S.pt") as nuc, PtReader(REF / "output_1_ESM.pt") as prot:
        for batch_size in (1, 3, 4096):
            batches, stats = merge_embeddings(nuc, prot, batch_size=batch_size)
            ids, data = collect(batches)
            original = torch.load(REF / "output_1_merged.pt", weights_only=True)
            assert ids == original["ids"]  # nucleotide order, though the ESM file is ordered differently
            assert np.array_equal(data, original["data"].numpy())
    assert stats == MergeStats(nucleotide=4, protein=4, merged=4, missing_in_protein=0, missing_in_nucleotide=0)

    for out in (tmp_path / "merged.pt", tmp_path / "merged.h5"):
        merge_files(REF / "output_1_DNABERT_S.pt", REF / "output_1_ESM.pt", out, registry=load_registry(entry_points=[]))
    saved = torch.load(tmp_path / "merged.pt", weights_only=True)
    assert list(saved) == ["ids", "data"]
    assert saved["ids"] == original["ids"] and torch.equal(saved["data"], original["data"])
    with Hdf5Reader(tmp_path / "merged.h5") as reader:
        assert reader.ids() == original["ids"]
        assert np.array_equal(reader.read_rows(np.arange(4)), original["data"].numpy())


def test_ids_in_only_one_file_are_counted_reported_and_never_misaligned(tmp_path):
    nuc_ids = ["s1F1", "s1R1", "s2F2", "s3F1", "s4R3", "s5F1"]
    prot_ids = ["s5F1", "s9R1", "s4R3", "s1F1", "s2F2", "s8F3"]  # another order; s1R1, s3F1 lack a protein
    nuc_path, nuc = h5(tmp_path / "n.h5", NUC_META, nuc_ids, 1)
    prot_path, prot = h5(tmp_path / "p.h5", PROT_META, prot_ids, 2)
    with Hdf5Reader(nuc_path) as n, Hdf5Reader(prot_path) as p:
        merger = Merger(n, p, batch_size=2)
        assert merger.stats == MergeStats(
            nucleotide=6, protein=6, merged=4, missing_in_protein=2, missing_in_nucleotide=2,
            missing_in_protein_examples=("s1R1", "s3F1"), missing_in_nucleotide_examples=("s9R1", "s8F3"),
        )
        assert not merger.stats.complete
        assert merger.stats.summary() == (
            "merged 4 of 6 nucleotide and 6 protein embeddings; 2 nucleotide IDs have no protein embedding "
            "(e.g. s1R1, s3F1); 2 protein IDs have no nucleotide embedding (e.g. s9R1, s8F3)"
        )
        ids, data = collect(merger)
    assert ids == ["s1F1", "s2F2", "s4R3", "s5F1"]
    for sid, row in zip(ids, data):
        assert np.array_equal(row, np.concatenate([nuc[sid], prot[sid]]))  # nucleotide columns first
    assert merger.meta == EmbeddingMeta(
        dim=7, modality="merged",
        extra={"nucleotide_backend": "dnabert", "nucleotide_version": "v1", "nucleotide_model": "tiny-dnabert", "nucleotide_dim": "3",
               "protein_backend": "esm2", "protein_version": "v2", "protein_model": "tiny-esm", "protein_dim": "4"},
    )


def test_batches_stream_through_read_rows_never_more_than_a_batch(tmp_path):
    ids = [f"r{i}" for i in range(10)]
    nuc_path, _ = h5(tmp_path / "n.h5", NUC_META, ids, 1)
    prot_path, _ = h5(tmp_path / "p.h5", PROT_META, ids[::-1], 2)
    requests: list[int] = []
    with Hdf5Reader(nuc_path) as n, Hdf5Reader(prot_path) as p:
        original = p.read_rows
        p.read_rows = lambda rows: (requests.append(len(rows)), original(rows))[1]
        sizes = [len(batch_ids) for batch_ids, _ in Merger(n, p, batch_size=4)]
    assert sizes == [4, 4, 2] and requests == [4, 4, 2]


def test_strict_merge_refuses_before_writing(tmp_path):
    nuc_path, _ = h5(tmp_path / "n.h5", NUC_META, ["a", "b"], 1)
    prot_path, _ = h5(tmp_path / "p.h5", PROT_META, ["a"], 2)
    out = tmp_path / "m.h5"
    with pytest.raises(InputError) as err:
        merge_files(nuc_path, prot_path, out, registry=load_registry(entry_points=[]), strict=True)
    assert str(err.value) == f"{nuc_path} and {prot_path} do not hold the same IDs: 1 nucleotide IDs have no protein embedding (e.g. b)"
    assert not out.exists()
    stats = merge_files(nuc_path, prot_path, out, registry=load_registry(entry_points=[]))
    assert stats.merged == 1 and stats.missing_in_protein_examples == ("b",)
    with Hdf5Reader(out) as reader:
        assert reader.ids() == ["a"] and reader.meta.dim == 7 and reader.meta.modality == "merged"


@pytest.mark.parametrize("side", ["nucleotide", "protein"])
def test_duplicate_ids_name_the_file_and_the_id(tmp_path, side):
    dup = ["a", "b", "a"]
    nuc_path, _ = h5(tmp_path / "n.h5", NUC_META, dup if side == "nucleotide" else ["a", "b"], 1)
    prot_path, _ = h5(tmp_path / "p.h5", PROT_META, dup if side == "protein" else ["a", "b"], 2)
    bad = nuc_path if side == "nucleotide" else prot_path
    with Hdf5Reader(nuc_path) as n, Hdf5Reader(prot_path) as p:
        with pytest.raises(InputError) as err:
            Merger(n, p)
    assert str(err.value) == (
        f"{bad}: ID 'a' occurs twice (rows 0 and 2); a merge by ID needs unique IDs, "
        "so remake the file from a FASTA with unique headers"
    )


def test_files_given_the_wrong_way_round_or_unrelated_are_refused(tmp_path):
    nuc_path, _ = h5(tmp_path / "n.h5", NUC_META, ["a"], 1)
    prot_path, _ = h5(tmp_path / "p.h5", PROT_META, ["x"], 2)
    with Hdf5Reader(nuc_path) as n, Hdf5Reader(prot_path) as p:
        with pytest.raises(InputError) as err:
            Merger(p, n)
        assert str(err.value) == (
            f"{prot_path}: holds protein embeddings, but the first file of a merge must hold nucleotide embeddings "
            "(nucleotide file first, then protein)"
        )
        with pytest.raises(InputError) as err:
            Merger(n, p)
        assert str(err.value) == f"{nuc_path} and {prot_path} share no ID (e.g. 'a' vs 'x'); are they from the same prepared FASTA?"
