"""Registers the ``dnabert=v1`` backend. Imports nothing heavy: listing backends stays fast."""

from __future__ import annotations

from importlib.util import find_spec

from virnucpro_core import hookimpl
from virnucpro_core.backends import Backend, BackendOption, EmbedderOptions

DEFAULT_MODEL = "zhihan1996/DNABERT-S"
#: What ``--backend-option dnabert:KEY=VALUE`` accepts.
OPTIONS = (BackendOption("attention", "the remote code's attention: torch (default, as the published features) "
                         "or its Triton kernel (fp16, old GPUs only)", choices=("torch", "triton")),)


def _make_embedder(options: EmbedderOptions):
    from virnucpro_dnabert_v1.embedder import DnabertV1Embedder

    return DnabertV1Embedder.from_options(options)


def _preflight(options: EmbedderOptions) -> int | None:
    """Before any stage: the model folder or hub snapshot found (one short probe at most), nothing loaded."""
    from virnucpro_dnabert_v1.loading import preflight

    return preflight(options.model, revision=options.revision)


def _check_available() -> str | None:
    """Runs anywhere torch and transformers are installed; CUDA is optional."""
    missing = [name for name in ("torch", "transformers", "tokenizers") if find_spec(name) is None]
    if missing:
        return f"pip install {' '.join(missing)}"
    return None


@hookimpl
def register_backends(register) -> None:
    register(
        Backend(
            family="dnabert",
            version="v1",
            modality="nucleotide",
            dim=768,
            factory=_make_embedder,
            description=(
                "DNABERT-S via transformers (trust_remote_code); mean over all tokens incl. [CLS]/[SEP], "
                "length-sorted padded batches with masks, equal to the original one-sequence calls"
            ),
            default_model=DEFAULT_MODEL,
            requires=("torch", "transformers", "tokenizers"),
            check_available=_check_available,
            options=OPTIONS,
            preflight=_preflight,
        )
    )
