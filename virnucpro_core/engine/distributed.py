"""torchrun: ``torchrun --nproc-per-node N -m virnucpro_core embed|predict ...``.

Every rank runs the same command. Rank 0 drives: it prepares, plans each embedding
stage and broadcasts a :class:`RankJob` (the picklable part job: paths, part size, backend
*keys* and options; the parts to compute); rank ``r`` computes the parts ``p`` with
``p % WORLD_SIZE == r`` on its GPU (``cuda:LOCAL_RANK`` among the GPUs it sees, see
:func:`rank_device`; or the CPU with ``--device cpu``) and
reports back; rank 0 then assembles, classifies and reports, and finally tells the
others to exit 0. Synchronisation uses ``torch.distributed`` with gloo (no GPU
collective is needed). All ranks read and write the same files, so the output
directory must be on a filesystem every node sees.

A rank that fails sends its one-line error to rank 0, which stops the job with it;
a rank that dies is seen by torchrun, which stops the others: the job exits non-zero.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from virnucpro_core.backends import Backend
from virnucpro_core.engine.config import DistContext
from virnucpro_core.engine.failures import EngineRun, PartFailed, WorkerStats, error_summary
from virnucpro_core.engine.work import PartJob
from virnucpro_core.errors import ConfigError, VirnucproError
from virnucpro_core.logs import FILE_ONLY

log = logging.getLogger(__name__)

#: how long a rank waits for the others (rank 0 may prepare a large input for hours)
TIMEOUT = datetime.timedelta(days=2)
SHARED_FS = "the output directory must be on a filesystem every rank can see (see docs/operations.md)"


def context_from_env(environ: dict[str, str] | None = None) -> DistContext | None:
    """The torchrun rank of this process, or ``None`` outside torchrun (or with one rank)."""
    env = os.environ if environ is None else environ
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return None
    try:
        world = int(env["WORLD_SIZE"])
        rank = int(env["RANK"])
        local = int(env.get("LOCAL_RANK", rank))
    except ValueError:
        raise ConfigError("RANK/WORLD_SIZE/LOCAL_RANK are not numbers; start the job with torchrun") from None
    return DistContext(rank, world, local) if world > 1 else None


def rank_device(ctx: DistContext, device: str, visible: int | None = None) -> str:
    """``cpu`` stays the CPU; anything else is this rank's GPU among the ``visible`` ones.

    That is ``cuda:(LOCAL_RANK % visible)``: with every GPU of a node visible to every
    rank (torchrun's usual set-up) rank ``r`` takes ``cuda:r``; with one GPU visible per
    rank (SLURM ``--gpus-per-task=1``, or ``CUDA_VISIBLE_DEVICES`` set per rank) every
    rank takes its own ``cuda:0``. More ranks than visible GPUs share them round-robin
    (logged). ``visible`` defaults to ``torch.cuda.device_count()``.
    """
    if device == "cpu":
        return "cpu"
    if visible is None:
        import torch

        visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if visible <= 0:
        return f"cuda:{ctx.local_rank}"  # refused by the device check, with the reason
    index = ctx.local_rank % visible
    if ctx.local_rank >= visible:
        log.warning("rank %d (local rank %d) sees %d GPU(s): it shares cuda:%d with local rank %d", ctx.rank, ctx.local_rank,
                    visible, index, index)
    return f"cuda:{index}"


def init(ctx: DistContext) -> None:
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo", rank=ctx.rank, world_size=ctx.world_size, timeout=TIMEOUT)


@dataclass(frozen=True)
class RankJob:
    """One stage's parts as rank 0 hands them to every rank (picklable)."""

    job: PartJob
    todo: tuple[int, ...]
    threads: int | None


@dataclass(frozen=True)
class RankOutcome:
    rank: int
    device: str
    dim: int | None
    model: str | None
    parts: int
    sequences: int
    seconds: float
    error: str | None = None


def _share(ctx: DistContext, job: RankJob) -> tuple[int, ...]:
    return tuple(p for p in job.todo if p % ctx.world_size == ctx.rank)


def _compute(ctx: DistContext, job: RankJob, backends: Mapping[str, Backend] | None, on_progress: Callable[[int], None],
             on_part: Callable[[Any], None]) -> RankOutcome:
    from virnucpro_core.engine.local import run_local

    device = rank_device(ctx, job.job.device)
    try:
        for path in job.job.shared_paths():
            if not Path(path).exists():
                raise VirnucproError(f"{path}, written by rank 0, is not visible here; {SHARED_FS}")
        part_job = job.job.on(device)
        run = run_local(part_job.tasks(_share(ctx, job)), part_job, backends=backends, on_progress=on_progress,
                        on_part=on_part, worker=ctx.rank, where=f"rank {ctx.rank} ({device})")
    except VirnucproError as exc:
        return RankOutcome(ctx.rank, device, None, None, 0, 0, 0.0, error=f"rank {ctx.rank} ({device}): {exc}"
                           if not str(exc).startswith(f"rank {ctx.rank} ") else str(exc))
    except Exception as exc:
        log.debug("rank %d failed", ctx.rank, exc_info=True, extra=FILE_ONLY)
        return RankOutcome(ctx.rank, device, None, None, 0, 0, 0.0, error=f"rank {ctx.rank} ({device}): {error_summary(exc)}")
    stats = run.stats[0] if run.stats else WorkerStats(ctx.rank, device, 0, 0, 0.0)
    return RankOutcome(ctx.rank, device, run.dim, run.model, stats.parts, stats.sequences, stats.seconds)


def drive_ranks(ctx: DistContext, job: RankJob, backends: Mapping[str, Backend], *, on_progress: Callable[[int], None],
                on_part: Callable[[Any], None]) -> EngineRun:
    """Rank 0: hand ``job`` to every rank, compute rank 0's share, collect the outcomes."""
    import torch.distributed as dist

    init(ctx)
    dist.broadcast_object_list([job], src=0)
    mine = _compute(ctx, job, backends, on_progress, on_part)
    outcomes: list[RankOutcome | None] = [None] * ctx.world_size
    dist.gather_object(mine, outcomes, dst=0)
    failed = [o for o in outcomes if o is not None and o.error]
    if failed:
        raise PartFailed(failed[0].error or "a rank failed")
    done = [o for o in outcomes if o is not None]
    for o in done:
        log.info("rank %d (%s): %d part(s), %d sequences", o.rank, o.device, o.parts, o.sequences)
    dims = {o.dim for o in done if o.dim is not None}
    if len(dims) > 1:
        raise VirnucproError(f"the ranks loaded models of different widths ({sorted(dims)}); check that every node has the same model files")
    first = next((o for o in done if o.dim is not None), None)
    stats = tuple(WorkerStats(o.rank, o.device, o.parts, o.sequences, o.seconds) for o in done)
    return EngineRun(first.dim if first else None, first.model if first else None, sum(o.parts for o in done), stats)


def release(ctx: DistContext) -> None:
    """Rank 0, at the end of a successful run: tell the other ranks to exit."""
    import torch.distributed as dist

    init(ctx)
    dist.broadcast_object_list([None], src=0)
    dist.destroy_process_group()


def follow(ctx: DistContext) -> None:
    """Ranks other than 0: compute the share of every job rank 0 sends, until it says stop.

    An error is sent to rank 0 (which stops the job with it), and this rank exits
    non-zero too.
    """
    from virnucpro_core.engine.stop import RunInterrupted

    try:
        _follow(ctx)
    except RunInterrupted as exc:
        # torchrun stops the other ranks with SIGTERM when one fails, and SLURM signals every
        # rank: rank 0 prints what happened and how to continue, the others leave quietly
        raise SystemExit(exc.exit_code) from None


def _follow(ctx: DistContext) -> None:
    import torch.distributed as dist

    init(ctx)
    while True:
        box: list[RankJob | None] = [None]
        dist.broadcast_object_list(box, src=0)
        job = box[0]
        if job is None:
            dist.destroy_process_group()
            return
        if job.threads:
            import torch

            torch.set_num_threads(job.threads)
        outcome = _compute(ctx, job, None, lambda n: None, lambda task: None)  # backends re-resolved by key
        dist.gather_object(outcome, None, dst=0)
        if outcome.error:  # rank 0 prints it as the job's one line; this rank exits non-zero quietly
            log.debug("%s", outcome.error, extra=FILE_ONLY)
            raise SystemExit(1)
