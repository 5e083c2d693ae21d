"""Reusable assertions that every embedding backend must pass.

The core trusts a backend for three things it cannot check cheaply at run time: that
row ``i`` of ``embed()`` belongs to ``sequences[i]`` (a backend that sorts by length
and forgets to unsort silently pairs one read's protein with another read's DNA),
that batching does not change the numbers (so a resumed run or a different
``--batch-tokens`` gives the same result), and that importing the plugin is cheap (so
``virnucpro --help`` and ``virnucpro backends`` do not pay for torch). These helpers
turn those promises into plain ``AssertionError``s with a message that says what is
wrong, so a plugin's own test suite can call them::

    from virnucpro_core.testing.contract import check_backend_descriptor, check_embedder_contract

    def test_contract():
        check_embedder_contract(MyEmbedder(...), ["ACGTAC", "GGGTTTAAAC", "TTAC"])

    def test_descriptor():
        check_backend_descriptor(my_backend)

Nothing here imports torch; the helpers work on any embedder that returns numpy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any, Callable, Sequence

import numpy as np

from virnucpro_core.backends import Backend

#: Modules a plugin must not import when it is merely loaded (they cost seconds).
HEAVY_MODULES: tuple[str, ...] = ("torch", "transformers", "esm", "flash_attn")


def _name(embedder: Any) -> str:
    return f"{type(embedder).__name__}({getattr(embedder, 'model_id', '?')!s})"


def _embed(embedder: Any, sequences: list[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Call ``embed`` on a private copy and check the copy was not reordered in place."""
    given = list(sequences)
    out = embedder.embed(given, progress) if progress is not None else embedder.embed(given)
    assert given == list(sequences), (
        f"{_name(embedder)}.embed() changed the list it was given (sorted or edited it in place); "
        "work on a copy so the caller's order stays the order of the rows"
    )
    return out


def _check_array(embedder: Any, out: Any, n: int, what: str) -> np.ndarray:
    """Type, dtype, shape and finiteness of one ``embed`` result."""
    name = _name(embedder)
    assert isinstance(out, np.ndarray), (
        f"{name}.embed({what}) returned {type(out).__name__}, expected numpy.ndarray "
        "(convert tensors with .float().cpu().numpy())"
    )
    assert out.dtype == np.float32, f"{name}.embed({what}) returned dtype {out.dtype}, expected float32"
    assert out.shape == (n, embedder.dim), (
        f"{name}.embed({what}) returned shape {out.shape}, expected ({n}, {embedder.dim}) = (len(sequences), embedder.dim)"
    )
    if out.size:
        bad = np.argwhere(~np.isfinite(out))
        assert bad.size == 0, (
            f"{name}.embed({what}) returned {len(bad)} non-finite values (NaN or inf), first at row {bad[0][0]}, "
            f"column {bad[0][1]}"
        )
    return out


def _short(seq: str) -> str:
    return repr(seq) if len(seq) <= 20 else repr(seq[:20]) + "..."


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0


def _permutation(n: int) -> list[int]:
    """Rotate by one: a fixed permutation that moves every row when ``n >= 2``, so no
    row can pass the order check by staying where it was."""
    return [(i + 1) % n for i in range(n)]


def check_embedder_contract(embedder: Any, sequences: Sequence[str], *, atol: float = 1e-5) -> None:
    """Assert that ``embedder`` keeps the :class:`~virnucpro_core.backends.Embedder` contract.

    Checks, each with its own message:

    - ``model_id`` is a non-empty string, ``dim`` a positive int, ``embed`` and
      ``close`` are callable;
    - ``embed(sequences)`` returns a finite float32 ``numpy.ndarray`` of shape
      ``(len(sequences), dim)`` and leaves the given list as it was;
    - the rows are not all identical (else the order checks below prove nothing:
      pass sequences that embed differently);
    - row ``i`` belongs to ``sequences[i]``: embedding a permuted copy gives the
      permuted rows, and embedding each sequence on its own gives its row, both
      within ``atol`` (batching must not change results);
    - an empty input gives shape ``(0, dim)``;
    - the counts passed to ``progress`` are non-negative ints summing to
      ``len(sequences)`` (and to 0 for an empty input).

    ``sequences`` should hold at least two sequences of different lengths, so that
    length-sorted batching is exercised. ``close()`` is not called: the caller owns
    the embedder.
    """
    sequences = list(sequences)
    n = len(sequences)
    name = _name(embedder)
    assert n >= 2, "check_embedder_contract needs at least two sequences to check the row order"

    model_id = getattr(embedder, "model_id", None)
    assert isinstance(model_id, str) and model_id, f"{type(embedder).__name__}.model_id must be a non-empty str, got {model_id!r}"
    dim = getattr(embedder, "dim", None)
    assert isinstance(dim, (int, np.integer)) and not isinstance(dim, bool) and dim > 0, (
        f"{name}.dim must be a positive int, got {dim!r}"
    )
    for method in ("embed", "close"):
        assert callable(getattr(embedder, method, None)), f"{name} has no callable {method}() method"

    full = _check_array(embedder, _embed(embedder, sequences), n, f"{n} sequences")
    assert not np.all(full == full[0]), (
        f"{name}.embed() gave the same row for all {n} sequences; pass sequences that embed differently "
        "so the row-order checks can fail"
    )

    perm = _permutation(n)
    permuted = _check_array(embedder, _embed(embedder, [sequences[j] for j in perm]), n, "permuted sequences")
    for i, j in enumerate(perm):
        diff = _max_diff(permuted[i], full[j])
        assert diff <= atol, (
            f"{name}: row order is wrong: sequence {j} ({_short(sequences[j])}) embedded at position {i} of a permuted "
            f"input differs from its row in the original order by max |delta| {diff:.3g} > {atol:g}; "
            "row i of embed() must belong to sequences[i] (unsort after length-sorting)"
        )

    for j, seq in enumerate(sequences):
        alone = _check_array(embedder, _embed(embedder, [seq]), 1, f"[sequences[{j}]]")
        diff = _max_diff(alone[0], full[j])
        assert diff <= atol, (
            f"{name}: sequence {j} ({_short(seq)}) embedded alone differs from its row in a batch of {n} by max "
            f"|delta| {diff:.3g} > {atol:g}; batching (padding, masks, packing) must not change results"
        )

    _check_array(embedder, _embed(embedder, []), 0, "[]")

    for label, batch in (("sequences", sequences), ("[]", [])):
        counts: list[Any] = []
        _check_array(embedder, _embed(embedder, batch, counts.append), len(batch), f"{label}, progress")
        bad = [c for c in counts if not isinstance(c, (int, np.integer)) or isinstance(c, bool) or c < 0]
        assert not bad, f"{name}.embed() called progress with {bad[0]!r}; it takes the number of sequences just finished (int >= 0)"
        assert sum(counts) == len(batch), (
            f"{name}.embed({label}) reported progress {counts} summing to {sum(counts)}, expected {len(batch)}: "
            "call progress(k) once per finished batch of k sequences"
        )


def check_backend_descriptor(
    backend: Any,
    *,
    module: str | None = None,
    heavy: Sequence[str] = HEAVY_MODULES,
    timeout: float = 120.0,
) -> None:
    """Assert that a registered backend is well formed and cheap to import.

    ``backend`` must be a :class:`~virnucpro_core.backends.Backend` with a callable
    ``factory`` and ``check_available``, and its availability check must return
    ``None`` or a non-empty reason string without raising. Then ``module`` (default:
    the module that defines ``backend.factory``, normally the plugin module named in
    the entry point) is imported in a fresh interpreter with this process's
    ``sys.path``; none of ``heavy`` may appear in ``sys.modules`` afterwards.
    """
    assert isinstance(backend, Backend), (
        f"expected a virnucpro_core.backends.Backend, got {type(backend).__module__}.{type(backend).__name__}"
    )
    assert callable(backend.factory), f"backend {backend.key}: factory {backend.factory!r} is not callable"
    assert callable(backend.check_available), f"backend {backend.key}: check_available {backend.check_available!r} is not callable"
    try:
        reason = backend.check_available()
    except Exception as exc:  # unavailable_reason() would hide this; a plugin author wants to see it
        raise AssertionError(f"backend {backend.key}: check_available() raised {type(exc).__name__}: {exc}; return a reason string instead") from exc
    assert reason is None or (isinstance(reason, str) and reason.strip()), (
        f"backend {backend.key}: check_available() returned {reason!r}; return None when usable, else a short reason"
    )

    module = module or getattr(backend.factory, "__module__", None)
    assert module and module != "__main__", (
        f"backend {backend.key}: cannot tell which module registers it; pass module='your_package.plugin'"
    )
    probe = (
        "import importlib, json, sys\n"
        f"importlib.import_module({module!r})\n"
        f"print(json.dumps(sorted(m for m in {list(heavy)!r} if m in sys.modules)))\n"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"]
        raise AssertionError(f"backend {backend.key}: 'import {module}' failed in a fresh interpreter: {lines[-1]}")
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not loaded, (
        f"backend {backend.key}: 'import {module}' imports {', '.join(loaded)}; move those imports inside the "
        "factory or embed() so listing backends stays fast"
    )
