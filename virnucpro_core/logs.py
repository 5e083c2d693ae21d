"""Logging for the CLI: concise on the terminal, complete in ``--log-file``."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path


#: ``log.info(..., extra=FILE_ONLY)`` goes to ``--log-file`` but not the terminal (for what is also echoed).
FILE_ONLY = {"file_only": True}


def setup_logging(verbose: int = 0, quiet: bool = False, log_file: Path | None = None) -> None:
    """``-q``: warnings only; default: info; ``-v``: debug. The log file always gets debug.

    Library loggers and progress bars are kept quiet unless ``-v`` (:func:`quiet_libraries`).
    """
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_virnucpro", False):
            root.removeHandler(handler)
    from virnucpro_core.progress import BarSafeHandler

    console = BarSafeHandler(sys.stderr)  # a record never lands on a progress bar's line
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
    quiet_libraries(verbose)


#: Libraries whose warnings are not ours to show: loading notes, retries, deprecations.
NOISY_LOGGERS = ("urllib3", "filelock", "h5py", "matplotlib", "transformers", "huggingface_hub", "PIL", "httpx",
                 "py.warnings")
#: Read by transformers and huggingface_hub when they are imported (after this runs: the
#: CLI imports them lazily): their own stderr handlers and progress bars (the
#: weight-loading bar, download bars) stay off the console.
QUIET_LIBRARY_ENV = {
    "TRANSFORMERS_VERBOSITY": "error",
    "HF_HUB_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
}


def quiet_libraries(verbose: int) -> None:
    """Without ``-v``, library warnings and progress bars stay off the console (our own
    messages say what matters, once); with ``-v`` they are all shown. A variable the
    user set is left alone."""
    logging.captureWarnings(True)  # Python warnings (deprecations in libraries) become the "py.warnings" logger
    if verbose:
        for name in NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.DEBUG if verbose > 1 else logging.INFO)
        return
    for name, value in QUIET_LIBRARY_ENV.items():
        os.environ.setdefault(name, value)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
