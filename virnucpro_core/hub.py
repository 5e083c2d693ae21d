"""Hugging Face hub conventions shared by backends that load hub models (no hub client imported here).

Both DNABERT backends accept a hub id (``owner/name``) or a local folder, and both must
honour the user's request to stay offline; these rules live here once.
"""

from __future__ import annotations

import os
from pathlib import Path

_TRUE = {"1", "true", "yes", "on"}


def offline_requested() -> bool:
    """Whether the user asked Hugging Face libraries not to touch the network."""
    return any(os.environ.get(name, "").strip().lower() in _TRUE for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def is_local_reference(model: str) -> bool:
    """A path (existing, absolute, relative with ./ or ~, or not shaped like owner/name)."""
    if Path(model).expanduser().exists():
        return True
    if model.startswith(("/", ".", "~")) or "\\" in model:
        return True
    return model.count("/") != 1


def first_line(exc: BaseException) -> str:
    """``TypeName: first line of the message``, for one-line errors."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()
