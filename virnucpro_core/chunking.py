"""The original VirNucPro chunk rule, exactly (``split_fasta_chunk`` in its ``units.py``).

The published models were trained on chunks cut this way, so we keep the rule even
where it is odd. For a sequence of length ``L`` and chunk size ``size``:

* ``n = ceil(L / size)`` chunks, ``overlap = n*size - L`` bases to share out,
  ``q = floor(overlap / n)``, ``extra = overlap - q*(n-1)``;
* the shift list is ``extra`` copies of ``q+1``, then ``n-1-extra`` copies of ``q``
  (none when negative), then ``0``;
* chunk ``k`` starts at ``k*size - sum(first k shifts)`` and is ``size`` long, cut
  short by the end of the sequence.

It means to spread the overlap evenly, but when ``extra > n-1`` every chunk is shifted
by ``q+1`` and the last chunk comes out short: 550 bp at size 500 gives 500 + 276 bp,
not 500 + 500. A sequence shorter than ``size`` is one short chunk. The closed form
used here is ``start_k = k*(size - q) - min(k, extra)`` (the first ``k`` shifts are
``q+1`` for ``min(k, extra)`` of them and ``q`` for the rest).

(The original also tests ``if a > 1`` before shifting; that only differs for ``k = 0``,
or for ``size = 1`` where no shift is ever non-zero, so it changes nothing.)

An empty sequence has no chunks here; the original crashes on it (division by zero).
"""

from __future__ import annotations

from typing import Iterator, NamedTuple


def chunk_count(length: int, size: int) -> int:
    """``ceil(length / size)``: how many chunks a sequence of ``length`` bases gives."""
    _check_size(size)
    return -(-length // size) if length > 0 else 0


class ChunkPlan(NamedTuple):
    """The chunks of one sequence without listing them: chunk ``k`` starts at ``k*step - min(k, extra)``.

    A chromosome has hundreds of thousands of chunks; a streaming reader asks for
    :meth:`start` one at a time instead of holding them all.
    """

    count: int
    step: int
    extra: int

    def start(self, k: int) -> int:
        return k * self.step - min(k, self.extra)


def chunk_plan(length: int, size: int) -> ChunkPlan:
    """The :class:`ChunkPlan` of a ``length``-base sequence (``count`` 0 for length 0)."""
    n = chunk_count(length, size)
    if n == 0:
        return ChunkPlan(0, size, 0)
    overlap = n * size - length
    q = overlap // n
    return ChunkPlan(n, size - q, overlap - q * (n - 1))


def chunk_starts(length: int, size: int) -> list[int]:
    """0-based start of every chunk of a ``length``-base sequence; ``[]`` for length 0."""
    n, step, extra = chunk_plan(length, size)
    return [k * step - min(k, extra) for k in range(n)]


def chunk_spans(length: int, size: int) -> list[tuple[int, int]]:
    """``(start, end)`` of every chunk, end exclusive and clipped to the sequence."""
    return [(start, min(start + size, length)) for start in chunk_starts(length, size)]


def chunk_id(record_id: str, index: int) -> str:
    """The original's chunk name: ``<record id>_chunk_<index+1>``."""
    return f"{record_id}_chunk_{index + 1}"


def iter_chunks(record_id: str, seq: str, size: int) -> Iterator[tuple[str, str]]:
    """Yield ``(chunk_id, chunk_seq)`` in order; case is preserved as in the original chunk file."""
    for index, (start, end) in enumerate(chunk_spans(len(seq), size)):
        yield chunk_id(record_id, index), seq[start:end]


def _check_size(size: int) -> None:
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"chunk size must be a positive integer, got {size!r}")
