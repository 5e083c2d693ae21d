"""ESM-2 embeddings computed exactly as the original VirNucPro's ``extract_esm``.

The original (``units.extract_esm``) does, per protein FASTA:

1. ``FastaBatchedDataset`` → ``get_batch_indices(toks_per_batch=2048, extra_toks_per_seq=1)``:
   sequences sorted by length and grouped so that ``longest * count <= 2048`` tokens,
   counting one extra token per sequence (BOS and EOS are really two; the original says
   one, and so do we, because the batch composition is part of what we reproduce). A
   sequence longer than the budget runs alone in its own batch.
2. ``alphabet.get_batch_converter()`` (no truncation): BOS, residues, EOS, padded with
   the padding index.
3. ``model(toks, repr_layers=[36])``: the last layer, after ``emb_layer_norm_after``.
4. Per sequence, the mean of ``t[i, 1 : min(L, 1024) + 1]``: residues only, BOS and EOS
   excluded, where ``L`` is the length of the sequence *string*.

We keep all of it. ``max_length`` (default 1024, the original's
``truncation_seq_length``) bounds only the pooling: the whole sequence still goes
through the model, so residue ``k`` sees the same context as in the original, and a
protein longer than 1024 residues is represented by its first 1024 residues' states.
Proteins from 300/500 bp chunks have at most 166 residues, so the limit only matters
for ``virnucpro embed`` on long proteins. The output rows are put back in input order
(the original wrote them in length-sorted batch order, with their labels).

Precision: ``fp32`` (default) is the original's. ``bf16``/``fp16`` cast the model's
weights; pooling is done in float32 and the output is always float32.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

import numpy as np

from virnucpro_core import accel
from virnucpro_core.backends import EmbedderOptions
from virnucpro_core.backends import torch_dtype as core_torch_dtype
from virnucpro_core.errors import ConfigError, InputError

from virnucpro_esm2_v1.loading import DEFAULT_MODEL, load_esm2

log = logging.getLogger(__name__)

#: The original's ``toks_per_batch``.
DEFAULT_TOKS_PER_BATCH = 2048
#: The original's ``truncation_seq_length``: residues pooled per sequence at most.
DEFAULT_MAX_LENGTH = 1024
#: ``get_batch_indices(..., extra_toks_per_seq=1)`` as in the original.
EXTRA_TOKS_PER_SEQ = 1

def torch_dtype(precision: str):
    """``fp32|bf16|fp16`` → the torch dtype; anything else is a :class:`ConfigError`."""
    return core_torch_dtype(precision, "esm2=v1")


class Esm2V1Embedder:
    """A loaded fair-esm ESM-2 that embeds proteins as the original VirNucPro did.

    Follows :class:`virnucpro_core.backends.Embedder`. Build it from options with
    :meth:`from_options`, or around an already loaded ``(model, alphabet)``.
    """

    def __init__(
        self,
        model: Any,
        alphabet: Any,
        *,
        model_id: str,
        toks_per_batch: int = DEFAULT_TOKS_PER_BATCH,
        max_length: int = DEFAULT_MAX_LENGTH,
        batch_size: int | None = None,
    ) -> None:
        if toks_per_batch <= 0:
            raise ConfigError(f"batch tokens must be positive, got {toks_per_batch}")
        if max_length <= 0:
            raise ConfigError(f"max length must be positive, got {max_length}")
        if batch_size is not None and batch_size <= 0:
            raise ConfigError(f"batch size must be positive, got {batch_size}")
        self.model = model.eval()
        self.alphabet = alphabet
        self.model_id = model_id
        self.dim = int(model.embed_dim)
        self.toks_per_batch = int(toks_per_batch)
        self.max_length = int(max_length)
        self.batch_size = batch_size
        self._converter = alphabet.get_batch_converter()
        self._device = next(model.parameters()).device  # where the weights are (the CPU, or the GPU named)

    @classmethod
    def from_options(cls, options: EmbedderOptions) -> "Esm2V1Embedder":
        """Load the model ``options`` name (default ``esm2_t36_3B_UR50D``) and wrap it."""
        dtype = torch_dtype(options.precision)
        if options.revision:
            log.warning("esm2=v1 ignores revision %r: fair-esm checkpoints have no revisions", options.revision)
        model_id = options.model or DEFAULT_MODEL
        model, alphabet = load_esm2(model_id, options.device, dtype, progress=options.show_progress)
        embedder = cls(
            model,
            alphabet,
            model_id=model_id,
            toks_per_batch=options.batch_tokens or DEFAULT_TOKS_PER_BATCH,
            max_length=options.max_length or DEFAULT_MAX_LENGTH,
            batch_size=options.batch_size,
        )
        embedder._device = accel.cuda_device(options.device)  # the device named (its tensors may live elsewhere when simulated)
        return embedder

    def plan_batches(self, sequences: Sequence[str]) -> list[list[int]]:
        """Input indices of each batch, in the order they run: fair-esm's length-sorted
        token-budget batches, each cut into pieces of at most ``batch_size`` sequences
        when a batch size is set (the original had none)."""
        import esm

        dataset = esm.FastaBatchedDataset([str(i) for i in range(len(sequences))], list(sequences))
        batches = dataset.get_batch_indices(self.toks_per_batch, extra_toks_per_seq=EXTRA_TOKS_PER_SEQ)
        if self.batch_size:
            size = self.batch_size
            batches = [batch[k : k + size] for batch in batches for k in range(0, len(batch), size)]
        return batches

    def embed(self, sequences: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Mean last-layer residue embeddings, float32 ``(len(sequences), dim)``, in input order."""
        import torch

        seqs = list(sequences)
        out = np.empty((len(seqs), self.dim), dtype=np.float32)
        for i, seq in enumerate(seqs):
            if not seq:
                raise InputError(
                    f"protein #{i + 1} of {len(seqs)} is empty; ESM-2 has no residue to average (remove it before embedding)"
                )
        if self.model is None:
            raise RuntimeError("this embedder was closed")
        layer = self.model.num_layers
        with torch.inference_mode():
            for batch in self.plan_batches(seqs):
                _labels, strs, toks = self._converter([(str(i), seqs[i]) for i in batch])
                toks = accel.to_device(toks, self._device, non_blocking=True)
                reps = self.model(toks, repr_layers=[layer])["representations"][layer]
                means = [
                    reps[row, 1 : min(self.max_length, len(strs[row])) + 1].float().mean(0) for row in range(len(batch))
                ]
                out[batch] = torch.stack(means).cpu().numpy()
                if progress is not None:
                    progress(len(batch))
        return out

    def close(self) -> None:
        """Drop the model so its memory can be reclaimed."""
        if self.model is None:
            return
        self.model = None
        accel.release_cache(self._device)
