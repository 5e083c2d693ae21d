"""A tiny, randomly initialised ESM-2 written in fair-esm's real checkpoint format.

The real ESM-2 weights (5.7 GB for ``esm2_t36_3B_UR50D``) cannot be downloaded on the
machines that run our tests, yet the loading and embedding code must be exercised for
real: the same files, the same key prefixes, the same ``argparse.Namespace`` config
that forces a deliberate ``torch.load``. So we build fair-esm's own ``ESM2`` module
with a few layers, randomise it, and save it exactly as fair-esm's downloads are laid
out:

- ``<name>.pt`` = ``{"cfg": {"model": Namespace(encoder_layers=..., encoder_embed_dim=...,
  encoder_attention_heads=..., token_dropout=True, ...)}, "model": state_dict}`` where the
  body's keys carry the prefix ``encoder.sentence_encoder.`` and the LM head's
  ``encoder.`` (fair-esm's ``_load_model_and_alphabet_core_v2`` strips both);
- ``<name>-contact-regression.pt`` = ``{"model": {"contact_head.regression.weight": ...,
  "contact_head.regression.bias": ...}}``.

The weights are deliberately far from PyTorch's defaults (LayerNorm gains and biases,
token embeddings, every linear layer are redrawn from the seed) so that the classic
mistakes change the numbers visibly: a missing 0.88 token-dropout rescale, EOS or BOS
inside the mean, tanh-GELU instead of erf-GELU, a LayerNorm left out. torch and esm
are imported inside the function, so importing this module is cheap.
"""

from __future__ import annotations

import argparse
import io
import math
from pathlib import Path

from virnucpro_core.atomic import atomic_open

#: Prefixes of real ESM-2 checkpoints: the transformer body, then the LM head.
BODY_PREFIX = "encoder.sentence_encoder."
HEAD_PREFIX = "encoder."
REGRESSION_KEYS = ("contact_head.regression.weight", "contact_head.regression.bias")


def write_tiny_esm2(
    directory: str | Path,
    *,
    name: str = "esm2_t2_tiny_UR50D",
    num_layers: int = 2,
    embed_dim: int = 32,
    attention_heads: int = 4,
    seed: int = 0,
) -> Path:
    """Write ``<directory>/<name>.pt`` and its ``-contact-regression.pt``; return the former.

    ``name`` must start with ``esm2`` because fair-esm chooses the ESM-2 loader by the
    model name (a path's stem). The same arguments always give byte-identical
    files; the global torch RNG is left as it was.
    """
    import torch
    from esm.data import Alphabet
    from esm.model.esm2 import ESM2

    if not name.startswith("esm2"):
        raise ValueError(f"tiny ESM-2 name {name!r} must start with 'esm2' (fair-esm routes on the name)")
    if embed_dim % attention_heads or (embed_dim // attention_heads) % 2:
        raise ValueError("embed_dim must be a multiple of attention_heads with an even head size (rotary embeddings)")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ESM2(
            num_layers=num_layers,
            embed_dim=embed_dim,
            attention_heads=attention_heads,
            alphabet=Alphabet.from_architecture("ESM-1b"),
            token_dropout=True,
        )
        _randomise(model)

    state = model.state_dict()
    body: dict[str, torch.Tensor] = {}
    regression: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        tensor = tensor.detach().clone().contiguous()
        if key in REGRESSION_KEYS:
            regression[key] = tensor
        elif key.startswith("lm_head."):
            body[HEAD_PREFIX + key] = tensor
        else:
            body[BODY_PREFIX + key] = tensor
    # The LM head's projection is tied to the token embedding, as in the real model.
    body[HEAD_PREFIX + "lm_head.weight"] = body[BODY_PREFIX + "embed_tokens.weight"]

    cfg = argparse.Namespace(
        arch="esm2",
        encoder_layers=num_layers,
        encoder_embed_dim=embed_dim,
        encoder_ffn_embed_dim=4 * embed_dim,
        encoder_attention_heads=attention_heads,
        token_dropout=True,
        max_positions=1024,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
    )
    path = directory / f"{name}.pt"
    _save(torch, {"cfg": {"model": cfg}, "model": body}, path)
    _save(torch, {"model": regression}, directory / f"{name}-contact-regression.pt")
    return path


def _save(torch, obj, path: Path) -> None:
    """``torch.save`` through a buffer, so the archive's inner names do not depend on the
    temporary file name and the same arguments give byte-identical files."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_open(path, "wb") as handle:
        handle.write(buffer.getvalue())


def _randomise(model) -> None:
    """Redraw every weight from the (already seeded) global RNG, away from the defaults.

    Linear weights ~ N(0, 1/fan_in) keep activations near unit scale through the layers,
    so GELU sees inputs of order 1 where erf and tanh forms differ by ~1e-3. LayerNorm
    gains 1 ± 0.3 and biases ± 0.2 make a skipped or misplaced norm show. Token
    embeddings ~ N(0, 1) make the token-dropout factor 0.88 matter to the residual stream.
    """
    import torch
    from torch import nn

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                module.weight.normal_(0.0, 1.0 / math.sqrt(module.in_features))
                if module.bias is not None:
                    module.bias.normal_(0.0, 0.1)
            elif isinstance(module, nn.LayerNorm):
                module.weight.copy_(1.0 + 0.3 * torch.randn_like(module.weight))
                module.bias.normal_(0.0, 0.2)
            elif isinstance(module, nn.Embedding):
                module.weight.normal_(0.0, 1.0)
                if module.padding_idx is not None:
                    module.weight[module.padding_idx].zero_()
        model.lm_head.bias.normal_(0.0, 0.1)
