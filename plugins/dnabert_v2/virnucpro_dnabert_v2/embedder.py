"""Packed-token DNABERT-S embeddings that equal the original's one-sequence-per-call means.

The original VirNucPro (``extract_DNABERT_S``) tokenises one sequence, runs the model
on it alone and averages *every* output position, [CLS] and [SEP] included. Here the
sequences are sorted by token count, concatenated into batches of at most
``batch_tokens`` real tokens (no padding anywhere in the linear layers), and
attention is computed within each sequence only (:mod:`virnucpro_dnabert_v2.attention`),
so each sequence sees exactly what it saw alone. The pooled vector is the fp32 mean of
its own rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from virnucpro_core import accel
from virnucpro_core.backends import PRECISIONS, EmbedderOptions, positive_setting, require_strings, torch_dtype
from virnucpro_core.errors import BackendError, ConfigError, VirnucproError
from virnucpro_dnabert_v2.attention import ATTENTION_CHOICES, FLASH, SDPA, PackedAttention, choose_attention
from virnucpro_dnabert_v2.loading import LoadedDnabert, load_dnabert

log = logging.getLogger(__name__)

#: Real tokens per packed batch when neither budget is given. Fewer, larger batches mean
#: fewer operator calls, whose fixed cost dominates small models (measured on the CPU:
#: 4096 took 2.2x as long as 16384 at the tiny shape); a GPU wants more work per launch.
DEFAULT_BATCH_TOKENS: dict[str, int] = {"cpu": 16384, "cuda": 32768}
#: Keys this backend reads from ``EmbedderOptions.extra`` (``--backend-option KEY=VALUE``).
OPTION_KEYS: dict[str, str] = {"attention": f"attention path: {', '.join(ATTENTION_CHOICES)} (default auto)"}


def plan_batches(lengths: Sequence[int], batch_tokens: int | None, batch_size: int | None) -> list[list[int]]:
    """Indices grouped into packed batches, longest sequences first.

    A batch holds at most ``batch_tokens`` real tokens and ``batch_size`` sequences; a
    sequence longer than the budget gets a batch of its own. Longest first makes an
    out-of-memory error happen on the first batch; ties keep input order.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    tokens = 0
    for index in order:
        too_many = batch_size is not None and len(current) >= batch_size
        too_long = batch_tokens is not None and tokens + lengths[index] > batch_tokens
        if current and (too_many or too_long):
            batches.append(current)
            current, tokens = [], 0
        current.append(index)
        tokens += lengths[index]
    if current:
        batches.append(current)
    return batches


def _positive(name: str, value: int | None) -> int | None:
    return positive_setting("dnabert=v2", name, value)


def read_options(extra: Mapping[str, str] | None) -> dict[str, str]:
    """Backend options from ``EmbedderOptions.extra``; an unknown key is a ConfigError listing the known ones."""
    extra = dict(extra or {})
    unknown = sorted(set(extra) - set(OPTION_KEYS))
    if unknown:
        known = "; ".join(f"{k}: {v}" for k, v in OPTION_KEYS.items())
        raise ConfigError(f"dnabert=v2: unknown backend option {', '.join(unknown)}; known: {known}")
    return extra


class DnabertV2Embedder:
    """DNABERT-S embedder following :class:`virnucpro_core.backends.Embedder`.

    ``precision`` fp32 (default, faithful) or bf16/fp16 (linear layers in half
    precision, residual stream, LayerNorm and pooling in fp32; meant for CUDA).
    ``attention``: ``auto``, ``flash`` or ``sdpa`` (see :mod:`~virnucpro_dnabert_v2.attention`).
    ``attributes`` says what ran, for the embeddings file.
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
        attention: str = "auto",
    ) -> None:
        if precision not in PRECISIONS:
            raise ConfigError(f"dnabert=v2: precision {precision!r} is unknown; choose one of {', '.join(PRECISIONS)}")
        self.batch_size = _positive("batch_size", batch_size)
        self.batch_tokens = _positive("batch_tokens", batch_tokens)
        self.max_length = _positive("max_length", max_length)
        self.device = accel.cuda_device(device)
        if self.batch_tokens is None and self.batch_size is None:
            self.batch_tokens = DEFAULT_BATCH_TOKENS.get(self.device.type, DEFAULT_BATCH_TOKENS["cpu"])
        self.precision = precision
        self.dtype = torch_dtype(precision, "dnabert=v2")
        self.attention = choose_attention(attention, self.device.type, precision)
        self.tokenizer = loaded.tokenizer
        self.config = loaded.config
        self.model = accel.move_module(loaded.model, self.device)
        if precision != "fp32":
            self.model.set_compute_dtype(self.dtype)
        self.model_id = loaded.model_id
        self.commit = loaded.commit
        self.dim = int(self.config.hidden_size)
        from virnucpro_dnabert_v2.alibi import alibi_slopes

        slopes = alibi_slopes(self.config.num_heads)
        self._attend = PackedAttention(self.attention, slopes, self.device, self.dtype)
        self._closed = False
        if self.attention == FLASH:
            self._probe_flash(slopes, forced=attention == "flash")
        self.attributes: dict[str, str] = {"attention": self.attention, "precision": precision}
        log.info("dnabert=v2: %s attention, %s on %s", self.attention, precision, self.device)

    def _probe_flash(self, slopes: list[float], *, forced: bool) -> None:
        """Run flash-attn once on two short sequences and wait for the rows; fall back to SDPA if it fails.

        An importable flash-attn can still refuse this GPU (before Ampere), lack ``alibi_slopes``
        (older than 2.4) or be built without ALiBi; those errors come from the call itself, so
        ``auto`` moves on to SDPA (logged) and an explicit ``attention=flash`` is one line.
        """
        import torch

        try:
            with torch.inference_mode():
                rows = self.embed(["ACGTACGTAC", "GATTACA"])
            accel.synchronize(self.device)
            if not np.isfinite(rows).all():
                raise RuntimeError("the probe batch gave non-finite rows")
        except Exception as exc:
            text = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
            if forced:
                raise ConfigError(f"dnabert=v2: attention=flash fails on {self.device}: {text}; use attention=sdpa or auto") from exc
            log.warning("dnabert=v2: flash-attn fails on %s (%s); using SDPA", self.device, text)
            self.attention = SDPA
            self._attend = PackedAttention(SDPA, slopes, self.device, self.dtype)

    @classmethod
    def from_options(cls, options: EmbedderOptions) -> DnabertV2Embedder:
        extra = read_options(options.extra)
        loaded = load_dnabert(options.model, revision=options.revision)
        return cls(
            loaded,
            device=options.device,
            precision=options.precision,
            batch_size=options.batch_size,
            batch_tokens=options.batch_tokens,
            max_length=options.max_length,
            attention=extra.get("attention", "auto"),
        )

    def tokenize(self, sequences: Sequence[str]) -> list[list[int]]:
        """Token ids per sequence, [CLS] and [SEP] included, exactly as a single call gives."""
        if self.max_length is not None:
            sequences = [seq[: self.max_length] for seq in sequences]
        return [encoding.ids for encoding in self.tokenizer.encode_batch(list(sequences), add_special_tokens=True)]

    def embed(self, sequences: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Float32 ``(len(sequences), dim)``; row ``i`` is ``sequences[i]``'s mean embedding."""
        import torch

        from virnucpro_dnabert_v2.model import segment_means

        if self._closed:
            raise BackendError("dnabert=v2: this embedder was closed; build a new one")
        require_strings("dnabert=v2", sequences)
        result = np.zeros((len(sequences), self.dim), dtype=np.float32)
        written = np.zeros(len(sequences), dtype=np.int64)
        if not sequences:
            return result
        token_ids = self.tokenize(sequences)
        lengths = [len(ids) for ids in token_ids]
        with torch.inference_mode():
            for batch in plan_batches(lengths, self.batch_tokens, self.batch_size):
                batch_lengths = [lengths[i] for i in batch]
                flat = [token for i in batch for token in token_ids[i]]
                input_ids = accel.to_device(torch.tensor(flat, dtype=torch.long), self.device)
                self._attend.prepare(batch_lengths)
                hidden = self.model.encode(input_ids, self._attend)
                counts = accel.to_device(torch.tensor(batch_lengths), self.device)
                rows = accel.rows_to_host(segment_means(hidden, counts), self.device).wait().numpy()
                if rows.shape != (len(batch), self.dim):
                    raise VirnucproError(f"dnabert=v2: a batch of {len(batch)} sequences gave rows of shape {rows.shape}; "
                                         "this is a bug, please report it")
                result[batch] = rows
                written[batch] += 1
                if progress is not None:
                    progress(len(batch))
        if not (written == 1).all():
            bad = int(np.flatnonzero(written != 1)[0])
            raise VirnucproError(f"dnabert=v2: sequence #{bad + 1} got {int(written[bad])} rows; this is a bug, please report it")
        return result

    def close(self) -> None:
        """Drop the model so its memory can be freed; further ``embed`` calls fail."""
        if self._closed:
            return
        self._closed = True
        self.model = None
        self.tokenizer = None
        self._attend = None
        accel.release_cache(self.device)
