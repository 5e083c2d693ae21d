"""The engine on simulated GPUs: every mode binds the device it names before the backend loads
(one process on ``cuda:1``, ``--gpus 0,1`` workers, torchrun ranks on ``cuda:LOCAL_RANK``, and one
visible GPU per rank), and the rows are those of the input. Real processes throughout; the test-only
``probe=v1`` backend records each process's device and current device at load time."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from virnucpro_core.engine.config import DistContext
from virnucpro_core.engine.distributed import rank_device


@pytest.fixture(scope="module")
def reads(tmp_path_factory) -> Path:
    from conftest import write_reads

    return write_reads(tmp_path_factory.mktemp("reads") / "reads.fa", 60, marked=0, seed=11)


def expected_rows(path: Path) -> tuple[list[str], np.ndarray]:
    """The probe's exact features, computed from the input itself."""
    ids, rows = [], []
    for block in path.read_text().split(">")[1:]:
        header, seq = block.split("\n", 1)
        seq = seq.replace("\n", "")
        ids.append(header.split()[0])
        rows.append([len(seq), seq.count("A"), seq.count("C"), seq.count("G"), seq.count("T"), len(seq) % 7])
    return ids, np.asarray(rows, dtype=np.float32)


def assert_rows_of_the_input(out: Path, reads: Path) -> None:
    ids, rows = expected_rows(reads)
    with h5py.File(out) as f:
        assert [i.decode() if isinstance(i, bytes) else i for i in f["ids"][:]] == ids
        assert np.array_equal(f["embeddings"][:], rows)


def loads(folder: Path) -> list[dict]:
    return sorted((json.loads(p.read_text()) for p in folder.glob("*.json")), key=lambda d: d["device"])


def test_rank_device_maps_local_ranks_onto_the_gpus_each_rank_sees():
    ranks = [DistContext(rank, 4, rank) for rank in range(4)]
    assert [rank_device(ctx, "cuda", visible=4) for ctx in ranks] == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
    assert [rank_device(ctx, "cuda", visible=1) for ctx in ranks] == ["cuda:0"] * 4  # SLURM --gpus-per-task=1
    assert [rank_device(ctx, "cuda", visible=2) for ctx in ranks] == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    assert rank_device(ranks[3], "cpu", visible=4) == "cpu"


def test_one_process_on_cuda_1_binds_cuda_1_before_the_backend_loads(simcuda, reads, tmp_path, cli):
    simcuda(devices=2)
    out, seen = tmp_path / "x.h5", tmp_path / "seen"
    seen.mkdir()
    result = cli.run("embed", str(reads), "--backend", "probe=v1", "-o", str(out), "-q", "--device", "cuda:1",
                     PROBE_DEVICE_DIR=str(seen))
    assert result.returncode == 0, result.stderr
    assert loads(seen) == [{"device": "cuda:1", "current": 1}]
    assert_rows_of_the_input(out, reads)


def test_gpu_workers_each_bind_their_own_device(simcuda, reads, tmp_path, cli):
    simcuda(devices=2)
    out, seen = tmp_path / "x.h5", tmp_path / "seen"
    seen.mkdir()
    result = cli.run("embed", str(reads), "--backend", "probe=v1", "-o", str(out), "-q", "--gpus", "0,1",
                     "--checkpoint-every", "20", PROBE_DEVICE_DIR=str(seen))
    assert result.returncode == 0, result.stderr
    assert loads(seen) == [{"device": "cuda:0", "current": 0}, {"device": "cuda:1", "current": 1}]
    assert_rows_of_the_input(out, reads)


@pytest.mark.parametrize("visible, expected", [(2, [("cuda:0", 0), ("cuda:1", 1)]), (1, [("cuda:0", 0), ("cuda:0", 0)])],
                         ids=["all-gpus-visible", "one-gpu-per-rank"])
def test_torchrun_ranks_bind_the_gpu_they_see(simcuda, reads, tmp_path, cli, visible, expected):
    simcuda(devices=visible)
    out, seen = tmp_path / "x.h5", tmp_path / "seen"
    seen.mkdir()
    result = cli.torchrun("embed", str(reads), "--backend", "probe=v1", "-o", str(out), "-q", "--checkpoint-every", "20",
                          PROBE_DEVICE_DIR=str(seen))
    assert result.returncode == 0, result.stdout + result.stderr
    assert [(d["device"], d["current"]) for d in loads(seen)] == expected
    assert_rows_of_the_input(out, reads)
