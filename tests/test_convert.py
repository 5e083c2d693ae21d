"""`virnucpro convert`: any registered format to any other, streaming."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from virnucpro_core.cli import cli
from virnucpro_core.commands.convert import ConvertResult, convert_embeddings
from virnucpro_core.formats.base import EmbeddingMeta
from virnucpro_core.formats.hdf5 import Hdf5Reader, Hdf5Writer

REF = Path(__file__).parent / "data" / "original_format" / "reference_vanilla_output"
META = EmbeddingMeta(dim=8, modality="protein", backend="esm2", version="v2", model="tiny")


def run(*args: str):
    return CliRunner().invoke(cli, ["convert", *map(str, args)])


def make_h5(path: Path, n: int, meta: EmbeddingMeta = META, batch: int = 4096) -> tuple[list[str], np.ndarray]:
    ids = [f"read_{i}_chunk_1F1" for i in range(n)]
    data = np.random.default_rng(0).standard_normal((n, meta.dim)).astype(np.float32)
    with Hdf5Writer(path, meta) as writer:
        for start in range(0, n, batch):
            writer.write(ids[start : start + batch], data[start : start + batch])
    return ids, data


def test_hdf5_to_pt_and_back_keeps_ids_and_values(tmp_path):
    ids, data = make_h5(tmp_path / "protein.h5", 10)
    result = run(tmp_path / "protein.h5", tmp_path / "protein_ESM.pt", "--batch-size", "3")
    assert result.exit_code == 0, result.output
    assert result.output == (
        f"converted 10 protein embeddings (dim 8) from {tmp_path / 'protein.h5'} (hdf5) to {tmp_path / 'protein_ESM.pt'} (pt)\n"
    )
    saved = torch.load(tmp_path / "protein_ESM.pt", weights_only=True)
    assert saved["proteins"] == ids and torch.equal(torch.stack(saved["data"]), torch.from_numpy(data))

    assert run(tmp_path / "protein_ESM.pt", tmp_path / "again.h5").exit_code == 0
    with Hdf5Reader(tmp_path / "again.h5") as reader:
        assert reader.ids() == ids
        assert np.array_equal(reader.read_rows(np.arange(10)), data)
        # the .pt layout has no room for backend/model, so only dim and modality survive
        assert (reader.meta.dim, reader.meta.modality, reader.meta.backend) == (8, "protein", "")


@pytest.mark.parametrize("name", ["output_1_DNABERT_S.pt", "output_1_ESM.pt", "output_1_merged.pt"])
def test_the_original_files_survive_a_trip_through_hdf5_unchanged(tmp_path, name):
    assert run(REF / name, tmp_path / "x.h5").exit_code == 0
    assert run(tmp_path / "x.h5", tmp_path / name).exit_code == 0
    ours = torch.load(tmp_path / name, weights_only=True)
    theirs = torch.load(REF / name, weights_only=True)
    assert list(ours) == list(theirs)
    if "DNABERT" in name:
        assert ours == theirs  # lists of dicts of python floats, compared exactly
    elif "ESM" in name:
        assert ours["proteins"] == theirs["proteins"]
        assert all(torch.equal(a, b) for a, b in zip(ours["data"], theirs["data"]))
    else:
        assert ours["ids"] == theirs["ids"] and torch.equal(ours["data"], theirs["data"])


def test_explicit_formats_override_the_suffix(tmp_path):
    make_h5(tmp_path / "in.h5", 3)
    assert run(tmp_path / "in.h5", tmp_path / "out.bin", "--to", "pt").exit_code == 0
    assert run(tmp_path / "out.bin", tmp_path / "back.data", "--from", "pt", "--to", "hdf5").exit_code == 0
    with Hdf5Reader(tmp_path / "back.data") as reader:
        assert len(reader) == 3


def test_garbage_input_is_one_line_and_exit_code_1(tmp_path):
    bad = tmp_path / "truncated.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 40)
    result = run(bad, tmp_path / "out.pt")
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {bad}: cannot be read as HDF5 (truncated, still being written, or not an HDF5 file); "
        "recreate it with the command that made it\n"
    )
    assert not (tmp_path / "out.pt").exists()


def test_unknown_formats_list_the_choices(tmp_path):
    make_h5(tmp_path / "in.h5", 1)
    result = run(tmp_path / "in.h5", tmp_path / "out.x", "--to", "parquet")
    assert result.exit_code == 1
    assert result.output == "Error: unknown embedding format 'parquet'; choose one of: hdf5, pt\n"
    result = run(tmp_path / "in.h5", tmp_path / "out.x")
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {tmp_path / 'out.x'}: cannot tell the embedding format from the file name; "
        "give --to FORMAT, one of: hdf5 (.h5 .hdf5), pt (.pt)\n"
    )


def test_help_shows_examples():
    result = CliRunner().invoke(cli, ["convert", "--help"])
    assert result.exit_code == 0
    assert "virnucpro convert run/embeddings/protein.h5 protein_ESM.pt" in result.output


def test_the_console_script_converts_and_fails_cleanly(tmp_path):
    exe = shutil.which("virnucpro")
    command = [exe] if exe else [sys.executable, "-m", "virnucpro_core"]
    make_h5(tmp_path / "in.h5", 5)
    done = subprocess.run([*command, "convert", str(tmp_path / "in.h5"), str(tmp_path / "out.pt")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("converted 5 protein embeddings (dim 8)")
    (tmp_path / "bad.pt").write_bytes(b"junk")
    failed = subprocess.run([*command, "convert", str(tmp_path / "bad.pt"), str(tmp_path / "o.h5")], capture_output=True, text=True)
    assert failed.returncode == 1
    assert failed.stderr == f"Error: {tmp_path / 'bad.pt'}: cannot be read as a torch .pt file (truncated or not a .pt file)\n"
    assert "Traceback" not in failed.stdout + failed.stderr


def test_hdf5_to_hdf5_conversion_streams_in_batches(tmp_path):
    n, dim = 200_000, 64
    meta = EmbeddingMeta(dim=dim, modality="nucleotide")
    ids, data = make_h5(tmp_path / "big.h5", n, meta, batch=20_000)
    data_bytes = data.nbytes  # 51.2 MB
    del data

    tracemalloc.start()
    try:
        result = convert_embeddings(tmp_path / "big.h5", tmp_path / "copy.h5", batch_size=4096)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result == ConvertResult(rows=n, dim=dim, modality="nucleotide", src_format="hdf5", dst_format="hdf5")
    assert peak < data_bytes / 10, f"peak {peak / 1e6:.1f} MB for {data_bytes / 1e6:.1f} MB of embeddings"
    with Hdf5Reader(tmp_path / "big.h5") as a, Hdf5Reader(tmp_path / "copy.h5") as b:
        assert b.meta == a.meta and b.ids() == ids
        for (ids_a, rows_a), (ids_b, rows_b) in zip(a.iter_batches(50_000), b.iter_batches(50_000)):
            assert ids_a == ids_b and np.array_equal(rows_a, rows_b)
    assert os.path.getsize(tmp_path / "copy.h5") > data_bytes


def test_an_existing_output_is_refused_unless_force(tmp_path):
    make_h5(tmp_path / "in.h5", 4)
    (tmp_path / "out.pt").write_bytes(b"precious")
    result = run(tmp_path / "in.h5", tmp_path / "out.pt")
    assert result.exit_code == 2
    assert result.output == f"Error: {tmp_path / 'out.pt'} exists; choose another OUT or pass --force to replace it\n"
    assert (tmp_path / "out.pt").read_bytes() == b"precious"
    forced = run(tmp_path / "in.h5", tmp_path / "out.pt", "--force")
    assert forced.exit_code == 0, forced.output
    assert torch.load(tmp_path / "out.pt", weights_only=True)["proteins"] == [f"read_{i}_chunk_1F1" for i in range(4)]
