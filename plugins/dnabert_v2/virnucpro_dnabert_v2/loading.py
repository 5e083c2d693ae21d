"""Load DNABERT-S from a Hugging Face folder or hub id without running any of its code.

What is read, and how:

- ``config.json`` (JSON) -> :class:`~virnucpro_dnabert_v2.config.MosaicConfig`;
- ``tokenizer.json`` through the ``tokenizers`` library (the file behind the
  folder's ``PreTrainedTokenizerFast``, so the ids are those transformers gives);
- the weights: ``model.safetensors`` (or a sharded ``model.safetensors.index.json``),
  else ``pytorch_model.bin`` through ``torch.load(weights_only=True)``, which refuses
  anything but tensors and plain containers.

The folder's ``*.py`` files (``bert_layers.py`` & co., which ``dnabert=v1`` runs with
``trust_remote_code``) are never imported, and for a hub id never downloaded: only
the files above are fetched, with ``huggingface_hub``. ``revision`` pins a commit,
branch or tag as in ``dnabert=v1``, and ``HF_HUB_OFFLINE=1`` keeps to the cache.

Every tensor of the checkpoint must land in a parameter and every parameter must
be filled; anything else is one error line naming the keys. Two spellings of the
same checkpoint are accepted: keys of ``BertModel`` (as DNABERT-S's folder is
loaded) and the ``bert.``-prefixed keys of ``BertForMaskedLM`` (DNABERT-2's
pre-training checkpoint), whose masked-LM head (``cls.*``) is then not part of the
encoder and is set aside with a log line. The pooler (``pooler.dense.*``) may be absent
(masked-LM exports, ``BertModel(add_pooling_layer=False)``): mean pooling never uses
it, so the encoder is built without one, with a log line.

``zhihan1996/DNABERT-S`` by hub id loads the pinned revision
(:data:`virnucpro_core.modelset.DNABERT_S_REVISION`) unless another is asked for; at
that revision only ``config.json``, ``tokenizer.json`` and ``pytorch_model.bin`` are
fetched, and the pinned ones must have the published size and SHA-256 (a mismatch is
one error line, and the file is removed from the cache so it is never used).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from virnucpro_core.errors import ModelError
from virnucpro_core.hub import first_line, is_local_reference
from virnucpro_dnabert_v2.config import V1_HINT, MosaicConfig, read_config

log = logging.getLogger(__name__)

DEFAULT_MODEL = "zhihan1996/DNABERT-S"
DOWNLOAD_HINT = "run `virnucpro models download` where there is network (it fills <models dir>/dnabert/DNABERT-S/)"
SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PICKLE = "pytorch_model.bin"
#: Prefix of the encoder inside ``BertForMaskedLM`` checkpoints, and that model's head.
MASKED_LM_PREFIX = "bert."
MASKED_LM_HEAD = "cls."
#: BERT's pooler: in DNABERT-S's checkpoint, absent from masked-LM and
#: ``add_pooling_layer=False`` exports; mean pooling never calls it.
POOLER = frozenset({"pooler.dense.weight", "pooler.dense.bias"})


@dataclass(frozen=True)
class LoadedDnabert:
    """The tokenizer and fp32 model on the CPU, and what to call them in manifests."""

    tokenizer: Any
    model: Any
    config: MosaicConfig
    model_id: str
    commit: str | None
    weights: Path
    set_aside: tuple[str, ...]


#: What a snapshot must hold to be used, and the only files fetched: never the folder's *.py.
SNAPSHOT_FILES = ("config.json", "tokenizer.json", (SAFETENSORS, SAFETENSORS_INDEX, PICKLE))
FETCHED = ["config.json", "tokenizer.json", SAFETENSORS, SAFETENSORS_INDEX, "model-*.safetensors", PICKLE]


#: At the pinned revision: the files of the published folder that dnabert=v2 reads.
PINNED_FILES = ("config.json", "tokenizer.json", PICKLE)


def fetch_from_hub(repo: str, revision: str | None) -> tuple[Path, str | None]:
    """The cached snapshot of ``repo`` (no network), else a download of config, tokenizer
    and weights only, after one short probe of the hub (:mod:`virnucpro_core.hub`: offline
    and unreachable hubs are one line within seconds); at the pinned revision its pinned
    files are checked. Returns the folder and its commit.
    """
    from virnucpro_core import modelset
    from virnucpro_core.hub import check_pinned_files, resolve_snapshot

    pins = modelset.dnabert_pins(repo, revision)
    required, fetched = (PINNED_FILES, list(PINNED_FILES)) if pins else (SNAPSHOT_FILES, FETCHED)
    folder = resolve_snapshot(repo, revision, what="DNABERT-S model", required=required, allow_patterns=fetched,
                              hint=f"{DOWNLOAD_HINT}, or give the path of a local model folder")
    check_pinned_files(folder, pins, what=f"DNABERT-S model {repo}@{revision}")
    commit = folder.name if folder.parent.name == "snapshots" else None
    return folder, commit


def read_tokenizer(folder: Path) -> Any:
    """``tokenizer.json`` as a ``tokenizers.Tokenizer`` that adds [CLS] ... [SEP] and never pads or truncates."""
    from tokenizers import Tokenizer

    path = folder / "tokenizer.json"
    if not path.is_file():
        raise ModelError(f"{folder}: no tokenizer.json; dnabert=v2 reads DNABERT-S's fast-tokenizer file (put the files of {DEFAULT_MODEL} there)")
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:
        raise ModelError(f"{path}: not a readable tokenizers file ({first_line(exc)})") from None
    tokenizer.no_padding()
    tokenizer.no_truncation()
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    ids = tokenizer.encode("ACGT").ids
    if cls is None or sep is None or ids[:1] != [cls] or ids[-1:] != [sep]:
        raise ModelError(f"{path}: the tokenizer does not wrap sequences in [CLS] ... [SEP] as DNABERT-S's does")
    return tokenizer


def read_checkpoint(folder: Path, *, only_pickle: bool = False) -> tuple[dict[str, Any], Path]:
    """All tensors of the folder's weights file(s), on the CPU, and the file they came from.

    ``only_pickle``: read ``pytorch_model.bin`` even when safetensors lie beside it (the
    pinned revision, whose checked file is the ``.bin``).
    """
    import torch

    single, index, pickle = folder / SAFETENSORS, folder / SAFETENSORS_INDEX, folder / PICKLE
    use_safetensors = not only_pickle
    try:
        if use_safetensors and single.is_file():
            from safetensors.torch import load_file

            return load_file(str(single)), single
        if use_safetensors and index.is_file():
            from safetensors.torch import load_file

            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
            state: dict[str, Any] = {}
            for shard in shards:
                state.update(load_file(str(folder / shard)))
            return state, index
        if pickle.is_file():
            loaded = torch.load(str(pickle), map_location="cpu", weights_only=True)
            if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
                raise ModelError(f"{pickle}: not a state dict of tensors")
            return loaded, pickle
    except ModelError:
        raise
    except Exception as exc:
        bad = single if use_safetensors and single.is_file() else index if use_safetensors and index.is_file() else pickle
        raise ModelError(f"{bad}: cannot read the weights ({first_line(exc)}); re-copy the file from {DEFAULT_MODEL}") from None
    raise ModelError(f"{folder}: no weights ({SAFETENSORS} or {PICKLE}); put the files of {DEFAULT_MODEL} there or {DOWNLOAD_HINT}")


def _short(keys: list[str], limit: int = 4) -> str:
    shown = ", ".join(keys[:limit])
    return f"{shown} and {len(keys) - limit} more" if len(keys) > limit else shown


def match_checkpoint(state: dict[str, Any], expected: dict[str, tuple[int, ...]], source: Path) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Map checkpoint keys onto the encoder's parameters; returns them and the keys set aside."""
    if any(key.endswith("position_embeddings.weight") for key in state) or any(".attention.self.query." in key for key in state):
        raise ModelError(f"{source}: holds a plain BERT (position embeddings, separate query/key/value), not DNABERT-S's MosaicBERT; {V1_HINT}")
    set_aside: list[str] = []
    if not any(key in expected for key in state) and any(key.startswith(MASKED_LM_PREFIX) for key in state):
        renamed = {}
        for key, value in state.items():
            if key.startswith(MASKED_LM_PREFIX):
                renamed[key[len(MASKED_LM_PREFIX):]] = value
            elif key.startswith(MASKED_LM_HEAD):
                set_aside.append(key)
            else:
                renamed[key] = value
        state = renamed
    if not POOLER & state.keys():  # no pooler at all: the encoder is built without one
        expected = {k: v for k, v in expected.items() if k not in POOLER}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {_short(missing)}")
        if unexpected:
            parts.append(f"unexpected {_short(unexpected)}")
        raise ModelError(f"{source}: the weights do not match DNABERT-S's encoder ({'; '.join(parts)}); is this a DNABERT-S checkpoint?")
    wrong = [f"{k} {tuple(state[k].shape)} (config says {expected[k]})" for k in sorted(expected) if tuple(state[k].shape) != expected[k]]
    if wrong:
        raise ModelError(f"{source}: weights of the wrong shape for config.json: {_short(wrong, 2)}")
    return state, tuple(sorted(set_aside))


def build_model(config: MosaicConfig, state: dict[str, Any], source: Path) -> tuple[Any, tuple[str, ...]]:
    """The encoder with exactly the checkpoint's tensors (as fp32), built without random init."""
    import torch

    from virnucpro_dnabert_v2.model import MosaicBert

    with torch.device("meta"):
        model = MosaicBert(config)
    expected = {name: tuple(p.shape) for name, p in model.state_dict().items()}
    matched, set_aside = match_checkpoint(state, expected, source)
    if not POOLER & matched.keys():
        model.pooler = None  # never called by mean pooling; built without one rather than left on meta
        log.info("%s: no pooler (pooler.dense.*), as in masked-LM and add_pooling_layer=False exports; "
                 "mean pooling does not use it, so the encoder is built without one", source)
    model.load_state_dict({k: v.to(torch.float32) for k, v in matched.items()}, strict=True, assign=True)
    return model.eval(), set_aside


def _model_folder(name: str) -> Path:
    folder = Path(name).expanduser()
    if not folder.is_dir():
        raise ModelError(f"DNABERT-S model folder {folder} does not exist; put the files of {DEFAULT_MODEL} there or {DOWNLOAD_HINT}")
    if not (folder / "config.json").is_file():
        raise ModelError(f"{folder} is not a Hugging Face model folder (no config.json); put the files of {DEFAULT_MODEL} there or {DOWNLOAD_HINT}")
    return folder


def _check_files(folder: Path) -> int:
    """The files :func:`load_dnabert` reads are there and the config is DNABERT-S's; its width."""
    config = read_config(folder / "config.json")
    if not (folder / "tokenizer.json").is_file():
        raise ModelError(f"{folder}: no tokenizer.json; dnabert=v2 reads DNABERT-S's fast-tokenizer file (put the files of {DEFAULT_MODEL} there)")
    if not any((folder / name).is_file() for name in (SAFETENSORS, SAFETENSORS_INDEX, PICKLE)):
        raise ModelError(f"{folder}: no weights ({SAFETENSORS} or {PICKLE}); put the files of {DEFAULT_MODEL} there or {DOWNLOAD_HINT}")
    return config.hidden_size


def preflight(model: str | None = None, *, revision: str | None = None) -> int | None:
    """Check within seconds, without reading weights, that ``model`` can be loaded; its width when known.

    A folder (or a cached hub snapshot) must hold a DNABERT-S ``config.json``, ``tokenizer.json``
    and a weights file; a hub id not in the cache needs downloads on and a hub that answers
    one short probe. The errors are those :func:`load_dnabert` gives, before any stage.
    """
    from virnucpro_core.hub import cached_snapshot, require_hub

    from virnucpro_core import modelset

    name = model or DEFAULT_MODEL
    if is_local_reference(name):
        return _check_files(_model_folder(name))
    if revision is None and name == DEFAULT_MODEL:
        revision = modelset.DNABERT_S_REVISION  # what load_dnabert will load
    snapshot = cached_snapshot(name, revision, required=SNAPSHOT_FILES)
    if snapshot is not None:
        return _check_files(snapshot)
    require_hub(name, revision, what="DNABERT-S model", hint=f"{DOWNLOAD_HINT}, or give the path of a local model folder")
    return None


def load_dnabert(model: str | None = None, *, revision: str | None = None) -> LoadedDnabert:
    """Tokenizer and fp32 eval-mode model on the CPU from a folder or a hub id (pinned by ``revision``)."""
    from virnucpro_core import modelset

    name = model or DEFAULT_MODEL
    pinned = False
    if is_local_reference(name):
        folder = _model_folder(name)
        commit = None
        model_id = name
    else:
        if revision is None and name == DEFAULT_MODEL:
            revision = modelset.DNABERT_S_REVISION
        folder, commit = fetch_from_hub(name, revision)
        pinned = bool(modelset.dnabert_pins(name, revision))
        model_id = f"{name}@{revision}" if revision else name
    config = read_config(folder / "config.json")
    tokenizer = read_tokenizer(folder)
    if tokenizer.get_vocab_size() > config.vocab_size:
        raise ModelError(f"{folder}: tokenizer.json has {tokenizer.get_vocab_size()} tokens but config.json vocab_size is {config.vocab_size}; the files belong to different models")
    state, weights = read_checkpoint(folder, only_pickle=pinned)
    encoder, set_aside = build_model(config, state, weights)
    if set_aside:
        log.info("%s: %d tensors of the masked-LM head (cls.*) are not part of the encoder and were set aside", weights, len(set_aside))
    log.info(
        "loaded DNABERT-S %s (commit %s, %d layers x %d hidden, %d heads) from %s without remote code",
        model_id, commit or "n/a", config.num_layers, config.hidden_size, config.num_heads, weights.name,
    )
    return LoadedDnabert(tokenizer=tokenizer, model=encoder, config=config, model_id=model_id, commit=commit,
                         weights=weights, set_aside=set_aside)
