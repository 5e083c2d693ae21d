"""Registers the ``dnabert=v2`` backend. Imports nothing heavy: listing backends stays fast."""

from __future__ import annotations

from importlib.util import find_spec

from virnucpro_core import hookimpl
from virnucpro_core.backends import Backend, BackendOption, EmbedderOptions

from virnucpro_dnabert_v2.attention import ATTENTION_CHOICES  # stdlib-only at import time

DEFAULT_MODEL = "zhihan1996/DNABERT-S"
REQUIRES: tuple[str, ...] = ("torch", "tokenizers", "safetensors", "huggingface_hub")
#: What ``--backend-option dnabert:KEY=VALUE`` accepts (the embedder reads ``OPTION_KEYS`` of them).
OPTIONS = (BackendOption("attention", "attention path; auto: flash-attn when it can run here, else SDPA",
                         choices=tuple(ATTENTION_CHOICES)),)


def _make_embedder(options: EmbedderOptions):
    from virnucpro_dnabert_v2.embedder import DnabertV2Embedder

    return DnabertV2Embedder.from_options(options)


def _preflight(options: EmbedderOptions) -> int | None:
    """Before any stage: model files found (one short hub probe at most), a forced attention path
    that cannot run here refused; nothing is loaded."""
    from virnucpro_dnabert_v2.attention import choose_attention
    from virnucpro_dnabert_v2.loading import preflight

    width = preflight(options.model, revision=options.revision)
    choose_attention(options.extra.get("attention", "auto"), str(options.device).split(":")[0], options.precision)
    return width


def _check_available() -> str | None:
    """Runs anywhere torch and tokenizers are installed; CUDA and flash-attn are optional."""
    missing = [name for name in REQUIRES if find_spec(name) is None]
    if missing:
        return f"pip install {' '.join(missing)}"
    return None


@hookimpl
def register_backends(register) -> None:
    register(
        Backend(
            family="dnabert",
            version="v2",
            modality="nucleotide",
            dim=768,
            factory=_make_embedder,
            description=(
                "DNABERT-S by VirNucPro's own MosaicBERT module (no remote code, no transformers); packed tokens, "
                "flash-attn varlen with ALiBi or exact bucketed SDPA; mean over all tokens incl. [CLS]/[SEP] as the original"
            ),
            default_model=DEFAULT_MODEL,
            requires=REQUIRES,
            check_available=_check_available,
            options=OPTIONS,
            preflight=_preflight,
        )
    )
