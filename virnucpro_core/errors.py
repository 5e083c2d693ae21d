"""Errors that reach the user as one line, without a traceback.

Everything the user can fix (bad input, missing model, unknown backend, a locked run
directory) raises a subclass of :class:`VirnucproError`; the CLI prints its message
after ``Error:`` and exits non-zero. Messages say what happened, to which file or
record, and what to do next.
"""


class VirnucproError(Exception):
    """Base class of user-facing errors; ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class InputError(VirnucproError):
    """An input file or record cannot be used as it is."""


class ModelError(VirnucproError):
    """A model file is missing, unsafe or does not fit."""


class BackendError(VirnucproError):
    """An embedding backend is unknown, not installed or not usable here."""


class ConfigError(VirnucproError):
    """Options or a config file contradict each other or the run directory."""

    exit_code = 2


class RunLockedError(VirnucproError):
    """Another live process holds the run directory."""


class OutputWriteError(VirnucproError):
    """Writing an output failed (a full disk, a quota, an I/O error). The file being written
    is discarded, never left under its final name, and what was finished before is intact,
    so the user frees space and runs again (``--resume`` keeps the finished parts)."""

    def __init__(self, path: object, exc: OSError) -> None:
        self.path = str(path)
        self.errno = exc.errno
        self.strerror = exc.strerror or str(exc)
        super().__init__(
            f"{self.path}: {self.strerror}; free space there, then run the command again "
            "(predict and embed: with --resume, which keeps the finished parts)"
        )
