"""Six-frame translation of chunks, vectorised, with the original's exact quirks.

What the original does per chunk (``translate_dna`` / ``identify_seq`` after
``process_record`` upper-cases the chunk):

* frames F1-F3 read codons from offsets 0, 1, 2 of the chunk; R1-R3 from offsets
  0, 1, 2 of its reverse complement, where only ``ACGTacgt`` are complemented (``N``
  or ``R`` stay as they are);
* the standard genetic code with ``*`` for stops; **a codon containing any letter other
  than A, C, G, T is dropped silently**, which shifts the protein;
* a frame is kept when its protein has no ``*`` and is not empty (``prediction.py``
  skips empty proteins);
* the nucleotide span kept beside the protein is ``chunk[o : o + 3*len(protein) + 1]``
  (forward, ``o`` the frame offset) or the same slice of the reverse complement, i.e.
  3·aa + 1 bases, clipped to the chunk (an off-by-one the models were trained with).

How it is made fast: a batch of chunks is joined into one string, coded as base-5
codon numbers once (0-124, a digit 4 for any non-ACGT letter), and the positions of
stop codons on both strands and of dropped codons are found over the whole batch with
``bytes.translate`` and numpy. A chunk-frame is a range of codon positions, so whether
it holds a stop is a binary search; amino acids are looked up only for the stop-free
chunk-frames, which are few (most frames of a 300-500 bp chunk hold a stop). Ranges
never cross a chunk boundary, so joining unrelated chunks is safe. :func:`six_frames`
translates whole strands (``_Strand``) instead, a second, independent implementation.
"""

from __future__ import annotations

from functools import cache
from typing import NamedTuple, Sequence

#: Frame suffixes in the order the original writes them.
FRAME_SUFFIXES = ("F1", "F2", "F3", "R1", "R2", "R3")

_BASES = "TCAG"
_AMINO = "FFLLSSSSYY**CC*WLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG"
#: The standard genetic code (NCBI table 1), stops as ``*``: the original's 64-codon dict.
STANDARD_CODE: dict[str, str] = {
    a + b + c: _AMINO[16 * i + 4 * j + k]
    for i, a in enumerate(_BASES)
    for j, b in enumerate(_BASES)
    for k, c in enumerate(_BASES)
}

_COMPLEMENT = str.maketrans("ACGTacgt", "TGCAtgca")


class Frame(NamedTuple):
    """A stop-free frame of one chunk: ID suffix (``F1``..``R3``), nucleotide span, protein."""

    suffix: str
    nucleotide: str
    protein: str


def reverse_complement(seq: str) -> str:
    """Reverse complement mapping only ``ACGTacgt``, as the original (other letters unchanged)."""
    return seq.translate(_COMPLEMENT)[::-1]


@cache
def _tables():
    """Lookup tables: base -> base-5 digit, and codon number -> amino acid on either strand.

    A codon is numbered ``25*d0 + 5*d1 + d2`` with digits A0 C1 G2 T3 and 4 for any other
    letter; ``amino`` gives its amino acid (0 when it holds a 4: dropped) and
    ``rc_amino`` the amino acid of its reverse complement, so the reverse strand is
    read off the forward codons without building the reverse-complement digits.
    """
    import numpy as np

    code = np.full(256, 4, dtype=np.uint8)
    for i, base in enumerate("ACGT"):
        code[ord(base)] = i
    amino = np.zeros(125, dtype=np.uint8)
    rc_amino = np.zeros(125, dtype=np.uint8)
    for codon, aa in STANDARD_CODE.items():
        d = ["ACGT".index(ch) for ch in codon]
        amino[25 * d[0] + 5 * d[1] + d[2]] = ord(aa)
        rc_amino[25 * (3 - d[2]) + 5 * (3 - d[1]) + (3 - d[0])] = ord(aa)
    return code, amino, rc_amino


def _codons(text: str):
    """Codon number at every start position of ``text`` (length ``len(text) - 2``)."""
    import numpy as np

    digits = np.frombuffer(text.encode("ascii", errors="replace").translate(_digit_bytes()), dtype=np.uint8)
    if digits.shape[0] < 3:
        return digits[:0]
    codon = digits[:-2] * 25
    codon += digits[1:-1] * 5
    codon += digits[2:]
    return codon


class _Strand:
    """One strand translated in its three frames, laid out so a chunk-frame is one slice.

    Frame ``g`` (codons starting at positions ``g, g+3, ...``) occupies
    ``protein[g*width : (g+1)*width]``; codon ``p`` is at ``(p % 3)*width + p // 3``.
    ``stops`` and ``dropped`` are the sorted indices of stop codons and of codons with a
    non-ACGT letter (0 in ``protein``); counting them inside a slice is two binary
    searches, cheaper than cumulative sums over the whole strand.
    """

    __slots__ = ("protein", "width", "stops", "dropped")

    def __init__(self, codons, table, reverse: bool, ambiguous: bool = True):
        import numpy as np

        n = codons.shape[0]
        if n == 0:
            self.protein, self.width = "", 0
            self.stops = self.dropped = np.zeros(0, dtype=np.int64)
            return
        width = -(-n // 3)
        aa = np.zeros(3 * width, dtype=np.uint8)  # padding codons are never inside a chunk-frame
        # The reverse strand's codon at position j is the reverse complement of the forward codon at n-1-j.
        np.take(table, codons[::-1] if reverse else codons, out=aa[:n])
        frames = aa.reshape(width, 3).T.ravel()  # row g = frame g
        self.protein = frames.tobytes().decode("latin-1")
        self.width = width
        self.stops = np.flatnonzero(frames == ord("*"))
        # Without a non-ACGT letter the only zeros are the padding, which no chunk-frame reaches.
        self.dropped = np.flatnonzero(frames == 0) if ambiguous else np.zeros(0, dtype=np.int64)

    def count(self, positions, k0, k1):
        import numpy as np

        if positions.size == 0:
            return np.zeros(k0.shape, dtype=np.int64)
        return np.searchsorted(positions, k1) - np.searchsorted(positions, k0)


def six_frames(seq: str) -> list[str]:
    """The six translations of an upper-cased sequence, exactly as the original's ``translate_dna``."""
    _, amino, rc_amino = _tables()
    codons = _codons(seq)
    out = []
    for strand in (_Strand(codons, amino, False), _Strand(codons, rc_amino, True)):
        w = strand.width
        out += [strand.protein[g * w : (g + 1) * w].replace("\0", "") for g in range(3)]
    return out


def identified_frames(chunk: str) -> list[Frame]:
    """Stop-free, non-empty frames of one chunk (upper-cased here, as ``process_record`` does)."""
    return translate_chunks([chunk.upper()])[0]


def translate_chunks(chunks: Sequence[str]) -> list[list[Frame]]:
    """Stop-free frames of each upper-cased chunk, in the original's order F1 F2 F3 R1 R2 R3.

    ``chunks`` must already be upper-cased. Row ``i`` of the result belongs to
    ``chunks[i]``; a chunk without any kept frame gets an empty list.
    """
    return translate_joined("".join(chunks), [len(c) for c in chunks])


def translate_joined(text: str, lengths: Sequence[int]) -> list[list[Frame]]:
    """:func:`translate_chunks` for chunks given joined: ``text`` (upper-cased) cut at ``lengths``."""
    result: list[list[Frame]] = [[] for _ in lengths]
    kept = _kept_frames(text, lengths)
    if kept is None:
        return result
    nuc_text, prot_text, frames = kept
    for number, rows, n0, n1, p0, p1, dropped in frames:
        suffix = FRAME_SUFFIXES[number]
        # Frame by frame, appending to each chunk's list: per chunk the order is F1 F2 F3 R1 R2 R3.
        for c, a, b, pa, pb, has_dropped in zip(rows.tolist(), n0.tolist(), n1.tolist(), p0.tolist(), p1.tolist(),
                                                 dropped.tolist()):
            protein = prot_text[pa:pb]
            if has_dropped:
                protein = protein.replace("\0", "")
            result[c].append(Frame(suffix, nuc_text[a:b], protein))
    return result


def identified_fasta(ids: Sequence[str], text: str, lengths: Sequence[int]) -> tuple[str, str, int]:
    """The original's identified-nucleotide and identified-protein FASTA text for a batch of chunks.

    ``ids[i]`` names the chunk ``text`` (upper-cased) holds at ``lengths[i]``; records are
    ``>{id}{F1..R3}`` then the sequence on one line, chunk by chunk in the original's
    frame order. Returns ``(nucleotide, protein, frames written)``. The same frames as
    :func:`translate_joined`, without building a :class:`Frame` per frame: one string
    per output record is all the Python work left (it dominates for short reads).
    """
    import numpy as np

    kept = _kept_frames(text, lengths)
    if kept is None:
        return "", "", 0
    nuc_text, prot_text, frames = kept
    # Order all kept chunk-frames chunk by chunk, then by frame number.
    rows = np.concatenate([f[1] for f in frames])
    numbers = np.concatenate([np.full(f[1].size, f[0], dtype=np.int64) for f in frames])
    order = np.argsort(rows * 6 + numbers, kind="stable")
    suffixes = FRAME_SUFFIXES
    heads = [f">{ids[r]}{suffixes[n]}\n" for r, n in zip(rows[order].tolist(), numbers[order].tolist())]
    spans = [np.concatenate([f[i] for f in frames])[order].tolist() for i in (2, 3, 4, 5)]
    nucleotide = "".join([f"{h}{nuc_text[a:b]}\n" for h, a, b in zip(heads, spans[0], spans[1])])
    protein = "".join([f"{h}{prot_text[a:b]}\n" for h, a, b in zip(heads, spans[2], spans[3])])
    if any(bool(f[6].any()) for f in frames):
        protein = protein.replace("\0", "")  # dropped codons (IDs never hold NUL: binary headers are refused)
    return nucleotide, protein, len(heads)


def _kept_frames(text: str, lengths: Sequence[int]):
    """Where the stop-free, non-empty chunk-frames are; None when there is nothing to translate.

    Returns ``(nucleotide text, protein text, frames)``: the forward strand followed by
    its reverse complement; the proteins of the kept chunk-frames only, joined (``\\0``
    marks a dropped codon); and for each of the six frames that keeps any chunk
    ``(frame number 0-5, chunk rows, nucleotide start, end, protein start, end,
    has-dropped-codon)`` as arrays indexing those texts.

    Most chunk-frames hold a stop, so only stops and dropped codons are located over the
    whole batch (one table lookup per codon, at C speed); amino acids are looked up for
    the codons of kept frames alone. Codon ``p`` of a strand is keyed
    ``(p % 3) * width + p // 3``, so the codons of a chunk-frame are one key range and
    counting the stops in it is two binary searches. The reverse strand's codon ``j`` is
    the reverse complement of forward codon ``n - 1 - j``.
    """
    import numpy as np

    if not len(lengths):
        return None
    codons = _codons(text)
    n = codons.shape[0]
    if n == 0:
        return None
    total = len(text)
    lengths = np.asarray(lengths, dtype=np.int64)
    ends = np.cumsum(lengths)
    if ends[-1] != total:
        raise ValueError(f"chunk lengths add up to {int(ends[-1])}, but the text has {total} characters")
    starts = ends - lengths
    width = -(-n // 3)
    flag_bytes, amino_bytes, rc_amino_bytes = _flag_tables()
    flags = np.frombuffer(codons.tobytes().translate(flag_bytes), dtype=np.uint8)
    marked = np.flatnonzero(flags.view(np.bool_))  # a bool view: numpy's fast path for nonzero
    kinds = flags[marked]

    def keys(positions):
        """The sorted keys of ascending codon positions (ascending within each ``p % 3`` class already)."""
        residue = positions % 3
        return np.concatenate([positions[residue == r] // 3 + r * width for r in range(3)])

    dropped_at = marked[(kinds & _DROPPED) != 0]
    strands = (
        (keys(marked[(kinds & _FORWARD_STOP) != 0]), keys(dropped_at), starts, 0),
        (keys(n - 1 - marked[(kinds & _REVERSE_STOP) != 0][::-1]), keys(n - 1 - dropped_at[::-1]), total - ends, total),
    )
    frames = []
    protein_parts = []
    protein_at = 0
    no_key = np.iinfo(np.int64).max
    for number, (stops, dropped_keys, chunk_at, nuc_offset) in enumerate(strands):
        next_stop = np.append(stops, no_key)  # next_stop[searchsorted(stops, k)]: the first stop key >= k
        for offset in range(3):
            at = chunk_at + offset  # where the chunk-frame's first codon starts on this strand
            count = np.maximum((lengths - offset) // 3, 0)
            k0 = np.where(count > 0, (at % 3) * width + at // 3, 0)
            k1 = k0 + count
            has_stop = next_stop[np.searchsorted(stops, k0)] < k1
            if dropped_keys.size:
                dropped = np.searchsorted(dropped_keys, k1) - np.searchsorted(dropped_keys, k0)
                kept = count - dropped
            else:  # only A, C, G and T in the batch: no codon is dropped
                dropped, kept = np.zeros_like(count), count
            (rows,) = np.nonzero(~has_stop & (kept > 0))
            if rows.size == 0:
                continue
            first, size = at[rows], count[rows]
            # The codon positions of every kept chunk-frame, back to back: first, first+3, ... for each.
            bounds = np.cumsum(size)
            positions = np.repeat(first - 3 * (bounds - size), size) + 3 * np.arange(int(bounds[-1]))
            if number:
                positions = n - 1 - positions
            table = rc_amino_bytes if number else amino_bytes
            protein_parts.append(codons[positions].tobytes().translate(table))
            nuc_start = first + nuc_offset
            nuc_end = nuc_start + np.minimum(lengths[rows] - offset, 3 * kept[rows] + 1)
            prot_start = protein_at + bounds - size
            frames.append((3 * number + offset, rows, nuc_start, nuc_end, prot_start, protein_at + bounds,
                           dropped[rows] > 0))
            protein_at += int(bounds[-1])
    if not frames:
        return None
    nuc_text = text + reverse_complement(text)
    return nuc_text, b"".join(protein_parts).decode("latin-1"), frames


@cache
def _digit_bytes() -> bytes:
    """:func:`_tables`' base -> digit table for ``bytes.translate`` (faster than numpy indexing)."""
    return bytes(_tables()[0].tolist())


@cache
def _flag_tables() -> tuple[bytes, bytes, bytes]:
    """Per codon number (0-124, see :func:`_tables`): stop/dropped flags and amino acids as ``bytes.translate`` tables."""
    _, amino, rc_amino = _tables()
    flags = bytearray(256)
    for number in range(125):
        if amino[number] == ord("*"):
            flags[number] |= _FORWARD_STOP
        if rc_amino[number] == ord("*"):
            flags[number] |= _REVERSE_STOP
        if number // 25 == 4 or number // 5 % 5 == 4 or number % 5 == 4:
            flags[number] |= _DROPPED
    return bytes(flags), bytes(amino.tolist()) + bytes(131), bytes(rc_amino.tolist()) + bytes(131)


_FORWARD_STOP, _REVERSE_STOP, _DROPPED = 1, 2, 4


_ACGT = b"ACGT"


def _has_ambiguous(text: str) -> bool:
    """True when upper-cased ``text`` holds any letter other than A, C, G, T (C speed)."""
    try:
        return bool(text.encode("ascii").translate(None, _ACGT))
    except UnicodeEncodeError:
        return True
