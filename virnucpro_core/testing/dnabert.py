"""A tiny DNABERT-S written to disk in the layout of the published Hugging Face folder.

The real ``zhihan1996/DNABERT-S`` cannot be downloaded on test machines, so
:func:`write_tiny_dnabert` writes a seeded, randomly initialised model of any shape
(hidden size, layers, heads, intermediate size, vocabulary) the way that folder is laid
out:

- ``config.json`` as DNABERT-S's own (``model_type`` bert, ``architectures``
  ``["BertModel"]``, ``auto_map`` naming ``configuration_bert.BertConfig`` and
  ``bert_layers.BertModel``, ``alibi_starting_size``, ``pad_token_id`` 0 while the
  tokenizer pads with ``[PAD]`` = 3, the unused ``max_position_embeddings`` 512);
- the MosaicBERT weights under the real key names
  (``encoder.layer.N.attention.self.Wqkv.weight``, ``...mlp.gated_layers.weight``, ...;
  no position embeddings) in ``pytorch_model.bin`` (default) or ``model.safetensors``:
  as in the published file, no ``bert.`` prefix, no ``cls.`` head, and the pooler
  (``pooler.dense.*``), so 4 + 11 per layer + 2 tensors (138 for 12 layers).
  ``pooler=False`` leaves the pooler out, as ``BertModel(add_pooling_layer=False)``
  exports do; ``masked_lm=True`` writes DNABERT-2's masked-LM export instead: the
  encoder under ``bert.``, no pooler, and the ``cls.predictions`` head;
- ``tokenizer.json`` (a BPE DNA tokenizer trained here with DNABERT-2's special-token
  ids and ``[CLS] $A [SEP]``) and ``tokenizer_config.json`` with
  ``tokenizer_class`` ``PreTrainedTokenizerFast``, as the published folders have;
- the ``*.py`` remote code the ``auto_map`` names. We may not ship DNABERT-S's own
  files, so these are VirNucPro's re-statement of them
  (``virnucpro_core/testing/remote_code``), computing what they compute. ``dnabert=v1``
  (``trust_remote_code``) runs on them; ``dnabert=v2`` never reads them.

Writing the folder needs torch, tokenizers and (for ``model.safetensors``) safetensors,
not transformers. ``architecture="bert"`` writes transformers' stock ``BertModel``
(absolute position embeddings) instead, through ``save_pretrained``: a folder of the
*wrong* architecture for DNABERT-S, for tests of what a loader says about it.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

from virnucpro_core.atomic import atomic_open

#: Special tokens in DNABERT-2 / DNABERT-S id order: [UNK]=0 [CLS]=1 [SEP]=2 [PAD]=3 [MASK]=4.
SPECIAL_TOKENS: tuple[str, ...] = ("[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]")
#: Our re-statement of DNABERT-S's remote code, copied into every MosaicBERT folder.
REMOTE_CODE_DIR = Path(__file__).parent / "remote_code"
REMOTE_CODE_FILES: tuple[str, ...] = ("bert_layers.py", "configuration_bert.py")
ARCHITECTURES: tuple[str, ...] = ("mosaic", "bert")
WEIGHT_FILES: dict[str, str] = {"bin": "pytorch_model.bin", "safetensors": "model.safetensors"}


def _dna_corpus(seed: int, n_reads: int = 400, length: int = 150) -> list[str]:
    """Seeded random DNA with a few planted motifs, so BPE learns multi-base tokens of
    varied lengths (pure noise would only yield short, evenly frequent merges)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    bases = np.array(list("ACGT"))
    motifs = ["".join(rng.choice(bases, size=int(k))) for k in rng.integers(4, 12, size=12)]
    reads = []
    for _ in range(n_reads):
        parts: list[str] = []
        total = 0
        while total < length:
            if rng.random() < 0.3:
                piece = motifs[int(rng.integers(len(motifs)))]
            else:
                piece = "".join(rng.choice(bases, size=int(rng.integers(1, 8))))
            parts.append(piece)
            total += len(piece)
        reads.append("".join(parts)[:length])
    return reads


def build_dna_tokenizer(vocab_size: int = 128, seed: int = 0):
    """A ``tokenizers.Tokenizer``: BPE over A/C/G/T, DNABERT-2 special ids, ``[CLS] $A [SEP]``."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

    if vocab_size < len(SPECIAL_TOKENS) + 4:
        raise ValueError(f"vocab_size must be at least {len(SPECIAL_TOKENS) + 4} (specials + A C G T)")
    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    # DNABERT-2 splits on whitespace only; a DNA string is one "word" that BPE segments.
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=list("ACGT"),
        limit_alphabet=4,
        show_progress=False,
    )
    tokenizer.train_from_iterator(_dna_corpus(seed), trainer=trainer)
    ids = {tok: tokenizer.token_to_id(tok) for tok in SPECIAL_TOKENS}
    if [ids[t] for t in SPECIAL_TOKENS] != list(range(len(SPECIAL_TOKENS))):
        raise RuntimeError(f"BPE trainer assigned unexpected special-token ids: {ids}")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])],
    )
    return tokenizer


def randomise_weights(model, seed: int) -> None:
    """Overwrite every parameter of ``model`` with seeded values of a useful scale.

    BERT's own initialisation (std 0.02, LayerNorm 1/0, zero biases) makes the network
    nearly an identity on the embeddings; here every weight, bias and LayerNorm affine
    term matters, so a pooling or masking mistake shows up as a large difference.
    Works on any ``torch.nn.Module`` (the stock BERT here, other test encoders too).
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, module in sorted(model.named_modules(), key=lambda item: item[0]):
            kind = "norm" if isinstance(module, torch.nn.LayerNorm) else "embedding" if isinstance(module, torch.nn.Embedding) else ""
            for pname, param in sorted(module.named_parameters(recurse=False), key=lambda item: item[0]):
                param.copy_(_draw(gen, tuple(param.shape), kind, pname).to(param.dtype))


def _draw(gen, shape: tuple[int, ...], kind: str, name: str):
    """One seeded tensor: LayerNorm gains 1 ± 0.2, biases ± 0.1, embeddings ± 0.5, matrices N(0, 1/fan_in)."""
    import torch

    noise = torch.randn(shape, generator=gen, dtype=torch.float32)
    if kind == "norm":
        return 1.0 + 0.2 * noise if name == "weight" else 0.1 * noise
    if kind == "embedding":
        return 0.5 * noise
    if len(shape) >= 2:
        return noise / shape[1] ** 0.5  # fan-in scaling keeps activations O(1)
    return 0.1 * noise


#: The ``BertForMaskedLM`` prefix of the encoder, and its head.
MASKED_LM_PREFIX = "bert."


def mosaic_weight_shapes(
    *, hidden_size: int, num_layers: int, intermediate_size: int, vocab_size: int, type_vocab_size: int = 2,
    pooler: bool = True, masked_lm: bool = False,
) -> dict[str, tuple[int, ...]]:
    """Every tensor of DNABERT-S's ``BertModel`` checkpoint, by its key, with its shape.

    ``pooler=False``: without ``pooler.dense.*``; ``masked_lm=True``: the layout of
    DNABERT-2's ``BertForMaskedLM`` export (``bert.``-prefixed encoder without pooler,
    plus the ``cls.predictions`` head, whose decoder is tied to the word embeddings).
    """
    d, inner = hidden_size, intermediate_size
    shapes: dict[str, tuple[int, ...]] = {
        "embeddings.word_embeddings.weight": (vocab_size, d),
        "embeddings.token_type_embeddings.weight": (type_vocab_size, d),
        "embeddings.LayerNorm.weight": (d,),
        "embeddings.LayerNorm.bias": (d,),
    }
    for i in range(num_layers):
        p = f"encoder.layer.{i}."
        shapes.update(
            {
                p + "attention.self.Wqkv.weight": (3 * d, d),
                p + "attention.self.Wqkv.bias": (3 * d,),
                p + "attention.output.dense.weight": (d, d),
                p + "attention.output.dense.bias": (d,),
                p + "attention.output.LayerNorm.weight": (d,),
                p + "attention.output.LayerNorm.bias": (d,),
                p + "mlp.gated_layers.weight": (2 * inner, d),
                p + "mlp.wo.weight": (d, inner),
                p + "mlp.wo.bias": (d,),
                p + "mlp.layernorm.weight": (d,),
                p + "mlp.layernorm.bias": (d,),
            }
        )
    if masked_lm:
        encoder = {MASKED_LM_PREFIX + key: shape for key, shape in shapes.items()}
        return encoder | {
            "cls.predictions.bias": (vocab_size,),
            "cls.predictions.transform.dense.weight": (d, d),
            "cls.predictions.transform.dense.bias": (d,),
            "cls.predictions.transform.LayerNorm.weight": (d,),
            "cls.predictions.transform.LayerNorm.bias": (d,),
        }
    if pooler:
        shapes["pooler.dense.weight"] = (d, d)
        shapes["pooler.dense.bias"] = (d,)
    return shapes


def random_mosaic_weights(shapes: dict[str, tuple[int, ...]], seed: int) -> dict:
    """Seeded values of a useful scale for each key, with the rules of :func:`randomise_weights`.

    Keys are drawn in sorted order, so the same shapes and seed give the same tensors.
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key in sorted(shapes):
        module, _, name = key.rpartition(".")
        kind = "norm" if module.lower().endswith("layernorm") else "embedding" if module.endswith("_embeddings") else ""
        state[key] = _draw(gen, shapes[key], kind, name).contiguous()
    return state


def _write_bytes(path: Path, data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def _write_json(path: Path, obj: dict) -> None:
    _write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def _write_tokenizer(directory: Path, vocab_size: int, seed: int) -> int:
    """``tokenizer.json`` + ``tokenizer_config.json`` as in the published folder; returns the vocabulary size."""
    backend = build_dna_tokenizer(vocab_size=vocab_size, seed=seed)
    _write_bytes(directory / "tokenizer.json", backend.to_str(pretty=True).encode("utf-8"))
    _write_json(
        directory / "tokenizer_config.json",
        {
            "tokenizer_class": "PreTrainedTokenizerFast",  # the published name; loads on transformers 4.x and 5.x
            "unk_token": "[UNK]",
            "cls_token": "[CLS]",
            "sep_token": "[SEP]",
            "pad_token": "[PAD]",
            "mask_token": "[MASK]",
        },
    )
    return backend.get_vocab_size()


def mosaic_config(
    *, hidden_size: int, num_layers: int, num_heads: int, intermediate_size: int, vocab_size: int, alibi_starting_size: int
) -> dict:
    """DNABERT-S's ``config.json`` with the shape replaced (the real one is in the README)."""
    return {
        "_name_or_path": "zhihan1996/DNABERT-2-117M",
        "alibi_starting_size": alibi_starting_size,
        "architectures": ["BertModel"],
        "attention_probs_dropout_prob": 0.0,
        "auto_map": {"AutoConfig": "configuration_bert.BertConfig", "AutoModel": "bert_layers.BertModel"},
        "classifier_dropout": None,
        "gradient_checkpointing": False,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": intermediate_size,
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": 512,
        "model_type": "bert",
        "num_attention_heads": num_heads,
        "num_hidden_layers": num_layers,
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
        "torch_dtype": "float32",
        "transformers_version": "4.28.0",
        "type_vocab_size": 2,
        "use_cache": True,
        "vocab_size": vocab_size,
    }


def save_weights(state: dict, path: Path) -> None:
    """``torch.save`` (``.bin``) or safetensors, byte-identical for identical tensors."""
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import save

        _write_bytes(path, save(state, metadata={"format": "pt"}))
        return
    buffer = io.BytesIO()
    torch.save(state, buffer)
    _write_bytes(path, buffer.getvalue())


def write_tiny_dnabert(
    directory: Path,
    *,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int = 64,
    vocab_size: int = 128,
    seed: int = 0,
    alibi_starting_size: int = 512,
    weights: str | None = None,
    architecture: str = "mosaic",
    max_position_embeddings: int = 1024,
    pooler: bool = True,
    masked_lm: bool = False,
) -> Path:
    """Write a seeded tiny DNABERT-S folder (see the module docstring) and return it.

    ``weights`` is ``bin`` (``pytorch_model.bin``, the default for MosaicBERT, as the
    published folder) or ``safetensors`` (the default of ``save_pretrained`` for ``bert``);
    ``max_position_embeddings`` applies to ``architecture="bert"`` only (MosaicBERT has
    no position embeddings). ``pooler`` and ``masked_lm`` choose the checkpoint's key
    layout (module docstring); the encoder's tensors are the same in every layout, so
    the folders embed alike. The same arguments always give the same files' contents.
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
    weights = weights or ("bin" if architecture == "mosaic" else "safetensors")
    if weights not in WEIGHT_FILES:
        raise ValueError(f"weights must be one of {tuple(WEIGHT_FILES)}, got {weights!r}")
    if hidden_size % num_heads:
        raise ValueError(f"hidden_size {hidden_size} is not a multiple of num_heads {num_heads}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab = max(vocab_size, _write_tokenizer(directory, vocab_size, seed))
    if architecture == "bert":
        _write_stock_bert(directory, hidden_size, num_layers, num_heads, intermediate_size, vocab, seed,
                          max_position_embeddings, weights)
        return directory
    _write_json(
        directory / "config.json",
        mosaic_config(hidden_size=hidden_size, num_layers=num_layers, num_heads=num_heads,
                      intermediate_size=intermediate_size, vocab_size=vocab, alibi_starting_size=alibi_starting_size),
    )
    shapes = mosaic_weight_shapes(hidden_size=hidden_size, num_layers=num_layers,
                                  intermediate_size=intermediate_size, vocab_size=vocab)
    state = random_mosaic_weights(shapes, seed)  # drawn in the published layout, so every layout has the same encoder
    if masked_lm:
        head = mosaic_weight_shapes(hidden_size=hidden_size, num_layers=0, intermediate_size=intermediate_size,
                                    vocab_size=vocab, masked_lm=True)
        drawn = random_mosaic_weights({k: v for k, v in head.items() if k.startswith("cls.")}, seed + 1)
        state = {MASKED_LM_PREFIX + k: v for k, v in state.items() if not k.startswith("pooler.")} | drawn
    elif not pooler:
        state = {k: v for k, v in state.items() if not k.startswith("pooler.")}
    save_weights(state, directory / WEIGHT_FILES[weights])
    for name in REMOTE_CODE_FILES:
        shutil.copyfile(REMOTE_CODE_DIR / name, directory / name)
    return directory


def _write_stock_bert(directory: Path, hidden_size: int, num_layers: int, num_heads: int, intermediate_size: int,
                      vocab: int, seed: int, max_position_embeddings: int, weights: str) -> None:
    """transformers' own ``BertModel`` (absolute positions, plain GELU FFN), saved by ``save_pretrained``."""
    import torch
    from transformers import BertConfig, BertModel
    from transformers.utils import logging as hf_logging

    config = BertConfig(
        vocab_size=vocab,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=intermediate_size,
        hidden_act="gelu",
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.0,
        max_position_embeddings=max_position_embeddings,
        type_vocab_size=2,
        pad_token_id=0,  # as in the real DNABERT-S config.json; the tokenizer pads with 3
        layer_norm_eps=1e-12,
    )
    torch.manual_seed(seed)  # BertModel's own init draws from the global RNG
    model = BertModel(config)
    randomise_weights(model, seed)
    model.eval()
    hf_logging.disable_progress_bar()  # a test factory: no "Writing model shards" bar
    try:
        model.save_pretrained(directory, safe_serialization=weights == "safetensors")
    finally:
        hf_logging.enable_progress_bar()
    from virnucpro_core.atomic import default_file_mode

    for path in directory.rglob("*"):  # safetensors writes 0600 through a temporary file; the rest gets the umask's
        if path.is_file():
            path.chmod(default_file_mode())
