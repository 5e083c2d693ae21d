"""Whether bf16 is fast on this CPU, for the one warning about ``--precision bf16`` on a CPU.

bf16 matmuls run natively with AMX tiles (Sapphire Rapids on) or with AVX512-BF16
(Cooper Lake, Zen 4), where esm2=v2 in bf16 is faster than in fp32 (2.3x v1 in fp32
was measured on an AVX512-BF16 CPU without AMX). Only without either are they emulated,
and only there is bf16 much slower than fp32.
"""

from __future__ import annotations


def emulated_bf16_warning() -> str | None:
    """The warning for bf16 on this CPU, or ``None`` where bf16 runs natively (AMX or AVX512-BF16)."""
    import torch

    if torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported():
        return None
    return (f"esm2=v2: this CPU has neither AMX tiles nor AVX512-BF16 (torch reports {torch.backends.cpu.get_cpu_capability()}); "
            "bf16 matmuls are emulated here and much slower than fp32, use --precision fp32")
