"""Stop signals as terminals and clusters send them: to the whole process group.

Ctrl-C in a terminal signals the foreground process group (the main process and its
workers; under torchrun the agent, which starts its ranks in their own session and
forwards the signal), and SLURM's ``scancel`` signals every process of the job step, the
ranks included. Each run here starts in a new session (``start_new_session=True``) and is
signalled with ``os.killpg``, in one process, with two CPU worker processes and under
torchrun with two CPU ranks (SIGTERM there goes to the ranks too, as ``scancel`` does, so
each rank gets it twice). The run must exit 130/143 with the line that continues it, the
command in that line must resume it, and the result must be the bytes of an uninterrupted
run and follow the input itself. kill -9 of the main process or of the whole group leaves
a lock that must not block the resume.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

PARTS = 12
EMBED = ("--backend", "probe=v1", "--checkpoint-every", "20", "-q")
MODES = {
    "one": ("--device", "cpu"),
    "workers": ("--devices", "cpu,cpu"),
    "torchrun": ("--device", "cpu"),
}
CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


def wait_for(condition, timeout: float = 120.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def parts_in(folder: Path) -> list[Path]:
    return sorted(folder.glob("part-*.h5")) if folder.is_dir() else []


def group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return _only_zombies(pgid)


def _only_zombies(pgid: int) -> bool:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return False
    return True


@pytest.fixture(scope="module")
def reads(tmp_path_factory, reads_factory) -> Path:
    """240 records, 12 parts of 20."""
    return reads_factory(tmp_path_factory.mktemp("reads") / "reads.fa", 240, marked=0, seed=21)


@pytest.fixture(scope="module")
def reference(reads, tmp_path_factory, cli) -> Path:
    out = tmp_path_factory.mktemp("ref") / "ref.h5"
    done = cli.run("embed", str(reads), "-o", str(out), *EMBED, "--device", "cpu")
    assert done.returncode == 0, done.stderr
    return out


def launch(mode: str, args: list[str]) -> list[str]:
    """The command line a user types, with the test's interpreter."""
    if mode == "torchrun":
        return [sys.executable, "-m", "virnucpro_core.torchrun", "--standalone", "--nproc-per-node", "2",
                "-m", "virnucpro_core", *args]
    return [sys.executable, "-m", "virnucpro_core", *args]


def start(command: list[str], cli, **env: str) -> subprocess.Popen:
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli.env(**env),
                            start_new_session=True)


def from_line(command: str) -> list[str]:
    """The command a printed line names, runnable with the test's interpreter."""
    words = shlex.split(command)
    if words[0] == "virnucpro":
        return [sys.executable, "-m", "virnucpro_core", *words[1:]]
    assert words[0] == "python", words
    return [sys.executable, *words[1:]]


def assert_rows_follow_the_input(path: Path, fasta: Path) -> None:
    from virnucpro_core.formats.hdf5 import Hdf5Reader
    from virnucpro_core.seqio import iter_fasta

    records = list(iter_fasta(fasta))
    with Hdf5Reader(path) as reader:
        assert reader.ids() == [rid for rid, _ in records]
        rows = reader.read_rows(np.arange(len(reader)))
    assert rows[:, 0].tolist() == [float(len(seq)) for _, seq in records]


@pytest.mark.parametrize("mode, signum", [
    ("one", signal.SIGINT), ("one", signal.SIGTERM),
    ("workers", signal.SIGINT), ("workers", signal.SIGTERM),
    ("torchrun", signal.SIGINT), ("torchrun", signal.SIGTERM),
], ids=lambda v: v if isinstance(v, str) else signal.Signals(v).name)
def test_a_signal_to_the_process_group_stops_with_the_resume_line(reads, reference, tmp_path, mode, signum, cli):
    out = tmp_path / "s.h5"
    args = ["embed", str(reads), "-o", str(out), *EMBED, *MODES[mode]]
    pids = tmp_path / "pids"
    pids.mkdir()
    proc = start(launch(mode, args), cli, PROBE_DELAY="0.4", PROBE_PID_DIR=str(pids))
    parts = tmp_path / "s.h5.parts"
    wait_for(lambda: len(parts_in(parts)) >= 2 or proc.poll() is not None, what="two finished parts")
    assert proc.poll() is None, proc.communicate()
    os.killpg(proc.pid, signum)
    if mode == "torchrun" and signum == signal.SIGTERM:  # scancel: every process of the step, ranks included
        for pid in pids.iterdir():
            os.kill(int(pid.name), signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == CODES[signum], stderr
    assert "Traceback" not in stderr and "Error" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("interrupted:")]
    assert len(lines) == 1, stderr
    line, done = lines[0], len(parts_in(parts))
    if mode == "torchrun":
        prefix = f"interrupted: {done} of {PARTS} parts done (probe=v1); rerun the same torchrun command with --resume: "
        expected = shlex.join(["python", *launch(mode, args)[1:], "--resume"])
    else:
        prefix = f"interrupted: {done} of {PARTS} parts done (probe=v1); continue with: "
        expected = shlex.join(["virnucpro", *args, "--resume"])
    assert line == prefix + expected
    assert not out.exists()
    wait_for(lambda: group_gone(proc.pid) and all(group_gone(int(p.name)) for p in pids.iterdir()), timeout=30,
             what="every process of the job to end")
    resumed = subprocess.run(from_line(line[len(prefix):]), capture_output=True, text=True, env=cli.env(), timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert out.read_bytes() == reference.read_bytes()
    assert_rows_follow_the_input(out, reads)


@pytest.mark.parametrize("mode", ["one", "torchrun"])
def test_a_second_signal_aborts_at_once(reads, tmp_path, mode, cli):
    """The backend takes 60 s to close (to release its device, say); the first signal waits
    for that, the second does not."""
    out = tmp_path / "a.h5"
    args = ["embed", str(reads), "-o", str(out), *EMBED, *MODES[mode]]
    proc = start(launch(mode, args), cli, PROBE_DELAY="0.4", PROBE_CLOSE_DELAY="60")
    parts = tmp_path / "a.h5.parts"
    wait_for(lambda: len(parts_in(parts)) >= 2 or proc.poll() is not None, what="two finished parts")
    assert proc.poll() is None, proc.communicate()
    os.killpg(proc.pid, signal.SIGINT)
    time.sleep(4)  # past DUPLICATE_SECONDS: a deliberate second signal, not the first delivered twice
    assert proc.poll() is None, "the first signal must wait for the clean-up (the backend's close)"
    os.killpg(proc.pid, signal.SIGINT)
    second = time.monotonic()
    _, stderr = proc.communicate(timeout=120)
    assert time.monotonic() - second < 10, "the second signal did not abort at once"
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr, stderr
    assert len(parts_in(parts)) >= 2  # finished parts are kept
    wait_for(lambda: group_gone(proc.pid), timeout=30, what="every process of the group to end")


def test_workers_ignore_stop_signals(reads, tmp_path, cli):
    """Only the main process decides to stop; a worker that took Ctrl-C itself would die
    mid-part and be reported as a failure instead of an interruption."""
    pids = tmp_path / "pids"
    pids.mkdir()
    proc = start(launch("workers", ["embed", str(reads), "-o", str(tmp_path / "w.h5"), *EMBED, *MODES["workers"]]), cli,
                 PROBE_DELAY="0.4", PROBE_PID_DIR=str(pids))
    try:
        wait_for(lambda: len(list(pids.iterdir())) == 2 or proc.poll() is not None, what="two workers")
        assert proc.poll() is None, proc.communicate()
        for pid in pids.iterdir():
            status = Path(f"/proc/{pid.name}/status").read_text()
            ignored = int(re.search(r"^SigIgn:\s*([0-9a-f]+)$", status, re.M).group(1), 16)
            for sig in (signal.SIGINT, signal.SIGTERM):
                assert ignored & (1 << (sig - 1)), f"worker {pid.name} does not ignore {sig.name}"
    finally:
        proc.kill()
        proc.communicate()


@pytest.mark.parametrize("mode, target", [("workers", "main"), ("workers", "group"), ("torchrun", "group")])
def test_a_lock_left_by_kill_9_does_not_block_the_resume(reads, reference, tmp_path, mode, target, cli):
    out = tmp_path / "k.h5"
    args = ["embed", str(reads), "-o", str(out), *EMBED, *MODES[mode]]
    command = launch(mode, args)
    pids = tmp_path / "pids"
    pids.mkdir()
    proc = start(command, cli, PROBE_DELAY="0.4", PROBE_PID_DIR=str(pids))
    parts, lock = tmp_path / "k.h5.parts", tmp_path / ".k.h5.lock"
    wait_for(lambda: len(parts_in(parts)) >= 2 or proc.poll() is not None, what="two finished parts")
    assert proc.poll() is None, proc.communicate()
    if target == "main":
        os.kill(proc.pid, signal.SIGKILL)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        if mode == "torchrun":  # the ranks run in sessions of their own; a scheduler kills the whole job
            for pid in pids.iterdir():
                os.kill(int(pid.name), signal.SIGKILL)
    proc.communicate(timeout=60)
    assert lock.exists()  # nothing could remove it
    wait_for(lambda: group_gone(proc.pid) and all(group_gone(int(p.name)) for p in pids.iterdir()), timeout=60,
             what="the orphaned workers to end")
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, env=cli.env(), timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "removing the lock of process" in resumed.stderr or mode == "torchrun"
    assert out.read_bytes() == reference.read_bytes()
    assert_rows_follow_the_input(out, reads)
    assert not lock.exists()


def test_the_resume_line_names_the_launcher_the_user_typed():
    from virnucpro_core.engine.stop import launcher_command

    tail = ["-m", "virnucpro_core", "predict", "x.fa", "-o", "res"]
    assert launcher_command(["/opt/py/bin/python3.11", "/opt/py/bin/torchrun", "--nnodes", "2", "--node-rank", "1", *tail]) == [
        "torchrun", "--nnodes", "2", "--node-rank", "1", "-m", "virnucpro_core"]
    assert launcher_command(["/opt/py/bin/python3.11", "/opt/py/bin/virnucpro-torchrun", "--standalone", *tail]) == [
        "virnucpro-torchrun", "--standalone", "-m", "virnucpro_core"]
    assert launcher_command(["/opt/py/bin/python3.11", "-m", "torch.distributed.run", "--nproc-per-node", "4", *tail]) == [
        "python", "-m", "torch.distributed.run", "--nproc-per-node", "4", "-m", "virnucpro_core"]
    assert launcher_command(["/opt/py/bin/python3.11", "train.py"]) is None
