"""Load the DNABERT-S tokenizer and model from a Hugging Face id or a local folder.

Why ``trust_remote_code=True``: DNABERT-S is a MosaicBERT (ALiBi, gated-GELU FFN,
unpadded attention) whose model class lives in the model repository
(``bert_layers.py``, ``bert_padding.py``, ``flash_attn_triton.py``), not in
transformers. Loaded without it, transformers would silently build its own BERT with
absolute positions and random weights for the missing parts. Only load model folders
you trust: that code runs in this process.

What this module adds to ``from_pretrained``, each for a reason found in practice:

- Offline first, failing fast (:mod:`virnucpro_core.hub`). A hub id whose snapshot is
  in the local cache loads from there without touching the network; otherwise
  ``HF_HUB_OFFLINE=1`` / ``TRANSFORMERS_OFFLINE=1``, or a hub that does not answer one
  short probe, is one :class:`~virnucpro_core.errors.ModelError` line within seconds
  (not a minute of retries), saying where to put the model or how to fetch it.
- A notice is logged before the model's own code is imported, naming the folder or
  repository and revision it comes from.
- Version trouble in the remote code becomes one line naming the installed
  transformers and the versions this loader is known to work with (see README).
- transformers 5 builds models on the ``meta`` device before loading weights. The
  MosaicBERT encoder computes its ALiBi bias in ``__init__`` into a plain tensor
  attribute, mixing ``torch.arange`` (which follows the default device, so ``meta``)
  with the legacy ``torch.Tensor(list)`` constructor (always CPU); with the real
  DNABERT-2/-S code ``AutoModel.from_pretrained`` therefore fails inside ``__init__``
  ("Tensor on device meta is not on the expected device cpu!"). The remote class is
  loaded here through :func:`eager_init`, which keeps every init context transformers
  uses except the ``meta`` device, so the model is built on the CPU as transformers 4
  did and the weights are then loaded into it. :func:`repair_alibi` remains as a
  guard: an ALiBi tensor still found on ``meta`` is rebuilt (it is a pure function of
  the head count and size, so nothing learnt is lost).
- The remote code calls a Triton FlashAttention kernel when ``triton`` imports. That
  kernel is written for an old Triton and A100s (the authors advise ``pip uninstall
  triton``), and it computes in fp16 even for an fp32 model, unlike the PyTorch path
  the published VirNucPro features were made with. :func:`disable_triton_attention`
  switches the loaded code to the PyTorch path unless asked not to.
- ``zhihan1996/DNABERT-S`` by hub id loads the pinned revision
  (:data:`virnucpro_core.modelset.DNABERT_S_REVISION`) unless another is asked for. At
  that revision the snapshot is fetched here (config, tokenizer, remote code and
  ``pytorch_model.bin``, never safetensors), its pinned files must have the published
  size and SHA-256 (a mismatch is one line and the file leaves the cache), and
  transformers loads the checked ``.bin``.
- A checkpoint without BERT's pooler (``pooler.dense.*``: masked-LM and
  ``add_pooling_layer=False`` exports) loads with a log line; transformers initialises
  the pooler, which mean pooling never calls.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from virnucpro_core import modelset
from virnucpro_core.errors import ModelError
from virnucpro_core.hub import cached_snapshot, check_pinned_files, offline_requested, require_hub, resolve_snapshot
from virnucpro_core.hub import first_line as _first_line
from virnucpro_core.hub import is_local_reference as _is_local_reference

log = logging.getLogger(__name__)

DEFAULT_MODEL = "zhihan1996/DNABERT-S"
DOWNLOAD_HINT = "run `virnucpro models download` where there is network (it fills <models dir>/dnabert/DNABERT-S/)"
#: Versions this loader was run with on the real DNABERT-2/-S remote code (tiny random weights); see README.
KNOWN_GOOD_TRANSFORMERS = "4.29.2, 4.46.3 and 5.24.0"


@dataclass(frozen=True)
class LoadedDnabert:
    """A tokenizer and model ready for inference, and what to call them in manifests."""

    tokenizer: Any
    model: Any
    model_id: str
    commit: str | None
    remote_code: bool


#: What a cached snapshot must hold to be used without the network.
SNAPSHOT_FILES = ("config.json", ("*.safetensors", "*.bin"))
#: At the pinned revision: what the snapshot must hold, and the only files fetched.
PINNED_REQUIRED = ("config.json", "pytorch_model.bin", "*.py")
PINNED_FETCHED = ["*.json", "*.txt", "*.py", "pytorch_model.bin"]
#: BERT's pooler, which mean pooling never calls.
POOLER = frozenset({"pooler.dense.weight", "pooler.dense.bias"})


def _transformers_version() -> str:
    import transformers

    return transformers.__version__


def _remote_code_error(name: str, exc: BaseException) -> ModelError:
    """One line for a failure inside the model's own Python code or its loading."""
    version = _transformers_version()
    detail = _first_line(exc)
    if isinstance(exc, ImportError) and "einops" in str(exc):
        return ModelError(f"{name}: its remote code needs einops, which is not installed; pip install einops")
    return ModelError(
        f"{name}: loading its remote code failed with transformers {version} ({detail}); "
        f"it is known to load with transformers {KNOWN_GOOD_TRANSFORMERS}: "
        "pip install 'transformers==4.46.*' in a separate environment if this one breaks it"
    )


def _missing_model_error(name: str, revision: str | None, exc: BaseException, *, local: bool) -> ModelError:
    if local:
        return ModelError(
            f"{name}: cannot load the DNABERT-S model from this folder ({_first_line(exc)}); it needs the files of "
            f"{DEFAULT_MODEL} (config.json, tokenizer files, weights and its *.py remote code), or {DOWNLOAD_HINT}"
        )
    rev = f" at revision {revision}" if revision else ""
    if offline_requested():
        return ModelError(
            f"DNABERT-S model {name!r}{rev} is not in the Hugging Face cache and downloads are off "
            f"(HF_HUB_OFFLINE is set); {DOWNLOAD_HINT}, or give the path of a local model folder"
        )
    return ModelError(
        f"DNABERT-S model {name!r}{rev} could not be fetched ({_first_line(exc)}); "
        f"{DOWNLOAD_HINT}, or give the path of a local model folder"
    )


def repair_alibi(model: Any) -> int:
    """Rebuild ALiBi tensors that were left on the ``meta`` device; returns how many."""
    import torch

    repaired = 0
    for module in model.modules():
        alibi = getattr(module, "alibi", None)
        rebuild = getattr(module, "rebuild_alibi_tensor", None)
        if isinstance(alibi, torch.Tensor) and alibi.is_meta and callable(rebuild):
            size = int(getattr(module, "_current_alibi_size", alibi.shape[-1]))
            rebuild(size=size, device=torch.device("cpu"))
            repaired += 1
    if repaired:
        log.info("rebuilt %d ALiBi tensor(s) left on the meta device by transformers' loader", repaired)
    return repaired


def eager_init(model_class: type) -> type:
    """A subclass of ``model_class`` whose ``from_pretrained`` builds it on the CPU, not on ``meta``.

    transformers 5 asks the class for its construction contexts via ``get_init_context``;
    this drops the ``torch.device("meta")`` entry and keeps the rest (dtype, no weight
    tying, patches). Code that computes tensors in ``__init__`` then gets real values,
    and ``from_pretrained`` loads the checkpoint into real parameters. Versions without
    ``get_init_context`` (4.46 and older) never call it and build on the CPU anyway.
    The subclass keeps the name, qualified name and module of the remote class, so logs
    and the lookup of the remote module's globals (:func:`disable_triton_attention`)
    see the remote class.
    """
    import torch

    def get_init_context(cls, *args: Any, **kwargs: Any) -> list:
        contexts = super(subclass, cls).get_init_context(*args, **kwargs)
        return [c for c in contexts if not (isinstance(c, torch.device) and c.type == "meta")]

    namespace = {
        "get_init_context": classmethod(get_init_context),
        "__module__": model_class.__module__,
        "__qualname__": model_class.__qualname__,
        "__doc__": model_class.__doc__,
    }
    subclass = type(model_class.__name__, (model_class,), namespace)
    return subclass


def _load_model(source: str, kwargs: dict[str, Any], weights: dict[str, Any]) -> Any:
    """The model class named by the folder's ``auto_map`` (remote code) built eagerly, else ``AutoModel``.

    Calling the remote class's own ``from_pretrained`` also skips ``AutoModel``'s
    registration check, the source of the ``config_class`` ValueError that later 4.x
    versions (4.46.3 checked) raise for model revisions from before 2024-07-25, whose
    ``bert_layers.BertModel`` still names transformers' own ``BertConfig``. ``weights``
    go to the weights' loading only (``use_safetensors=False`` for the pinned ``.bin``).
    """
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(source, trust_remote_code=True, **kwargs)
    reference = (getattr(config, "auto_map", None) or {}).get("AutoModel")
    if reference is None:
        return _checked(source, *AutoModel.from_pretrained(source, config=config, trust_remote_code=True,
                                                           output_loading_info=True, **kwargs, **weights))
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    log.info("DNABERT-S: running the model's own Python code (trust_remote_code: %s) from %s%s; "
             "only load models you trust (SECURITY.md)", reference, source,
             f" at revision {kwargs['revision']}" if kwargs.get("revision") else "")
    model_class = get_class_from_dynamic_module(reference, source, **kwargs)
    return _checked(source, *eager_init(model_class).from_pretrained(source, config=config, output_loading_info=True,
                                                                     **kwargs, **weights))


def _checked(source: str, model: Any, info: dict[str, Any]) -> Any:
    """Refuse weights that leave the encoder randomly initialised. ``from_pretrained`` only
    reports missing keys (a multi-line table, then it runs with random weights), so a
    checkpoint whose keys are all unexpected would give meaningless rows without an error.
    The pooler is not used (the rows are mean-pooled), so its absence is fine (logged)."""
    if set(info.get("missing_keys") or ()) == POOLER:
        log.info("DNABERT-S %s: the checkpoint has no pooler (pooler.dense.*), as masked-LM and add_pooling_layer=False "
                 "exports; mean pooling does not use it", source)
    missing = sorted(key for key in info.get("missing_keys", ()) if not key.startswith("pooler."))
    if missing:
        unexpected = sorted(info.get("unexpected_keys", ()))
        raise ModelError(
            f"{source}: the weights do not fit DNABERT-S's encoder ({len(missing)} missing, e.g. {missing[0]!r}"
            + (f"; {len(unexpected)} unexpected, e.g. {unexpected[0]!r}" if unexpected else "")
            + "); the files are damaged or not a DNABERT-S checkpoint"
        )
    return model


def disable_triton_attention(model: Any) -> int:
    """Point the remote code at its PyTorch attention; returns how many modules changed.

    The MosaicBERT code picks its attention at call time from the module global
    ``flash_attn_qkvpacked_func`` (``None`` when Triton failed to import), so setting
    it to ``None`` is the same as ``pip uninstall triton`` for this process.
    """
    changed = 0
    for name in sorted({type(m).__module__ for m in model.modules()}):
        module = sys.modules.get(name)
        if module is not None and getattr(module, "flash_attn_qkvpacked_func", None) is not None:
            module.flash_attn_qkvpacked_func = None
            changed += 1
    if changed:
        log.info("DNABERT-S: Triton FlashAttention disabled, using the PyTorch attention path")
    return changed


def _model_folder(name: str) -> Path:
    """A local model folder that has at least its ``config.json``; else one line saying what to put there."""
    folder = Path(name).expanduser()
    if not folder.is_dir():
        raise ModelError(
            f"DNABERT-S model folder {folder} does not exist; put the files of {DEFAULT_MODEL} there "
            f"(config.json, tokenizer files, weights and its *.py remote code) or {DOWNLOAD_HINT}"
        )
    if not (folder / "config.json").is_file():
        raise ModelError(
            f"{folder} is not a Hugging Face model folder (no config.json); "
            f"put the files of {DEFAULT_MODEL} there or {DOWNLOAD_HINT}"
        )
    return folder


def _hidden_size(config: Path) -> int | None:
    """``hidden_size`` of a ``config.json``: the embedding width, known without loading the model."""
    import json

    try:
        value = json.loads(config.read_text(encoding="utf-8")).get("hidden_size")
    except (OSError, ValueError, AttributeError) as exc:
        raise ModelError(f"{config}: not a readable Hugging Face config ({_first_line(exc)}); re-copy it from {DEFAULT_MODEL}") from None
    return value if isinstance(value, int) and value > 0 else None


def preflight(model: str | None = None, *, revision: str | None = None) -> int | None:
    """Check within seconds, without loading anything, that ``model`` can be loaded; its width when known.

    A folder must hold a ``config.json``; a hub id must be in the Hugging Face cache, or
    downloads must be on and the hub answer one short probe (:func:`require_hub`). The
    errors are those :func:`load_dnabert` gives, before any stage instead of after one.
    """
    name = model or DEFAULT_MODEL
    if _is_local_reference(name):
        return _hidden_size(_model_folder(name) / "config.json")
    if revision is None and name == DEFAULT_MODEL:
        revision = modelset.DNABERT_S_REVISION  # what load_dnabert will load
    snapshot = cached_snapshot(name, revision, required=SNAPSHOT_FILES)
    if snapshot is not None:
        return _hidden_size(snapshot / "config.json")
    require_hub(name, revision, what="DNABERT-S model", hint=f"{DOWNLOAD_HINT}, or give the path of a local model folder")
    return None


def load_dnabert(model: str | None = None, *, revision: str | None = None, attention: str = "torch") -> LoadedDnabert:
    """Load tokenizer and model (fp32, eval mode, on the CPU) from an id or a folder.

    ``revision`` pins a Hugging Face commit, branch or tag (ignored for local folders);
    ``attention="triton"`` keeps the remote code's Triton kernel if it imports.
    """
    name = model or DEFAULT_MODEL
    if attention not in ("torch", "triton"):
        raise ModelError(f"DNABERT-S attention {attention!r} is unknown; use 'torch' (default) or 'triton'")
    local = _is_local_reference(name)
    cached_commit: str | None = None
    if not local and revision is None and name == DEFAULT_MODEL:
        revision = modelset.DNABERT_S_REVISION
    pins = {} if local else modelset.dnabert_pins(name, revision)
    if local:
        folder = _model_folder(name)
        source, kwargs = str(folder), {"local_files_only": True}
    elif pins:
        snapshot = resolve_snapshot(name, revision, what="DNABERT-S model", required=PINNED_REQUIRED,
                                    allow_patterns=PINNED_FETCHED,
                                    hint=f"{DOWNLOAD_HINT}, or give the path of a local model folder")
        check_pinned_files(snapshot, pins, what=f"DNABERT-S model {name}@{revision}")
        source, kwargs, cached_commit = str(snapshot), {"local_files_only": True}, snapshot.name
    else:
        snapshot = cached_snapshot(name, revision, required=SNAPSHOT_FILES)
        if snapshot is not None:  # no network needed, so none is touched
            log.debug("DNABERT-S %s: cached snapshot %s", name, snapshot)
            source, kwargs, cached_commit = str(snapshot), {"local_files_only": True}, snapshot.name
        else:
            require_hub(name, revision, what="DNABERT-S model", hint=f"{DOWNLOAD_HINT}, or give the path of a local model folder")
            source, kwargs = name, {"revision": revision, "local_files_only": False}

    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=True, **kwargs)
    except OSError as exc:
        raise _missing_model_error(name, revision, exc, local=local) from exc
    except Exception as exc:
        raise _remote_code_error(name, exc) from exc
    try:
        loaded = _load_model(source, kwargs, {"use_safetensors": False} if pins else {})
    except ModelError:
        raise
    except OSError as exc:
        raise _missing_model_error(name, revision, exc, local=local) from exc
    except Exception as exc:
        raise _remote_code_error(name, exc) from exc

    remote = not type(loaded).__module__.startswith("transformers.")
    repair_alibi(loaded)
    if attention == "torch":
        disable_triton_attention(loaded)
    # fp32 whatever the checkpoint's dtype or transformers' default dtype policy ("auto" in 5.x):
    # the published features are fp32; reduced precision is the embedder's autocast.
    loaded = loaded.float().eval()
    commit = getattr(loaded.config, "_commit_hash", None) or cached_commit
    model_id = name if local or not revision else f"{name}@{revision}"
    log.info(
        "loaded DNABERT-S %s (commit %s, %s, transformers %s)",
        model_id,
        commit or "n/a",
        "remote code" if remote else "transformers' own class",
        _transformers_version(),
    )
    return LoadedDnabert(tokenizer=tokenizer, model=loaded, model_id=model_id, commit=commit, remote_code=remote)
