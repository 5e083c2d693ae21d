"""Choose the executor for a set of parts: this process, worker processes or torchrun ranks."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

from virnucpro_core.backends import Backend, EmbedderOptions
from virnucpro_core.engine.config import EngineConfig
from virnucpro_core.engine.failures import EngineRun
from virnucpro_core.engine.parts import PartPlan, PartTask
from virnucpro_core.engine.work import EmbedJob, PartJob


def compute_parts(fasta: Path, parts_dir: Path, plan: PartPlan, todo: tuple[int, ...], backend: Backend,
                  options: EmbedderOptions, engine: EngineConfig, *, on_progress: Callable[[int], None],
                  on_part: Callable[[PartTask], None]) -> EngineRun:
    """Compute the embedding parts ``todo`` of ``plan`` where ``engine`` says; files land in ``parts_dir``."""
    job = EmbedJob(Path(fasta), Path(parts_dir), plan.part_size, backend.key, options)
    return run_job(job, todo, {backend.key: backend}, engine, on_progress=on_progress, on_part=on_part)


def run_job(job: PartJob, todo: tuple[int, ...], backends: Mapping[str, Backend], engine: EngineConfig, *,
            on_progress: Callable[[int], None], on_part: Callable[[Any], None]) -> EngineRun:
    """Compute the parts ``todo`` of ``job`` where ``engine`` says. ``backends`` are the resolved
    objects for this process; workers and ranks re-resolve them by key."""
    if engine.dist is not None:
        from virnucpro_core.engine.distributed import RankJob, drive_ranks

        return drive_ranks(engine.dist, RankJob(job, todo, engine.threads), backends, on_progress=on_progress, on_part=on_part)
    tasks = job.tasks(todo)
    if len(engine.devices) > 1:
        from virnucpro_core.engine.workers import run_workers

        return run_workers(tasks, job, engine.devices, threads=engine.worker_threads(),
                           on_progress=on_progress, on_part=on_part, log_level=engine.log_level, count=len(todo))
    from virnucpro_core.engine.local import run_local

    return run_local(tasks, job, backends=backends, on_progress=on_progress, on_part=on_part)
