"""The engine with real processes: spawned workers, kill -9, SIGINT/SIGTERM, a failing backend.

Nothing of the process layer is mocked. The throwaway backend ``probe=v1``
(``tests/support/virnucpro_probe.py``) is registered through ``$VIRNUCPRO_PLUGINS`` so that
worker processes, which re-resolve the backend key through the registry, find it as they
would an installed plugin; its environment switches slow it down or make it fail.
Results are compared byte for byte with an uninterrupted one-process run.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from virnucpro_core.registry import load_registry

_installed = {b.key for b in load_registry().list_backends()}


def wait_for(condition, timeout: float = 120.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def parts_in(folder: Path) -> list[Path]:
    return sorted(folder.glob("part-*.h5")) if folder.is_dir() else []


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(("Error:", "interrupted:"))]


@pytest.fixture(scope="module")
def reads(tmp_path_factory, reads_factory) -> Path:
    """240 nucleotide records (12 parts of 20); record 57 holds the marker PROBE_FAIL looks for."""
    return reads_factory(tmp_path_factory.mktemp("reads") / "reads.fa", 240, marked=57, seed=6)


@pytest.fixture(scope="module")
def reference(reads, tmp_path_factory, cli) -> Path:
    """One process, no interruption: what every other run must reproduce byte for byte."""
    out = tmp_path_factory.mktemp("ref") / "ref.h5"
    result = cli.run("embed", str(reads), "--backend", "probe=v1", "-o", str(out), "--checkpoint-every", "20", "-q",
                       "--device", "cpu")
    assert result.returncode == 0, result.stderr
    return out


@pytest.mark.skipif("kmer=v1" not in _installed, reason="needs virnucpro-kmer (pip install -e examples/virnucpro-kmer)")
def test_two_cpu_workers_give_the_bytes_of_one_process(reads, tmp_path, cli):
    one, two = tmp_path / "one.h5", tmp_path / "two.h5"
    common = ["--backend", "kmer=v1", "--checkpoint-every", "20", "--threads", "1", "-q"]
    first = cli.run("embed", str(reads), "-o", str(one), "--device", "cpu", *common)
    assert first.returncode == 0, first.stderr
    log_file = tmp_path / "two.log"
    second = cli.run("embed", str(reads), "-o", str(two), "--devices", "cpu,cpu", "--log-file", str(log_file), *common)
    assert second.returncode == 0, second.stderr
    assert two.read_bytes() == one.read_bytes()
    text = log_file.read_text()
    assert "started 2 worker processes on cpu, cpu" in text
    counts = [int(line.split(" part(s), ")[1].split()[0]) for line in text.splitlines() if " part(s), " in line]
    assert len(counts) == 2 and sum(counts) == 240  # per-device counts: every record exactly once
    assert not (tmp_path / "two.h5.parts").exists()


def test_a_killed_worker_stops_the_run_fast_and_resume_gives_the_same_bytes(reads, reference, tmp_path, cli):
    out, pids = tmp_path / "k.h5", tmp_path / "pids"
    pids.mkdir()
    args = ["embed", str(reads), "--backend", "probe=v1", "-o", str(out), "--checkpoint-every", "20", "-q", "--devices", "cpu,cpu"]
    proc = cli.start(*args, PROBE_DELAY="0.4", PROBE_PID_DIR=str(pids))
    parts = tmp_path / "k.h5.parts"
    wait_for(lambda: len(list(pids.iterdir())) == 2 and len(parts_in(parts)) >= 1 or proc.poll() is not None, what="a finished part")
    assert proc.poll() is None, proc.communicate()
    victim = int(sorted(p.name for p in pids.iterdir())[0])
    os.kill(victim, signal.SIGKILL)
    killed = time.monotonic()
    _, stderr = proc.communicate(timeout=60)
    # the module promises detection within a second (the worker's sentinel); stopping the other
    # worker and exiting take a little more
    assert time.monotonic() - killed < 3
    assert proc.returncode == 1
    (line,) = error_lines(stderr)
    assert "Traceback" not in stderr
    assert line.startswith("Error: worker ") and " (cpu) died: killed by SIGKILL (the OOM killer, or kill -9) on records " in line
    assert not out.exists()
    kept = parts_in(parts)
    assert 1 <= len(kept) < 12
    for pid in pids.iterdir():  # the other worker was stopped too
        wait_for(lambda: not _alive(int(pid.name)), timeout=10, what=f"worker {pid.name} to stop")
    resumed = cli.run(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert out.read_bytes() == reference.read_bytes()
    assert f"{len(kept)} part(s) resumed" in resumed.stdout


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie of a dead child counts as gone
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.parametrize("devices, signum, code", [
    ("cpu", signal.SIGINT, 130),
    ("cpu,cpu", signal.SIGTERM, 143),
    ("cpu,cpu", signal.SIGINT, 130),
])
def test_a_stop_signal_keeps_finished_parts_and_prints_the_resume_command(reads, reference, tmp_path, devices, signum, code, cli):
    out = tmp_path / "s.h5"
    args = ["embed", str(reads), "--backend", "probe=v1", "-o", str(out), "--checkpoint-every", "20", "-q", "--devices", devices]
    proc = cli.start(*args, PROBE_DELAY="0.4")
    parts = tmp_path / "s.h5.parts"
    wait_for(lambda: len(parts_in(parts)) >= 2 or proc.poll() is not None, what="two finished parts")
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == code
    (line,) = error_lines(stderr)
    done = len(parts_in(parts))
    expected = "virnucpro " + " ".join(args) + " --resume"
    assert line == f"interrupted: {done} of 12 parts done (probe=v1); continue with: {expected}"
    assert "Traceback" not in stderr and not out.exists()
    resumed = cli.run(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert out.read_bytes() == reference.read_bytes()


@pytest.mark.parametrize("devices, where", [("cpu,cpu", r"worker [12] \(cpu\)"), ("cpu", "embedding on cpu")])
def test_a_backend_that_raises_on_one_part_gives_one_line(reads, tmp_path, devices, where, cli):
    import re

    out, log_file = tmp_path / "f.h5", tmp_path / "f.log"
    result = cli.run("embed", str(reads), "--backend", "probe=v1", "-o", str(out), "--checkpoint-every", "20", "-q",
                       "--devices", devices, "--log-file", str(log_file), PROBE_FAIL="NNNNNN")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (line,) = error_lines(result.stderr)
    assert re.fullmatch(rf"Error: {where} failed on records 41-60: RuntimeError: probe refuses sequences containing NNNNNN", line), line
    assert "Traceback" in log_file.read_text()  # the traceback goes to the log file only
    assert not out.exists()


def test_a_failed_model_load_leaves_nothing_that_blocks_a_retry(reads, reference, tmp_path, cli):
    out = tmp_path / "l.h5"
    args = ["embed", str(reads), "--backend", "probe=v1", "-o", str(out), "--checkpoint-every", "20", "-q"]
    failed = cli.run(*args, PROBE_FAIL_LOAD="cannot read the weights")
    assert failed.returncode == 1
    assert error_lines(failed.stderr) == ["Error: embedding on cpu failed while loading the model: RuntimeError: cannot read the weights"]
    assert not (tmp_path / "l.h5.parts").exists()
    retry = cli.run(*args)
    assert retry.returncode == 0, retry.stderr
    assert out.read_bytes() == reference.read_bytes()


def test_embed_takes_the_lock_and_removes_stale_temporaries(reads, reference, tmp_path, cli):
    out = tmp_path / "t.h5"
    args = ["embed", str(reads), "--backend", "probe=v1", "-o", str(out), "--checkpoint-every", "20", "-q"]
    lock = tmp_path / ".t.h5.lock"
    import json
    import socket

    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": "now"}))
    locked = cli.run(*args)
    assert locked.returncode == 1 and f"in use by process {os.getpid()}" in locked.stderr
    lock.unlink()
    stale = [tmp_path / ".t.h5.x1y2.part", tmp_path / "t.h5.parts" / ".part-000003.h5.ab12.part"]
    stale[1].parent.mkdir()
    for path in stale:
        path.write_bytes(b"half a file of a killed run")
    result = cli.run(*args)
    assert result.returncode == 0, result.stderr
    assert not any(p.exists() for p in stale) and not lock.exists()
    assert out.read_bytes() == reference.read_bytes()
