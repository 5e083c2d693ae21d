"""The report of one GPU check: each step recorded as it ends, the JSON rewritten after each.

A GPU is lent for minutes; a check that stops at its first exception, or writes its
results only at the end, can come back with nothing. So every step of
``gpu_check_esm2.py`` and ``bench_dnabert.py --gpu-check`` runs through
:meth:`CheckReport.run`, which records what it returned or the exception it raised and
goes on, and the report file is replaced (atomically) after every step: a run cut short
by a timeout keeps every step that finished.

A step's ``status`` is one of:

- ``passed`` / ``failed``: it returned a dict whose ``passed`` is true / false (a criterion);
- ``done``: it returned measurements without a criterion (benchmarks);
- ``error``: it raised; ``error`` holds the exception's first line, ``traceback`` the last lines;
- ``skipped``: it could not run here; ``missing_dependency`` says whether installing a package
  would have let it run (flash-attn, fair-esm) rather than the device not supporting it (a CPU).

The check passes when no step failed, raised or was skipped for a missing dependency, and
at least one step passed; its exit status is 0 then, 1 otherwise.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from virnucpro_core.atomic import write_json_atomic


#: What the log line of a step shows (the JSON has everything).
BRIEF = ("error", "reason", "min_cosine", "worst_norm_ratio_deviation", "max_relative", "failures", "agreement_with_fp32",
         "max_abs_diff", "max_norm_ratio_error", "seconds")


def _plain(value: Any) -> Any:
    """JSON-able: numpy scalars and arrays, paths and tuples become plain values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return value


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()


@dataclass
class CheckReport:
    """Steps of one check, written to ``path`` after each; ``header`` says what ran where."""

    path: Path
    header: dict[str, Any]
    steps: list[dict[str, Any]] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    def run(self, name: str, step: Callable[[], dict[str, Any] | None]) -> dict[str, Any] | None:
        """Run ``step``; record its dict (or its exception) under ``name``; return the dict or ``None``."""
        start = time.perf_counter()
        try:
            result = step() or {}
        except Exception as exc:  # one implementation failing must not stop the others
            self.error(name, exc, seconds=time.perf_counter() - start)
            return None
        status = "done" if "passed" not in result else "passed" if result["passed"] else "failed"
        self._add({"name": name, "status": status, **result, "seconds": time.perf_counter() - start})
        return result

    def error(self, name: str, exc: BaseException, **details: Any) -> None:
        """Record ``exc`` (raised by ``name``, in an ``except`` block) as an error step."""
        self._add({"name": name, "status": "error", "error": first_line(exc),
                   "traceback": traceback.format_exc().strip().splitlines()[-12:], **details})

    def skip(self, name: str, reason: str, *, missing_dependency: bool) -> None:
        self._add({"name": name, "status": "skipped", "reason": reason, "missing_dependency": missing_dependency})

    @property
    def passed(self) -> bool:
        bad = [s for s in self.steps if s["status"] in ("failed", "error") or (s["status"] == "skipped" and s["missing_dependency"])]
        return not bad and any(s["status"] == "passed" for s in self.steps)

    def finish(self) -> int:
        """Write the verdict; the exit status of the check."""
        self.header["finished"] = True
        self.write()
        print(f"{'passed' if self.passed else 'FAILED'}; report: {self.path}", flush=True)
        return 0 if self.passed else 1

    def write(self) -> None:
        doc = {**self.header, "passed": self.passed, "seconds": time.perf_counter() - self.started, "steps": self.steps}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path, _plain(doc))

    def _add(self, entry: dict[str, Any]) -> None:
        self.steps.append(entry)
        shown = {k: v for k, v in entry.items() if k in BRIEF}
        print(f"[{entry['status']}] {entry['name']}: {_plain(shown)}", flush=True)
        self.write()
