"""Run directories: lock, manifest, resume semantics, atomic writes, runtime config."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from virnucpro_core.atomic import atomic_open
from virnucpro_core.errors import ConfigError, RunLockedError
from virnucpro_core.rundir import LOCK, Stage, describe_input, open_run, run_lock
from virnucpro_core.runtime import RuntimeConfig


def identity(tmp_path, chunk_size=500):
    src = tmp_path / "in.fa"
    if not src.exists():
        src.write_text(">a\nACGT\n")
    return {"inputs": [describe_input(src)], "parameters": {"chunk_size": chunk_size}}


def make_stage(outdir, name, calls, fail=False):
    def run():
        calls.append(name)
        if fail:
            raise RuntimeError("killed")
        with atomic_open(outdir / f"{name}.txt") as handle:
            handle.write(name)
        return {"items": len(calls)}

    return Stage(name, [outdir / f"{name}.txt"], run)


def test_manifest_records_inputs_parameters_and_stage_counts(tmp_path):
    out = tmp_path / "run"
    calls: list[str] = []
    with open_run(out, "prepare", identity(tmp_path), info={"runtime": {"device": "cpu"}}) as run:
        assert run.run_stage(make_stage(out, "prepare", calls)) == {"items": 1}
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["status"] == "done"
    assert manifest["command"] == "prepare"
    assert manifest["identity"]["parameters"] == {"chunk_size": 500}
    entry = manifest["identity"]["inputs"][0]
    assert entry["size"] == 8 and len(entry["sha256"]) == 64
    stage = manifest["stages"]["prepare"]
    assert stage["status"] == "done" and stage["counts"] == {"items": 1} and stage["outputs"] == ["prepare.txt"]
    assert manifest["info"] == {"runtime": {"device": "cpu"}}
    assert not (out / LOCK).exists()


def test_second_run_without_flags_refuses_and_loses_nothing(tmp_path):
    out = tmp_path / "run"
    with open_run(out, "prepare", identity(tmp_path)) as run:
        run.run_stage(make_stage(out, "prepare", []))
    before = (out / "prepare.txt").read_text()
    with pytest.raises(ConfigError) as err:
        with open_run(out, "prepare", identity(tmp_path)):
            pass
    assert str(err.value) == f"{out} already holds a finished prepare run; pass --force to replace its outputs, or choose another -o"
    assert (out / "prepare.txt").read_text() == before


def test_an_unfinished_run_names_resume_and_force_resume(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError):
        with open_run(out, "predict", identity(tmp_path)) as run:
            run.run_stage(make_stage(out, "prepare", []))
            run.run_stage(make_stage(out, "embed", [], fail=True))
    with pytest.raises(ConfigError) as err:
        with open_run(out, "predict", identity(tmp_path)):
            pass
    assert str(err.value) == (
        f"{out} already holds an unfinished predict run (stages done: prepare); use --resume to continue it, "
        "--force-resume to discard it and start over, or choose another -o"
    )


def test_force_replaces_a_finished_run_and_keeps_other_files(tmp_path):
    out = tmp_path / "run"
    calls: list[str] = []
    with open_run(out, "prepare", identity(tmp_path)) as run:
        run.run_stage(make_stage(out, "prepare", calls))
    (out / "notes.txt").write_text("mine")
    with open_run(out, "prepare", identity(tmp_path, chunk_size=300), force=True) as run:
        assert not (out / "prepare.txt").exists()
        run.run_stage(make_stage(out, "prepare", calls))
    assert calls == ["prepare", "prepare"] and (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / "run.json").read_text())["identity"]["parameters"] == {"chunk_size": 300}


def test_resume_skips_finished_stages_and_redoes_failed_ones(tmp_path):
    out = tmp_path / "run"
    calls: list[str] = []
    with pytest.raises(RuntimeError):
        with open_run(out, "predict", identity(tmp_path)) as run:
            run.run_stage(make_stage(out, "prepare", calls))
            run.run_stage(make_stage(out, "embed", calls, fail=True))
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["status"] == "failed" and manifest["stages"]["embed"]["status"] == "failed"
    with open_run(out, "predict", identity(tmp_path), resume=True) as run:
        assert run.resumed
        run.run_stage(make_stage(out, "prepare", calls))
        run.run_stage(make_stage(out, "embed", calls))
    assert calls == ["prepare", "embed", "embed"]
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["attempts"] == 2 and manifest["status"] == "done"


def test_a_stage_whose_output_vanished_is_redone_on_resume(tmp_path):
    out = tmp_path / "run"
    calls: list[str] = []
    with open_run(out, "predict", identity(tmp_path)) as run:
        run.run_stage(make_stage(out, "prepare", calls))
    (out / "prepare.txt").unlink()
    with open_run(out, "predict", identity(tmp_path), resume=True) as run:
        run.run_stage(make_stage(out, "prepare", calls))
    assert calls == ["prepare", "prepare"]


def test_resume_with_different_settings_names_what_differs(tmp_path):
    out = tmp_path / "run"
    with open_run(out, "predict", identity(tmp_path)) as run:
        run.run_stage(make_stage(out, "prepare", []))
    with pytest.raises(ConfigError) as err:
        with open_run(out, "predict", identity(tmp_path, chunk_size=300), resume=True):
            pass
    assert str(err.value) == (
        f"{out} holds a run with different settings (parameters.chunk_size: 500 -> 300); "
        "use --force-resume to discard it or choose another -o"
    )
    (tmp_path / "in.fa").write_text(">a\nACGTT\n")
    with pytest.raises(ConfigError, match=r"inputs: \[.*\] -> \[.*\]"):
        with open_run(out, "predict", identity(tmp_path), resume=True):
            pass


def test_force_resume_discards_outputs_and_checkpoints(tmp_path):
    out = tmp_path / "run"
    calls: list[str] = []
    with open_run(out, "predict", identity(tmp_path)) as run:
        run.run_stage(make_stage(out, "prepare", calls))
        (run.checkpoints / "x").mkdir(parents=True)
    unrelated = out / "notes.txt"
    unrelated.write_text("mine")
    with open_run(out, "predict", identity(tmp_path, chunk_size=300), force_resume=True) as run:
        assert not (out / "prepare.txt").exists() and not run.checkpoints.exists()
        run.run_stage(make_stage(out, "prepare", calls))
    assert calls == ["prepare", "prepare"]
    assert unrelated.read_text() == "mine"


def test_lock_refuses_a_live_holder_and_recovers_a_dead_one(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    with run_lock(out):
        with pytest.raises(RunLockedError, match=r"is in use by process \d+ on .*; wait for it or choose another -o"):
            with run_lock(out):
                pass
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket

    (out / LOCK).write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(), "since": "x"}))
    with run_lock(out):
        assert json.loads((out / LOCK).read_text())["pid"] == os.getpid()
    assert not (out / LOCK).exists()


def test_atomic_open_leaves_the_old_file_on_failure(tmp_path):
    target = tmp_path / "x.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_open(target) as handle:
            handle.write("new, half")
            raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_runtime_config_from_flags_over_file(tmp_path):
    cfg = tmp_path / "vnp.toml"
    cfg.write_text('[runtime]\ndevice = "cpu"\nprecision = "bf16"\nbatch_tokens = 4096\n')
    rc = RuntimeConfig.from_sources({"precision": "fp16", "batch_size": None}, cfg)
    assert (rc.device, rc.precision, rc.batch_tokens, rc.batch_size) == ("cpu", "fp16", 4096, None)
    cfg.write_text("[runtime]\nbatch_tokenz = 1\n")
    with pytest.raises(ConfigError, match="unknown \\[runtime\\] key\\(s\\) batch_tokenz"):
        RuntimeConfig.from_sources({}, cfg)
    with pytest.raises(ConfigError, match="precision 'fp8': choose one of fp32, bf16, fp16"):
        RuntimeConfig(precision="fp8")
    with pytest.raises(ConfigError, match="--resume and --force-resume contradict"):
        RuntimeConfig(resume=True, force_resume=True)
    assert RuntimeConfig(device="cpu").embedder_options("m", max_length=7).device == "cpu"


def test_device_resolution_without_cuda():
    from virnucpro_core.devices import resolve_device

    import torch

    if torch.cuda.is_available():
        pytest.skip("this test describes a machine without CUDA")
    assert resolve_device("auto") == "cpu"
    with pytest.raises(ConfigError, match="CUDA is not available on this machine; use --device cpu"):
        resolve_device("cuda:1")
    with pytest.raises(ConfigError, match="use auto, cpu, cuda or cuda:N"):
        resolve_device("gpu2")


def test_atomic_outputs_get_ordinary_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_open(tmp_path / "out.txt") as handle:
            handle.write("x")
    finally:
        os.umask(old)
    assert (tmp_path / "out.txt").stat().st_mode & 0o777 == 0o644


def test_a_run_that_finished_no_stage_is_simply_started_again(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError):
        with open_run(out, "predict", identity(tmp_path)) as run:
            run.run_stage(make_stage(out, "prepare", [], fail=True))
    calls: list[str] = []
    with open_run(out, "predict", identity(tmp_path, chunk_size=300)) as run:
        run.run_stage(make_stage(out, "prepare", calls))
    assert calls == ["prepare"]
    assert json.loads((out / "run.json").read_text())["attempts"] == 1


def test_temporaries_of_a_killed_run_are_removed_when_the_directory_is_opened_again(tmp_path):
    out = tmp_path / "run"
    with open_run(out, "prepare", identity(tmp_path)) as run:
        run.run_stage(make_stage(out, "prepare", []))
    (out / "sub").mkdir()
    stale = [out / ".prepare.txt.abc123.part", out / "sub" / ".x.h5.q1.part", out / ".virnucpro-stdin-zz.spool"]
    for path in stale:
        path.write_text("half")
    with open_run(out, "prepare", identity(tmp_path), resume=True):
        pass
    assert not any(path.exists() for path in stale)
    assert (out / "prepare.txt").read_text() == "prepare"


def test_force_with_resume_resumes_and_a_foreign_folders_part_files_are_kept(tmp_path):
    """The interrupted line repeats the user's flags with --resume: --force must not then discard the run.
    And a folder without run.json is not a run: its `.x.part` files are not a killed run's temporaries."""
    out = tmp_path / "run"
    out.mkdir()
    (out / ".draft.part").write_text("the user's")
    calls: list[str] = []
    with pytest.raises(RuntimeError):
        with open_run(out, "predict", identity(tmp_path), force=True) as run:
            run.run_stage(make_stage(out, "prepare", calls))
            run.run_stage(make_stage(out, "embed", calls, fail=True))
    assert (out / ".draft.part").read_text() == "the user's"
    with open_run(out, "predict", identity(tmp_path), force=True, resume=True) as run:
        assert run.resumed
        run.run_stage(make_stage(out, "prepare", calls))
        run.run_stage(make_stage(out, "embed", calls))
    assert calls == ["prepare", "embed", "embed"]


def test_a_full_disk_while_recording_a_failure_does_not_hide_the_failure(tmp_path, monkeypatch):
    """On a full disk run.json cannot be saved either; the error that stopped the stage
    (the one naming the file and "No space left on device") must still reach the user."""
    import errno

    from virnucpro_core import rundir
    from virnucpro_core.errors import OutputWriteError

    out = tmp_path / "run"
    disk_full = OutputWriteError(out / "part-000001.h5", OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))

    def stage():
        def no_room(path, data):
            raise OutputWriteError(path, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))

        monkeypatch.setattr(rundir, "write_json_atomic", no_room)
        raise disk_full

    with pytest.raises(OutputWriteError) as raised:
        with open_run(out, "predict", identity(tmp_path)) as run:
            run.run_stage(Stage("embed", [out / "e.h5"], stage))
    assert raised.value is disk_full
    assert not (out / LOCK).exists()


def _dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout)


def test_a_lock_is_broken_only_when_its_holder_is_provably_dead_on_this_host(tmp_path):
    """Shared filesystems: a lock written on another host is never broken (its process may
    be running there now), whatever its pid means here; on this host a dead pid, a pid
    reused by another process, or an earlier boot prove the holder gone; a live holder,
    or one in another pid namespace (a container), is never broken."""
    from virnucpro_core.rundir import lock_owner

    out = tmp_path / "run"
    out.mkdir()
    me = lock_owner()
    assert me["boot_id"] and me["pid_namespace"] and me["start_time"]  # Linux: every proof is available
    lock = out / LOCK
    broken = {
        "dead pid": dict(me, pid=_dead_pid()),
        "pid reused by another process": dict(me, start_time=str(int(me["start_time"]) - 1)),
        "an earlier boot": dict(me, boot_id="00000000-0000-0000-0000-000000000000"),
    }
    kept = {
        "the live holder": dict(me),
        "a holder in another pid namespace": dict(me, pid=_dead_pid(), pid_namespace="pid:[1]"),
    }
    for why, holder in broken.items():
        lock.write_text(json.dumps(holder))
        with run_lock(out):
            assert json.loads(lock.read_text())["start_time"] == me["start_time"], why
        assert not lock.exists() and not list(out.iterdir()), why
    for why, holder in kept.items():
        lock.write_text(json.dumps(holder))
        with pytest.raises(RunLockedError, match=rf"in use by process {holder['pid']} on {me['host']} .*delete {lock}\)$"):
            with run_lock(out):
                pass
        assert json.loads(lock.read_text()) == holder, why
    other_host = dict(me, host="node17", pid=_dead_pid())
    lock.write_text(json.dumps(other_host))
    with pytest.raises(RunLockedError) as refused:
        with run_lock(out):
            pass
    assert str(refused.value) == (
        f"{out} is in use by process {other_host['pid']} on node17 since {me['since']}; wait for it or choose another -o "
        f"(a process on another host cannot be checked from {me['host']}: if no virnucpro runs on node17 any more, delete {lock})"
    )
    assert json.loads(lock.read_text()) == other_host


def test_two_runs_recovering_one_stale_lock_do_not_remove_each_others(tmp_path):
    from virnucpro_core.rundir import _break_stale_lock, lock_owner

    out = tmp_path / "run"
    out.mkdir()
    lock = out / LOCK
    stale = json.dumps(dict(lock_owner(), pid=_dead_pid()))
    fresh = json.dumps(lock_owner())
    lock.write_text(fresh)  # another run broke the stale lock and took its own before this one acted
    assert _break_stale_lock(lock, stale) is False
    assert lock.read_text() == fresh and sorted(p.name for p in out.iterdir()) == [LOCK]
    lock.write_text(stale)
    assert _break_stale_lock(lock, stale) is True and not lock.exists()
