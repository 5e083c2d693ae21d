"""What a part job does, as the executors see it: a picklable recipe and the work it opens.

The executors (this process, worker processes, torchrun ranks) decide where and when
parts run; a :class:`PartJob` says what one part is. It is picklable (keys, options and
paths, no model), so a worker or rank *opens* it in its own process: the models are
built once there and every part it is given is computed with them.

- :class:`EmbedJob`: one backend embeds the part and writes its rows (``embed``).
- ``virnucpro_core.partscore.ScoreJob``: both backends and the MLP score the part
  (``predict``, which then needs no full embedding files).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Collection, Iterator, Mapping, Protocol

from virnucpro_core.backends import Backend, Embedder, EmbedderOptions


class PartWork(Protocol):
    """The opened job in the process that computes parts: models loaded, ready for parts."""

    dim: int
    model_id: str

    def compute(self, task: Any, progress: Callable[[int], None]) -> None:
        """Compute one part and write its file(s) atomically; ``progress(n)`` counts records."""

    def close(self) -> None: ...


class PartJob(Protocol):
    """A picklable recipe for the parts of one stage."""

    @property
    def device(self) -> str: ...

    def on(self, device: str) -> "PartJob":
        """This job on ``device``, without progress bars (for a worker or rank)."""

    def describe(self) -> str:
        """``esm2=v2 (model ...) on cpu, fp32``: what is loaded, for the log."""

    def shared_paths(self) -> tuple[Path, ...]:
        """Inputs and folders every rank must see (a rank checks them before any work)."""

    def tasks(self, indices: Collection[int]) -> Iterator[Any]:
        """The parts ``indices`` as tasks (with ``index``, ``ids`` and ``records``), read lazily."""

    def open(self, backends: Mapping[str, Backend] | None = None) -> PartWork:
        """Build the models; ``backends`` are resolved objects by key (else the registry's)."""


def resolve_backend(key: str, backends: Mapping[str, Backend] | None) -> Backend:
    """The backend ``family=version`` given by the caller, or re-resolved through the registry
    (a spawned worker or another rank: any installed plugin works, nothing unpicklable crosses)."""
    if backends and key in backends:
        return backends[key]
    from virnucpro_core.registry import get_registry

    family, version = key.split("=", 1)
    return get_registry().get_backend(family, version)


@dataclass
class EmbedWork:
    """One embedder computing embedding parts."""

    backend: Backend
    embedder: Embedder

    @property
    def dim(self) -> int:
        return self.embedder.dim

    @property
    def model_id(self) -> str:
        return self.embedder.model_id

    def compute(self, task: Any, progress: Callable[[int], None]) -> None:
        from virnucpro_core.engine.parts import compute_part

        compute_part(self.embedder, self.backend, task, progress)

    def close(self) -> None:
        self.embedder.close()


@dataclass(frozen=True)
class EmbedJob:
    """Embed the records of ``fasta`` in parts of ``part_size`` into ``parts_dir``."""

    fasta: Path
    parts_dir: Path
    part_size: int
    backend_key: str
    options: EmbedderOptions

    @property
    def device(self) -> str:
        return self.options.device

    def on(self, device: str) -> "EmbedJob":
        return dataclasses.replace(self, options=dataclasses.replace(self.options, device=device, show_progress=False))

    def describe(self) -> str:
        return f"{self.backend_key} (model {self.options.model or 'default'}) on {self.options.device}, {self.options.precision}"

    def shared_paths(self) -> tuple[Path, ...]:
        return (self.fasta, self.parts_dir)

    def tasks(self, indices: Collection[int]) -> Iterator[Any]:
        from virnucpro_core.engine.parts import iter_tasks

        return iter_tasks(self.fasta, self.parts_dir, self.part_size, indices)

    def open(self, backends: Mapping[str, Backend] | None = None) -> EmbedWork:
        backend = resolve_backend(self.backend_key, backends)
        return EmbedWork(backend, backend.factory(self.options))
