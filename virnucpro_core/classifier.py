"""The published MLP classifier: its architecture, safe loading, and scoring.

The original ``300_model.pth`` / ``500_model.pth`` are *whole pickled modules*
(``torch.save(model)`` run from a script, so the pickle names the class
``__main__.MLPClassifier``). Unpickling such a file the ordinary way runs whatever
code the pickle names. We never do that:

* ``torch.load(..., weights_only=True)`` runs torch's restricted unpickler, which
  only constructs tensors, a few containers and the classes we allow-list;
* the allow-list maps the five class names an MLP pickle references
  (``__main__.MLPClassifier`` and ``torch.nn`` ``Linear``, ``BatchNorm1d``,
  ``Dropout``) to *inert record classes* defined here, so not even ``torch.nn``
  code runs while unpickling: each record only receives its ``__dict__``;
* the weights are then taken out of those records, checked against the expected
  names and shapes, and put into a freshly built :class:`MLPClassifier`.

A pickle naming anything else (``os.system``, ``builtins.eval``, another class) is
refused with a one-line :class:`~virnucpro_core.errors.ModelError` before any of
it runs. A plain state dict (``torch.save(model.state_dict())``) is accepted too.

The safe format of our own is safetensors + a JSON config beside it
(``<stem>.safetensors`` + ``<stem>.json``), written by :func:`save_mlp`.

Scoring follows the original ``predict``: ``model.eval()``, logits, softmax over
the classes in float32. The predicted class is the arg-max with ties going to
class 0 (``others``), as ``torch.max`` returns the first maximal index.
"""

from __future__ import annotations

import json
import pickle
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from virnucpro_core.atomic import atomic_path, write_json_atomic
from virnucpro_core.errors import InputError, ModelError
from virnucpro_core.checksum import sha256_file

#: Class index -> label written to ``prediction_results.txt`` (class 1 = virus).
LABELS: tuple[str, ...] = ("others", "virus")
#: ``format`` value of our JSON config, so a stray JSON file is not mistaken for one.
CONFIG_FORMAT = "virnucpro-mlp"
CONFIG_VERSION = 1
#: BatchNorm1d's default epsilon, the only one the original code ever used.
BN_EPS = 1e-5

_SAFETENSORS_MAGIC_MAX_HEADER = 100_000_000


class MLPClassifier(nn.Module):
    """``Linear → BatchNorm1d → ReLU → Dropout(0.5) → Linear``, as published.

    Attribute names (``hidden_layer``, ``bn1``, ``output_layer``, ``dropout``) are
    those of the original, so its state-dict keys load unchanged.
    """

    def __init__(self, input_dim: int, hidden_dim: int, num_class: int) -> None:
        super().__init__()
        self.hidden_layer = nn.Linear(input_dim, hidden_dim)
        self.bn1 = nn.BatchNorm1d(hidden_dim)
        self.output_layer = nn.Linear(hidden_dim, num_class)
        self.dropout = nn.Dropout(0.5)

    @property
    def config(self) -> MLPConfig:
        return MLPConfig(
            input_dim=self.hidden_layer.in_features,
            hidden_dim=self.hidden_layer.out_features,
            num_class=self.output_layer.out_features,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.hidden_layer(x)
        x = self.bn1(x)
        x = F.relu(x)
        x = self.dropout(x)
        return self.output_layer(x)


@dataclass(frozen=True)
class MLPConfig:
    """The three sizes that define an :class:`MLPClassifier`."""

    input_dim: int
    hidden_dim: int
    num_class: int


def expected_shapes(config: MLPConfig) -> dict[str, tuple[int, ...]]:
    """State-dict key -> shape of an MLP of these sizes (the keys we require)."""
    h = config.hidden_dim
    return {
        "hidden_layer.weight": (h, config.input_dim),
        "hidden_layer.bias": (h,),
        "bn1.weight": (h,),
        "bn1.bias": (h,),
        "bn1.running_mean": (h,),
        "bn1.running_var": (h,),
        "bn1.num_batches_tracked": (),
        "output_layer.weight": (config.num_class, h),
        "output_layer.bias": (config.num_class,),
    }


# --------------------------------------------------------------------------- pickles


class _PickledRecord:
    """Receives the ``__dict__`` of one pickled module and nothing else.

    It has no ``__setstate__`` and no behaviour, so the restricted unpickler's
    ``BUILD`` only fills ``__dict__``; ``NEWOBJ``/``REDUCE`` on it construct an empty
    record whatever arguments the pickle passes.
    """

    pickled_name = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass


def _record_class(name: str) -> type:
    return type(f"_Pickled_{name.rsplit('.', 1)[-1]}", (_PickledRecord,), {"pickled_name": name})


_ROOT_NAME = "__main__.MLPClassifier"
_CHILD_NAMES = {
    "hidden_layer": "torch.nn.modules.linear.Linear",
    "bn1": "torch.nn.modules.batchnorm.BatchNorm1d",
    "output_layer": "torch.nn.modules.linear.Linear",
    "dropout": "torch.nn.modules.dropout.Dropout",
}
#: pickled global name -> inert record class standing in for it.
_RECORDS: dict[str, type] = {
    name: _record_class(name) for name in (_ROOT_NAME, *sorted(set(_CHILD_NAMES.values())))
}


def _allow_list(path: Path) -> list[tuple[type, str]]:
    """Our records, plus ``<module>.MLPClassifier`` for a class saved from a module.

    A model pickled after ``from train import MLPClassifier`` names
    ``train.MLPClassifier``; it stands for the same architecture, and a record is
    inert whatever it is called, so any ``*.MLPClassifier`` maps to the root record.
    """
    allowed = [(cls, name) for name, cls in _RECORDS.items()]
    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:  # legacy (non-zip) files cannot be scanned
        found = []
    root = _RECORDS[_ROOT_NAME]
    allowed += [(root, name) for name in found if name.endswith(".MLPClassifier") and name not in _RECORDS]
    return allowed


def _one_line(text: object) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else type(text).__name__


def _unpickler_detail(exc: BaseException) -> str:
    """The restricted unpickler's own reason, without torch's advice to disable it."""
    boilerplate = ("Weights only load failed", "Please file an issue", "Check the documentation")
    for line in str(exc).splitlines():
        line = line.replace("WeightsUnpickler error:", "").strip()
        if line and not line.startswith(boilerplate):
            return line
    return type(exc).__name__


def _refusal(path: Path, exc: BaseException) -> ModelError:
    """Turn an unpickling refusal into one line naming what the pickle asked for."""
    offending: list[str] = []
    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        offending = [name for name in found if name not in _RECORDS and not name.endswith(".MLPClassifier")]
    except Exception:  # legacy (non-zip) files cannot be scanned; read torch's message instead
        pass
    detail = _unpickler_detail(exc)
    if not offending:
        offending = re.findall(r"GLOBAL ([\w.]+)", str(exc))[:1]
    if not offending:
        return ModelError(
            f"cannot read MLP file {path}: not a PyTorch pickle the restricted loader accepts ({detail}); "
            "is it the published 300_model.pth/500_model.pth?"
        )
    return ModelError(
        f"refusing to load MLP file {path}: it references {', '.join(offending)}, which is not part of an "
        f"MLPClassifier (only {_ROOT_NAME}, torch.nn Linear/BatchNorm1d/Dropout and tensors are "
        "allowed); use the published 300_model.pth/500_model.pth or a file written by "
        "`virnucpro models import-mlp`"
    )


def _unpickle(path: Path) -> Any:
    """``torch.load`` with the restricted unpickler and our allow-list only."""
    try:
        # torch warns about legacy files before refusing them; our one-line error says it all
        with warnings.catch_warnings(), torch.serialization.safe_globals(_allow_list(path)):
            warnings.simplefilter("ignore")
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise _refusal(path, exc) from None
    except Exception as exc:
        raise ModelError(
            f"cannot read MLP file {path}: {_one_line(exc)}; is it a PyTorch .pth file "
            "(the published 300_model.pth/500_model.pth)?"
        ) from None


def _record_tensors(record: Any, prefix: str, path: Path) -> dict[str, torch.Tensor]:
    state = getattr(record, "__dict__", {})
    out: dict[str, torch.Tensor] = {}
    for group in ("_parameters", "_buffers"):
        items = state.get(group) or {}
        if not isinstance(items, Mapping):
            raise ModelError(f"MLP file {path}: module {prefix!r} has a malformed {group}")
        for key, value in items.items():
            if value is None:
                continue
            if not isinstance(value, torch.Tensor):
                raise ModelError(f"MLP file {path}: {prefix}.{key} is not a tensor")
            out[f"{prefix}.{key}"] = value.detach()
    return out


def _state_from_module_record(root: Any, path: Path) -> dict[str, torch.Tensor]:
    """Take the weights out of the inert records of a whole pickled MLPClassifier."""
    modules = getattr(root, "__dict__", {}).get("_modules")
    if not isinstance(modules, Mapping) or set(modules) != set(_CHILD_NAMES):
        names = sorted(modules) if isinstance(modules, Mapping) else []
        raise ModelError(
            f"MLP file {path}: expected sub-modules {sorted(_CHILD_NAMES)}, found {names}; "
            "it is not the published MLPClassifier"
        )
    state: dict[str, torch.Tensor] = {}
    for name, expected in _CHILD_NAMES.items():
        child = modules[name]
        if getattr(type(child), "pickled_name", None) != expected:
            raise ModelError(f"MLP file {path}: {name} should be a {expected}")
        state.update(_record_tensors(child, name, path))
    bn = modules["bn1"].__dict__
    eps = bn.get("eps", BN_EPS)
    if eps != BN_EPS:
        raise ModelError(f"MLP file {path}: bn1.eps is {eps!r}, but the MLPClassifier uses {BN_EPS}")
    if bn.get("affine", True) is not True or bn.get("track_running_stats", True) is not True:
        raise ModelError(f"MLP file {path}: bn1 must have affine weights and running statistics")
    return state


def _config_from_state(state: Mapping[str, torch.Tensor], path: Path) -> MLPConfig:
    try:
        hidden, input_dim = state["hidden_layer.weight"].shape
        num_class = state["output_layer.weight"].shape[0]
    except (KeyError, ValueError):
        raise ModelError(
            f"MLP file {path}: no 2-D hidden_layer.weight/output_layer.weight; "
            "it is not an MLPClassifier"
        ) from None
    return MLPConfig(int(input_dim), int(hidden), int(num_class))


def build_mlp(state: Mapping[str, torch.Tensor], path: Path | str = "<memory>") -> MLPClassifier:
    """A fresh :class:`MLPClassifier` (eval mode, CPU, float32) holding ``state``.

    The keys must be exactly those of the published model (``num_batches_tracked``
    may be absent, as in pickles from torch < 0.4.1) and every shape must agree, so a
    file of another architecture fails here with a message naming the key.
    """
    path = Path(path)
    config = _config_from_state(state, path)
    shapes = expected_shapes(config)
    state = dict(state)
    state.setdefault("bn1.num_batches_tracked", torch.tensor(0, dtype=torch.long))
    extra = sorted(set(state) - set(shapes))
    missing = sorted(set(shapes) - set(state))
    if extra or missing:
        raise ModelError(
            f"MLP file {path}: unexpected keys {extra} / missing keys {missing}; "
            "it is not the published MLPClassifier"
        )
    tensors: dict[str, torch.Tensor] = {}
    for key, shape in shapes.items():
        value = state[key]
        if tuple(value.shape) != shape:
            raise ModelError(f"MLP file {path}: {key} has shape {tuple(value.shape)}, expected {shape}")
        if key.endswith("num_batches_tracked"):
            tensors[key] = value.to(torch.long).clone()
        elif not value.is_floating_point():
            raise ModelError(f"MLP file {path}: {key} is {value.dtype}, expected a floating-point tensor")
        else:
            tensors[key] = value.to(dtype=torch.float32, device="cpu").clone()
    with torch.device("meta"):
        model = MLPClassifier(config.input_dim, config.hidden_dim, config.num_class)
    model.load_state_dict(tensors, strict=True, assign=True)
    for param in model.parameters():
        param.requires_grad_(False)
    return model.eval()


def load_original_mlp(path: Path | str) -> MLPClassifier:
    """Safely load an original ``*_model.pth`` (a pickled module or a state dict)."""
    path = Path(path)
    obj = _unpickle(path)
    if isinstance(obj, _RECORDS[_ROOT_NAME]):
        state = _state_from_module_record(obj, path)
    elif isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state = {str(k): v.detach() for k, v in obj.items()}
    else:
        kind = getattr(type(obj), "pickled_name", "") or type(obj).__name__
        raise ModelError(
            f"MLP file {path} holds a {kind}, not an {_ROOT_NAME} or its state dict"
        )
    return build_mlp(state, path)


# --------------------------------------------------------------------------- safetensors


def config_path_for(path: Path | str) -> Path:
    """``x.safetensors`` -> ``x.json``."""
    return Path(path).with_suffix(".json")


def save_mlp(
    model: MLPClassifier,
    path: Path | str,
    *,
    source: Path | str | None = None,
    source_sha256: str | None = None,
    warning: str | None = None,
) -> tuple[Path, Path]:
    """Write ``model`` as ``<stem>.safetensors`` + ``<stem>.json``; return both paths.

    The JSON records the sizes, the labels, the SHA-256 of the safetensors file (so a
    mismatched pair is detected) and the file it was converted from with its SHA-256.
    Both files are written atomically, the safetensors first. ``warning`` (the tiny-model
    label) is kept in the JSON.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    config = model.config
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    meta = {"format": CONFIG_FORMAT, **{k: str(v) for k, v in vars(config).items()}}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    doc: dict[str, Any] = {
        "format": CONFIG_FORMAT,
        "format_version": CONFIG_VERSION,
        "architecture": "MLPClassifier",
        "input_dim": config.input_dim,
        "hidden_dim": config.hidden_dim,
        "num_class": config.num_class,
        "bn_eps": BN_EPS,
        "labels": list(LABELS[: config.num_class]),
        "weights": path.name,
        "weights_sha256": sha256_file(path),
    }
    if source is not None:
        source = Path(source)
        doc["source"] = {"file": source.name, "sha256": source_sha256 or sha256_file(source)}
    if warning:  # a tiny random MLP stays labelled after conversion (`classify` repeats it)
        doc["warning"] = warning
    json_path = config_path_for(path)
    write_json_atomic(json_path, doc)
    return path, json_path


def mlp_warning(path: Path | str) -> str | None:
    """The ``warning`` a converted MLP's JSON carries (set for a tiny random MLP), or None."""
    path = Path(path)
    if path.suffix not in (".safetensors", ".json"):
        return None
    try:
        value = json.loads(config_path_for(path).read_text(encoding="utf-8")).get("warning")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and value else None


def _read_config(json_path: Path, weights: Path) -> MLPConfig:
    if not json_path.is_file():
        raise ModelError(
            f"MLP config {json_path} is missing (it must sit beside {weights.name}); "
            "re-create both with `virnucpro models import-mlp`"
        )
    try:
        doc = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"MLP config {json_path} is not valid JSON: {_one_line(exc)}") from None
    if not isinstance(doc, dict) or doc.get("format") != CONFIG_FORMAT:
        raise ModelError(f"MLP config {json_path} is not a {CONFIG_FORMAT} config (no \"format\": \"{CONFIG_FORMAT}\")")
    try:
        config = MLPConfig(int(doc["input_dim"]), int(doc["hidden_dim"]), int(doc["num_class"]))
    except (KeyError, TypeError, ValueError):
        raise ModelError(f"MLP config {json_path} lacks integer input_dim, hidden_dim and num_class") from None
    expected = doc.get("weights_sha256")
    if expected and sha256_file(weights) != expected:
        raise ModelError(
            f"MLP weights {weights} do not match {json_path} (SHA-256 differs); "
            "re-create both with `virnucpro models import-mlp`"
        )
    return config


def load_safetensors_mlp(path: Path | str) -> MLPClassifier:
    """Load ``<stem>.safetensors`` with the sizes from ``<stem>.json``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if path.suffix == ".json":
        path = path.with_suffix(".safetensors")
    if not path.is_file():
        raise ModelError(f"MLP file {path} does not exist")
    config = _read_config(config_path_for(path), path)
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"cannot read MLP file {path}: {_one_line(exc)}") from None
    model = build_mlp(state, path)
    if model.config != config:
        raise ModelError(f"MLP file {path}: weights are {model.config}, but {config_path_for(path).name} says {config}")
    return model


# --------------------------------------------------------------------------- dispatch


def _looks_like_safetensors(head: bytes) -> bool:
    if len(head) < 9:
        return False
    header_len = int.from_bytes(head[:8], "little")
    return 0 < header_len < _SAFETENSORS_MAGIC_MAX_HEADER and head[8:9] == b"{"


def load_mlp(path: Path | str) -> MLPClassifier:
    """Load an MLP from an original ``.pth`` or our ``.safetensors`` (+ ``.json``).

    Chosen by suffix (``.safetensors``/``.json``), else by content: a zip or raw
    pickle is loaded as an original file through the restricted unpickler. Returns
    the model in eval mode on the CPU.
    """
    path = Path(path)
    if path.suffix in (".safetensors", ".json"):
        return load_safetensors_mlp(path)
    if not path.is_file():
        raise ModelError(f"MLP file {path} does not exist")
    with open(path, "rb") as handle:
        head = handle.read(64)
    if head.startswith(b"version https://git-lfs"):
        raise ModelError(
            f"MLP file {path} is a Git LFS pointer, not the model; download the real file "
            "(virnucpro models download) or run `git lfs pull` where it came from"
        )
    if _looks_like_safetensors(head):
        return load_safetensors_mlp(path)
    return load_original_mlp(path)


# --------------------------------------------------------------------------- scoring


def score(
    model: MLPClassifier, features: np.ndarray, device: str = "cpu", batch_size: int = 256
) -> np.ndarray:
    """Softmax class probabilities, float32 ``(n, num_class)``, as the original computes them.

    ``features`` is ``(n, input_dim)``: DNABERT-S columns first, then ESM-2. The
    model runs in eval mode (running BatchNorm statistics, no dropout) in batches of
    ``batch_size`` rows (256 in the original); rows are independent in eval mode.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    config = model.config
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2 or features.shape[1] != config.input_dim:
        raise InputError(
            f"features have shape {features.shape}, but the MLP expects (n, {config.input_dim}); "
            "embed with the models this MLP was trained on (DNABERT-S + ESM-2 3B give 768 + 2560)"
        )
    out = np.empty((features.shape[0], config.num_class), dtype=np.float32)
    from virnucpro_core import accel

    model = accel.move_module(model, device).eval()
    with torch.no_grad():
        for start in range(0, features.shape[0], batch_size):
            batch = accel.to_device(torch.from_numpy(features[start : start + batch_size]), device)
            probabilities = F.softmax(model(batch), dim=1)
            out[start : start + batch.shape[0]] = probabilities.float().cpu().numpy()
    return out


def predicted_classes(probabilities: np.ndarray) -> np.ndarray:
    """Arg-max per row; on a tie the lower class wins (0 = ``others``), as ``torch.max`` does."""
    return np.argmax(np.asarray(probabilities), axis=1)


def predicted_labels(probabilities: np.ndarray) -> list[str]:
    """``others``/``virus`` per row, from :func:`predicted_classes`."""
    return [LABELS[i] for i in predicted_classes(probabilities)]
