"""ESM-2's forward over a packed token stream, on fair-esm's own weights.

This restates fair-esm's ``ESM2.forward`` (``esm/model/esm2.py``, ``esm/modules.py``,
``esm/multihead_attention.py``, ``esm/rotary_embedding.py``) for one ``(T, d)`` stream
holding every protein of a batch back to back:

1. token embedding x ``embed_scale`` (1.0); ``<mask>`` tokens zeroed and every token of
   a protein multiplied by the token-dropout rescale ``(1 - 0.15*0.8) / (1 - observed
   mask ratio)``, i.e. 0.88 for proteins without ``<mask>``;
2. per layer, pre-LayerNorm: ``x + out_proj(attn(rotary(q), rotary(k), v))`` with
   q/k/v the separate projections of ``self_attn_layer_norm(x)`` (one fused matmul
   here, the same products), scaled by ``1/sqrt(head_dim)``; rotary tables in fp32
   from each token's position within its own protein; then ``x + fc2(gelu(fc1(
   final_layer_norm(x))))`` with the exact erf GELU;
3. ``emb_layer_norm_after`` and, per protein, the float32 mean over residues
   ``1..min(L, max_length)``, computed on the device as a segment sum, so only the
   ``(B, d)`` rows leave it.

Weights are cast once, at construction, to the run's dtype; LayerNorm statistics,
rotary tables and the pooled sums are fp32 whatever the dtype.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from virnucpro_core import accel
from virnucpro_core.errors import ModelError

from virnucpro_esm2_v2.attention import kernel as attention_kernel

#: fair-esm's ``mask_ratio_train``: BERT masking (15%) x the share replaced by <mask> (80%).
MASK_RATIO_TRAIN = 0.15 * 0.8
#: fair-esm's ``ESM2.embed_scale``.
EMBED_SCALE = 1.0
#: torch.nn.LayerNorm's default, which fair-esm's ESM1bLayerNorm uses.
LAYER_NORM_EPS = 1e-5

_PREFIXES = re.compile(r"^(encoder\.sentence_encoder\.|encoder\.)")


def gelu(x):
    """fair-esm's ``gelu``: ``x * 0.5 * (1 + erf(x / sqrt(2)))``, the exact form."""
    import torch.nn.functional as F

    return F.gelu(x)


def rotate(x, cos, sin):
    """fair-esm's ``apply_rotary_pos_emb`` on ``(T, H, D)`` with per-token ``(T, D)`` tables."""
    import torch

    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos[:, None, :] + rotated * sin[:, None, :]


@dataclass(frozen=True)
class Esm2Config:
    """The shape of an ESM-2, read from a fair-esm checkpoint's ``cfg['model']``."""

    num_layers: int
    embed_dim: int
    attention_heads: int
    token_dropout: bool

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.attention_heads

    @property
    def non_embedding_params(self) -> int:
        """Weights used once per token (the matmuls): 12 d^2 + 13 d per layer + final norm."""
        d = self.embed_dim
        return self.num_layers * (12 * d * d + 13 * d) + 2 * d

    @classmethod
    def from_checkpoint(cls, cfg: Any) -> "Esm2Config":
        return cls(int(cfg.encoder_layers), int(cfg.encoder_embed_dim), int(cfg.encoder_attention_heads), bool(cfg.token_dropout))


@dataclass(frozen=True)
class LayerWeights:
    attn_ln_w: Any
    attn_ln_b: Any
    qkv_w: Any
    qkv_b: Any
    out_w: Any
    out_b: Any
    ffn_ln_w: Any
    ffn_ln_b: Any
    fc1_w: Any
    fc1_b: Any
    fc2_w: Any
    fc2_b: Any
    inv_freq: Any  # fp32


def strip_prefixes(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """fair-esm's ``upgrade_state_dict``: drop ``encoder.sentence_encoder.`` / ``encoder.``."""
    return {_PREFIXES.sub("", key): value for key, value in state_dict.items()}


class PackedEsm2:
    """ESM-2 weights on one device in one dtype, and the packed forward over them."""

    def __init__(self, config: Esm2Config, state_dict: Mapping[str, Any], *, device, dtype, source: str = "checkpoint") -> None:
        import torch

        if config.embed_dim % config.attention_heads or config.head_dim % 2:
            raise ModelError(f"{source}: embed dim {config.embed_dim} with {config.attention_heads} heads is not an ESM-2 shape")
        sd = strip_prefixes(state_dict)
        self.config = config
        self.device = torch.device(device)
        self.dtype = dtype

        def get(key: str, *, fp32: bool = False):
            if key not in sd:
                raise ModelError(f"{source}: its weights lack {key!r}; the file is damaged or not an ESM-2 checkpoint")
            return accel.to_device(sd[key], self.device, dtype=torch.float32 if fp32 else dtype).contiguous()

        self.embed_tokens = get("embed_tokens.weight")
        layers = []
        head_dim = config.head_dim
        default_inv_freq = 1.0 / (10000 ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        for i in range(config.num_layers):
            p = f"layers.{i}."
            inv = accel.to_device(sd.get(p + "self_attn.rot_emb.inv_freq", default_inv_freq), self.device, dtype=torch.float32)
            layers.append(LayerWeights(
                attn_ln_w=get(p + "self_attn_layer_norm.weight"), attn_ln_b=get(p + "self_attn_layer_norm.bias"),
                qkv_w=torch.cat([get(p + f"self_attn.{n}_proj.weight") for n in "qkv"]).contiguous(),
                qkv_b=torch.cat([get(p + f"self_attn.{n}_proj.bias") for n in "qkv"]).contiguous(),
                out_w=get(p + "self_attn.out_proj.weight"), out_b=get(p + "self_attn.out_proj.bias"),
                ffn_ln_w=get(p + "final_layer_norm.weight"), ffn_ln_b=get(p + "final_layer_norm.bias"),
                fc1_w=get(p + "fc1.weight"), fc1_b=get(p + "fc1.bias"),
                fc2_w=get(p + "fc2.weight"), fc2_b=get(p + "fc2.bias"),
                inv_freq=inv,
            ))
        self.layers = tuple(layers)
        self.final_ln_w = get("emb_layer_norm_after.weight")
        self.final_ln_b = get("emb_layer_norm_after.bias")
        d = config.embed_dim
        if tuple(self.embed_tokens.shape[1:]) != (d,) or any(tuple(layer.qkv_w.shape) != (3 * d, d) for layer in self.layers):
            raise ModelError(f"{source}: weight shapes do not fit embed dim {d}; the file is damaged")

    def forward(self, batch, attention: str):
        """Pooled float32 ``(B, d)`` rows of one :class:`PackedBatch` already on the device."""
        import torch
        import torch.nn.functional as F

        cfg = self.config
        d, heads, head_dim = cfg.embed_dim, cfg.attention_heads, cfg.head_dim
        reduced = self.dtype != torch.float32
        x = EMBED_SCALE * F.embedding(batch.tokens, self.embed_tokens)
        if cfg.token_dropout:
            x = x.masked_fill(batch.mask_tokens[:, None], 0.0)
            x = x * (1 - MASK_RATIO_TRAIN) / (1 - batch.mask_ratio.to(x.dtype))[:, None]
        scale = head_dim ** -0.5
        attend = attention_kernel(attention)
        tables = {}
        for layer in self.layers:
            key = layer.inv_freq.data_ptr()
            if key not in tables:  # fp32 tables, from each token's position within its protein
                freqs = batch.positions.to(torch.float32)[:, None] * layer.inv_freq[None, :]
                emb = torch.cat((freqs, freqs), dim=-1)
                tables[key] = (emb.cos(), emb.sin())
            cos, sin = tables[key]
            h = F.layer_norm(x, (d,), layer.attn_ln_w, layer.attn_ln_b, LAYER_NORM_EPS)
            q, k, v = F.linear(h, layer.qkv_w, layer.qkv_b).view(-1, 3, heads, head_dim).unbind(1)
            if reduced:
                q, k = rotate(q.float(), cos, sin).to(self.dtype), rotate(k.float(), cos, sin).to(self.dtype)
            else:
                q, k = rotate(q, cos, sin), rotate(k, cos, sin)
            a = attend(q, k, v.contiguous(), batch, scale)
            x = x + F.linear(a.reshape(-1, d), layer.out_w, layer.out_b)
            h = F.layer_norm(x, (d,), layer.ffn_ln_w, layer.ffn_ln_b, LAYER_NORM_EPS)
            x = x + F.linear(gelu(F.linear(h, layer.fc1_w, layer.fc1_b)), layer.fc2_w, layer.fc2_b)
        pooled_tokens = F.layer_norm(x.index_select(0, batch.pool_index), (d,), self.final_ln_w, self.final_ln_b, LAYER_NORM_EPS)
        sums = torch.zeros(len(batch.pack), d, device=x.device, dtype=torch.float32)
        sums.index_add_(0, batch.pool_seq, pooled_tokens.float())
        return sums / batch.pool_count

    def flops_per_token(self) -> int:
        """2 x non-embedding parameters: the matmul work of one token (attention scores excluded)."""
        return 2 * self.config.non_embedding_params

