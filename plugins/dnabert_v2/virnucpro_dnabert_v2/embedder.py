"""Packed-token DNABERT-S embeddings that equal the original's one-sequence-per-call means.

The original VirNucPro (``extract_DNABERT_S``) tokenises one sequence, runs the model
on it alone and averages *every* output position, [CLS] and [SEP] included. Here the
sequences are sorted by token count, concatenated into batches of at most
``batch_tokens`` real tokens (no padding anywhere in the linear layers), and
attention is computed within each sequence only (:mod:`virnucpro_dnabert_v2.attention`),
so each sequence sees exactly what it saw alone. The pooled vector is the fp32 mean of
its own rows.

A CUDA out-of-memory error on a batch of several sequences lowers the token budget to
half that batch's tokens (one warning with the old and new budget; with only
``batch_size`` given, the failing batch's tokens stand in for the missing budget),
releases the device's cached memory, and re-plans that batch's sequences together with
every batch not yet run under the new budget. A batch planned under the old budget is
thus split before it runs, never run whole (it could fail again and lower the budget a
second time). The lowered budget stays for the rest of the run, later ``embed`` calls
included. Rows stay in input order, one per sequence, and a sequence's row does not
depend on its batch-mates beyond float rounding (a row of a matrix product may round
differently with the matrix's height); after an error on the first batch, where longest
first puts it, the batches are exactly those of a run at the lowered budget, so the rows
are too. A single sequence that does not fit is a one-line
:class:`~virnucpro_core.errors.BackendError`: smaller batches cannot help it.
"""

from __future__ import annotations

import logging
from collections import deque
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
#: Two short sequences the flash-attn probe runs as one batch before the kernel is trusted.
PROBE_SEQUENCES = ("ACGTACGTAC", "GATTACA")


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
        self.oom_retries = 0  # out-of-memory errors that lowered the budget, over the embedder's life
        if self.attention == FLASH:
            self._probe_flash(slopes, forced=attention == "flash")
        self.attributes: dict[str, str] = {"attention": self.attention, "precision": precision}
        log.info("dnabert=v2: %s attention, %s on %s", self.attention, precision, self.device)

    def _probe_flash(self, slopes: list[float], *, forced: bool) -> None:
        """Run flash-attn once on two short sequences and wait for the rows; fall back to SDPA if it fails.

        An importable flash-attn can still refuse this GPU (before Ampere), lack ``alibi_slopes``
        (older than 2.4) or be built without ALiBi; those errors come from the call itself, so
        ``auto`` moves on to SDPA (logged) and an explicit ``attention=flash`` is one line.
        The probe runs its batch directly, not through :meth:`embed`: an out-of-memory error
        there must not lower the token budget of the whole run to a few tokens.
        """
        import torch

        try:
            with torch.inference_mode():
                rows = self._run_batch(self.tokenize(PROBE_SEQUENCES), list(range(len(PROBE_SEQUENCES))))
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

        if self._closed:
            raise BackendError("dnabert=v2: this embedder was closed; build a new one")
        require_strings("dnabert=v2", sequences)
        result = np.zeros((len(sequences), self.dim), dtype=np.float32)
        written = np.zeros(len(sequences), dtype=np.int64)
        if not sequences:
            return result
        token_ids = self.tokenize(sequences)
        lengths = [len(ids) for ids in token_ids]
        todo = deque(self._plan(list(range(len(sequences))), lengths))
        with torch.inference_mode():
            while todo:
                batch = todo.popleft()
                try:
                    rows = self._run_batch(token_ids, batch)
                except accel.out_of_memory_error():
                    rows = None  # handled below, once the failed batch's tensors are no longer referenced
                if rows is None:
                    self._lower_budget(batch, lengths, sequences)
                    todo = deque(self._plan([*batch, *(i for later in todo for i in later)], lengths))
                    continue
                result[batch] = rows
                written[batch] += 1
                if progress is not None:
                    progress(len(batch))
        if not (written == 1).all():
            bad = int(np.flatnonzero(written != 1)[0])
            raise VirnucproError(f"dnabert=v2: sequence #{bad + 1} got {int(written[bad])} rows; this is a bug, please report it")
        return result

    def _plan(self, indices: list[int], lengths: Sequence[int]) -> list[list[int]]:
        """``indices`` (longest first, as planned) grouped into batches under the current budget.

        Given every index of a call, this is :func:`plan_batches` itself; after an
        out-of-memory error, given what is left in plan order, it gives the batches a
        run at the lowered budget would have made, since plan order is the sort order.
        """
        groups = plan_batches([lengths[i] for i in indices], self.batch_tokens, self.batch_size)
        return [[indices[j] for j in group] for group in groups]

    def _run_batch(self, token_ids: Sequence[Sequence[int]], batch: list[int]) -> np.ndarray:
        """The pooled float32 rows of the sequences ``batch`` names, packed in that order and waited for."""
        import torch

        from virnucpro_dnabert_v2.model import segment_means

        batch_lengths = [len(token_ids[i]) for i in batch]
        flat = [token for i in batch for token in token_ids[i]]
        input_ids = accel.to_device(torch.tensor(flat, dtype=torch.long), self.device)
        self._attend.prepare(batch_lengths)
        hidden = self.model.encode(input_ids, self._attend)
        counts = accel.to_device(torch.tensor(batch_lengths), self.device)
        rows = accel.rows_to_host(segment_means(hidden, counts), self.device).wait().numpy()
        if rows.shape != (len(batch), self.dim):
            raise VirnucproError(f"dnabert=v2: a batch of {len(batch)} sequences gave rows of shape {rows.shape}; "
                                 "this is a bug, please report it")
        return rows

    def _lower_budget(self, batch: list[int], lengths: Sequence[int], sequences: Sequence[str]) -> None:
        """After an out-of-memory error on ``batch``: halve the budget, or fail if it held one sequence.

        Every batch of several sequences is within the current budget (the plan closes a
        batch before it would exceed it, and the rest is re-planned after each lowering),
        so half its tokens is below the budget and each error makes progress. With only
        ``batch_size`` given there is no budget yet; the failing batch's tokens are used.
        """
        tokens = sum(lengths[i] for i in batch)
        if len(batch) == 1:
            index = batch[0]
            bases = len(sequences[index]) if self.max_length is None else min(len(sequences[index]), self.max_length)
            raise BackendError(
                f"dnabert=v2 ran out of memory on {self.device} with a single sequence (#{index + 1} of {len(sequences)} "
                f"in this call: {bases} bases, {tokens} tokens); smaller batches cannot help one sequence: use a GPU with "
                "more free memory, --device cpu, or shorter sequences (a smaller --chunk-size, or --max-length)")
        accel.release_cache(self.device)
        old = "none (--batch-size only)" if self.batch_tokens is None else str(self.batch_tokens)
        self.batch_tokens = max(1, tokens // 2)
        self.oom_retries += 1
        log.warning("dnabert=v2: out of memory on %s with %d sequences (%d tokens); batch token budget %s -> %d "
                    "for the rest of the run", self.device, len(batch), tokens, old, self.batch_tokens)

    def close(self) -> None:
        """Drop the model so its memory can be freed; further ``embed`` calls fail."""
        if self._closed:
            return
        self._closed = True
        self.model = None
        self.tokenizer = None
        self._attend = None
        accel.release_cache(self.device)
