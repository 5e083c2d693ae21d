"""Hostile pickle payloads for the tests of every model loader (the MLP's, each backend's).

Each payload, when unpickled by plain :mod:`pickle` (or ``torch.load(weights_only=False)``),
writes ``pwned`` to a marker file, so a test can prove that the payload is live and
that our loader never ran it. They avoid ``os``/``posix``/``sys``, which torch's
restricted unpickler blocks by module name on its own: these are refused only by an
allow-list, which is what a loader's tests must show holds.

- ``builtins.exec``: ``exec("open(marker, 'w').write('pwned')")``;
- ``builtins.eval``: the same through ``eval``;
- ``getattr chain``: ``getattr(__import__('builtins'), 'exec')(code)``, the callable
  itself built by the pickle (no ``exec`` global in the stream);
- ``bound method``: ``getattr(pathlib.Path(marker), 'write_text')('pwned')``, as pickle
  writes a bound method (no code string at all).
"""

from __future__ import annotations

import pathlib
from pathlib import Path


def _code(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').write('pwned')"


class _Exec:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (_code(self.marker),))


class _Eval:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (eval, (_code(self.marker),))


class _ImportBuiltins:
    def __reduce__(self):
        return (__import__, ("builtins",))


class _GetExec:
    """Pickles as ``getattr(__import__('builtins'), 'exec')``; callable, as a reduce function must be."""

    def __call__(self, *args):  # never called here: only its pickled form matters
        raise RuntimeError("a payload helper is not meant to be called")

    def __reduce__(self):
        return (getattr, (_ImportBuiltins(), "exec"))


class _GetattrChain:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (_GetExec(), (_code(self.marker),))


class _BoundMethod:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path(self.marker).write_text, ("pwned",))


def hostile_payloads(marker: Path) -> dict[str, object]:
    """Name -> an object whose unpickling writes ``marker`` (see the module docstring)."""
    marker = Path(marker)
    return {
        "builtins.exec": _Exec(marker),
        "builtins.eval": _Eval(marker),
        "getattr chain": _GetattrChain(marker),
        "bound method": _BoundMethod(marker),
    }


#: The globals each payload's pickle names (what a refusal may cite).
PAYLOAD_GLOBALS = {
    "builtins.exec": ("builtins.exec",),
    "builtins.eval": ("builtins.eval",),
    "getattr chain": ("builtins.getattr", "builtins.__import__"),
    "bound method": ("builtins.getattr", "pathlib"),
}
