"""Entry point of ``virnucpro-esm2-v2``: registers the ``esm2=v2`` backend.

Importing this module must stay cheap (``virnucpro backends`` imports every plugin):
torch is imported only inside the factory.
"""

from __future__ import annotations

import importlib.util

from virnucpro_core import hookimpl
from virnucpro_core.backends import Backend, BackendOption, EmbedderOptions

from virnucpro_esm2_v1.loading import DEFAULT_MODEL  # stdlib-only at import time
from virnucpro_esm2_v2.attention import IMPLEMENTATIONS  # stdlib-only at import time

#: What ``--backend-option esm2:KEY=VALUE`` accepts (the embedder reads ``OPTION_KEYS`` of them).
OPTIONS = (BackendOption("attention", "attention kernel; auto: the best that runs on the device",
                         choices=("auto", *IMPLEMENTATIONS)),)


def make_embedder(options: EmbedderOptions):
    """The lazy factory: read the checkpoint with esm2=v1's loader, build the packed model."""
    from virnucpro_esm2_v2.embedder import Esm2V2Embedder

    return Esm2V2Embedder.from_options(options)


def default_precision(device: str) -> str:
    """fp16 on CUDA, fp32 on a CPU (mirrors :func:`virnucpro_esm2_v2.embedder.default_precision`)."""
    return "fp16" if str(device).startswith("cuda") else "fp32"


def preflight(options: EmbedderOptions) -> int | None:
    """Before any stage: the checkpoint found (esm2=v1's check), and a forced attention kernel
    that cannot run on this device in this precision refused; no weights are loaded."""
    from virnucpro_esm2_v1.loading import preflight_checkpoint

    width = preflight_checkpoint(options.model)
    attention = options.extra.get("attention")
    if attention not in (None, "auto"):
        from virnucpro_core.backends import torch_dtype
        from virnucpro_esm2_v2.attention import choose

        choose(str(options.device).split(":")[0], torch_dtype(options.precision, "esm2=v2"), attention)
    return width


def check_available() -> str | None:
    """Runs anywhere torch is importable (CPU included); fair-esm is not needed at run time."""
    return None if importlib.util.find_spec("torch") else "pip install torch"


def describe() -> str:
    flash = "flash-attn varlen (installed)" if importlib.util.find_spec("flash_attn") else "flash-attn varlen if installed"
    return (
        "ESM-2 over packed variable-length batches, verified per protein against fair-esm; "
        f"attention: {flash}, else torch varlen_attn on CUDA, else exact SDPA over length buckets (CPU); "
        "precision: fp16 on CUDA, fp32 on CPU (--precision overrides); token budget from free GPU memory "
        "(CPU 4096)"
    )


@hookimpl
def register_backends(register) -> None:
    register(
        Backend(
            family="esm2",
            version="v2",
            modality="protein",
            dim=2560,
            factory=make_embedder,
            description=describe(),
            default_model=DEFAULT_MODEL,
            requires=("torch",),
            check_available=check_available,
            default_precision=default_precision,
            options=OPTIONS,
            preflight=preflight,
        )
    )
