"""One device: parts run in this process, as before the engine existed (no spawn cost)."""

from __future__ import annotations

import logging
import time
import traceback
from typing import Any, Callable, Iterable, Mapping

from virnucpro_core import accel
from virnucpro_core.backends import Backend
from virnucpro_core.engine.failures import EngineRun, PartFailed, WorkerStats, error_summary
from virnucpro_core.engine.readahead import read_ahead
from virnucpro_core.engine.work import PartJob, PartWork
from virnucpro_core.errors import VirnucproError
from virnucpro_core.logs import FILE_ONLY

log = logging.getLogger(__name__)


def run_local(tasks: Iterable[Any], job: PartJob, *, backends: Mapping[str, Backend] | None = None,
              on_progress: Callable[[int], None], on_part: Callable[[Any], None], worker: int = 0,
              where: str | None = None) -> EngineRun:
    """Compute ``tasks`` of ``job`` here; the models are loaded only if there is a part to compute.

    The next task is read while this one is computed (:func:`~virnucpro_core.engine.readahead.read_ahead`),
    so the device does not wait for the input between parts.

    A CUDA device is bound first (``torch.cuda.set_device``), as each worker binds its
    own, so that nothing implicit of the backend's lands on ``cuda:0`` when the user
    named ``cuda:1``, in one process and in every torchrun rank.

    A backend error that is not a :class:`VirnucproError` becomes one line naming the
    device and the records (the traceback goes to the log file).
    """
    work: PartWork | None = None
    computed = sequences = 0
    start = time.monotonic()
    label = where or f"embedding on {job.device}"
    ahead = read_ahead(tasks)
    try:
        for task in ahead:
            if work is None:
                accel.bind(job.device)  # as each worker binds its own: in one process, and in each torchrun rank
                log.info("loading %s", job.describe())
                try:
                    work = job.open(backends)
                except VirnucproError:
                    raise
                except Exception as exc:
                    details = traceback.format_exc()
                    log.debug("loading the model failed:\n%s", details, extra=FILE_ONLY)
                    raise PartFailed(f"{label} failed while loading the model: {error_summary(exc)}", details) from None
            try:
                work.compute(task, on_progress)
            except VirnucproError:
                raise
            except Exception as exc:
                details = traceback.format_exc()
                log.debug("part %d failed:\n%s", task.index, details, extra=FILE_ONLY)
                raise PartFailed(f"{label} failed on records {task.records}: {error_summary(exc)}", details) from None
            computed += 1
            sequences += len(task.ids)
            on_part(task)
    finally:
        ahead.close()  # stops the reading thread now, also on an error or a stop
        if work is not None:
            work.close()
    if work is None:
        return EngineRun(None, None, 0)
    stats = WorkerStats(worker, job.device, computed, sequences, time.monotonic() - start)
    return EngineRun(work.dim, work.model_id, computed, (stats,))
