"""Checks every embedding writer applies to a batch before it touches the file.

Shared by the HDF5 and ``.pt`` writers so both refuse the same things with the same
words. Non-finite values are refused, not stored: a NaN row (an fp16 overflow, a
backend bug) would give a NaN score that the classifier turns into a silent
``others``; better to stop at the first bad ID while the run can still be redone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from virnucpro_core.errors import VirnucproError


def check_batch(path: Path, dim: int, ids: Sequence[str], embeddings: np.ndarray) -> tuple[list[str], np.ndarray]:
    """``(ids, float32 C-contiguous rows)`` ready to store, or a one-line error.

    Refuses: a count mismatch between ``ids`` and rows, a non-string ID, rows that
    are not 2-D or not ``dim`` wide, and NaN/inf values (naming the first bad ID).
    """
    ids = list(ids)
    array = np.asarray(embeddings)
    if array.ndim != 2:
        raise VirnucproError(f"{path}: embeddings must be a 2-D array (rows x {dim}), got shape {array.shape}")
    if array.shape[0] != len(ids):
        raise VirnucproError(f"{path}: {len(ids)} IDs but {array.shape[0]} embedding rows in one batch; they must pair one to one")
    if array.shape[1] != dim:
        raise VirnucproError(f"{path}: embeddings are {array.shape[1]} wide but the file holds {dim}-dim embeddings")
    for sid in ids:
        if not isinstance(sid, str):
            raise VirnucproError(f"{path}: IDs must be strings, got {type(sid).__name__} {sid!r}")
    if array.dtype != np.float32:
        if not np.issubdtype(array.dtype, np.floating):
            raise VirnucproError(f"{path}: embeddings must be floating point, got dtype {array.dtype}")
        array = array.astype(np.float32)
    array = np.ascontiguousarray(array)
    finite = np.isfinite(array).all(axis=1)
    if not finite.all():
        first = int(np.argmin(finite))
        raise VirnucproError(
            f"{path}: embedding of {ids[first]!r} has NaN or infinite values; "
            "the model overflowed (try --precision fp32) or its input was empty"
        )
    return ids, array
