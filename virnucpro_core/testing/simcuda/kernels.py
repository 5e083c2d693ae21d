"""Contract checkers standing in for the varlen attention kernels under the simulator.

Each refuses what the real function refuses, or would silently get wrong (checked against flash-attn 2.8.3's
``flash_attn_interface.py`` and ``csrc/flash_attn/flash_api.cpp``, and torch's
``torch/nn/attention/varlen.py`` and ``aten/.../flash_attn/flash_api.cpp`` of 2.10,
2.11 and 2.13), with the same signature, then computes the exact result: fp32
scaled-dot-product attention over each sequence on the CPU, returned in the input
dtype. A call over more query tokens than the simulator's ``oom_above_tokens`` raises
``torch.cuda.OutOfMemoryError`` as the real allocation would.

The real kernels' requirements enforced here:

- q, k, v of shape ``(total_tokens, heads, head_dim)``, fp16 or bf16 (no fp32
  kernels), all of one dtype, the last dimension contiguous; head_dim at most 256;
- ``cu_seqlens`` int32, one-dimensional, contiguous; ``max_seqlen`` a Python int (the
  real kernels do not check that ``cu_seqlens`` runs from 0 to the token count or that
  ``max_seqlen`` covers the longest sequence, but leave rows uncomputed when it does not:
  refused here);
- torch's ``varlen_attn`` (ATen ``mha_varlen_fwd``): head_dim a multiple of 8;
- flash-attn's ``alibi_slopes``: fp32, shape ``(heads,)`` or ``(batch, heads)``, last
  dimension contiguous; it adds ``-slope * |i - j|`` (non-causal, equal lengths);
- torch 2.10's ``varlen_attn`` has no ``scale``; 2.11+ take it keyword-only (the stand-in
  has 2.13's keyword set; only ``scale`` is used here).

Stricter than the real thing in one place: flash-attn copies q/k/v whose last dimension
is not contiguous; the checker refuses them.
"""

from __future__ import annotations

from typing import Any


class KernelContractError(RuntimeError):
    """A call the real kernel would refuse (or silently get wrong)."""


def _sim():
    from virnucpro_core.testing.simcuda import active

    return active()


def _check_qkv(kernel: str, q, k, v) -> None:
    import torch

    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise KernelContractError(f"{kernel}: {name} must be a tensor, got {type(t).__name__}")
        if t.dim() != 3:
            raise KernelContractError(f"{kernel}: {name} must be (total_tokens, heads, head_dim), got shape {tuple(t.shape)}")
        if t.stride(-1) != 1:
            raise KernelContractError(f"{kernel}: Input tensor must have contiguous last dimension ({name})")
    if q.dtype not in (torch.float16, torch.bfloat16):
        raise KernelContractError(f"{kernel}: FlashAttention only supports fp16 and bf16 data type, got {q.dtype}")
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise KernelContractError(f"{kernel}: query and key/value must have the same dtype")
    if q.shape[1:] != k.shape[1:] or k.shape != v.shape:
        raise KernelContractError(f"{kernel}: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)} do not agree")
    if q.shape[2] > 256:
        raise KernelContractError(f"{kernel}: FlashAttention forward only supports head dimension at most 256, got {q.shape[2]}")


def _check_cu(kernel: str, name: str, cu, total: int, max_seqlen: Any) -> list[int]:
    import torch

    if not isinstance(cu, torch.Tensor):
        raise KernelContractError(f"{kernel}: {name} must be a tensor, got {type(cu).__name__}")
    if cu.dtype != torch.int32:
        raise KernelContractError(f"{kernel}: {name} must have dtype int32, got {cu.dtype}")
    if cu.dim() != 1 or not cu.is_contiguous():
        raise KernelContractError(f"{kernel}: {name} must be a contiguous 1-D tensor")
    offsets = [int(x) for x in cu.tolist()]
    if len(offsets) < 2 or offsets[0] != 0 or any(b < a for a, b in zip(offsets, offsets[1:])) or offsets[-1] != total:
        raise KernelContractError(f"{kernel}: {name} {offsets[:6]}... must run from 0 to the {total} tokens, non-decreasing")
    if isinstance(max_seqlen, bool) or not isinstance(max_seqlen, int):
        raise KernelContractError(f"{kernel}: max_seqlen must be a Python int, got {type(max_seqlen).__name__}")
    longest = max(b - a for a, b in zip(offsets, offsets[1:]))
    if max_seqlen < longest:
        raise KernelContractError(f"{kernel}: max_seqlen {max_seqlen} is below the longest sequence ({longest})")
    return offsets


def _maybe_oom(kernel: str, tokens: int) -> None:
    import torch

    sim = _sim()
    if sim is None:
        return
    sim.kernel_calls.append(kernel)
    limit = sim.config.oom_above_tokens
    if limit and tokens > limit:
        raise torch.cuda.OutOfMemoryError(
            f"CUDA out of memory. Tried to allocate for {tokens} tokens (simcuda: limit {limit} tokens per kernel call)")


def _attend(q, k, v, offsets: list[int], scale: float, causal: bool, slopes) -> Any:
    import torch
    import torch.nn.functional as F

    out = torch.empty_like(q)
    heads = q.shape[1]
    for b, (start, end) in enumerate(zip(offsets, offsets[1:])):
        if end == start:
            continue
        qs, ks, vs = (t[start:end].float().transpose(0, 1)[None] for t in (q, k, v))  # (1, H, L, D)
        length = end - start
        bias = torch.zeros(heads, length, length, dtype=torch.float32)
        if slopes is not None:
            pos = torch.arange(length)
            distance = (pos[None, :] - pos[:, None]).abs().float()
            s = slopes.float() if slopes.dim() == 1 else slopes[b].float()
            bias = bias - s[:, None, None] * distance[None]
        if causal:
            bias = bias.masked_fill(torch.ones(length, length, dtype=torch.bool).triu(1)[None], float("-inf"))
        o = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=bias[None], scale=scale)
        out[start:end] = o[0].transpose(0, 1).to(q.dtype)
    return out


def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=0.0, softmax_scale=None,
                           causal=False, window_size=(-1, -1), softcap=0.0, alibi_slopes=None, deterministic=False,
                           return_attn_probs=False, block_table=None):
    """flash-attn 2.8.3's ``flash_attn_varlen_func``, checked, computed exactly."""
    import torch

    kernel = "flash_attn_varlen_func"
    _check_qkv(kernel, q, k, v)
    offsets = _check_cu(kernel, "cu_seqlens_q", cu_seqlens_q, q.shape[0], max_seqlen_q)
    if _check_cu(kernel, "cu_seqlens_k", cu_seqlens_k, k.shape[0], max_seqlen_k) != offsets:
        raise KernelContractError(f"{kernel}: the simulator supports self-attention only (cu_seqlens_q == cu_seqlens_k)")
    if dropout_p:
        raise KernelContractError(f"{kernel}: dropout_p={dropout_p} at inference")
    if tuple(window_size) != (-1, -1) or softcap or block_table is not None or return_attn_probs:
        raise KernelContractError(f"{kernel}: window, softcap, paged KV and attention probabilities are not simulated")
    if alibi_slopes is not None:
        if alibi_slopes.dtype != torch.float32:
            raise KernelContractError(f"{kernel}: ALiBi slopes must have dtype fp32, got {alibi_slopes.dtype}")
        batch = len(offsets) - 1
        if tuple(alibi_slopes.shape) not in ((q.shape[1],), (batch, q.shape[1])):
            raise KernelContractError(f"{kernel}: ALiBi slopes batch/heads dimensions must be ({q.shape[1]},) or "
                                      f"({batch}, {q.shape[1]}), got {tuple(alibi_slopes.shape)}")
        if alibi_slopes.stride(-1) != 1:
            raise KernelContractError(f"{kernel}: ALiBi slopes tensor must have contiguous last dimension")
    _maybe_oom(kernel, q.shape[0])
    scale = q.shape[-1] ** -0.5 if softmax_scale is None else float(softmax_scale)
    return _attend(q, k, v, offsets, scale, bool(causal), alibi_slopes)


def _torch_varlen(kernel: str, query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, causal: bool, scale):
    _check_qkv(kernel, query, key, value)
    if query.shape[-1] % 8:  # ATen's mha_varlen_fwd does not pad, unlike flash-attn's Python wrapper
        raise KernelContractError(f"{kernel}: head_size must be a multiple of 8, got {query.shape[-1]}")
    offsets = _check_cu(kernel, "cu_seq_q", cu_seq_q, query.shape[0], max_q)
    if cu_seq_k is None or _check_cu(kernel, "cu_seq_k", cu_seq_k, key.shape[0], max_k) != offsets:
        raise KernelContractError(f"{kernel}: the simulator supports self-attention only (cu_seq_q == cu_seq_k)")
    _maybe_oom(kernel, query.shape[0])
    return _attend(query, key, value, offsets, query.shape[-1] ** -0.5 if scale is None else float(scale), causal, None)


def torch_varlen_attn_2_10(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, is_causal=False, return_aux=None):
    """torch 2.10's ``varlen_attn`` (no ``scale``), checked, computed exactly."""
    if return_aux is not None:
        raise KernelContractError("varlen_attn (torch 2.10): return_aux is not simulated")
    return _torch_varlen("varlen_attn (torch 2.10)", query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, bool(is_causal), None)


def torch_varlen_attn_2_11(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, return_aux=None, scale=None,
                           window_size=(-1, -1), enable_gqa=False, seqused_k=None, block_table=None, num_splits=None):
    """torch 2.11+'s ``varlen_attn`` (``scale`` keyword-only), checked, computed exactly."""
    if return_aux is not None or tuple(window_size) != (-1, -1) or enable_gqa or seqused_k is not None or block_table is not None:
        raise KernelContractError("varlen_attn (torch 2.11+): only plain self-attention is simulated")
    return _torch_varlen("varlen_attn (torch 2.11+)", query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, False, scale)
