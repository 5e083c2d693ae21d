"""Find, safely read and build a fair-esm ESM-2 model.

A model is given either as a fair-esm model name (``esm2_t36_3B_UR50D``, the one the
published classifier was trained with) or as a path to a local ``.pt`` checkpoint.

- A name resolves to ``<torch hub dir>/checkpoints/<name>.pt``, where fair-esm itself
  caches its downloads (``$TORCH_HOME/hub/checkpoints``, by default
  ``~/.cache/torch/hub/checkpoints``), so a model fetched once by fair-esm is reused.
  When the file is missing it is downloaded from fair-esm's URLs; offline, the
  :class:`ModelError` says which file to put where. A download of a pinned file
  (ESM-2 3B and its contact regression, :data:`virnucpro_core.modelset.ESM2_PINS`) must
  have the published size and SHA-256, or it is refused in one line and never cached.
- The contact-regression file beside it (``<name>-contact-regression.pt``) is loaded when
  present, because fair-esm then checks the state dict strictly; when absent the model
  loads without it (the contact head is never used for embeddings).

Checkpoints are read with ``torch.load(weights_only=True)`` and only
``argparse.Namespace`` allowed beyond tensors and plain containers: real fair-esm files
hold their config as a Namespace, and nothing else in them needs unpickling. A file that
would need any other global (a class, a function: i.e. code) is refused, never run.
"""

from __future__ import annotations

import argparse
import logging
import os
import pickle
import re
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from virnucpro_core import accel
from virnucpro_core.atomic import atomic_path
from virnucpro_core.errors import ModelError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "esm2_t36_3B_UR50D"

#: The ESM-2 models fair-esm publishes (all load the same way; only the 3B one fits
#: the published classifier's 2560 input columns).
KNOWN_MODELS: tuple[str, ...] = (
    "esm2_t6_8M_UR50D",
    "esm2_t12_35M_UR50D",
    "esm2_t30_150M_UR50D",
    "esm2_t33_650M_UR50D",
    "esm2_t36_3B_UR50D",
    "esm2_t48_15B_UR50D",
)

#: Their widths (``encoder_embed_dim``), known without reading them (the preflight).
KNOWN_WIDTHS: dict[str, int] = {
    "esm2_t6_8M_UR50D": 320,
    "esm2_t12_35M_UR50D": 480,
    "esm2_t30_150M_UR50D": 640,
    "esm2_t33_650M_UR50D": 1280,
    "esm2_t36_3B_UR50D": 2560,
    "esm2_t48_15B_UR50D": 5120,
}

MODEL_URL = "https://dl.fbaipublicfiles.com/fair-esm/models/{name}.pt"
REGRESSION_URL = "https://dl.fbaipublicfiles.com/fair-esm/regression/{name}-contact-regression.pt"

#: Seconds a download may wait on a silent connection before it counts as offline.
DOWNLOAD_TIMEOUT_S = 60.0

_CFG_FIELDS = ("encoder_layers", "encoder_embed_dim", "encoder_attention_heads", "token_dropout")


@dataclass(frozen=True)
class CheckpointFiles:
    """Where a model's weights are: the checkpoint and, if present, its contact regression."""

    model: Path
    regression: Path | None


def hub_checkpoint_dir() -> Path:
    """fair-esm's download cache, read from ``TORCH_HOME`` at call time."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def is_path(model: str) -> bool:
    """Whether ``model`` names a file rather than a fair-esm model name.

    Anything ending in ``.pt``, holding a path separator or naming an existing file is
    a path; fair-esm makes the same ``.pt`` distinction.
    """
    return model.endswith(".pt") or os.sep in model or "/" in model or Path(model).expanduser().is_file()


def regression_path_for(checkpoint: Path) -> Path:
    """``X.pt`` → ``X-contact-regression.pt``, fair-esm's naming."""
    stem = checkpoint.name[: -len(".pt")] if checkpoint.name.endswith(".pt") else checkpoint.name
    return checkpoint.with_name(f"{stem}-contact-regression.pt")


def resolve_checkpoint(model: str, *, download: bool = True, progress: bool = False) -> CheckpointFiles:
    """The files behind ``model`` (a name or a path), downloading a known name if needed."""
    if is_path(model):
        path = _existing_path(model)
        regression = regression_path_for(path)
        return CheckpointFiles(path, regression if regression.is_file() else None)

    cache = hub_checkpoint_dir()
    path = cache / f"{model}.pt"
    regression = cache / f"{model}-contact-regression.pt"
    if not path.is_file():
        _require_known(model, cache)
        if not download:
            raise ModelError(_missing_message(model, path, "downloads are disabled"))
        url = MODEL_URL.format(name=model)
        try:
            _download(url, path, progress)
        except ModelError:
            raise
        except Exception as exc:  # URLError, HTTPError, timeouts, disk full: all mean "not here"
            raise ModelError(_missing_message(model, path, f"downloading {url} failed: {_one_line(exc)}")) from exc
        if not regression.is_file():
            rurl = REGRESSION_URL.format(name=model)
            try:
                _download(rurl, regression, progress)
            except ModelError:
                raise
            except Exception as exc:
                log.warning("could not download %s (%s); loading %s without its contact head", rurl, _one_line(exc), model)
    return CheckpointFiles(path, regression if regression.is_file() else None)


def _existing_path(model: str) -> Path:
    path = Path(model).expanduser()
    if not path.is_file():
        raise ModelError(
            f"ESM-2 checkpoint {path} does not exist; give the path of a fair-esm .pt file "
            f"(such as {DEFAULT_MODEL}.pt) or a model name such as {DEFAULT_MODEL}"
        )
    return path


def _require_known(model: str, cache: Path) -> None:
    if model not in KNOWN_MODELS:
        raise ModelError(
            f"unknown ESM-2 model {model!r} (not in {cache}); use one of {', '.join(KNOWN_MODELS)}, "
            "or pass a local fair-esm checkpoint path as the model (--esm-model on predict, --model on embed)"
        )


def preflight_checkpoint(model: str | None = None) -> int | None:
    """Check within seconds, without reading weights, that ``model`` can be loaded; its width when known.

    The preflight of ``esm2=v1`` and ``esm2=v2`` (run before any stage): a path must be a
    fair-esm checkpoint, whose config is read through a memory map (the weights stay on
    disk); a name must be in fair-esm's cache (checked the same way) or be a published
    model whose download server answers one short probe. Errors are the one-line
    :class:`ModelError` loading would give hours later. ``None``: a legacy (pre-zip)
    torch file, whose config cannot be read without reading all of it.
    """
    from virnucpro_core.hub import url_unreachable_reason

    name = model or DEFAULT_MODEL
    if is_path(name):
        return _checkpoint_width(_existing_path(name))
    cache = hub_checkpoint_dir()
    path = cache / f"{name}.pt"
    if path.is_file():
        return _checkpoint_width(path)
    _require_known(name, cache)
    url = MODEL_URL.format(name=name)
    reason = url_unreachable_reason(url)
    if reason is not None:
        raise ModelError(_missing_message(name, path, f"{url} cannot be reached ({reason})"))
    return KNOWN_WIDTHS[name]


def _checkpoint_width(path: Path) -> int | None:
    """``encoder_embed_dim`` of the checkpoint at ``path``, its layout checked, its tensors left on disk."""
    import zipfile

    if not zipfile.is_zipfile(path):
        with open(path, "rb") as handle:
            if handle.read(1) == b"\x80":  # a legacy torch file (a pickle): checked when the stage loads it
                return None
        raise ModelError(f"{path}: not a torch checkpoint (neither a zip archive nor a pickle); "
                         "the file is damaged or is not a fair-esm .pt file, download it again")
    data = read_checkpoint(path, mmap=True)
    _check_esm2_checkpoint(data, path)
    width = getattr(data["cfg"]["model"], "encoder_embed_dim", None)
    return int(width) if isinstance(width, int) and width > 0 else None


def _missing_message(model: str, path: Path, why: str) -> str:
    return (
        f"ESM-2 model {model} is not in {path.parent} and {why}; on a machine with internet access download "
        f"{MODEL_URL.format(name=model)} (and, optionally, {REGRESSION_URL.format(name=model)}) "
        f"and put it at {path}, or pass a local checkpoint path as the model (--esm-model on predict, --model on embed)"
    )


def _download(url: str, dest: Path, progress: bool) -> None:
    """Fetch ``url`` to ``dest`` atomically, with a timeout on silent connections.

    A file with a pin (by its name) is checked before it takes its final name, so a
    download that is not the published file is never cached.
    """
    import torch

    from virnucpro_core import modelset

    pin = modelset.ESM2_PINS.get(dest.name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # download_url_to_file has no timeout of its own
    try:
        with atomic_path(dest) as tmp:
            torch.hub.download_url_to_file(url, str(tmp), progress=progress)
            if pin is not None:
                pin.require(tmp, what=f"{url} gave a file that",
                            fix=f"it was not kept as {dest}: check the network proxy and retry, or put the published file there")
    finally:
        socket.setdefaulttimeout(previous)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:297] + "..."


def read_checkpoint(path: Path, *, mmap: bool = False) -> dict[str, Any]:
    """Unpickle a fair-esm file allowing tensors, containers and ``argparse.Namespace`` only.

    ``mmap``: tensors stay on disk until touched (zip-format files only), for the preflight.
    """
    import torch

    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        what = f"it needs {found.group(1)}" if found else _one_line(exc)
        raise ModelError(
            f"{path}: refused to load: a fair-esm checkpoint holds only tensors and an argparse.Namespace "
            f"config, but {what}, which could run code; use the official file from dl.fbaipublicfiles.com/fair-esm"
        ) from exc
    except Exception as exc:  # truncated zip, a text file, a legacy archive that is not torch's ...
        raise ModelError(
            f"{path}: cannot read it as a torch checkpoint ({type(exc).__name__}: {_one_line(exc)}); "
            "the file is damaged or is not a fair-esm .pt file, download it again"
        ) from exc


def _check_esm2_checkpoint(data: Any, path: Path) -> None:
    """Refuse anything that is not laid out like a fair-esm ESM-2 file, naming the file."""
    if isinstance(data, dict) and "args" in data and "cfg" not in data:
        raise ModelError(f"{path}: this is an ESM-1 style checkpoint ('args'); the esm2 backend loads ESM-2 models only")
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict) or not isinstance(data.get("cfg"), dict):
        raise ModelError(
            f"{path}: not a fair-esm ESM-2 checkpoint (expected a dict with 'cfg' and 'model' entries); "
            f"give a file such as {DEFAULT_MODEL}.pt"
        )
    cfg = data["cfg"].get("model")
    if isinstance(cfg, dict):  # tolerate a plain-dict config; fair-esm reads attributes
        cfg = data["cfg"]["model"] = argparse.Namespace(**cfg)
    missing = [field for field in _CFG_FIELDS if not hasattr(cfg, field)]
    if missing:
        raise ModelError(f"{path}: not a fair-esm ESM-2 checkpoint (cfg['model'] lacks {', '.join(missing)})")


def read_esm2_checkpoint(model: str = DEFAULT_MODEL, *, download: bool = True, progress: bool = False) -> tuple[CheckpointFiles, dict[str, Any]]:
    """Find ``model`` (a name or a path), read it safely and check its layout, without fair-esm.

    Returns the files and the checkpoint dict (``{"cfg": {"model": Namespace}, "model":
    state_dict}``, keys with fair-esm's ``encoder.sentence_encoder.`` prefixes). This is
    the part of loading that ``esm2=v2`` shares: it builds its own forward from the same
    state dict, so both backends read the same files the same way.
    """
    files = resolve_checkpoint(model, download=download, progress=progress)
    data = read_checkpoint(files.model)
    _check_esm2_checkpoint(data, files.model)
    return files, data


def load_esm2(model: str = DEFAULT_MODEL, device: Any = "cpu", dtype: Any = None, *, download: bool = True, progress: bool = False):
    """Build fair-esm's ``ESM2`` from ``model`` (a name or a path); return ``(model, alphabet)``.

    The model is in ``eval()`` mode, on ``device`` and, when ``dtype`` is given (a
    ``torch.dtype``), cast to it. Every failure the user can fix is a one-line
    :class:`ModelError` naming the file.
    """
    import esm

    files, data = read_esm2_checkpoint(model, download=download, progress=progress)
    regression = None
    if files.regression is not None:
        regression = read_checkpoint(files.regression)
        if not isinstance(regression, dict) or not isinstance(regression.get("model"), dict):
            raise ModelError(f"{files.regression}: not a fair-esm contact-regression file (expected a dict with 'model'); delete or replace it")

    stem = files.model.name[: -len(".pt")] if files.model.name.endswith(".pt") else files.model.name
    route = stem if stem.startswith("esm2") else "esm2"  # fair-esm picks its ESM-2 loader by name
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Regression weights not found")
            net, alphabet = esm.pretrained.load_model_and_alphabet_core(route, data, regression)
    except Exception as exc:  # missing/unexpected keys, shape mismatches
        raise ModelError(
            f"{files.model}: its weights do not fit the ESM-2 its config describes ({_one_line(exc)}); "
            "the file is damaged or not an ESM-2 checkpoint"
        ) from exc
    net.eval()
    net.to(device=accel.storage_device(device), dtype=dtype)
    return net, alphabet
