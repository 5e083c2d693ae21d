"""Which protein goes into which batch: the one place that decides row assignment.

Proteins are sorted by length (longest first, ties by input position) and packed into
batches whose real tokens (residues + BOS + EOS, no padding) stay within a token
budget; a protein longer than the budget runs alone. Every batch carries the input
positions of its proteins, and the embedder writes its pooled rows to exactly those
positions, checking the count per batch and that every input got exactly one row.
(The predecessor copied a stateful packing buffer into DataLoader workers and lost
10,577 sequences; here packing is a pure function of the lengths.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Pack:
    """One batch: input positions of its proteins and their token counts, in run order."""

    indices: tuple[int, ...]
    tokens: tuple[int, ...]

    @property
    def total_tokens(self) -> int:
        return sum(self.tokens)

    def __len__(self) -> int:
        return len(self.indices)


def plan_packs(tokens: Sequence[int], budget: int, max_sequences: int | None = None) -> list[Pack]:
    """Greedy packing of length-sorted proteins into batches of at most ``budget`` tokens.

    ``tokens[i]`` is the token count of input ``i``; ``max_sequences`` optionally caps
    the proteins per batch. Every index appears in exactly one pack.
    """
    if budget <= 0:
        raise ValueError(f"token budget must be positive, got {budget}")
    order = sorted(range(len(tokens)), key=lambda i: (-tokens[i], i))
    packs: list[Pack] = []
    current: list[int] = []
    used = 0
    for i in order:
        full = current and (used + tokens[i] > budget or (max_sequences is not None and len(current) >= max_sequences))
        if full:
            packs.append(Pack(tuple(current), tuple(tokens[j] for j in current)))
            current, used = [], 0
        current.append(i)
        used += tokens[i]
    if current:
        packs.append(Pack(tuple(current), tuple(tokens[j] for j in current)))
    return packs


def split_pack(pack: Pack, budget: int) -> list[Pack]:
    """Re-pack one batch's proteins under a smaller budget (after an out-of-memory error)."""
    parts = plan_packs(pack.tokens, budget)
    return [Pack(tuple(pack.indices[k] for k in part.indices), part.tokens) for part in parts]


@dataclass
class PackingStats:
    """Real tokens over token capacity: ``sum(tokens) / sum(max(budget, pack tokens))``.

    A protein longer than the budget fills its own batch (100%), so the figure never
    exceeds 1; it measures how much of each batch's budget carried real tokens.
    """

    tokens: int = 0
    capacity: int = 0
    batches: int = 0
    sequences: int = 0

    def add(self, pack: Pack, budget: int) -> None:
        self.tokens += pack.total_tokens
        self.capacity += max(budget, pack.total_tokens)
        self.batches += 1
        self.sequences += len(pack)

    @property
    def utilisation(self) -> float:
        return self.tokens / self.capacity if self.capacity else 0.0
