"""Shared fixtures: a tiny ESM-2 in fair-esm's real file format, and test proteins."""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import pytest

from virnucpro_core.testing.esm2 import write_tiny_esm2

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"


def random_protein(rng: random.Random, length: int) -> str:
    return "".join(rng.choice(AMINO_ACIDS) for _ in range(length))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """``esm2_t2_tiny_UR50D.pt`` (+ contact regression) in a session temp dir."""
    return write_tiny_esm2(tmp_path_factory.mktemp("esm2"))


@pytest.fixture(scope="session")
def stock_model(tiny_checkpoint):
    """The same tiny model loaded by fair-esm's own local loader, as the original did."""
    import esm
    import torch

    with torch.serialization.safe_globals([argparse.Namespace]):
        model, alphabet = esm.pretrained.load_model_and_alphabet_local(str(tiny_checkpoint))
    return model.eval(), alphabet


@pytest.fixture(scope="session")
def proteins() -> list[str]:
    """Varied lengths 1..300 in shuffled order, a few with X, and one of 1100 residues
    so the 1024-residue pooling limit is exercised."""
    rng = random.Random(7)
    lengths = [1, 2, 3, 7, 12, 30, 55, 99, 100, 101, 140, 166, 166, 200, 256, 299, 300] + [rng.randint(1, 300) for _ in range(13)]
    rng.shuffle(lengths)
    seqs = [random_protein(rng, n) for n in lengths]
    seqs[5] = seqs[5][:3] + "X" + seqs[5][4:] if len(seqs[5]) > 4 else seqs[5]
    seqs.insert(11, random_protein(rng, 1100))
    return seqs
