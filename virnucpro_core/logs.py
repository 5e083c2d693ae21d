"""Logging for the CLI: concise on the terminal, complete in ``--log-file``."""

from __future__ import annotations

import logging
import sys
from pathlib import Path


#: ``log.info(..., extra=FILE_ONLY)`` goes to ``--log-file`` but not the terminal (for what is also echoed).
FILE_ONLY = {"file_only": True}


def setup_logging(verbose: int = 0, quiet: bool = False, log_file: Path | None = None) -> None:
    """``-q``: warnings only; default: info; ``-v``: debug. The log file always gets debug."""
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_virnucpro", False):
            root.removeHandler(handler)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(level)
    console.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    console._virnucpro = True  # type: ignore[attr-defined]
    console.addFilter(lambda record: not getattr(record, "file_only", False))
    root.addHandler(console)
    root.setLevel(logging.DEBUG if log_file else level)
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file)
        handler.setLevel(logging.DEBUG)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        handler._virnucpro = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    for noisy in ("urllib3", "filelock", "h5py", "matplotlib", "transformers", "huggingface_hub", "PIL"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
