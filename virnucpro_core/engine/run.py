"""Choose the executor for a set of parts: this process, worker processes or torchrun ranks."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from virnucpro_core.backends import Backend, EmbedderOptions
from virnucpro_core.engine.config import EngineConfig
from virnucpro_core.engine.failures import EngineRun
from virnucpro_core.engine.parts import PartPlan, PartTask, iter_tasks


def compute_parts(fasta: Path, parts_dir: Path, plan: PartPlan, todo: tuple[int, ...], backend: Backend,
                  options: EmbedderOptions, engine: EngineConfig, *, on_progress: Callable[[int], None],
                  on_part: Callable[[PartTask], None]) -> EngineRun:
    """Compute the parts ``todo`` of ``plan`` where ``engine`` says; files land in ``parts_dir``."""
    if engine.dist is not None:
        from virnucpro_core.engine.distributed import RankJob, drive_ranks

        job = RankJob(fasta, parts_dir, plan.part_size, todo, backend.key, options, engine.threads)
        return drive_ranks(engine.dist, job, backend, on_progress=on_progress, on_part=on_part)
    tasks = iter_tasks(fasta, parts_dir, plan.part_size, todo)
    if len(engine.devices) > 1:
        from virnucpro_core.engine.workers import run_workers

        return run_workers(tasks, backend, options, engine.devices, threads=engine.worker_threads(),
                           on_progress=on_progress, on_part=on_part, log_level=engine.log_level)
    from virnucpro_core.engine.local import run_local

    return run_local(tasks, backend, options, on_progress=on_progress, on_part=on_part)
