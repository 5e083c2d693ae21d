"""Batched DNABERT-S embeddings that equal the original's one-sequence-per-call numbers.

The original VirNucPro (``extract_DNABERT_S``) tokenises one sequence, runs
``model(input_ids)[0]`` and takes ``torch.mean`` over *every* token position,
[CLS] and [SEP] included, with no attention mask (none is needed for one sequence).
Here sequences are sorted by token count, padded on the right with the tokenizer's
pad id and run in batches with an attention mask; the pooled vector is the mean over
the positions the mask marks as real, which are exactly the positions the original
averaged. Padding never enters: the mask keeps it out of attention (both the stock
``BertModel`` and the MosaicBERT remote code honour it) and out of the mean.

``model(...)[0]`` is the last hidden states for both model classes: transformers'
``BertModel`` returns an output object whose item 0 is ``last_hidden_state``;
MosaicBERT returns a tuple ``(sequence_output, pooled_output)``.

Reduced precision uses ``torch.autocast`` over fp32 weights rather than casting the
weights: matmuls run in bf16/fp16 with fp32 accumulation while LayerNorm and softmax
stay fp32. Casting the MosaicBERT weights instead fails on its PyTorch attention
path, which adds an fp32 ALiBi/mask bias to half-precision scores and then multiplies
the (now fp32) probabilities with half-precision values.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from virnucpro_core import accel
from virnucpro_core.backends import PRECISIONS, EmbedderOptions, positive_setting, require_strings, torch_dtype
from virnucpro_core.errors import BackendError, ConfigError, InputError, ModelError
from virnucpro_dnabert_v1.loading import LoadedDnabert, load_dnabert

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 64


def plan_batches(lengths: Sequence[int], batch_size: int | None, batch_tokens: int | None) -> list[list[int]]:
    """Group indices into batches, longest sequences first.

    Sorting by token count keeps padding small; longest first makes an out-of-memory
    error happen on the first batch rather than after an hour. A batch holds at most
    ``batch_size`` sequences and, if ``batch_tokens`` is given, at most that many
    *padded* tokens (rows x longest row); a single sequence longer than the budget
    gets a batch of its own. Ties keep input order, so the plan is deterministic.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        if current:
            width = lengths[current[0]]
            too_many = batch_size is not None and len(current) >= batch_size
            too_wide = batch_tokens is not None and width * (len(current) + 1) > batch_tokens
            if too_many or too_wide:
                batches.append(current)
                current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


def masked_mean(hidden: Any, mask: Any) -> Any:
    """Mean over the positions where ``mask`` is 1, in fp32: ``(B, T, H), (B, T) -> (B, H)``."""
    import torch

    hidden = hidden.to(torch.float32)
    weights = mask.to(torch.float32).unsqueeze(-1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1)


def _positive(name: str, value: int | None) -> int | None:
    return positive_setting("dnabert=v1", name, value)


class DnabertV1Embedder:
    """DNABERT-S embedder following :class:`virnucpro_core.backends.Embedder`.

    ``max_length`` (optional) keeps the first ``max_length`` bases of each sequence
    before tokenising (the core's "bases pooled per sequence"); the default ``None``
    truncates nothing, as the original did.
    ``show_progress`` is the core's business: it passes ``progress`` to :meth:`embed`.
    """

    def __init__(
        self,
        loaded: LoadedDnabert,
        *,
        device: str = "cpu",
        precision: str = "fp32",
        batch_size: int | None = None,
        batch_tokens: int | None = None,
        max_length: int | None = None,
    ) -> None:
        if precision not in PRECISIONS:
            raise ConfigError(f"dnabert=v1: precision {precision!r} is unknown; choose one of {', '.join(PRECISIONS)}")
        self.batch_tokens = _positive("batch_tokens", batch_tokens)
        self.batch_size = _positive("batch_size", batch_size)
        if self.batch_size is None and self.batch_tokens is None:
            self.batch_size = DEFAULT_BATCH_SIZE
        self.max_length = _positive("max_length", max_length)
        self.precision = precision
        self.device = accel.cuda_device(device)
        self.tokenizer = loaded.tokenizer
        self.model = accel.move_module(loaded.model, self.device)
        self.model.eval()
        self.model_id = loaded.model_id
        self.commit = loaded.commit
        self.dim = int(self.model.config.hidden_size)
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            raise ModelError(f"{self.model_id}: the tokenizer defines no pad token; a DNABERT-S tokenizer has [PAD]")
        # transformers' own BertModel has learnt absolute positions and fails past them;
        # MosaicBERT uses ALiBi and has no such limit (and no position_embeddings).
        embeddings = getattr(self.model, "embeddings", None)
        positions = getattr(embeddings, "position_embeddings", None)
        self.position_limit: int | None = getattr(positions, "num_embeddings", None)
        self._closed = False

    @classmethod
    def from_options(cls, options: EmbedderOptions) -> DnabertV1Embedder:
        attention = options.extra.get("attention", "torch") if options.extra else "torch"
        if not options.show_progress:  # -q: no transformers "Loading weights" bars either
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        loaded = load_dnabert(options.model, revision=options.revision, attention=attention)
        return cls(
            loaded,
            device=options.device,
            precision=options.precision,
            batch_size=options.batch_size,
            batch_tokens=options.batch_tokens,
            max_length=options.max_length,
        )

    def _autocast(self) -> contextlib.AbstractContextManager:
        import torch

        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch_dtype(self.precision, "dnabert=v1"))

    def tokenize(self, sequences: Sequence[str]) -> list[list[int]]:
        """Token ids per sequence, [CLS] and [SEP] included, exactly as a single call gives."""
        if self.max_length is not None:
            sequences = [seq[: self.max_length] for seq in sequences]
        encoded = self.tokenizer(
            list(sequences),
            add_special_tokens=True,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        return [list(ids) for ids in encoded["input_ids"]]

    def embed(self, sequences: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Float32 ``(len(sequences), dim)``; row ``i`` is ``sequences[i]``'s mean embedding."""
        import torch

        if self._closed:
            raise BackendError("dnabert=v1: this embedder was closed; build a new one")
        require_strings("dnabert=v1", sequences)
        result = np.zeros((len(sequences), self.dim), dtype=np.float32)
        if not sequences:
            return result
        token_ids = self.tokenize(sequences)
        lengths = [len(ids) for ids in token_ids]
        if self.position_limit is not None:
            longest = max(range(len(lengths)), key=lambda i: lengths[i])
            if lengths[longest] > self.position_limit:
                raise InputError(
                    f"dnabert=v1: sequence {longest + 1} has {lengths[longest]} tokens but {self.model_id} takes at most "
                    f"{self.position_limit}; cut it shorter or set max_length (bases) to truncate"
                )
        with torch.inference_mode(), self._autocast():
            for batch in plan_batches(lengths, self.batch_size, self.batch_tokens):
                width = lengths[batch[0]]
                input_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for row, index in enumerate(batch):
                    n = lengths[index]
                    input_ids[row, :n] = torch.tensor(token_ids[index], dtype=torch.long)
                    mask[row, :n] = 1
                input_ids = accel.to_device(input_ids, self.device)
                mask = accel.to_device(mask, self.device)
                hidden = self.model(input_ids=input_ids, attention_mask=mask)[0]
                pooled = masked_mean(hidden, mask)
                result[batch] = pooled.cpu().numpy()
                if progress is not None:
                    progress(len(batch))
        return result

    def close(self) -> None:
        """Drop the model so its memory can be freed; further ``embed`` calls fail."""
        if self._closed:
            return
        self._closed = True
        self.model = None
        self.tokenizer = None
        accel.release_cache(self.device)
