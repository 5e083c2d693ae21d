"""Normalised k-mer frequency vectors, computed with numpy for many sequences at once.

A sequence becomes the vector of how often each of the ``4**k`` k-mers occurs in it,
divided by the number of k-mers counted, so a row sums to 1. Letters are upper-cased
first (soft-masked bases count); a window holding any letter other than A, C, G, T
(N, IUPAC codes, U, gaps) is skipped, and a sequence with no valid window (shorter
than ``k``, or all N) gives a zero vector. Column ``j`` is the k-mer whose letters,
read as base-4 digits with A=0, C=1, G=2, T=3, spell ``j`` (``AAAA`` = 0,
``AAAC`` = 1, ..., ``TTTT`` = 255 for k = 4).

Every row depends on its own sequence only, so results do not depend on batching,
and rows come back in input order because batches are processed in input order.
"""

from __future__ import annotations

import logging
from typing import Callable, Sequence

import numpy as np

from virnucpro_core.backends import EmbedderOptions
from virnucpro_core.errors import BackendError

log = logging.getLogger(__name__)

DEFAULT_K = 4
MAX_K = 8  # 4**8 = 65,536 columns; beyond that a row is mostly zeros
DEFAULT_BATCH_SIZE = 4096  # sequences per numpy pass
DEFAULT_BATCH_BASES = 8_000_000  # bases per numpy pass (about 100 MB of temporaries)
_COUNT_CELLS = 1 << 22  # sequences x columns per pass, bounds the count matrix to 32 MB

_INVALID = 4
_CODES = np.full(256, _INVALID, dtype=np.uint8)
for _code, _base in enumerate(b"ACGT"):
    _CODES[_base] = _code


def kmer_frequencies(sequences: Sequence[str], k: int = DEFAULT_K) -> np.ndarray:
    """Normalised k-mer frequencies of ``sequences`` as float32 ``(len(sequences), 4**k)``.

    All sequences are encoded as one array, so the work is a handful of numpy passes
    whatever their number. A window is counted for sequence ``s`` only if it lies
    wholly inside ``s`` and holds A/C/G/T only.
    """
    n, dim = len(sequences), 4**k
    if n == 0:
        return np.zeros((0, dim), dtype=np.float32)
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=n)
    # one byte per character: 'replace' maps each non-ASCII character to a single '?'
    text = "".join(sequences).upper().encode("ascii", errors="replace")
    codes = _CODES[np.frombuffer(text, dtype=np.uint8)]
    total = codes.size
    if total < k:
        return np.zeros((n, dim), dtype=np.float32)

    starts = total - k + 1  # windows over the concatenation
    index = np.zeros(starts, dtype=np.int64)
    for j in range(k):  # base-4 number of each window, most significant letter first
        index = index * 4 + codes[j : j + starts]
    bad = np.concatenate(([0], np.cumsum(codes == _INVALID, dtype=np.int64)))
    owner = np.repeat(np.arange(n, dtype=np.int64), lengths)  # sequence of each position
    valid = (bad[k:] == bad[:-k]) & (owner[: starts] == owner[k - 1 :])

    counts = np.bincount(owner[:starts][valid] * dim + index[valid], minlength=n * dim)
    counts = counts.reshape(n, dim).astype(np.float64)
    sums = counts.sum(axis=1, keepdims=True)
    np.divide(counts, sums, out=counts, where=sums > 0)
    return counts.astype(np.float32)


class KmerEmbedder:
    """The :class:`virnucpro_core.backends.Embedder` of ``kmer=v1``.

    ``max_length`` (if set) counts only the first ``max_length`` bases of each
    sequence, as the core's ``EmbedderOptions.max_length`` asks of every backend.
    """

    def __init__(
        self,
        k: int = DEFAULT_K,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        batch_bases: int = DEFAULT_BATCH_BASES,
        max_length: int | None = None,
    ) -> None:
        if not 1 <= k <= MAX_K:
            raise ValueError(f"k must be between 1 and {MAX_K}, got {k}")
        self.k = k
        self.dim = 4**k
        self.model_id = f"kmer-{k}"
        # the count matrix is batch x dim cells; keep it bounded for large k
        self.batch_size = max(1, min(batch_size, _COUNT_CELLS // self.dim))
        self.batch_bases = max(1, batch_bases)
        self.max_length = max_length

    def _batches(self, sequences: Sequence[str]):
        batch: list[str] = []
        bases = 0
        for seq in sequences:
            if self.max_length is not None:
                seq = seq[: self.max_length]
            if batch and (len(batch) >= self.batch_size or bases + len(seq) > self.batch_bases):
                yield batch
                batch, bases = [], 0
            batch.append(seq)
            bases += len(seq)
        if batch:
            yield batch

    def embed(self, sequences: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """One float32 row of ``dim`` frequencies per sequence, in input order."""
        parts = []
        for batch in self._batches(sequences):
            parts.append(kmer_frequencies(batch, self.k))
            if progress is not None:
                progress(len(batch))
        if not parts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def close(self) -> None:
        """Nothing to release: no model, no device memory."""


def kmer_length(options: EmbedderOptions) -> int:
    """The k the options ask for, or a one-line BackendError; also the plugin's preflight check."""
    unknown = sorted(set(options.extra) - {"k"})
    if unknown:
        raise BackendError(f"kmer=v1 does not know the option(s) {', '.join(unknown)}; it takes only k (k-mer length, default 4)")
    raw_k = options.extra.get("k", str(DEFAULT_K))
    try:
        k = int(raw_k)
    except (TypeError, ValueError):
        k = 0
    if not 1 <= k <= MAX_K:
        raise BackendError(f"kmer=v1: k must be a whole number from 1 to {MAX_K}, got {raw_k!r}")
    if options.model not in (None, f"kmer-{k}"):
        raise BackendError(
            f"kmer=v1 has no model files (it counts {k}-mers directly), but model {options.model!r} was given; leave the model unset"
        )
    return k


def embedder_from_options(options: EmbedderOptions) -> KmerEmbedder:
    """Build the embedder the core asked for, refusing options that cannot apply.

    ``extra["k"]`` picks the k-mer length (default 4; the registered ``dim`` of 256 is
    that of the default). There are no model files, so ``model`` may only be unset or
    name the same ``kmer-K``. ``device`` and ``precision`` do not apply: the counts
    are exact float32 computed by numpy on the CPU.
    """
    k = kmer_length(options)
    if options.device != "cpu" or options.precision != "fp32":
        log.info("kmer=v1 runs on the CPU in exact float32; device %s and precision %s do not apply", options.device, options.precision)
    return KmerEmbedder(
        k,
        batch_size=options.batch_size or DEFAULT_BATCH_SIZE,
        batch_bases=options.batch_tokens or DEFAULT_BATCH_BASES,
        max_length=options.max_length,
    )
