"""Real proteins for tests and benchmarks: the stop-free frames of genomes through ``prepare``."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Iterable, Sequence


def prepared_proteins(genomes: Iterable[Path], sizes: Sequence[int] = (300, 500)) -> list[str]:
    """Every stop-free frame of each genome at each chunk size, in that order, as the
    protein stage of ``predict`` would embed them (VirNucPro's real length distribution)."""
    from virnucpro_core.prepare import prepare_file

    genomes = list(genomes)
    out: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            for genome in genomes:
                result = prepare_file(Path(genome), Path(tmp) / str(size), size)
                with open(result.protein) as handle:
                    out += [line.strip() for line in handle if not line.startswith(">")]
    return out
