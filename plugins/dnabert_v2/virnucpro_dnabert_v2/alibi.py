"""ALiBi head slopes and biases exactly as DNABERT-S's MosaicBERT computes them.

MosaicBERT biases the attention score of query ``i`` and key ``j`` in head ``h`` by
``-slope_h * |i - j|`` (symmetric: the encoder is bidirectional). For ``n = 2^k``
heads the slopes are the geometric series ``start^(h+1)`` with
``start = 2^(-2^-(log2(n) - 3))`` = ``2^(-8/n)``; for other head counts they are those
of the nearest lower power of two followed by every second slope of the next power
of two. The reference builds the slopes in Python floats and stores them as fp32, and
multiplies by the integer distances in fp32; :func:`alibi_bias` does the same, so the
bias values are identical, not merely close.
"""

from __future__ import annotations

import math


def alibi_slopes(n_heads: int) -> list[float]:
    """Per-head slopes (Python floats) for ``n_heads`` heads, any positive count."""
    if n_heads <= 0:
        raise ValueError(f"n_heads must be positive, got {n_heads}")

    def power_of_two(n: int) -> list[float]:
        start = 2.0 ** (-(2.0 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(n_heads).is_integer():
        return power_of_two(n_heads)
    lower = 2 ** math.floor(math.log2(n_heads))
    return power_of_two(lower) + alibi_slopes(2 * lower)[0::2][: n_heads - lower]


def alibi_bias(slopes, length: int):
    """``(heads, length, length)`` fp32 bias ``-slope_h * |i - j|`` on the slopes' device."""
    import torch

    positions = torch.arange(length, device=slopes.device)
    distance = (positions[None, :] - positions[:, None]).abs()
    return slopes.to(torch.float32)[:, None, None] * -distance[None]
