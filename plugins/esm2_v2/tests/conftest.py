"""Shared fixtures: tiny ESM-2s of two architectures in fair-esm's real file format, real proteins."""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import pytest

from virnucpro_core.testing.simcuda.fixture import simcuda  # noqa: F401  (the simulated CUDA device fixture)

from virnucpro_core.testing.esm2 import write_tiny_esm2

ROOT = Path(__file__).resolve().parents[3]
GENOMES = ROOT / "tests" / "data" / "genomes"
AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"

#: Two random architectures (layers, dim, heads): the core's default tiny one and a
#: deeper, wider one with another head size.
ARCHITECTURES = {"t2_d32_h4": (2, 32, 4), "t3_d96_h6": (3, 96, 6)}


def random_protein(rng: random.Random, length: int) -> str:
    return "".join(rng.choice(AMINO_ACIDS) for _ in range(length))


@pytest.fixture(scope="session", params=sorted(ARCHITECTURES))
def checkpoint(request, tmp_path_factory) -> Path:
    layers, dim, heads = ARCHITECTURES[request.param]
    return write_tiny_esm2(tmp_path_factory.mktemp(request.param), name=f"esm2_{request.param}", num_layers=layers,
                           embed_dim=dim, attention_heads=heads, seed=len(request.param))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return write_tiny_esm2(tmp_path_factory.mktemp("esm2"))


@pytest.fixture(scope="session")
def real_proteins() -> list[str]:
    """Every stop-free frame of phage lambda and 60 kb of H. pylori, 300 and 500 bp chunks, through `prepare`
    (383 proteins of 1..166 residues)."""
    from virnucpro_core.testing.proteins import prepared_proteins

    return prepared_proteins([GENOMES / "lambda_NC_001416.fa.gz", GENOMES / "hpylori_G27_first60kb.fa.gz"])


@pytest.fixture(scope="session")
def guard_checkpoint(tmp_path_factory) -> Path:
    """Six layers: deep enough that tanh-GELU's ~1e-3 per-activation error exceeds the fp32 bound."""
    return write_tiny_esm2(tmp_path_factory.mktemp("guard"), name="esm2_t6_guard", num_layers=6, embed_dim=64, attention_heads=8)


def stock_model(path: Path):
    """fair-esm's own local loader, as the original used it."""
    import esm
    import torch

    with torch.serialization.safe_globals([argparse.Namespace]):
        model, alphabet = esm.pretrained.load_model_and_alphabet_local(str(path))
    return model.eval(), alphabet
