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

How it is made fast: a batch of chunks is joined into one string and translated once
in its three forward and three reverse frames with numpy (a 125-entry codon table over
base-5 codes, 0 marking a codon with a non-ACGT letter, the sorted positions of stops
and of dropped codons). Each chunk-frame is then a slice of one of those global frames,
and strings are built only for the stop-free frames. Slices never cross a chunk
boundary, so joining unrelated chunks is safe.
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

    code = _tables()[0]
    digits = code[np.frombuffer(text.encode("ascii", errors="replace"), dtype=np.uint8)]
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
    its reverse complement, their translations likewise joined (``\\0`` marks a dropped
    codon), and for each of the six frames that keeps any chunk ``(frame number 0-5,
    chunk rows, nucleotide start, end, protein start, end, has-dropped-codon)`` as arrays
    indexing those texts.
    """
    import numpy as np

    if not len(lengths):
        return None
    _, amino, rc_amino = _tables()
    codons = _codons(text)
    total = len(text)
    lengths = np.asarray(lengths, dtype=np.int64)
    ends = np.cumsum(lengths)
    if ends[-1] != total:
        raise ValueError(f"chunk lengths add up to {int(ends[-1])}, but the text has {total} characters")
    starts = ends - lengths
    ambiguous = _has_ambiguous(text)
    forward, reverse = _Strand(codons, amino, False, ambiguous), _Strand(codons, rc_amino, True, ambiguous)
    if not forward.protein:
        return None
    # One text per kind, both strands joined: a reverse-strand slice is offset by the forward one's length.
    nuc_text = text + text.translate(_COMPLEMENT)[::-1]
    prot_text = forward.protein + reverse.protein
    frames = []
    for number, (strand, chunk_at, nuc_offset, prot_offset) in enumerate(
        ((forward, starts, 0, 0), (reverse, total - ends, total, len(forward.protein)))
    ):
        for offset in range(3):
            at = chunk_at + offset  # where the chunk-frame's first codon starts on this strand
            count = np.maximum((lengths - offset) // 3, 0)
            k0 = np.where(count > 0, (at % 3) * strand.width + at // 3, 0)
            k1 = k0 + count
            stops = strand.count(strand.stops, k0, k1)
            dropped = strand.count(strand.dropped, k0, k1)
            kept = count - dropped
            (rows,) = np.nonzero((stops == 0) & (kept > 0))
            if rows.size == 0:
                continue
            nuc_start = at[rows]
            nuc_end = nuc_start + np.minimum(lengths[rows] - offset, 3 * kept[rows] + 1)
            frames.append((3 * number + offset, rows, nuc_start + nuc_offset, nuc_end + nuc_offset,
                           k0[rows] + prot_offset, k1[rows] + prot_offset, dropped[rows] > 0))
    if not frames:
        return None
    return nuc_text, prot_text, frames


_ACGT = b"ACGT"


def _has_ambiguous(text: str) -> bool:
    """True when upper-cased ``text`` holds any letter other than A, C, G, T (C speed)."""
    try:
        return bool(text.encode("ascii").translate(None, _ACGT))
    except UnicodeEncodeError:
        return True
