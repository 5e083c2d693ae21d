"""Run directories: the lock, the manifest (``run.json``) and the stage runner.

The filesystem is the truth. A stage counts as done only when the manifest says so
*and* its outputs exist; the manifest itself and every output are written atomically.
The manifest fingerprints what determines the results (inputs by size and checksum,
parameters, backends, models, precision); ``--resume`` continues only a run whose
fingerprint matches and names what differs otherwise; ``--force-resume`` discards
an unfinished run and starts again, ``--force`` replaces a finished one.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import hashlib
import json
import logging
import os
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from virnucpro_core import __version__
from virnucpro_core.atomic import write_json_atomic
from virnucpro_core.checksum import sha256_file
from virnucpro_core.errors import ConfigError, RunLockedError, VirnucproError

log = logging.getLogger(__name__)

MANIFEST = "run.json"
LOCK = ".virnucpro.lock"
CHECKPOINTS = "checkpoints"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def describe_input(path: str | Path) -> dict[str, Any]:
    """Path, size and sha256 of an input file (``-`` is stdin and cannot be fingerprinted)."""
    if str(path) == "-":
        return {"path": "-", "size": None, "sha256": None}
    p = Path(path)
    try:
        return {"path": str(p.resolve()), "size": p.stat().st_size, "sha256": sha256_file(p)}
    except FileNotFoundError:
        raise VirnucproError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise VirnucproError(f"{path}: is a directory, expected a file") from None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


def _read_text(path: str) -> str | None:
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return None


def _boot_id() -> str | None:
    """Changes at every boot (Linux): a lock from an earlier boot of this host is stale."""
    return _read_text("/proc/sys/kernel/random/boot_id")


def _pid_namespace() -> str | None:
    """Processes of another container (another pid namespace) cannot be checked from here."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _start_time(pid: int) -> str | None:
    """When ``pid`` started (clock ticks since boot), so a reused pid is not taken for the holder."""
    stat = _read_text(f"/proc/{pid}/stat")
    if not stat:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # after "pid (comm)", which may hold spaces
    return fields[19] if len(fields) > 19 else None


def lock_owner() -> dict[str, Any]:
    """What a lock records about its holder: enough to prove, on the same host, that it is dead."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "boot_id": _boot_id(), "pid_namespace": _pid_namespace(),
            "start_time": _start_time(os.getpid()), "since": _now()}


def owner_is_dead(holder: Mapping[str, Any], me: Mapping[str, Any]) -> bool:
    """``True`` only when the holder is provably gone: same host and (a later boot, or the
    same pid namespace and its pid dead or reused). A holder on another host is never
    judged from here: on a shared filesystem it may be running right now."""
    pid = holder.get("pid")
    if holder.get("host") != me["host"] or not isinstance(pid, int):
        return False
    if holder.get("boot_id") and me.get("boot_id") and holder["boot_id"] != me["boot_id"]:
        return True
    if holder.get("pid_namespace") and me.get("pid_namespace") and holder["pid_namespace"] != me["pid_namespace"]:
        return False  # (a lock of an older virnucpro has no namespace: its pid is checked as before)
    if not _pid_alive(pid):
        return True
    started = holder.get("start_time")
    return bool(started) and _start_time(pid) not in (None, started)


def _break_stale_lock(lock: Path, seen: str) -> bool:
    """Remove the stale lock whose text was ``seen``, unless another process replaced it
    meanwhile (two runs recovering the same stale lock must not remove each other's)."""
    aside = lock.with_name(f"{lock.name}.stale-{os.getpid()}")
    try:
        os.rename(lock, aside)
    except FileNotFoundError:
        return True  # another process removed it first
    if _read_text(str(aside)) == seen.strip():
        aside.unlink(missing_ok=True)
        return True
    try:  # we took a fresh lock of another run: put it back
        os.link(aside, lock)
    except OSError:
        pass
    aside.unlink(missing_ok=True)
    return False


@contextlib.contextmanager
def run_lock(outdir: Path, lock: Path | None = None) -> Iterator[None]:
    """Hold ``OUTDIR/.virnucpro.lock`` (or ``lock``) for the duration.

    The lock records host, boot id, pid namespace, pid and the pid's start time. A lock
    whose holder is provably dead on this host (:func:`owner_is_dead`: killed with -9,
    the node rebooted) is removed; a live holder's lock, and any lock written on another
    host, is never broken: the error says how to remove it by hand.
    """
    lock = lock or outdir / LOCK
    me = lock_owner()
    for _ in range(5):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                seen = lock.read_text()
                holder = json.loads(seen or "{}")
            except FileNotFoundError:
                continue
            except (OSError, ValueError):
                seen, holder = "", {}
            if not isinstance(holder, dict):
                holder = {}
            if owner_is_dead(holder, me):
                log.warning("removing the lock of process %s, which no longer runs on %s, in %s", holder.get("pid"),
                            me["host"], outdir)
                _break_stale_lock(lock, seen)
                continue
            pid, host, since = holder.get("pid"), holder.get("host"), holder.get("since", "?")
            if host == me["host"]:
                raise RunLockedError(
                    f"{outdir} is in use by process {pid} on {host} since {since}; wait for it or choose another -o "
                    f"(if that run is gone, delete {lock})"
                ) from None
            raise RunLockedError(
                f"{outdir} is in use by process {pid} on {host} since {since}; wait for it or choose another -o "
                f"(a process on another host cannot be checked from {me['host']}: if no virnucpro runs on {host} any more, "
                f"delete {lock})"
            ) from None
        with os.fdopen(fd, "w") as handle:
            json.dump(me, handle)
        break
    else:
        raise RunLockedError(f"{outdir}: could not take the lock {lock}; another run is starting there, try again")
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()


def fingerprint(identity: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _differences(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    diffs: list[str] = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            diffs.extend(_differences(a, b, name + "."))
        elif a != b:
            diffs.append(f"{name}: {a!r} -> {b!r}")
    return diffs


def remove_stale_temporaries(folder: Path, patterns: Sequence[str]) -> None:
    """Temporary files of a killed run (``.name.XXXX.part``, stdin spools). Call it only
    while holding the lock, so that no live process is writing them."""
    for pattern in patterns:
        for stale in Path(folder).glob(pattern):
            if stale.is_file():
                log.info("removing %s, left by an interrupted run", stale)
                stale.unlink(missing_ok=True)


def describe_counts(counts: Mapping[str, Any]) -> str:
    """A stage's counts in words for the log: ``98 chunks, 45 frames, dim 32, model esm2_t2``.

    Numbers come first (``45 frames``), other values after their name (``model x``);
    nested counts (per worker) are described the same way, in brackets. ``seconds`` is
    left out: the stage line already says how long it took.
    """
    words = []
    for key, value in counts.items():
        name = key.replace("_", " ")
        if key == "seconds":
            continue
        if isinstance(value, Mapping):
            inner = "; ".join(f"{k}: {describe_counts(v) if isinstance(v, Mapping) else v}" for k, v in value.items())
            words.append(f"{name} [{inner}]")
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and key != "dim":
            words.append(f"{value} {name}")
        else:
            words.append(f"{name} {value}")
    return ", ".join(words)


@dataclass(frozen=True)
class Stage:
    """One step of a run: its outputs, a function that makes them, and what it depends on.

    ``run`` returns counts (``{"frames": 123}``), which go into the manifest.
    ``identity`` holds the settings only this stage depends on (the MLP for classify,
    the threshold for report): on ``--resume`` a finished stage whose identity changed
    is redone, and so is every stage after it, without discarding earlier work.
    """

    name: str
    outputs: Sequence[Path]
    run: Callable[[], Mapping[str, Any]]
    identity: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Run:
    """An open run directory: locked, with its manifest loaded or created.

    ``identity`` is what must match for ``--resume`` (inputs, parameters, backends,
    models). ``info`` is recorded but may change between attempts (runtime settings).
    """

    outdir: Path
    command: str
    identity: Mapping[str, Any]
    info: Mapping[str, Any] = field(default_factory=dict)
    resume: bool = False
    force_resume: bool = False
    #: ``--force``: replace a finished run's outputs (``--force-resume`` discards an unfinished one)
    force: bool = False
    manifest: dict[str, Any] = field(default_factory=dict)
    resumed: bool = False
    #: once a stage runs, every later stage runs too (its inputs may have changed)
    redo_rest: bool = False

    @property
    def manifest_path(self) -> Path:
        return self.outdir / MANIFEST

    @property
    def checkpoints(self) -> Path:
        return self.outdir / CHECKPOINTS

    def _remove_stale_temporaries(self) -> None:
        remove_stale_temporaries(self.outdir, ("**/.*.part", "**/.virnucpro-stdin-*.spool"))

    def open(self) -> None:
        previous = self._read_manifest()
        if previous is not None:  # only a run directory has a killed run's temporaries; another folder's files are not ours
            self._remove_stale_temporaries()
        new_print = fingerprint(self.identity)
        if previous is not None and not self.resume and not any(
            stage.get("status") == "done" for stage in previous.get("stages", {}).values()
        ):
            log.info("%s holds a run that finished no stage; starting over", self.outdir)
            self._discard(previous)
            previous = None
        if previous is not None:
            if self.force_resume or (self.force and not self.resume):  # `--force --resume` (the interrupted line) resumes
                log.info("%s: discarding the previous run in %s", "--force" if self.force else "--force-resume", self.outdir)
                self._discard(previous)
                previous = None
            elif self.resume:
                if any(item.get("path") == "-" for item in self.identity.get("inputs", [])):
                    raise ConfigError(
                        f"{self.outdir}: INPUT is stdin, which cannot be checked against the previous run; "
                        "resume with the input as a file, or use --force-resume"
                    )
                if previous.get("fingerprint") != new_print:
                    diffs = _differences(previous.get("identity", {}), dict(self.identity))
                    raise ConfigError(
                        f"{self.outdir} holds a run with different settings ({'; '.join(diffs[:4]) or 'unknown differences'}); "
                        "use --force-resume to discard it or choose another -o"
                    )
                self.resumed = True
            else:
                done = [n for n, s in previous.get("stages", {}).items() if s.get("status") == "done"]
                command = previous.get("command", "virnucpro")
                if previous.get("status") == "done":
                    raise ConfigError(f"{self.outdir} already holds a finished {command} run; "
                                      "pass --force to replace its outputs, or choose another -o")
                raise ConfigError(
                    f"{self.outdir} already holds an unfinished {command} run"
                    f" (stages done: {', '.join(done) or 'none'}); use --resume to continue it, "
                    "--force-resume to discard it and start over, or choose another -o"
                )
        elif self.resume:
            log.info("--resume: no previous run in %s, starting a new one", self.outdir)
        if self.resumed and previous is not None:
            self.manifest = previous
            self.manifest["attempts"] = int(previous.get("attempts", 1)) + 1
        else:
            self.manifest = {
                "virnucpro_version": __version__,
                "command": self.command,
                "created": _now(),
                "fingerprint": new_print,
                "identity": dict(self.identity),
                "stages": {},
                "attempts": 1,
            }
        self.manifest["info"] = dict(self.info)
        self.manifest["status"] = "running"
        self.save()

    def _read_manifest(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.manifest_path.read_text())
        except FileNotFoundError:
            return None
        except ValueError:
            raise ConfigError(f"{self.manifest_path}: damaged manifest; use --force-resume to start over") from None

    def _discard(self, previous: Mapping[str, Any]) -> None:
        for stage in previous.get("stages", {}).values():
            for rel in stage.get("outputs", []):
                target = self.outdir / rel
                if target.is_dir():
                    shutil.rmtree(target)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        target.unlink()
        shutil.rmtree(self.checkpoints, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            self.manifest_path.unlink()

    def save(self) -> None:
        self.manifest["updated"] = _now()
        write_json_atomic(self.manifest_path, self.manifest)

    def stage_done(self, name: str) -> bool:
        entry = self.manifest.get("stages", {}).get(name)
        if not entry or entry.get("status") != "done":
            return False
        return all((self.outdir / rel).exists() for rel in entry.get("outputs", []))

    def counts(self, name: str) -> Mapping[str, Any]:
        return self.manifest.get("stages", {}).get(name, {}).get("counts", {})

    def run_stage(self, stage: Stage) -> Mapping[str, Any]:
        """Run ``stage`` unless a resumed run already finished it with the same settings;
        record status, settings and counts."""
        stage_print = fingerprint(stage.identity)
        if self.resumed and not self.redo_rest and self.stage_done(stage.name):
            previous = self.manifest["stages"][stage.name]
            if previous.get("fingerprint", stage_print) == stage_print:
                log.info("stage %s: done in a previous attempt, skipped", stage.name)
                return self.counts(stage.name)
            diffs = _differences(previous.get("identity", {}), dict(stage.identity))
            log.info("stage %s: settings changed (%s); redoing it and the stages after it", stage.name, "; ".join(diffs))
        self.redo_rest = True
        rel_outputs = [os.path.relpath(Path(p).resolve(), self.outdir) for p in stage.outputs]
        entry = {"status": "running", "started": _now(), "attempt": self.manifest.get("attempts", 1), "outputs": rel_outputs,
                 "identity": dict(stage.identity), "fingerprint": stage_print}
        self.manifest.setdefault("stages", {})[stage.name] = entry
        self.save()
        log.info("stage %s: started", stage.name)
        start = time.monotonic()
        try:
            counts = dict(stage.run())
        except BaseException as exc:
            entry.update(status="failed", error=f"{type(exc).__name__}: {exc}"[:500], seconds=round(time.monotonic() - start, 3))
            self.save_after_failure()
            raise
        entry.update(status="done", finished=_now(), seconds=round(time.monotonic() - start, 3), counts=counts)
        self.save()
        described = describe_counts(counts)
        log.info("stage %s: done in %.1f s%s", stage.name, entry["seconds"], f" ({described})" if described else "")
        return counts

    def save_after_failure(self) -> None:
        """Record a failure if the disk lets us: on a full disk the manifest cannot be written
        either, and that must not hide the error that stopped the run (``--resume`` works
        from the manifest as it was)."""
        try:
            self.save()
        except (OSError, VirnucproError) as exc:
            log.warning("could not record the failure in %s: %s", self.manifest_path, exc)

    def finish(self, status: str = "done", **extra: Any) -> None:
        self.manifest["status"] = status
        self.manifest.update(extra)
        self.save()


@contextlib.contextmanager
def open_run(
    outdir: Path,
    command: str,
    identity: Mapping[str, Any],
    *,
    info: Mapping[str, Any] | None = None,
    resume: bool = False,
    force_resume: bool = False,
    force: bool = False,
) -> Iterator[Run]:
    """Create/lock ``outdir`` and yield a :class:`Run`; the manifest records failure too.

    A run that fails (or is interrupted) before any stage is done, in this attempt or an
    earlier one, leaves nothing to resume: what it created in ``outdir`` is removed (and
    ``outdir`` itself when it created it), so the directory is as the user left it.
    """
    outdir = Path(outdir).resolve()
    existed = outdir.is_dir()
    before = set(outdir.iterdir()) if existed else set()
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VirnucproError(f"{outdir}: cannot create the output directory ({exc.strerror})") from None
    nothing_done = False
    try:
        with run_lock(outdir):
            run = Run(outdir, command, identity, dict(info or {}), resume=resume, force_resume=force_resume, force=force)
            run.open()
            try:
                yield run
            except BaseException as exc:
                details = getattr(exc, "details", "")  # a worker's traceback: run.json and --log-file only
                run.manifest.update(status="interrupted" if type(exc).__name__ == "RunInterrupted" else "failed",
                                    error=f"{type(exc).__name__}: {exc}"[:500], **({"traceback": details} if details else {}))
                run.save_after_failure()
                nothing_done = not any(s.get("status") == "done" for s in run.manifest.get("stages", {}).values())
                raise
            if run.manifest.get("status") == "running":
                run.finish("done")
    finally:
        if nothing_done:
            remove_created(outdir, before, remove_dir=not existed)


def remove_created(outdir: Path, before: set[Path], *, remove_dir: bool) -> None:
    """Remove what appeared in ``outdir`` since ``before`` was listed (and ``outdir`` itself if asked and empty)."""
    for entry in outdir.iterdir() if outdir.is_dir() else ():
        if entry in before:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
    if remove_dir:
        with contextlib.suppress(OSError):
            outdir.rmdir()
    log.debug("no stage was done: removed what this run created in %s", outdir)
