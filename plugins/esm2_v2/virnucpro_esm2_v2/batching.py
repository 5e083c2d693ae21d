"""A pack of proteins as the tensors the packed forward needs, built on the host.

Everything that depends on the proteins' lengths is computed here, in numpy, before
the batch reaches the device: the token stream, each token's position *within its own
protein* (rotary embeddings restart at 0 for every protein, BOS included), the
``cu_seqlens`` offsets of varlen attention, which tokens are averaged for each protein
(residues ``1..min(L, max_length)``: BOS and EOS excluded), and, for the exact SDPA
path, the gather/scatter indices of length buckets. So the device never has to ask
the host anything (no ``.item()``, no boolean indexing that would synchronise), and
the tensors can be pinned and copied with ``non_blocking=True`` while the previous
batch still runs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from virnucpro_esm2_v2.packing import Pack
from virnucpro_esm2_v2.tokens import MASK

#: A length bucket of the SDPA path holds proteins at least this fraction as long as its
#: longest, so at most 1 - BUCKET_FILL of its attention rows are padding.
BUCKET_FILL = 0.8


def token_positions(lengths: Sequence[int]) -> np.ndarray:
    """Position of every token within its own protein: ``0..len-1`` for each, concatenated."""
    total = int(sum(lengths))
    starts = np.repeat(np.cumsum([0, *lengths[:-1]]), lengths)
    return np.arange(total, dtype=np.int64) - starts


def pooled_span(residues: int, max_length: int) -> tuple[int, int]:
    """``(first, count)`` of the tokens averaged for a protein of ``residues`` residues:
    positions ``1..min(L, max_length)``, i.e. the residues after BOS, EOS excluded."""
    return 1, min(residues, max_length)


@dataclass(frozen=True)
class Bucket:
    """Proteins of similar length padded to a ``(b, width)`` block for SDPA.

    ``gather`` (b*width) picks each padded slot's token from the stream (padding slots
    point at token 0 and are masked out as keys); ``valid`` (b, width) is the key mask;
    ``slots``/``dest`` say which padded slots hold real tokens and where they go back.
    """

    size: int
    width: int
    gather: "object"
    valid: "object"
    slots: "object"
    dest: "object"


@dataclass(frozen=True)
class PackedBatch:
    """The tensors of one pack; ``to(device)`` moves all of them (non-blocking)."""

    pack: Pack
    tokens: "object"  # (T,) int64 token ids
    positions: "object"  # (T,) int64 position within the protein
    mask_ratio: "object"  # (T,) float32: share of <mask> tokens in each token's protein
    mask_tokens: "object"  # (T,) bool: <mask> tokens, zeroed as fair-esm does
    cu_seqlens: "object"  # (B+1,) int32
    max_seqlen: int
    pool_index: "object"  # (P,) int64 tokens averaged
    pool_seq: "object"  # (P,) int64 their protein within the pack
    pool_count: "object"  # (B, 1) float32 tokens averaged per protein
    buckets: tuple[Bucket, ...]

    def to(self, device, *, non_blocking: bool = True) -> "PackedBatch":
        from virnucpro_core import accel

        def move(t):
            return accel.to_device(t, device, non_blocking=non_blocking)

        buckets = tuple(dataclasses.replace(b, gather=move(b.gather), valid=move(b.valid), slots=move(b.slots), dest=move(b.dest))
                        for b in self.buckets)
        return dataclasses.replace(
            self, tokens=move(self.tokens), positions=move(self.positions), mask_ratio=move(self.mask_ratio),
            mask_tokens=move(self.mask_tokens), cu_seqlens=move(self.cu_seqlens), pool_index=move(self.pool_index),
            pool_seq=move(self.pool_seq), pool_count=move(self.pool_count), buckets=buckets)


def length_buckets(lengths: Sequence[int]) -> list[list[int]]:
    """Group the pack's proteins (longest first) so each group wastes little padding."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    groups: list[list[int]] = []
    for i in order:
        if groups and lengths[i] >= BUCKET_FILL * lengths[groups[-1][0]]:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def build_batch(pack: Pack, encoded: Sequence[np.ndarray], *, max_length: int, with_buckets: bool, pin: bool) -> PackedBatch:
    """The tensors of ``pack``; ``encoded[k]`` are the token ids of its k-th protein."""
    import torch

    from virnucpro_core import accel

    lengths = [len(ids) for ids in encoded]
    if lengths != list(pack.tokens):
        raise AssertionError(f"pack token counts {pack.tokens} do not match the encoded proteins {lengths}")
    tokens = np.concatenate(encoded)
    starts = np.cumsum([0, *lengths])
    masked = tokens == MASK
    # fair-esm's observed mask ratio: <mask> tokens over all tokens of the protein (BOS/EOS
    # included); the model rescales by (1 - 0.15*0.8) / (1 - ratio).
    ratio = np.add.reduceat(masked.astype(np.float32), starts[:-1]) / np.asarray(lengths, dtype=np.float32)
    mask_ratio = np.repeat(ratio.astype(np.float32), lengths)
    pool_index, pool_seq, pool_count = [], [], []
    for k, n in enumerate(lengths):
        first, count = pooled_span(n - 2, max_length)
        pool_index.append(np.arange(starts[k] + first, starts[k] + first + count, dtype=np.int64))
        pool_seq.append(np.full(count, k, dtype=np.int64))
        pool_count.append(count)
    buckets: list[Bucket] = []
    if with_buckets:
        for group in length_buckets(lengths):
            width = lengths[group[0]]
            offs = np.arange(width)
            valid = offs[None, :] < np.asarray([lengths[k] for k in group])[:, None]
            gather = np.where(valid, starts[group][:, None] + offs[None, :], 0).reshape(-1)
            slots = np.flatnonzero(valid.reshape(-1))
            buckets.append(Bucket(len(group), width, gather, valid, slots, gather[slots]))

    def tensor(a, dtype=None):
        t = torch.from_numpy(np.ascontiguousarray(a))
        if dtype is not None:
            t = t.to(dtype)
        return accel.pin(t) if pin else t

    return PackedBatch(
        pack=pack,
        tokens=tensor(tokens),
        positions=tensor(token_positions(lengths)),
        mask_ratio=tensor(mask_ratio),
        mask_tokens=tensor(masked),
        cu_seqlens=tensor(starts.astype(np.int32)),
        max_seqlen=max(lengths),
        pool_index=tensor(np.concatenate(pool_index)),
        pool_seq=tensor(np.concatenate(pool_seq)),
        pool_count=tensor(np.asarray(pool_count, dtype=np.float32)[:, None]),
        buckets=tuple(dataclasses.replace(b, gather=tensor(b.gather.astype(np.int64)), valid=tensor(b.valid),
                                          slots=tensor(b.slots.astype(np.int64)), dest=tensor(b.dest.astype(np.int64)))
                      for b in buckets),
    )
