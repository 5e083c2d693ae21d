"""The shape of a DNABERT-S (MosaicBERT) model, read from its ``config.json``.

Only the numbers the encoder needs are read; everything else in the file (``auto_map``,
``max_position_embeddings``, ``position_embedding_type``: left over from BERT and unused
by MosaicBERT) is ignored. ``alibi_starting_size`` is what tells a MosaicBERT config
from a plain BERT one: a plain BERT (learnt absolute positions) has none, and running
it here would silently drop its position embeddings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from virnucpro_core.errors import ModelError

V1_HINT = "dnabert=v2 runs DNABERT-S's MosaicBERT architecture only; use --backend dnabert=v1 for this model"


@dataclass(frozen=True)
class MosaicConfig:
    """Encoder shape: DNABERT-S is 768 hidden, 12 layers, 12 heads, 3072 intermediate, vocab 4096."""

    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int
    type_vocab_size: int
    layer_norm_eps: float
    alibi_starting_size: int

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


def read_config(path: Path) -> MosaicConfig:
    """Parse ``config.json``; a missing field, a bad shape or another architecture is one error line."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: cannot read the model config ({exc}); the folder needs DNABERT-S's config.json") from None
    if not isinstance(raw, dict):
        raise ModelError(f"{path}: not a model config (a JSON object is expected)")
    if "alibi_starting_size" not in raw:
        kind = raw.get("position_embedding_type", "absolute")
        raise ModelError(
            f"{path}: not a MosaicBERT (DNABERT-S) config: no alibi_starting_size, so a BERT with {kind} position "
            f"embeddings; {V1_HINT}"
        )

    def number(key: str, default: int | float | None = None, kind: type = int):
        value = raw.get(key, default)
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ModelError(f"{path}: {key} must be a positive number, got {raw.get(key)!r}; is this DNABERT-S's config.json?")
        if kind is int and int(value) != value:
            raise ModelError(f"{path}: {key} must be a whole number, got {value!r}")
        return kind(value)

    config = MosaicConfig(
        hidden_size=number("hidden_size"),
        num_layers=number("num_hidden_layers"),
        num_heads=number("num_attention_heads"),
        intermediate_size=number("intermediate_size"),
        vocab_size=number("vocab_size"),
        type_vocab_size=number("type_vocab_size", 2),
        layer_norm_eps=number("layer_norm_eps", 1e-12, float),
        alibi_starting_size=number("alibi_starting_size"),
    )
    if config.hidden_size % config.num_heads:
        raise ModelError(f"{path}: hidden_size {config.hidden_size} is not a multiple of num_attention_heads {config.num_heads}")
    return config
