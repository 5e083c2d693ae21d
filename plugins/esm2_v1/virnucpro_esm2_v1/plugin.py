"""Entry point of ``virnucpro-esm2-v1``: registers the ``esm2=v1`` backend.

Importing this module must stay cheap (``virnucpro backends`` imports every plugin):
torch and fair-esm are imported only inside the factory.
"""

from __future__ import annotations

import importlib.util

from virnucpro_core import hookimpl
from virnucpro_core.backends import Backend, EmbedderOptions

from virnucpro_esm2_v1.loading import DEFAULT_MODEL  # stdlib-only at import time


def make_embedder(options: EmbedderOptions):
    """The lazy factory: load the model named in ``options`` and wrap it."""
    from virnucpro_esm2_v1.embedder import Esm2V1Embedder

    return Esm2V1Embedder.from_options(options)


def preflight(options: EmbedderOptions) -> int | None:
    """Before any stage: the checkpoint found and its layout read, no weights loaded (see loading.py)."""
    from virnucpro_esm2_v1.loading import preflight_checkpoint

    return preflight_checkpoint(options.model)


def check_available() -> str | None:
    """Runs anywhere torch and fair-esm are importable (CPU included)."""
    missing = [dist for module, dist in (("torch", "torch"), ("esm", "fair-esm")) if importlib.util.find_spec(module) is None]
    return f"pip install {' '.join(missing)}" if missing else None


@hookimpl
def register_backends(register) -> None:
    register(
        Backend(
            family="esm2",
            version="v1",
            modality="protein",
            dim=2560,
            factory=make_embedder,
            description=(
                "ESM-2 via fair-esm, batched and mean-pooled exactly as the original VirNucPro "
                "(length-sorted 2048-token batches, last layer, residues 1..min(L,1024))"
            ),
            default_model=DEFAULT_MODEL,
            requires=("torch", "fair-esm"),
            check_available=check_available,
            preflight=preflight,
        )
    )
