"""A tiny DNABERT-S look-alike written to disk as a Hugging Face model folder.

The real ``zhihan1996/DNABERT-S`` cannot be downloaded on test machines. What the
``dnabert=v1`` backend must get right does not depend on its size: the BPE DNA
tokenizer with DNABERT-2's special-token ids, ``[CLS] … [SEP]`` added to every
sequence, a pad id that is *not* 0, and a BERT encoder whose ``model(...)[0]`` is the
per-token hidden states. :func:`write_tiny_dnabert` writes exactly that with the real
tooling (``tokenizers`` + ``save_pretrained``), so ``AutoTokenizer.from_pretrained``
and ``AutoModel.from_pretrained`` load it offline like the published folder.

Differences from the real model, on purpose: the encoder is the stock transformers
``BertModel`` (absolute positions, plain GELU FFN) rather than the MosaicBERT remote
code (ALiBi, gated GELU, unpadded attention), which would need ``trust_remote_code``
files we may not copy. Both return hidden states as output ``[0]`` and both ignore
padded keys given an attention mask, which is the contract the embedder relies on.
Like the real ``config.json``, ``pad_token_id`` in the model config is 0 while the
tokenizer pads with ``[PAD]`` = 3: code that pads with the config's id instead of
the tokenizer's is using the wrong source of truth.
"""

from __future__ import annotations

from pathlib import Path

#: Special tokens in DNABERT-2 / DNABERT-S id order: [UNK]=0 [CLS]=1 [SEP]=2 [PAD]=3 [MASK]=4.
SPECIAL_TOKENS: tuple[str, ...] = ("[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]")


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

    def normal(shape) -> torch.Tensor:
        return torch.randn(shape, generator=gen, dtype=torch.float32)

    with torch.no_grad():
        for _, module in sorted(model.named_modules(), key=lambda item: item[0]):
            for pname, param in sorted(module.named_parameters(recurse=False), key=lambda item: item[0]):
                if isinstance(module, torch.nn.LayerNorm):
                    value = 1.0 + 0.2 * normal(param.shape) if pname == "weight" else 0.1 * normal(param.shape)
                elif isinstance(module, torch.nn.Embedding):
                    value = 0.5 * normal(param.shape)
                elif param.dim() >= 2:
                    value = normal(param.shape) / param.shape[1] ** 0.5  # fan-in scaling keeps activations O(1)
                else:
                    value = 0.1 * normal(param.shape)
                param.copy_(value.to(param.dtype))


def _portable_tokenizer_class(path: Path) -> None:
    """Name the class ``PreTrainedTokenizerFast``, as the published DNABERT folders do.

    transformers 5 writes ``TokenizersBackend``, a name 4.x cannot resolve; the
    portable name loads the same ``tokenizer.json`` on both.
    """
    import json

    config = json.loads(path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config.pop("backend", None)
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def write_tiny_dnabert(
    directory: Path,
    *,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int = 64,
    vocab_size: int = 128,
    seed: int = 0,
    max_position_embeddings: int = 1024,
) -> Path:
    """Write a seeded tiny DNABERT-S-shaped model + tokenizer folder and return it.

    The folder holds ``config.json`` (``model_type`` bert), the weights
    (``save_pretrained``), ``tokenizer.json`` and ``tokenizer_config.json`` with
    ``tokenizer_class`` ``PreTrainedTokenizerFast``, as the published DNABERT folders do.
    The same arguments always give the same files' contents.
    """
    import torch
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)

    backend = build_dna_tokenizer(vocab_size=vocab_size, seed=seed)
    actual_vocab = backend.get_vocab_size()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        mask_token="[MASK]",
    )
    tokenizer.save_pretrained(directory)
    _portable_tokenizer_class(directory / "tokenizer_config.json")

    config = BertConfig(
        vocab_size=max(vocab_size, actual_vocab),
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
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a test factory: no "Writing model shards" bar
    try:
        model.save_pretrained(directory)
    finally:
        hf_logging.enable_progress_bar()
    from virnucpro_core.atomic import default_file_mode

    for path in directory.rglob("*"):  # safetensors writes 0600 through a temporary file; the rest gets the umask's
        if path.is_file():
            path.chmod(default_file_mode())
    return directory
