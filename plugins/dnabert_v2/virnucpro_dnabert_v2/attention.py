"""Attention over packed sequences with DNABERT-S's ALiBi bias: two exchangeable paths.

- ``flash_attn_varlen``: flash-attn's ``flash_attn_varlen_func`` on the packed
  ``(T, heads, head_dim)`` tensors with ``cu_seqlens`` and ``alibi_slopes``; for
  equal query and key lengths and ``causal=False`` flash-attn adds
  ``-slope * |i - j|``, the same symmetric bias MosaicBERT uses. CUDA and fp16/bf16
  only; needs ``pip install 'virnucpro-dnabert-v2[flash]'``.
- ``sdpa_bucketed``: everywhere else (CPU, or a GPU without flash-attn).
  Sequences of similar length are gathered into padded blocks (a new block starts
  when a sequence is shorter than :data:`MIN_FILL` of the block's longest, or when
  the block's bias would exceed :data:`MAX_BIAS_ELEMENTS`), run through
  ``torch.nn.functional.scaled_dot_product_attention`` with the ALiBi bias plus
  ``-inf`` on padded keys, and scattered back. Padded slots are filled with row 0
  of the batch (no copy of the projections is made); ``-inf`` makes them weigh
  exactly 0 as keys, and their rows as queries are never scattered back, so each
  sequence's numbers do not depend on its block-mates: the result equals one
  sequence per call.

:func:`choose_attention` picks one at run time (``auto``: flash-attn where it can
run, else SDPA); the embedder logs the choice and records it in the output file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from virnucpro_core import accel
from virnucpro_core.errors import ConfigError

FLASH = "flash_attn_varlen"
SDPA = "sdpa_bucketed"
#: What ``--backend-option attention=...`` accepts.
ATTENTION_CHOICES: dict[str, str] = {"auto": "flash-attn when it can run here, else SDPA", "flash": FLASH, "sdpa": SDPA}
MIN_FILL = 0.75
MAX_BIAS_ELEMENTS = 1 << 26


def flash_unavailable(device_type: str, precision: str) -> str | None:
    """Why flash-attn's varlen kernel cannot run here, or ``None``.

    flash-attn is imported for real (:func:`virnucpro_core.accel.flash_attn_varlen`): an
    installed build that does not load (made for another torch or CUDA) is unavailable,
    with its import error, and ``auto`` falls back to SDPA instead of crashing.
    """
    if device_type != "cuda":
        return "flash-attn runs on CUDA only"
    if precision not in ("bf16", "fp16"):
        return f"flash-attn computes in bf16/fp16, not {precision}"
    _func, reason = accel.flash_attn_varlen()
    return f"{reason} (pip install 'virnucpro-dnabert-v2[flash]')" if reason else None


def choose_attention(requested: str, device_type: str, precision: str) -> str:
    """``auto|flash|sdpa`` -> the path to run; an impossible explicit request is a ConfigError."""
    if requested not in ATTENTION_CHOICES:
        raise ConfigError(
            f"dnabert=v2: attention {requested!r} is unknown; choose one of {', '.join(ATTENTION_CHOICES)}"
        )
    if requested == "sdpa":
        return SDPA
    reason = flash_unavailable(device_type, precision)
    if requested == "flash" and reason:
        raise ConfigError(f"dnabert=v2: attention=flash cannot run here: {reason}; use attention=sdpa or auto")
    return SDPA if reason else FLASH


@dataclass(frozen=True)
class _Block:
    """Sequences padded together: ``index`` (n, L) rows of the packed tensor (padding -> row 0)."""

    index: Any
    valid: Any
    positions: Any
    bias: Any


class PackedAttention:
    """Attention for one packed batch: ``prepare(lengths)`` once, then call it in every layer."""

    def __init__(self, kind: str, slopes: list[float], device: Any, dtype: Any) -> None:
        import torch

        self.kind = kind
        self.dtype = dtype
        self.device = device
        # the reference stores its Python-float slopes as an fp32 tensor; flash-attn wants fp32 too
        self.slopes = accel.to_device(torch.tensor(slopes, dtype=torch.float32), device)
        self._state: Any = None
        if kind == FLASH:
            self._flash, reason = accel.flash_attn_varlen()
            if self._flash is None:
                raise ConfigError(f"dnabert=v2: attention=flash cannot run: {reason}")

    def prepare(self, lengths: list[int]) -> None:
        """Index the batch whose sequences, of these token counts, are concatenated in this order."""
        import torch

        offsets = [0]
        for n in lengths:
            offsets.append(offsets[-1] + n)
        if self.kind == FLASH:
            cu = accel.to_device(torch.tensor(offsets, dtype=torch.int32), self.device)
            self._state = (cu, max(lengths))
            return
        self._state = self._blocks(lengths, offsets)

    def _blocks(self, lengths: list[int], offsets: list[int]) -> tuple[int, list[_Block]]:
        import torch

        from virnucpro_dnabert_v2.alibi import alibi_bias

        heads = self.slopes.numel()
        total = offsets[-1]
        order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
        groups: list[list[int]] = []
        for i in order:
            if groups:
                width = lengths[groups[-1][0]]
                fits = (len(groups[-1]) + 1) * heads * width * width <= MAX_BIAS_ELEMENTS
                if fits and lengths[i] >= MIN_FILL * width:
                    groups[-1].append(i)
                    continue
            groups.append([i])
        blocks = []
        for group in groups:
            width = lengths[group[0]]
            steps = torch.arange(width)
            starts = torch.tensor([offsets[i] for i in group])[:, None]
            sizes = torch.tensor([lengths[i] for i in group])[:, None]
            valid = steps[None, :] < sizes
            index = torch.where(valid, starts + steps[None, :], torch.zeros_like(starts))
            key_bias = torch.zeros(valid.shape, dtype=torch.float32).masked_fill(~valid, float("-inf"))
            valid, index = accel.to_device(valid, self.device), accel.to_device(index, self.device)
            bias = alibi_bias(self.slopes, width)[None] + accel.to_device(key_bias, self.device)[:, None, None, :]
            blocks.append(_Block(index=index, valid=valid, positions=index[valid], bias=bias.to(self.dtype)))
        return total, blocks

    def __call__(self, qkv: Any) -> Any:
        """``(T, 3, heads, head_dim)`` -> ``(T, heads, head_dim)``."""
        if self.kind == FLASH:
            cu, longest = self._state
            q, k, v = qkv.unbind(1)
            return self._flash(q, k, v, cu, cu, longest, longest, dropout_p=0.0, causal=False, alibi_slopes=self.slopes)
        from torch.nn import functional as F

        total, blocks = self._state
        out = qkv.new_empty((total, qkv.shape[2], qkv.shape[3]))
        for block in blocks:
            gathered = qkv[block.index]  # (n, L, 3, H, hd)
            q, k, v = (gathered[:, :, i].transpose(1, 2) for i in range(3))  # (n, H, L, hd)
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=block.bias)
            out[block.positions] = context.transpose(1, 2)[block.valid]
        return out
