"""A full disk: one line naming the file and "No space left on device", exit 1, no segfault,
no file under a final name that is not whole; after space is freed ``--resume`` gives the
bytes of an uninterrupted run.

Each scenario runs in its own mount namespace (``unshare -m``) with a small tmpfs mounted
over a folder of ``tmp_path``: the run fills it, the script then "frees space" by growing
the tmpfs (``mount -o remount,size=...``), resumes, and copies what the test compares out
of the tmpfs before the namespace, and with it the tmpfs, goes away.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from virnucpro_core.registry import load_registry

_installed = {b.key for b in load_registry().list_backends()}
ENOSPC = "No space left on device"


def _can_mount_tmpfs() -> str | None:
    """Why a small tmpfs cannot be mounted here, or ``None`` when it can (root, or CI)."""
    try:
        probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt && umount /mnt"],
                               capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare is not available ({exc})"
    if probe.returncode != 0:
        return f"cannot mount a tmpfs in a private mount namespace here (needs root): {probe.stderr.strip()}"
    return None


_why_not = _can_mount_tmpfs()
pytestmark = pytest.mark.skipif(_why_not is not None, reason=_why_not or "")


def run_in_small_tmpfs(mountpoint: Path, size: str, script: str, cli) -> subprocess.CompletedProcess:
    """Run the shell ``script`` with a ``size`` tmpfs on ``mountpoint``, in a private mount namespace."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    full = f"mount -t tmpfs -o size={size} tmpfs {shlex.quote(str(mountpoint))} || exit 99\n{script}"
    return subprocess.run(["unshare", "-m", "sh", "-c", full], capture_output=True, text=True, env=cli.env(), timeout=600)


def virnucpro(*args: object) -> str:
    return shlex.join([sys.executable, "-m", "virnucpro_core", *map(str, args)])


def assert_one_disk_full_line(stderr: str, under: Path) -> str:
    assert "Traceback" not in stderr and "Segmentation" not in stderr and "decrement" not in stderr, stderr
    (line,) = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert ENOSPC in line and str(under) in line, line
    return line


def test_the_writers_on_a_full_disk_raise_one_error_and_leave_no_file(tmp_path, cli):
    """The layer that crashed: HDF5 failing to close a file on a full disk segfaulted the
    process at exit (h5py #914). Now the writer raises, removes its temporary file, and the
    interpreter exits normally."""
    mnt = tmp_path / "mnt"
    code = (
        "import numpy as np, os, sys\n"
        "from virnucpro_core.formats.base import EmbeddingMeta\n"
        "from virnucpro_core.formats.hdf5 import Hdf5Writer\n"
        "from virnucpro_core.errors import OutputWriteError\n"
        f"target = {str(mnt / 'e.h5')!r}\n"
        "try:\n"
        "    with Hdf5Writer(target, EmbeddingMeta(dim=256, modality='protein')) as w:\n"
        "        w.write([f'r{i}' for i in range(4000)], np.ones((4000, 256), np.float32))\n"
        "except OutputWriteError as exc:\n"
        "    print('raised', exc)\n"
        "from virnucpro_core.atomic import atomic_open\n"
        "try:\n"
        "    with atomic_open(target + '.txt') as handle:\n"
        "        handle.write('ACGT' * 200_000)\n"
        "except OutputWriteError as exc:\n"
        "    print('raised', exc)\n"
        "print('left', sorted(os.listdir(os.path.dirname(target))))\n"
    )
    done = run_in_small_tmpfs(mnt, "256k", f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}", cli)
    assert done.returncode == 0, (done.returncode, done.stderr)
    assert f"raised {mnt / 'e.h5'}: {ENOSPC}; free space there" in done.stdout
    assert f"raised {mnt / 'e.h5.txt'}: {ENOSPC}; free space there" in done.stdout  # text outputs (atomic_open) too
    assert "left []" in done.stdout  # no final file, no temporary file
    assert "decrement" not in done.stderr and "Segmentation" not in done.stderr


@pytest.fixture(scope="module")
def reads(tmp_path_factory, reads_factory) -> Path:
    """120 records: 6 parts of 20 (each part file holds about 1.1 MB of HDF5 chunks)."""
    return reads_factory(tmp_path_factory.mktemp("reads") / "reads.fa", 120, marked=0, seed=13)


@pytest.fixture(scope="module")
def reference(reads, tmp_path_factory, cli) -> Path:
    out = tmp_path_factory.mktemp("ref") / "ref.h5"
    done = cli.run("embed", str(reads), "--backend", "probe=v1", "-o", str(out), "--checkpoint-every", "20", "-q", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    return out


@pytest.mark.parametrize("devices", ["cpu", "cpu,cpu"])
def test_embed_on_a_full_disk_fails_in_one_line_and_resumes_to_the_same_bytes(reads, reference, tmp_path, devices, cli):
    mnt, kept = tmp_path / "mnt", tmp_path / "kept"
    out = mnt / "e.h5"
    args = ["embed", reads, "--backend", "probe=v1", "-o", out, "--checkpoint-every", "20", "-q", "--devices", devices]
    script = f"""
{virnucpro(*args)} 2> {tmp_path}/first.err; echo $? > {tmp_path}/first.rc
ls -a {mnt} {mnt}/e.h5.parts > {tmp_path}/left.txt 2>&1
mount -o remount,size=64m {mnt}
{virnucpro(*args, "--resume")} > {tmp_path}/second.out 2> {tmp_path}/second.err; echo $? > {tmp_path}/second.rc
cp {out} {kept}
ls -a {mnt} > {tmp_path}/after.txt
"""
    done = run_in_small_tmpfs(mnt, "3m", script, cli)
    assert done.returncode == 0, done.stderr
    first_err = (tmp_path / "first.err").read_text()
    assert (tmp_path / "first.rc").read_text().strip() == "1", first_err
    line = assert_one_disk_full_line(first_err, mnt / "e.h5.parts")
    assert line.startswith("Error: worker " if devices == "cpu,cpu" else f"Error: {mnt}/e.h5.parts/part-00000"), line
    left = (tmp_path / "left.txt").read_text().split()
    assert "e.h5" not in left, left  # nothing half-written under a final name
    temporaries = [name for name in left if name.endswith(".part")]
    # the failing writer removes its temporary file; with workers, the other worker is killed
    # mid-part and may leave one, which the next run removes before it starts
    assert len(temporaries) <= (1 if devices == "cpu,cpu" else 0), left
    assert "part-000000.h5" in left  # the finished parts are kept for --resume
    assert (tmp_path / "second.rc").read_text().strip() == "0", (tmp_path / "second.err").read_text()
    assert "part(s) resumed" in (tmp_path / "second.out").read_text()
    assert kept.read_bytes() == reference.read_bytes()
    _assert_rows_follow_the_input(kept, reads)
    assert sorted((tmp_path / "after.txt").read_text().split()) == [".", "..", "e.h5"]


def _assert_rows_follow_the_input(path: Path, fasta: Path) -> None:
    """Against the input itself, not only another run: one row per record, in input order
    (the probe's first column is the sequence length)."""
    from virnucpro_core.formats.hdf5 import Hdf5Reader
    from virnucpro_core.seqio import iter_fasta

    records = list(iter_fasta(fasta))
    with Hdf5Reader(path) as reader:
        assert reader.ids() == [rid for rid, _ in records]
        rows = reader.read_rows(np.arange(len(reader)))
    assert rows[:, 0].tolist() == [float(len(seq)) for _, seq in records]


COMPARED = ("prepare/lambda_identified_protein.faa", "embeddings/nucleotide.h5", "embeddings/protein.h5",
            "prediction_results.txt", "prediction_results_highestscore.csv", "sequence_summary.tsv", "viral_sequences.fa")


@pytest.fixture(scope="module")
def lambda_fa(tmp_path_factory, data_dir) -> Path:
    """The first 16 kb of phage lambda: 22 stop-free frames, 5 parts of 5 per embedding stage."""
    import gzip

    with gzip.open(data_dir / "genomes" / "lambda_NC_001416.fa.gz", "rt") as handle:
        header, *lines = handle.read().splitlines()
    seq = "".join(lines)[:16_000]
    path = tmp_path_factory.mktemp("input") / "lambda.fa"
    path.write_text(f"{header}\n" + "".join(seq[i : i + 70] + "\n" for i in range(0, len(seq), 70)))
    return path


@pytest.mark.skipif(not {"esm2=v1", "dnabert=v1"} <= _installed, reason="needs the first-party plugins (pip install -r requirements-dev.txt)")
def test_predict_on_a_full_disk_fails_in_one_line_and_resumes_to_the_same_bytes(lambda_fa, tiny_models, tmp_path, cli):
    # --keep-embeddings: the per-part HDF5 embeddings are what fills the disk (without it a part leaves only its scores)
    common = ["--models-dir", tiny_models, "--device", "cpu", "-q", "--checkpoint-every", "5", "--min-viral-fraction", "0",
              "--keep-embeddings"]
    reference = tmp_path / "reference"
    done = subprocess.run(virnucpro("predict", lambda_fa, "-o", reference, *common), shell=True, capture_output=True, text=True,
                          env=cli.env(), timeout=600)
    assert done.returncode == 0, done.stderr
    mnt, kept = tmp_path / "mnt", tmp_path / "kept"
    out = mnt / "run"
    script = f"""
{virnucpro("predict", lambda_fa, "-o", out, *common)} 2> {tmp_path}/first.err; echo $? > {tmp_path}/first.rc
cp {out}/run.json {tmp_path}/first.json
find {out} > {tmp_path}/left.txt
mount -o remount,size=64m {mnt}
{virnucpro("predict", lambda_fa, "-o", out, *common, "--resume")} 2> {tmp_path}/second.err; echo $? > {tmp_path}/second.rc
cp -r {out} {kept}
"""
    done = run_in_small_tmpfs(mnt, "4m", script, cli)
    assert done.returncode == 0, done.stderr
    first_err = (tmp_path / "first.err").read_text()
    assert (tmp_path / "first.rc").read_text().strip() == "1", first_err
    assert_one_disk_full_line(first_err, out / "checkpoints")
    left = (tmp_path / "left.txt").read_text().split()
    assert not [p for p in left if p.endswith(".part")] and str(out / "embeddings" / "nucleotide.h5") not in left
    assert json.loads((tmp_path / "first.json").read_text())["status"] != "done"
    assert (tmp_path / "second.rc").read_text().strip() == "0", (tmp_path / "second.err").read_text()
    manifest = json.loads((kept / "run.json").read_text())
    assert manifest["status"] == "done" and manifest["counts"]["classify"]["parts_reused"] >= 1
    for name in COMPARED:
        assert (kept / name).read_bytes() == (reference / name).read_bytes(), name
