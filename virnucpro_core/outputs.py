"""Where a command may write: never onto its own inputs, never over a file it did not make.

Every command calls :func:`refuse_inputs_as_outputs` before it writes anything (its
log file included): ``cp x.fa run/viral_sequences.fa; virnucpro predict
run/viral_sequences.fa -o run`` would otherwise replace the input with its own
result. Paths are compared by what they *are* (device and inode, so symlinks and hard
links are caught), not by how they are spelt.

:func:`refuse_existing` is the one rule for a finished output (refused unless
``--force``), and :func:`refuse_foreign_directory` keeps ``predict -o DIR`` out of a
directory of someone else's files.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from virnucpro_core.errors import ConfigError

#: files in a run directory that do not make it "someone else's" directory
RUN_BOOKKEEPING = (".virnucpro.lock",)


@dataclass(frozen=True)
class Outputs:
    """What a command writes: ``files`` by name, and ``folders`` it owns whole (checkpoint
    parts, which it may delete with everything in them)."""

    files: tuple[Path, ...] = ()
    folders: tuple[Path, ...] = field(default_factory=tuple)


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)  # follows symlinks: a link to the input is the input
    except (OSError, ValueError):
        return None
    return stat.st_dev, stat.st_ino


def _input_files(paths: Iterable[str | Path | None]) -> list[Path]:
    """The existing files among ``paths``; a folder (a Hugging Face model) stands for its files.
    ``-`` (stdin), hub names and missing paths are not files and cannot be written over."""
    found: list[Path] = []
    for value in paths:
        if value is None or str(value) in ("", "-"):
            continue
        path = Path(str(value)).expanduser()
        if path.is_dir():
            found.extend(p for p in path.rglob("*") if p.is_file())
        elif path.exists():
            found.append(path)
    return found


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def refuse_inputs_as_outputs(outputs: Outputs, inputs: Iterable[str | Path | None], *, option: str = "-o",
                             regular: bool = True) -> None:
    """Stop, before anything is written, when an output is one of the inputs or model files.

    An output that does not exist yet cannot be an input. One that exists is compared by
    ``(st_dev, st_ino)`` with every input, so ``run/x.fa`` as a symlink or hard link to
    the input is refused as surely as the input's own name. An input inside a folder the
    command owns whole (its checkpoint parts) is refused too: that folder gets deleted.
    With ``regular`` an existing output that is no regular file (``/dev/null``, a FIFO)
    is refused as well: outputs are written beside it and renamed over it, which would
    replace the device (a log file is appended to instead, so ``--log-file /dev/null`` is fine).
    """
    if regular:
        for out in outputs.files:
            try:
                mode = os.stat(out).st_mode
            except (OSError, ValueError):
                continue
            if not stat.S_ISREG(mode):
                raise ConfigError(f"{out} is {_kind(mode)}, not a file this command can write; choose another {option}")
    files = _input_files(inputs)
    if not files:
        return
    by_identity = {_identity(p): p for p in files}
    by_identity.pop(None, None)
    for out in outputs.files:
        source = by_identity.get(_identity(Path(out)))
        if source is not None:
            same = "is" if os.path.abspath(out) == os.path.abspath(source) else "is the same file as"
            raise ConfigError(f"{out} {same} the input {source}; writing it would destroy the input: "
                              f"move the input elsewhere or choose another {option}")
    for folder in outputs.folders:
        for source in files:
            if _inside(source, Path(folder)):
                raise ConfigError(f"the input {source} lies in {folder}, which this command owns and deletes; "
                                  f"move the input elsewhere or choose another {option}")


def refuse_existing(path: Path, *, force: bool, option: str = "-o") -> None:
    """The one rule for a finished output: an existing ``path`` is replaced only with ``--force``."""
    if Path(path).exists() and not force:
        raise ConfigError(f"{path} exists; choose another {option} or pass --force to replace it")


def is_run_directory(folder: Path) -> bool:
    """Whether ``folder`` holds a VirNucPro run (a ``run.json`` written by a command)."""
    try:
        manifest = json.loads((Path(folder) / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and "command" in manifest


def refuse_foreign_directory(folder: Path, *, force: bool, ignore: Iterable[Path | None] = ()) -> None:
    """``-o DIR`` must be new, empty or a VirNucPro run directory; any other folder needs ``--force``.

    Files named in ``ignore`` (the log file being written) do not count. Even with
    ``--force`` the run writes only the names it owns, so other files are never replaced.
    """
    folder = Path(folder)
    refuse_not_directory(folder)
    if force or not folder.is_dir() or is_run_directory(folder):
        return
    skip = {Path(p).resolve() for p in ignore if p is not None}
    foreign = sorted(p.name for p in folder.iterdir() if p.name not in RUN_BOOKKEEPING and p.resolve() not in skip
                     and not (p.name.startswith(".") and p.name.endswith(".part")))  # a killed run's temporaries
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise ConfigError(f"{folder} is not empty ({shown}) and is not a VirNucPro run directory; "
                          "choose a new -o, or pass --force to write the run's files into it (other files are kept)")


def refuse_not_directory(folder: Path, option: str = "-o") -> None:
    """``-o DIR`` that exists but is a file or a device (``-o /dev/null``) is named as such,
    not reported as a directory that cannot be created."""
    try:
        mode = os.stat(folder).st_mode
    except (OSError, ValueError):
        return
    if not stat.S_ISDIR(mode):
        raise ConfigError(f"{folder} is {_kind(mode) if not stat.S_ISREG(mode) else 'a file'}, not a directory; "
                          f"{option} names the directory to write into: choose another {option}")
