"""ALiBi slopes and bias as MosaicBERT defines them (DNABERT-S has 12 heads: not a power of two)."""

from __future__ import annotations

import math

import pytest
import torch

from virnucpro_dnabert_v2.alibi import alibi_bias, alibi_slopes


@pytest.mark.parametrize("n", [1, 2, 4, 8, 16, 32])
def test_powers_of_two_are_the_geometric_series_of_the_alibi_paper(n):
    assert alibi_slopes(n) == pytest.approx([2.0 ** (-8.0 * (k + 1) / n) for k in range(n)], rel=1e-15)


def test_twelve_heads_take_eight_then_every_other_of_sixteen():
    want = [2.0 ** -k for k in range(1, 9)] + [2.0 ** -(k + 0.5) for k in range(4)]
    assert alibi_slopes(12) == pytest.approx(want, rel=1e-15)


def test_six_heads_take_four_then_every_other_of_eight():
    assert alibi_slopes(6) == pytest.approx([2**-2, 2**-4, 2**-6, 2**-8, 2**-1, 2**-3], rel=1e-15)


@pytest.mark.parametrize("n", [3, 5, 7, 12, 20, 24])
def test_any_head_count_gives_distinct_positive_slopes(n):
    slopes = alibi_slopes(n)
    assert len(slopes) == n and len(set(slopes)) == n and all(0 < s < 1 for s in slopes)
    lower = 2 ** math.floor(math.log2(n))
    assert slopes[:lower] == alibi_slopes(lower)


def test_bias_is_symmetric_minus_slope_times_distance_in_fp32():
    slopes = torch.tensor(alibi_slopes(12), dtype=torch.float32)
    bias = alibi_bias(slopes, 700)
    assert bias.shape == (12, 700, 700) and bias.dtype == torch.float32
    assert torch.equal(bias, bias.transpose(1, 2))
    assert torch.all(bias.diagonal(dim1=1, dim2=2) == 0)
    assert bias[3, 10, 650].item() == pytest.approx(-alibi_slopes(12)[3] * 640, rel=1e-6)
    assert torch.equal(alibi_bias(slopes, 100), bias[:, :100, :100])  # a longer table holds the same values


def test_zero_heads_is_an_error():
    with pytest.raises(ValueError):
        alibi_slopes(0)
