"""Memory independent of input size: each stage's peak RSS, measured in a child process at two
input sizes, grows by less than a bound far below what per-record state would cost.

Every bounded buffer is made small in the child (the external sort's records in memory, the
HDF5 reader's chunk cache), so what is left to grow with the input is exactly what must not
exist: per-frame IDs, dictionaries, lists. The bound, :data:`BOUND_MB` over 200,000 more
frames, is about 40 bytes a frame; the code before these changes held some 220 bytes a frame
in ``classify`` (an ID list of each file and an ``id -> row`` dict) and about 100 bytes a
record in ``prepare`` (the set of IDs and the length array); ``embed``'s input check and
``validate`` held a set or dict of every ID. The smaller size is not tiny
because the HDF5 library's own caches (bounded: its metadata cache, the chunk cache) fill
up over the first 100,000 or so IDs read.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from virnucpro_core.formats.base import EmbeddingMeta
from virnucpro_core.formats.hdf5 import Hdf5Writer

SMALL, LARGE = 100_000, 300_000
BOUND_MB = 8.0
DIM = 8

CHILD = """
import sys
from pathlib import Path
import virnucpro_core.external_sort as external_sort
import virnucpro_core.formats.hdf5 as hdf5
external_sort.DEFAULT_MAX_IN_MEMORY = 1000
hdf5.READ_CACHE_BYTES = 1 << 18
stage, folder = sys.argv[1], Path(sys.argv[2])
if stage == "prepare":
    from virnucpro_core.prepare import prepare_file
    prepare_file(folder / "reads.fa", folder / "prep", 300)
elif stage == "classify":
    from virnucpro_core.classify import classify_embeddings
    classify_embeddings(folder / "nucleotide.h5", folder / "protein.h5", Path(sys.argv[3]), folder / "out")
elif stage == "merge":
    from virnucpro_core.merge import merge_files
    merge_files(folder / "nucleotide.h5", folder / "protein-shuffled.h5", folder / "out" / "merged.h5")
elif stage == "embed-input":
    from virnucpro_core.validate import check_embed_input
    assert check_embed_input(folder / "reads.fa", "nucleotide", "kmer=v1", workdir=folder).records > 0
elif stage == "validate":
    from virnucpro_core.validate import validate_file
    assert validate_file(folder / "reads.fa").records > 0
elif stage == "plan":
    from virnucpro_core.partscore import plan_score_parts
    (folder / "score").mkdir(exist_ok=True)
    assert plan_score_parts(folder / "frames.fa", folder / "frames.faa", folder / "score", 10_000).layout.total > 0
elif stage == "summary":
    from virnucpro_core.report import write_sequence_summary
    (folder / "out").mkdir(exist_ok=True)
    write_sequence_summary(folder / "sequences.tsv", folder / "predictions.txt", folder / "out" / "sequence_summary.tsv")
with open("/proc/self/status") as status:
    print(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
"""


def peak_mb(stage: str, folder: Path, *extra: str) -> float:
    done = subprocess.run([sys.executable, "-c", CHILD, stage, str(folder), *extra], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.split()[-1]) / 1024


def frame_ids(reads: int) -> list[str]:
    """Two frames of each read's one chunk, in the order prepare writes them."""
    return [f"read{i}_chunk_1{frame}" for i in range(reads) for frame in ("F2", "R1")]


def write_h5(path: Path, modality: str, ids: list[str], seed: int) -> None:
    rng = np.random.default_rng(seed)
    with Hdf5Writer(path, EmbeddingMeta(dim=DIM, modality=modality)) as writer:
        for start in range(0, len(ids), 8192):
            batch = ids[start : start + 8192]
            writer.write(batch, rng.standard_normal((len(batch), DIM), dtype=np.float32))


def make_inputs(folder: Path, frames: int) -> Path:
    folder.mkdir(parents=True)
    reads = frames // 2
    ids = frame_ids(reads)
    rng = np.random.default_rng(frames)
    with open(folder / "reads.fa", "wb") as out:  # one record per frame, the worst case for prepare
        for first in range(0, frames, 50_000):
            bases = np.frombuffer(b"ACGT", dtype=np.uint8)[rng.integers(0, 4, (min(50_000, frames - first), 150))]
            out.write(b"".join(b">read%d\n%s\n" % (first + i, row.tobytes()) for i, row in enumerate(bases)))
    with open(folder / "sequences.tsv", "w") as out:
        out.write("id\tlength\tchunks\n" + "".join(f"read{i}\t150\t1\n" for i in range(reads)))
    scores = rng.random(len(ids)).astype(np.float32)
    with open(folder / "predictions.txt", "w") as out:
        out.write("Sequence_ID\tPrediction\tscore1\tscore2\n")
        out.write("".join(f"{sid}\t{'virus' if s < 0.5 else 'others'}\t{s}\t{np.float32(1 - s)}\n" for sid, s in zip(ids, scores)))
    with open(folder / "frames.fa", "w") as nucleotide, open(folder / "frames.faa", "w") as protein:  # prepared frames
        nucleotide.write("".join(f">{sid}\nACGTACGTACGT\n" for sid in ids))
        protein.write("".join(f">{sid}\nTYVR\n" for sid in ids))
    write_h5(folder / "nucleotide.h5", "nucleotide", ids, 1)
    write_h5(folder / "protein.h5", "protein", ids, 2)
    shuffled = list(ids)
    np.random.default_rng(3).shuffle(shuffled)
    write_h5(folder / "protein-shuffled.h5", "protein", shuffled, 2)
    return folder


@pytest.fixture(scope="module")
def sizes(tmp_path_factory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("sizes")
    return {n: make_inputs(root / str(n), n) for n in (SMALL, LARGE)}


@pytest.fixture(scope="module")
def mlp(tmp_path_factory) -> Path:
    from virnucpro_core.testing.mlp import write_original_mlp

    return write_original_mlp(tmp_path_factory.mktemp("mlp") / "mlp.pth", input_dim=2 * DIM, hidden_dim=8)


@pytest.mark.parametrize("stage", ["prepare", "embed-input", "validate", "plan", "classify", "merge", "summary"])
def test_peak_memory_does_not_grow_with_the_input(stage, sizes, mlp):
    extra = (str(mlp),) if stage == "classify" else ()
    small, large = (peak_mb(stage, sizes[n], *extra) for n in (SMALL, LARGE))
    assert large - small < BOUND_MB, f"{stage}: peak RSS {small:.1f} MB at {SMALL} frames, {large:.1f} MB at {LARGE}"


def test_duplicates_are_found_in_the_order_a_reading_from_the_top_finds_them(tmp_path):
    """Through spilled runs (3 records in memory): the count of repeats, and the IDs by second occurrence."""
    from virnucpro_core.external_sort import SortBuffer, find_duplicates

    ids = ["d", "a", "b", "a", "c", "d", "a", "e", "b", "b"]  # repeats: a (4th, 7th), d (6th), b (9th, 10th)
    buffer = SortBuffer(None, tmp_path, max_in_memory=3)
    buffer.extend(zip(ids, range(1, len(ids) + 1)))
    found = find_duplicates(buffer, keep=2)
    assert found.count == 5 and found.first == (("a", 2, 4), ("d", 1, 6))
    assert find_duplicates(iter(sorted(zip(ids, range(1, 11)))), keep=5).first == (("a", 2, 4), ("d", 1, 6), ("b", 3, 9))
    assert find_duplicates(iter([("x", 1), ("y", 2)])) == find_duplicates(iter([]))
    assert find_duplicates(iter([])).count == 0 and find_duplicates(iter([])).first == ()
