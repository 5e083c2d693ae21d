"""Variable-length self-attention over a packed stream, three ways, chosen at run time.

- ``flash-attn``: ``flash_attn.flash_attn_varlen_func`` (the optional extra
  ``virnucpro-esm2-v2[flash]``; CUDA, fp16/bf16 only; no CPU build exists);
- ``torch-varlen``: ``torch.nn.attention.varlen.varlen_attn``, FlashAttention inside
  torch (CUDA, fp16/bf16; on a CPU it raises NotImplementedError);
- ``sdpa-bucketed``: exact ``scaled_dot_product_attention`` over padded blocks of
  proteins of similar length, padding masked as keys. Runs everywhere and in fp32; it
  is the CPU path and the GPU fallback.

Each takes q, k, v of shape ``(T, H, D)`` with positions already rotated and returns
``(T, H, D)``; a token attends only to the tokens of its own protein.
"""

from __future__ import annotations

import logging
from typing import Callable

from virnucpro_core import accel
from virnucpro_core.errors import ConfigError

log = logging.getLogger(__name__)

FLASH_ATTN = "flash-attn"
TORCH_VARLEN = "torch-varlen"
SDPA_BUCKETED = "sdpa-bucketed"
IMPLEMENTATIONS: tuple[str, ...] = (FLASH_ATTN, TORCH_VARLEN, SDPA_BUCKETED)


def unavailable_reason(name: str, device_type: str, dtype) -> str | None:
    """Why ``name`` cannot run on this device type in this dtype, or ``None``.

    Availability is decided by importing the kernel (:mod:`virnucpro_core.accel`): a
    flash-attn that is installed but does not load, or a torch without ``varlen_attn``,
    is unavailable with the import's own reason.
    """
    import torch

    if name not in IMPLEMENTATIONS:
        raise ConfigError(f"esm2=v2: unknown attention implementation {name!r}; choose one of {', '.join(IMPLEMENTATIONS)} or auto")
    if name == SDPA_BUCKETED:
        return None
    if device_type != "cuda":
        return "needs CUDA"
    if dtype not in (torch.float16, torch.bfloat16):
        return "needs fp16 or bf16 (FlashAttention has no fp32 kernels)"
    if name == FLASH_ATTN:
        _func, reason = accel.flash_attn_varlen()
        return f"{reason} (pip install 'virnucpro-esm2-v2[flash]')" if reason else None
    _kernel, reason = accel.torch_varlen()
    return reason


def available(device_type: str, dtype) -> list[str]:
    """The implementations that can run here, best first."""
    return [name for name in IMPLEMENTATIONS if unavailable_reason(name, device_type, dtype) is None]


def choose(device_type: str, dtype, forced: str | None = None) -> str:
    """The forced implementation (refused with its reason when it cannot run), else the best one."""
    if forced and forced != "auto":
        reason = unavailable_reason(forced, device_type, dtype)
        if reason:
            raise ConfigError(f"esm2=v2: attention={forced} cannot run on {device_type} in {dtype}: {reason}; "
                              f"choose one of {', '.join(available(device_type, dtype))} or auto")
        return forced
    return available(device_type, dtype)[0]


def kernel(name: str) -> Callable:
    """``attend(q, k, v, batch, scale)`` for implementation ``name``, looked up once per forward.

    Each takes q, k, v of shape ``(T, H, D)`` and a :class:`PackedBatch` on the device.
    """
    if name == FLASH_ATTN:
        flash, reason = accel.flash_attn_varlen()
        if flash is None:
            raise RuntimeError(f"esm2=v2: {reason}")

        def attend_flash(q, k, v, batch, scale):
            return flash(q, k, v, batch.cu_seqlens, batch.cu_seqlens, batch.max_seqlen, batch.max_seqlen,
                         dropout_p=0.0, softmax_scale=scale)

        return attend_flash
    if name == TORCH_VARLEN:
        varlen, reason = accel.torch_varlen()
        if varlen is None:
            raise RuntimeError(f"esm2=v2: {reason}")

        def attend_varlen(q, k, v, batch, scale):
            return varlen(q, k, v, batch.cu_seqlens, batch.max_seqlen, scale)

        return attend_varlen
    if name == SDPA_BUCKETED:
        return _sdpa_bucketed
    raise ConfigError(f"esm2=v2: unknown attention implementation {name!r}")


def attend(name: str, q, k, v, batch, scale: float):
    """Self-attention of every protein of ``batch`` (a :class:`PackedBatch` on the device)."""
    return kernel(name)(q, k, v, batch, scale)


def _sdpa_bucketed(q, k, v, batch, scale: float):
    import torch
    import torch.nn.functional as F

    heads, head_dim = q.shape[1], q.shape[2]
    out = torch.empty_like(q)
    for bucket in batch.buckets:
        def block(x):  # (T, H, D) -> (b, H, width, D)
            return x.index_select(0, bucket.gather).view(bucket.size, bucket.width, heads, head_dim).transpose(1, 2)

        o = F.scaled_dot_product_attention(block(q), block(k), block(v), attn_mask=bucket.valid[:, None, None, :], scale=scale)
        o = o.transpose(1, 2).reshape(bucket.size * bucket.width, heads, head_dim)
        out.index_copy_(0, bucket.dest, o.index_select(0, bucket.slots))
    return out
