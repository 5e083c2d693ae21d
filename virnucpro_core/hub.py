"""Hugging Face hub ids to local snapshots: cache first, offline-aware, failing fast.

Loaded by id with no network, transformers and huggingface_hub retry every file for
about a minute and log each retry before they give up. A backend that takes hub ids
calls :func:`resolve_snapshot` (or :func:`cached_snapshot` and :func:`require_hub`)
instead, so that:

- a snapshot already in the local cache is used without touching the network;
- ``HF_HUB_OFFLINE=1`` / ``TRANSFORMERS_OFFLINE=1`` mean the cache or nothing;
- otherwise the hub is probed once, with a short timeout (``VIRNUCPRO_HUB_TIMEOUT``
  seconds, default 5), and an unreachable hub is one :class:`ModelError` line within
  seconds, naming the model, the cache and what to do.

Backend-neutral: the core knows hub ids only as strings; which files a model needs
is the caller's ``required`` patterns. huggingface_hub is imported inside the functions.
"""

from __future__ import annotations

import logging
import os
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from virnucpro_core.errors import ModelError

if TYPE_CHECKING:
    from virnucpro_core.modelset import PinnedFile

log = logging.getLogger(__name__)

_TRUE = {"1", "true", "yes", "on"}
DEFAULT_TIMEOUT = 5.0
TIMEOUT_ENV = "VIRNUCPRO_HUB_TIMEOUT"

#: A file pattern, or alternatives of which one must match (``("*.safetensors", "*.bin")``).
Required = str | Sequence[str]


def offline_requested() -> bool:
    """Whether the user asked Hugging Face libraries not to touch the network."""
    return any(os.environ.get(name, "").strip().lower() in _TRUE for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "").strip().rstrip("/") or "https://huggingface.co"


def cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _timeout() -> float:
    try:
        value = float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT))
    except ValueError:
        return DEFAULT_TIMEOUT
    return value if value > 0 else DEFAULT_TIMEOUT


def _has(folder: Path, required: Sequence[Required]) -> bool:
    for entry in required:
        alternatives = (entry,) if isinstance(entry, str) else tuple(entry)
        if not any(any(folder.glob(pattern)) for pattern in alternatives):
            return False
    return True


def cached_snapshot(repo_id: str, revision: str | None = None, *,
                    required: Sequence[Required] = ("config.json",)) -> Path | None:
    """The cached snapshot of ``repo_id`` at ``revision`` (default branch when ``None``)
    holding every ``required`` file, or ``None``. Never touches the network.

    A snapshot that lacks a required file (what an interrupted download leaves) counts
    as absent.
    """
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        return None
    try:
        folder = Path(snapshot_download(repo_id=repo_id, revision=revision, local_files_only=True))
    except Exception:  # LocalEntryNotFoundError and friends: not cached
        return None
    return folder if folder.is_dir() and _has(folder, required) else None


def hub_unreachable_reason(timeout: float | None = None) -> str | None:
    """Why the hub cannot be reached (one probe, short timeout), or ``None`` when it answers.

    Any HTTP answer, even an error status, means the network path works; only a
    failure to connect (DNS, refused, timeout, proxy) counts as unreachable.
    """
    return url_unreachable_reason(endpoint() + "/api/models", timeout)


def url_unreachable_reason(url: str, timeout: float | None = None) -> str | None:
    """Why ``url`` cannot be reached (one HEAD request, short timeout), or ``None`` when its
    server answers at all. For the preflight of backends that download from elsewhere
    than the Hugging Face hub (fair-esm's checkpoints); the same rules as :func:`hub_unreachable_reason`.
    """
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout or _timeout()):
            return None
    except urllib.error.HTTPError:
        return None
    except urllib.error.URLError as exc:
        return str(getattr(exc, "reason", exc)) or type(exc).__name__
    except OSError as exc:  # timeouts, resets
        return str(exc) or type(exc).__name__


def require_hub(repo_id: str, revision: str | None, *, what: str, hint: str) -> None:
    """Raise one :class:`ModelError` line at once when ``repo_id`` would have to be fetched
    but cannot be: downloads are off, or the hub does not answer the probe."""
    rev = f" at revision {revision}" if revision else ""
    where = f"is not in the Hugging Face cache ({cache_dir()})"
    if offline_requested():
        raise ModelError(f"{what} {repo_id!r}{rev} {where} and downloads are off (HF_HUB_OFFLINE is set); {hint}")
    reason = hub_unreachable_reason()
    if reason is not None:
        raise ModelError(f"{what} {repo_id!r}{rev} {where} and {endpoint()} cannot be reached ({reason}); {hint}")


def resolve_snapshot(repo_id: str, revision: str | None = None, *, what: str, hint: str,
                     required: Sequence[Required] = ("config.json",),
                     allow_patterns: Sequence[str] | None = None) -> Path:
    """A local folder holding ``repo_id`` at ``revision``: the cached snapshot, else a
    download (only ``allow_patterns`` when given) after the hub answered the probe.

    Errors are one :class:`ModelError` line (see :func:`require_hub`).
    """
    folder = cached_snapshot(repo_id, revision, required=required)
    if folder is not None:
        log.debug("%s %s: using the cached snapshot %s", what, repo_id, folder)
        return folder
    require_hub(repo_id, revision, what=what, hint=hint)
    from huggingface_hub import snapshot_download

    rev = f"@{revision}" if revision else ""
    try:
        folder = Path(snapshot_download(repo_id=repo_id, revision=revision,
                                        allow_patterns=list(allow_patterns) if allow_patterns else None))
    except Exception as exc:
        raise ModelError(f"{what} {repo_id}{rev} could not be downloaded ({first_line(exc)}); {hint}") from None
    if not _has(folder, required):
        raise ModelError(f"{what} {repo_id}{rev}: the downloaded snapshot {folder} lacks "
                         f"{', '.join(map(str, required))}; {hint}")
    return folder


def check_pinned_files(folder: Path, pins: Mapping[str, PinnedFile], *, what: str) -> None:
    """Each pinned file of a hub snapshot must have its published size and SHA-256.

    A file that does not is removed from the cache (the snapshot's link and the blob it
    points to), so it is never used and the next load fetches it again; the error is one
    :class:`ModelError` line. Checked on every load, not only after a download: the cache
    may hold files another tool fetched without a check.
    """
    for name, pin in sorted(pins.items()):
        path = folder / name
        if not path.is_file():
            raise ModelError(f"{what}: the snapshot {folder} has no {name}; delete the folder and load again to re-fetch it")
        reason = pin.mismatch(path)
        if reason is None:
            continue
        _discard_cached(path)
        raise ModelError(f"{what}: {name} is not the pinned file ({reason}; pin from {pin.source}); it was removed "
                         f"from the cache ({folder}): check the network proxy or mirror (HF_ENDPOINT) and load again")


def _discard_cached(path: Path) -> None:
    """Remove a snapshot file: the link (or file) and, in the Hugging Face cache, its blob."""
    target = path.resolve()
    path.unlink(missing_ok=True)
    if target != path.absolute():
        target.unlink(missing_ok=True)


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
