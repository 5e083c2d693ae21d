"""The original VirNucPro ``torch.save`` layouts, read and written exactly.

Three layouts, told apart by their keys (as the original's ``units.py`` saves them):

* DNABERT-S (``modality="nucleotide"``):
  ``{'nucleotide': [ids], 'data': [{'label': id, 'mean_representation': [768 python floats]}]}``
* ESM (``modality="protein"``): ``{'proteins': [ids], 'data': [1-D float32 tensor(2560), ...]}``
  (each tensor with its own storage, as the original's ``.clone()`` leaves them)
* merged (``modality="merged"``): ``{'ids': [ids], 'data': float32 tensor[N, 3328]}``;
  an optional ``'labels'`` key (training files) is accepted and ignored.

Files are loaded with ``torch.load(..., weights_only=True)``: tensors, lists, dicts
and strings only, never arbitrary unpickling, so a hostile ``.pt`` cannot run code.

The layout is one pickled object, so it cannot be streamed: the reader holds the
whole file in memory and :class:`PtWriter` accumulates every batch and saves once on
commit. Use HDF5 for anything large; this format exists so existing users' files
and tools keep working. The layouts carry no metadata, so ``meta`` has only
``dim`` and ``modality`` (plus ``extra['pt_layout']``); the rest is lost on writing.
The values round-trip exactly: DNABERT floats are float32 values stored as python
floats, exactly as the original's ``tensor.tolist()`` stored them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from virnucpro_core.atomic import atomic_open
from virnucpro_core.errors import InputError, VirnucproError
from virnucpro_core.formats.base import CommitOnExit, EmbeddingMeta
from virnucpro_core.formats.checks import check_batch

#: layout name -> (key of the ID list, modality)
LAYOUTS: dict[str, tuple[str, str]] = {
    "dnabert": ("nucleotide", "nucleotide"),
    "esm": ("proteins", "protein"),
    "merged": ("ids", "merged"),
}
LAYOUT_FOR_MODALITY: dict[str, str] = {modality: name for name, (_, modality) in LAYOUTS.items()}
_EXPECTED = "'nucleotide'+'data' (DNABERT-S), 'proteins'+'data' (ESM) or 'ids'+'data' (merged)"


def load_pt(path: Path) -> Any:
    """``torch.load`` restricted to plain tensors and containers; one-line errors."""
    import pickle
    import torch

    if not path.is_file():
        raise InputError(f"{path}: no such embeddings file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc):  # a class or function the allow-list refuses
            raise InputError(
                f"{path}: holds objects other than tensors, lists, dicts and strings; refusing to unpickle it "
                "(an original VirNucPro embeddings file never does)"
            ) from None
        raise InputError(f"{path}: cannot be read as a torch .pt file (truncated or not a .pt file)") from None
    except Exception:
        raise InputError(f"{path}: cannot be read as a torch .pt file (truncated or not a .pt file)") from None


def detect_layout(path: Path, obj: Any) -> str:
    """``dnabert``, ``esm`` or ``merged``, from the keys of the saved dict."""
    if isinstance(obj, dict) and "data" in obj:
        for name, (id_key, _) in LAYOUTS.items():
            if id_key in obj:
                return name
    keys = ", ".join(repr(k) for k in obj) if isinstance(obj, dict) else type(obj).__name__
    raise InputError(f"{path}: not an original VirNucPro embeddings layout (found {keys}); expected {_EXPECTED}")


def _ids(path: Path, obj: dict, key: str) -> list[str]:
    ids = obj[key]
    if not isinstance(ids, (list, tuple)) or not all(isinstance(i, str) for i in ids):
        raise InputError(f"{path}: {key!r} must be a list of ID strings")
    return list(ids)


def _rows_dnabert(path: Path, ids: list[str], data: Any) -> np.ndarray:
    if not isinstance(data, (list, tuple)):
        raise InputError(f"{path}: 'data' must be a list of {{'label', 'mean_representation'}} dicts")
    rows = []
    for i, (sid, item) in enumerate(zip(ids, data)):
        if not isinstance(item, dict) or "mean_representation" not in item:
            raise InputError(f"{path}: data[{i}] is not a {{'label', 'mean_representation'}} dict")
        if item.get("label") != sid:
            raise InputError(f"{path}: data[{i}] has label {item.get('label')!r} but 'nucleotide'[{i}] is {sid!r}; the file is inconsistent")
        rows.append(item["mean_representation"])
    if not rows:
        return np.empty((0, 0), dtype=np.float32)
    try:
        array = np.array(rows, dtype=np.float32)
    except (ValueError, TypeError):
        array = None
    if array is None or array.ndim != 2:
        raise InputError(f"{path}: the mean_representation values are not lists of numbers of one length")
    return array


def _rows_esm(path: Path, data: Any) -> np.ndarray:
    import torch

    if not isinstance(data, (list, tuple)) or not all(isinstance(t, torch.Tensor) and t.ndim == 1 for t in data):
        raise InputError(f"{path}: 'data' must be a list of 1-D tensors")
    if len({t.shape[0] for t in data}) > 1:
        raise InputError(f"{path}: the tensors in 'data' do not all have the same length")
    if not data:
        return np.empty((0, 0), dtype=np.float32)
    return torch.stack([t.detach().float() for t in data]).numpy()


def _rows_merged(path: Path, data: Any) -> np.ndarray:
    import torch

    if not isinstance(data, torch.Tensor) or data.ndim != 2:
        raise InputError(f"{path}: 'data' must be one 2-D tensor (rows x features)")
    return data.detach().float().contiguous().numpy()


def _count(path: Path, data: Any) -> int:
    if getattr(data, "ndim", None) is not None:  # a tensor
        if data.ndim == 0:
            raise InputError(f"{path}: 'data' is a single number, not embeddings")
        return int(data.shape[0])
    if isinstance(data, (list, tuple)):
        return len(data)
    raise InputError(f"{path}: 'data' must be a list or a tensor, found {type(data).__name__}")


class PtReader:
    """Read one of the three original layouts (held in memory whole)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        obj = load_pt(self.path)
        self.layout = detect_layout(self.path, obj)
        id_key, modality = LAYOUTS[self.layout]
        self._ids = _ids(self.path, obj, id_key)
        data = obj["data"]
        n_data = _count(self.path, data)
        if n_data != len(self._ids):
            raise InputError(
                f"{self.path}: {len(self._ids)} IDs in {id_key!r} but {n_data} rows in 'data'; "
                "the original merge writes every nucleotide ID even when some had no protein embedding, "
                "so rows and IDs no longer pair up; re-merge with `virnucpro` from the DNABERT-S and ESM files"
            )
        if self.layout == "dnabert":
            self._data = _rows_dnabert(self.path, self._ids, data)
        elif self.layout == "esm":
            self._data = _rows_esm(self.path, data)
        else:
            self._data = _rows_merged(self.path, data)
        dim = int(self._data.shape[1]) if self._data.ndim == 2 else 0
        self.meta = EmbeddingMeta(dim=dim, modality=modality, extra={"pt_layout": self.layout})

    def __len__(self) -> int:
        return len(self._ids)

    def ids(self) -> list[str]:
        return list(self._ids)

    def iter_batches(self, batch_size: int = 4096) -> Iterator[tuple[list[str], np.ndarray]]:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        for start in range(0, len(self), batch_size):
            yield self._ids[start : start + batch_size], self._data[start : start + batch_size].copy()

    def read_rows(self, rows: np.ndarray | Sequence[int]) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if rows.size and (rows.min() < 0 or rows.max() >= len(self)):
            bad = int(rows[(rows < 0) | (rows >= len(self))][0])
            raise IndexError(f"{self.path}: row {bad} is out of range (the file has {len(self)} rows)")
        if rows.size == 0:
            return np.empty((0, self.meta.dim), dtype=np.float32)
        return self._data[rows]

    def close(self) -> None:
        self._data = np.empty((0, self.meta.dim), dtype=np.float32)
        self._ids = []

    def __enter__(self) -> "PtReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PtWriter(CommitOnExit):
    """Write the original layout chosen by ``meta.modality``.

    Cannot stream (the layout is one ``torch.save``'d object): batches are kept in
    memory and the file is saved atomically on :meth:`commit`. Use as a context
    manager: a clean exit commits, an exception writes nothing.
    """

    def __init__(self, path: str | Path, meta: EmbeddingMeta) -> None:
        self.path = Path(path)
        self.meta = meta
        if meta.modality not in LAYOUT_FOR_MODALITY:
            choices = ", ".join(LAYOUT_FOR_MODALITY)
            raise VirnucproError(f"{self.path}: the .pt format has no layout for modality {meta.modality!r}; it has: {choices}")
        if meta.dim < 1:
            raise VirnucproError(f"{self.path}: cannot write {meta.dim}-dim embeddings; dim must be at least 1")
        if not self.path.parent.is_dir():
            raise VirnucproError(f"cannot create {self.path}: the folder {self.path.parent} does not exist")
        self.layout = LAYOUT_FOR_MODALITY[meta.modality]
        self._ids: list[str] = []
        self._batches: list[np.ndarray] = []
        self._done = False

    @property
    def rows(self) -> int:
        return len(self._ids)

    def write(self, ids: Sequence[str], embeddings: np.ndarray) -> None:
        if self._done:
            raise VirnucproError(f"{self.path}: writer is already closed")
        ids, array = check_batch(self.path, self.meta.dim, ids, embeddings)
        self._ids.extend(ids)
        self._batches.append(array.copy())

    def _build(self) -> dict[str, Any]:
        import torch

        data = np.concatenate(self._batches) if self._batches else np.empty((0, self.meta.dim), dtype=np.float32)
        ids = list(self._ids)
        if self.layout == "dnabert":
            return {
                "nucleotide": ids,
                "data": [{"label": sid, "mean_representation": row.tolist()} for sid, row in zip(ids, data)],
            }
        if self.layout == "esm":
            # one storage per tensor, like the original's ``.clone()`` per sequence
            return {"proteins": ids, "data": [torch.from_numpy(row.copy()) for row in data]}
        return {"ids": ids, "data": torch.from_numpy(np.ascontiguousarray(data))}

    def commit(self) -> None:
        """Build the layout and save it under ``path`` atomically."""
        import torch

        if self._done:
            return
        self._done = True
        obj = self._build()
        self._batches = []
        with atomic_open(self.path, "wb") as handle:
            torch.save(obj, handle)

    def abort(self) -> None:
        self._done = True
        self._batches = []
        self._ids = []

