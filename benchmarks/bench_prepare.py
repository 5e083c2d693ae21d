"""Benchmark ``prepare``: speed against the original algorithm, and memory as the input grows.

    python benchmarks/bench_prepare.py [--size-mbp 4.6] [--chunk-size 500] [--scale 10]

1. Speed: ``prepare_file`` and ``original_prepare`` (the original's algorithm re-stated,
   :mod:`virnucpro_core.testing.original`) on the same bacterial-sized genome in this
   process; prints Mbp/s of each and the ratio, and checks the outputs are identical.
2. Memory: ``prepare_file`` in fresh subprocesses on that genome and on a ``--scale``
   times larger input (that many genome records, as in a metagenome); prints each peak
   RSS (``ru_maxrss`` of the child) and the difference, which streaming keeps flat.

No genome of that size ships with the project, so one is built deterministically: the
real 60 kb Helicobacter pylori G27 fragment in ``tests/data/genomes`` is tiled, each copy
with a seeded ~1% substitution rate, so codon usage and stop-codon spacing stay those of
a real bacterial chromosome.
"""

from __future__ import annotations

import argparse
import filecmp
import gzip
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SEED_GENOME = ROOT / "tests" / "data" / "genomes" / "hpylori_G27_first60kb.fa.gz"
MUTATION_RATE = 0.01


def seed_sequence() -> np.ndarray:
    with gzip.open(SEED_GENOME, "rt") as handle:
        seq = "".join(line.strip() for line in handle if not line.startswith(">"))
    return np.frombuffer(seq.upper().encode("ascii"), dtype=np.uint8)


def synthetic_genome(bases: int, seed: int) -> bytes:
    """``bases`` bases made of mutated copies of the H. pylori fragment (deterministic in ``seed``)."""
    rng = np.random.default_rng(seed)
    unit = seed_sequence()
    copies = -(-bases // unit.size)
    genome = np.tile(unit, copies)[:bases].copy()
    mutate = rng.random(bases) < MUTATION_RATE
    genome[mutate] = np.frombuffer(b"ACGT", dtype=np.uint8)[rng.integers(0, 4, int(mutate.sum()))]
    return genome.tobytes()


def write_fasta(path: Path, records: int, bases: int) -> None:
    with open(path, "wb") as out:
        for index in range(records):
            seq = synthetic_genome(bases, seed=index)
            out.write(f">genome{index + 1} synthetic H. pylori-like chromosome, {bases} bp\n".encode())
            for start in range(0, len(seq), 60):
                out.write(seq[start : start + 60] + b"\n")


_CHILD = """
import json, resource, sys, time
from pathlib import Path
from virnucpro_core.prepare import prepare_file
t = time.perf_counter()
r = prepare_file(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]))
print(json.dumps({"seconds": time.perf_counter() - t, "bases": r.bases, "chunks": r.chunks, "frames": r.frames,
                  "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def run_child(path: Path, outdir: Path, chunk_size: int) -> dict:
    done = subprocess.run([sys.executable, "-c", _CHILD, str(path), str(outdir), str(chunk_size)],
                          check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def best_of(repeat: int, run):
    """Best wall time of ``run(i)`` over ``repeat`` calls (each writes to a fresh directory)."""
    best, result = float("inf"), None
    for i in range(max(1, repeat)):
        start = time.perf_counter()
        result = run(i)
        best = min(best, time.perf_counter() - start)
    return best, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mbp", type=float, default=4.6, help="genome size for the speed test [4.6]")
    parser.add_argument("--chunk-size", type=int, default=500, help="chunk size [500]")
    parser.add_argument("--scale", type=int, default=10, help="the memory test's large input is this many genomes [10]")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each; the best is reported [3]")
    parser.add_argument("--skip-original", action="store_true", help="only time prepare_file")
    args = parser.parse_args(argv)

    from virnucpro_core.prepare import prepare_file
    from virnucpro_core.testing.original import original_prepare

    bases = int(args.size_mbp * 1e6)
    with tempfile.TemporaryDirectory(prefix="bench_prepare_") as tmp:
        work = Path(tmp)
        genome = work / "genome.fa"
        write_fasta(genome, 1, bases)
        print(f"input: synthetic {bases / 1e6:.2f} Mbp genome, one record: the real H. pylori G27 60 kb fragment "
              f"tiled with a seeded {MUTATION_RATE:.0%} substitution rate per copy; chunk size {args.chunk_size}")

        # Warm up both (imports, lookup tables) on a small input, then take the best of --repeat runs.
        small = work / "warmup.fa"
        write_fasta(small, 1, 50_000)
        prepare_file(small, work / "warm_ours", args.chunk_size)
        original_prepare(small, work / "warm_theirs", args.chunk_size)

        ours_s, ours = best_of(args.repeat, lambda i: prepare_file(genome, work / f"ours{i}", args.chunk_size))
        print(f"prepare_file      {ours_s:8.3f} s  {bases / 1e6 / ours_s:8.2f} Mbp/s  "
              f"({ours.chunks} chunks, {ours.frames} stop-free frames; best of {args.repeat})")
        if not args.skip_original:
            theirs_s, theirs = best_of(args.repeat, lambda i: original_prepare(genome, work / f"theirs{i}", args.chunk_size))
            same = all(filecmp.cmp(a, b, shallow=False) for a, b in zip((ours.chunked, ours.nucleotide, ours.protein), theirs))
            print(f"original_prepare  {theirs_s:8.3f} s  {bases / 1e6 / theirs_s:8.2f} Mbp/s  (best of {args.repeat})")
            print(f"speed-up          {theirs_s / ours_s:8.1f}x   outputs identical: {same}  "
                  "(prepare_file also fsyncs and renames its 4 outputs; the original does neither)")
            if not same:
                print("ERROR: outputs differ from the original algorithm", file=sys.stderr)
                return 1

        big = work / "genomes_x.fa"
        write_fasta(big, args.scale, bases)
        small_run = run_child(genome, work / "mem1", args.chunk_size)
        big_run = run_child(big, work / "memN", args.chunk_size)
        small_mb, big_mb = small_run["maxrss_kb"] / 1024, big_run["maxrss_kb"] / 1024
        print(f"peak RSS, {bases / 1e6:.1f} Mbp ({1} record)        {small_mb:8.1f} MB  "
              f"({bases / 1e6 / small_run['seconds']:.2f} Mbp/s in a fresh process)")
        print(f"peak RSS, {args.scale * bases / 1e6:.1f} Mbp ({args.scale} records)     {big_mb:8.1f} MB  "
              f"({args.scale * bases / 1e6 / big_run['seconds']:.2f} Mbp/s in a fresh process)")
        print(f"difference                                 {big_mb - small_mb:+8.1f} MB  (limit +50 MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
