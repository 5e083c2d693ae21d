"""Per-protein comparison of two embedding matrices, never by cosine alone.

The predecessor's cosine-only checks hid a missing 0.88 rescale, EOS in the mean and a
wrong GELU (all three keep cosines near 1). Every check here is per row:

- fp32 against fair-esm: ``max|Δ| <= 1e-4 * (1 + max|x|)`` and ``| |a|/|b| - 1 | <= 1e-4``;
- reduced precision against fp32: cosine >= 0.999 and the norm ratio within 0.5%.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FP32_RELATIVE_TOLERANCE = 1e-4
FP32_NORM_TOLERANCE = 1e-4
REDUCED_MIN_COSINE = 0.999
REDUCED_NORM_TOLERANCE = 5e-3


@dataclass(frozen=True)
class RowComparison:
    """Per-row figures of ``got`` against ``ref`` (float64)."""

    max_abs: np.ndarray
    scale: np.ndarray  # max |ref| per row
    norm_ratio: np.ndarray
    cosine: np.ndarray

    @classmethod
    def of(cls, got: np.ndarray, ref: np.ndarray) -> "RowComparison":
        got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
        if got.shape != ref.shape:
            raise ValueError(f"shapes differ: {got.shape} vs {ref.shape}")
        ng, nr = np.linalg.norm(got, axis=1), np.linalg.norm(ref, axis=1)
        return cls(np.abs(got - ref).max(axis=1), np.abs(ref).max(axis=1), ng / nr, (got * ref).sum(axis=1) / (ng * nr))

    def fp32_failures(self) -> list[int]:
        """Rows outside the fp32 bounds."""
        bad = (self.max_abs > FP32_RELATIVE_TOLERANCE * (1 + self.scale)) | (np.abs(self.norm_ratio - 1) > FP32_NORM_TOLERANCE)
        return [int(i) for i in np.flatnonzero(bad)]

    def reduced_failures(self) -> list[int]:
        """Rows outside the reduced-precision bounds."""
        bad = (self.cosine < REDUCED_MIN_COSINE) | (np.abs(self.norm_ratio - 1) > REDUCED_NORM_TOLERANCE)
        return [int(i) for i in np.flatnonzero(bad)]

    def summary(self) -> dict[str, float]:
        return {"max_abs": float(self.max_abs.max()), "max_relative": float((self.max_abs / (1 + self.scale)).max()),
                "worst_norm_ratio_deviation": float(np.abs(self.norm_ratio - 1).max()), "min_cosine": float(self.cosine.min())}
