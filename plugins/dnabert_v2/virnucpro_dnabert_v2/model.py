"""DNABERT-S's encoder (MosaicBERT) written for packed tokens: ``(T, d)`` through the whole stack.

One forward runs a batch of sequences concatenated without padding. Per layer:

    x   = LayerNorm(word_emb[ids] + token_type_emb[0])                  (once, before layer 0)
    qkv = Wqkv(x)                                   fused q|k|v, (T, 3, heads, head_dim)
    x   = LayerNorm(dense(attention(qkv)) + x)      ALiBi attention within each sequence
    g|v = gated_layers(x)                           (T, 2 * intermediate), no bias
    x   = LayerNorm(wo(gelu_erf(g) * v) + x)

Only attention needs to know where one sequence ends and the next begins; it is a
callable handed in by the embedder (:mod:`virnucpro_dnabert_v2.attention`). The
module and parameter names are those of DNABERT-S's checkpoint, so loading is a
strict ``load_state_dict`` that names anything missing or unexpected. The pooler
(``pooler.dense``) is part of the checkpoint and is loaded, though mean pooling
never calls it.

Precision: with :meth:`MosaicBert.set_compute_dtype` (bf16/fp16 on CUDA) the linear
layers hold and multiply in half precision while the residual stream, LayerNorms,
embeddings and pooling stay fp32, which is what ``torch.autocast`` does for the
reference code and avoids rounding the residual sum 24 times.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from virnucpro_dnabert_v2.config import MosaicConfig

Attend = Callable[[torch.Tensor], torch.Tensor]


def _linear(x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    return F.linear(x.to(layer.weight.dtype), layer.weight, layer.bias)


class _Embeddings(nn.Module):
    def __init__(self, config: MosaicConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)


class _SelfAttention(nn.Module):
    def __init__(self, config: MosaicConfig) -> None:
        super().__init__()
        self.Wqkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)


class _SelfOutput(nn.Module):
    def __init__(self, config: MosaicConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)


class _Attention(nn.Module):
    def __init__(self, config: MosaicConfig) -> None:
        super().__init__()
        self.self = _SelfAttention(config)
        self.output = _SelfOutput(config)


class _GatedMlp(nn.Module):
    def __init__(self, config: MosaicConfig) -> None:
        super().__init__()
        self.gated_layers = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=False)
        self.wo = nn.Linear(config.intermediate_size, config.hidden_size)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)


class _Layer(nn.Module):
    def __init__(self, config: MosaicConfig) -> None:
        super().__init__()
        self.attention = _Attention(config)
        self.mlp = _GatedMlp(config)


class _Encoder(nn.Module):
    def __init__(self, config: MosaicConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(_Layer(config) for _ in range(config.num_layers))


class _Pooler(nn.Module):
    def __init__(self, config: MosaicConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)


class MosaicBert(nn.Module):
    """The DNABERT-S encoder; :meth:`encode` maps packed token ids to packed fp32 hidden states."""

    def __init__(self, config: MosaicConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = _Embeddings(config)
        self.encoder = _Encoder(config)
        self.pooler = _Pooler(config)

    def set_compute_dtype(self, dtype: torch.dtype) -> None:
        """Hold the linear layers in ``dtype``; embeddings and LayerNorms stay fp32."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                module.to(dtype)

    def encode(self, input_ids: torch.Tensor, attend: Attend) -> torch.Tensor:
        """``(T,)`` token ids of concatenated sequences -> ``(T, hidden)`` fp32 last hidden states.

        ``attend`` takes the fused ``(T, 3, heads, head_dim)`` projections and returns
        ``(T, heads, head_dim)``: attention within each sequence with the ALiBi bias.
        Token types are all 0, as the reference uses when none are given.
        """
        cfg = self.config
        emb = self.embeddings
        x = emb.word_embeddings(input_ids) + emb.token_type_embeddings.weight[0]
        x = emb.LayerNorm(x)
        total = x.shape[0]
        for layer in self.encoder.layer:
            qkv = _linear(x, layer.attention.self.Wqkv).view(total, 3, cfg.num_heads, cfg.head_dim)
            context = attend(qkv).reshape(total, cfg.hidden_size)
            out = layer.attention.output
            x = out.LayerNorm(_linear(context, out.dense).float() + x)
            mlp = layer.mlp
            gate, value = _linear(x, mlp.gated_layers).split(cfg.intermediate_size, dim=-1)
            x = mlp.layernorm(_linear(F.gelu(gate).mul_(value), mlp.wo).float() + x)
        return x


def segment_means(hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean of each sequence's rows of packed ``hidden`` (``(T, d)``, in order) -> ``(B, d)`` fp32.

    Every token counts, [CLS] and [SEP] included, as the original's ``torch.mean``
    over the whole one-sequence output.
    """
    segment = torch.repeat_interleave(torch.arange(lengths.numel(), device=hidden.device), lengths)
    sums = torch.zeros(lengths.numel(), hidden.shape[1], dtype=torch.float32, device=hidden.device)
    sums.index_add_(0, segment, hidden.to(torch.float32))
    return sums / lengths.to(torch.float32)[:, None]
