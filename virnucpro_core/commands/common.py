"""Options shared by several commands, so they read and behave the same everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import click

from virnucpro_core.backends import PRECISIONS


def _stack(*decorators: Callable) -> Callable:
    def apply(func: Callable) -> Callable:
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return apply


logging_options = _stack(
    click.option("-v", "--verbose", count=True, help="More detail (debug messages)."),
    click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors; no progress bars."),
    click.option("--log-file", type=click.Path(dir_okay=False, path_type=Path), help="Also write a full debug log here."),
)

device_options = _stack(
    click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N (the GPU you name is the GPU used)."),
    click.option("--precision", type=click.Choice(PRECISIONS), default=None, help="Model precision [backend default: fp32; esm2=v2 on CUDA: fp16]. bf16/fp16 change results slightly; fp32 reproduces the original."),
    click.option("--batch-tokens", type=int, default=None, help="Token budget per batch for protein models [backend default; esm2=v1: 2048 like the original]."),
    click.option("--batch-size", type=int, default=None, help="Sequences per batch for nucleotide models [backend default]."),
    click.option("-t", "--threads", type=int, default=None, help="CPU threads for torch [torch default]."),
    click.option("--backend-option", "backend_option_values", multiple=True, metavar="[FAMILY:]KEY=VALUE", help="Backend-specific setting, repeatable: esm2:attention=sdpa-bucketed goes to the esm2 backend; KEY=VALUE without a family to every backend of the run that takes KEY. Checked before any stage; `virnucpro backends -l` lists each backend's options."),
)

resume_options = _stack(
    click.option("--resume", is_flag=True, help="Continue the run in OUTDIR; refuses if inputs or settings differ."),
    click.option("--force-resume", is_flag=True, help="Discard an unfinished run in OUTDIR (its checkpoints and outputs) and start over (--force replaces a finished one)."),
    click.option("--checkpoint-every", type=int, default=None, help="Sequences per embedding checkpoint part [10000, the original's file size, which keeps its ESM-2 batches]."),
    click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="TOML file with a [runtime] table (device, precision, batch_tokens, ...); flags override it."),
)

parallel_options = _stack(
    click.option("--devices", default=None, metavar="LIST", help="Run on several devices, one worker process each: cuda:0,cuda:1 or cpu,cpu. Every device is checked first; the device named is the device used."),
    click.option("--gpus", default=None, metavar="LIST", help="GPU numbers, e.g. 2,3 (= --devices cuda:2,cuda:3)."),
    click.option("--parallel", is_flag=True, default=None, help="One worker on every visible GPU (an error without a GPU)."),
    click.option("--shard", default=None, metavar="I/N", help="Array job I of N (0-based): compute only parts p with p % N == I into a shard directory at -o; join them with `virnucpro aggregate`."),
)

backend_options = _stack(
    click.option("--backend", "backend_specs", multiple=True, metavar="FAMILY=VERSION", help="Embedding backend, repeatable: --backend esm2=v1 --backend dnabert=v1. Default: the newest available version of each family (see `virnucpro backends`)."),
    click.option("--v1-fallback", is_flag=True, help="Alias for --backend esm2=v1."),
)


def runtime_from_options(kwargs: dict[str, Any]):
    """Build the :class:`RuntimeConfig` from the shared options in ``kwargs``."""
    from virnucpro_core.backend_options import parse_backend_option_values
    from virnucpro_core.runtime import RuntimeConfig

    keys = ("device", "devices", "gpus", "parallel", "precision", "batch_tokens", "batch_size", "threads", "checkpoint_every", "resume", "force_resume")
    values = {k: kwargs.get(k) for k in keys}
    values["backend_options"] = parse_backend_option_values(kwargs.get("backend_option_values") or ()) or None
    for flag in ("resume", "force_resume", "parallel"):
        values[flag] = bool(values[flag]) or None
    if values["device"] == "auto":
        values["device"] = None  # let a config file choose; the dataclass default is auto
    return RuntimeConfig.from_sources(values, kwargs.get("config_file"))
