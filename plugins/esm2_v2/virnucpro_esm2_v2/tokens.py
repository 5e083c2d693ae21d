"""ESM-2's vocabulary and how a protein string becomes token ids, without fair-esm.

fair-esm's ``Alphabet.from_architecture("ESM-1b")`` (used by every ESM-2) lists these 33
tokens in this order; the test suite checks the table against fair-esm itself. A
protein becomes ``<cls> residues <eos>``, one token per letter. fair-esm raises a bare
``KeyError`` for a letter outside its alphabet (``J``, ``*``, lower case); here that is
a one-line :class:`InputError` naming the protein and the letter.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from virnucpro_core.errors import InputError

RESIDUES = "LAGVSERTIDPKQNFYMHWCXBUZO.-"
VOCABULARY: tuple[str, ...] = ("<cls>", "<pad>", "<eos>", "<unk>", *RESIDUES, "<null_1>", "<mask>")
CLS = VOCABULARY.index("<cls>")
PAD = VOCABULARY.index("<pad>")
EOS = VOCABULARY.index("<eos>")
MASK = VOCABULARY.index("<mask>")


@lru_cache(maxsize=1)
def _byte_table() -> np.ndarray:
    table = np.full(256, -1, dtype=np.int64)
    for letter in RESIDUES:
        table[ord(letter)] = VOCABULARY.index(letter)
    return table


def encode(protein: str, number: int, total: int) -> np.ndarray:
    """``<cls> residues <eos>`` as int64 ids; ``number`` (1-based) names the protein in errors."""
    try:
        raw = np.frombuffer(protein.encode("ascii"), dtype=np.uint8)
    except UnicodeEncodeError:
        bad = next(ch for ch in protein if ord(ch) > 127)
        raise InputError(_bad_letter(bad, number, total)) from None
    ids = _byte_table()[raw]
    if (ids < 0).any():
        raise InputError(_bad_letter(protein[int(np.flatnonzero(ids < 0)[0])], number, total))
    out = np.empty(len(ids) + 2, dtype=np.int64)
    out[0], out[-1] = CLS, EOS
    out[1:-1] = ids
    return out


def _bad_letter(letter: str, number: int, total: int) -> str:
    return (f"protein #{number} of {total} contains {letter!r}, which is not in ESM-2's alphabet "
            f"({RESIDUES}); upper-case it or replace unknown residues with X")
