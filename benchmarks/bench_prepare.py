"""Benchmark ``prepare``: speed against the original algorithm, and memory as the input grows.

    python benchmarks/bench_prepare.py [--size-mbp 4.6] [--chunk-size 500] [--scale 10] [--reads 100000]
                                       [--assembly-mbp 52] [--assembly-records 7000]

1. Speed: ``prepare_file`` and ``original_prepare`` (the original's algorithm re-stated,
   :mod:`virnucpro_core.testing.original`) on the same bacterial-sized genome in this
   process; prints Mbp/s of each and the ratio, and checks the outputs are identical.
2. The same for short reads (``--reads`` reads of 150 bp, one FASTA line each, drawn
   from a genome), where the work per record rather than per base dominates.
3. The same for an assembly: ``--assembly-records`` contigs holding ``--assembly-mbp``
   Mbp, log-normal lengths between 500 bp and 200 kbp (median about 3.7 kbp, as
   metagenome assemblies have), where the work per record and per chunk shows. Then the
   same input through the command line against the original algorithm in a script, each
   a fresh process: start-up (imports), fsync and rename included.
4. Memory: ``prepare_file`` in fresh subprocesses on that genome, on one record
   ``--scale`` times longer (a chromosome) and on ``--scale`` genome records (a
   metagenome) holding the same bases; prints each peak RSS (the child's ``VmHWM``;
   its ``ru_maxrss`` would include this process's peak, see ``_CHILD``) and the differences to the genome's, which streaming keeps flat (limit +50 MB;
   the exit status is 1 beyond it).

No genome of that size ships with the project, so one is built deterministically: the
real 60 kb Helicobacter pylori G27 fragment in ``tests/data/genomes`` is tiled, each copy
with a seeded ~1% substitution rate, so codon usage and stop-codon spacing stay those of
a real bacterial chromosome.
"""

from __future__ import annotations

import argparse
import filecmp
import functools
import gzip
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SEED_GENOME = ROOT / "tests" / "data" / "genomes" / "hpylori_G27_first60kb.fa.gz"
MUTATION_RATE = 0.01


@functools.lru_cache(maxsize=1)
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


def write_fasta(path: Path, records: int, bases: int, *, joined: bool = False) -> None:
    """``records`` genomes of ``bases`` each (seeds 0, 1, ...), 60 bases a line.

    ``joined`` writes the same bases as one record instead (a chromosome ``records``
    times longer), generated genome by genome so this process stays small too.
    """
    with open(path, "wb") as out:
        if joined:
            out.write(f">chromosome1 synthetic, {records} H. pylori-like genomes end to end, {records * bases} bp\n".encode())
        rest = b""
        for index in range(records):
            seq = synthetic_genome(bases, seed=index)
            if not joined:
                out.write(f">genome{index + 1} synthetic H. pylori-like chromosome, {bases} bp\n".encode())
            else:
                seq, rest = rest + seq, b""
            end = len(seq) - len(seq) % 60 if joined and index + 1 < records else len(seq)
            for start in range(0, end, 60):
                out.write(seq[start : start + 60] + b"\n")
            if joined:
                rest = seq[end:]


def assembly_lengths(total: int, records: int, seed: int, low: int = 500, high: int = 200_000) -> list[int]:
    """``records`` contig lengths between ``low`` and ``high`` summing to ``total``: log-normal, as assemblies are.

    Drawn with sigma 1.2 (a few long contigs hold much of the sequence, most are a few kb),
    clipped to [low, high] and rescaled until the sum is ``total``.
    """
    rng = np.random.default_rng(seed)
    lengths = rng.lognormal(mean=np.log(total / records) - 0.72, sigma=1.2, size=records)
    for _ in range(50):
        lengths = np.clip(lengths * (total / lengths.sum()), low, high)
    lengths = np.round(lengths).astype(np.int64)
    lengths[np.argmax(lengths < high)] += total - int(lengths.sum())  # the rounding remainder, on one contig
    return lengths.tolist()


def write_assembly(path: Path, total: int, records: int, seed: int = 11) -> list[int]:
    """An assembly-like FASTA: ``records`` contigs (:func:`assembly_lengths`) of the synthetic genome, 60 bases a line."""
    lengths = assembly_lengths(total, records, seed)
    with open(path, "wb") as out:
        for index, length in enumerate(lengths, start=1):
            seq = synthetic_genome(length, seed=seed * 100_003 + index)
            out.write(b">contig_%d length=%d cov=%.1f\n" % (index, length, 5 + index % 37))
            out.write(b"\n".join(seq[i : i + 60] for i in range(0, length, 60)) + b"\n")
    return lengths


def write_reads(path: Path, count: int, length: int, seed: int) -> None:
    """``count`` reads of ``length`` bp from a seeded synthetic genome, one FASTA line each (as ``seqtk seq -a`` writes)."""
    genome = synthetic_genome(4_600_000, seed=seed + 1000)
    starts = np.random.default_rng(seed).integers(0, len(genome) - length, count)
    with open(path, "wb") as out:
        for index, start in enumerate(starts.tolist(), start=1):
            out.write(b">read%d/1\n%s\n" % (index, genome[start : start + length]))


# The child's own peak: VmHWM, the high-water mark of its address space. ``ru_maxrss`` is
# no good here: Linux carries the parent's peak over fork and exec into the child's
# ru_maxrss, so every child would report at least this (large) benchmark process's peak.
_CHILD = """
import json, resource, sys, time
from pathlib import Path
from virnucpro_core.prepare import prepare_file
t = time.perf_counter()
r = prepare_file(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]))
seconds = time.perf_counter() - t
try:
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
except (OSError, StopIteration):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "bases": r.bases, "chunks": r.chunks, "frames": r.frames, "maxrss_kb": peak}))
"""


_ORIGINAL_CLI = """
import sys
from pathlib import Path
from virnucpro_core.testing.original import original_prepare
original_prepare(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]))
"""


def compare_cli(label: str, path: Path, work: Path, args) -> bool:
    """``virnucpro prepare`` and the original algorithm, each as a fresh process, interleaved; best of ``--repeat``."""
    ours_s = theirs_s = float("inf")
    for i in range(max(1, args.repeat)):
        out = work / f"{label}_cli_ours{i}"
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "virnucpro_core", "prepare", str(path), "-o", str(out), "--chunk-size",
                        str(args.chunk_size), "-q"], check=True, capture_output=True)
        ours_s = min(ours_s, time.perf_counter() - start)
        if args.skip_original:
            continue
        theirs = work / f"{label}_cli_theirs{i}"
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", _ORIGINAL_CLI, str(path), str(theirs), str(args.chunk_size)], check=True)
        theirs_s = min(theirs_s, time.perf_counter() - start)
    print(f"{label}: virnucpro prepare {ours_s:8.3f} s  (a fresh process: start-up, fsync and rename included; best of {args.repeat})")
    if args.skip_original:
        return True
    names = [f"{path.stem}_chunked{args.chunk_size}.fa", f"{path.stem}_identified_nucleotide.fa", f"{path.stem}_identified_protein.faa"]
    same = all(filecmp.cmp(out / n, theirs / n, shallow=False) for n in names)
    print(f"{label}: original script   {theirs_s:8.3f} s  (a fresh process; best of {args.repeat})")
    print(f"{label}: speed-up          {theirs_s / ours_s:8.1f}x   outputs identical: {same}")
    if not same:
        print(f"ERROR: {label}: command-line outputs differ from the original algorithm", file=sys.stderr)
    return same


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


def compare(label: str, path: Path, work: Path, args, prepare_file, original_prepare, bases: int) -> bool:
    """Time both tools on ``path``; print Mbp/s and the ratio; True when the outputs are identical."""
    ours_s, ours = best_of(args.repeat, lambda i: prepare_file(path, work / f"{label}_ours{i}", args.chunk_size))
    print(f"{label}: prepare_file      {ours_s:8.3f} s  {bases / 1e6 / ours_s:8.2f} Mbp/s  "
          f"({ours.sequences} record{'s' if ours.sequences != 1 else ''}, {ours.chunks} chunks, {ours.frames} stop-free frames; best of {args.repeat})")
    if args.skip_original:
        return True
    theirs_s, theirs = best_of(args.repeat, lambda i: original_prepare(path, work / f"{label}_theirs{i}", args.chunk_size))
    same = all(filecmp.cmp(a, b, shallow=False) for a, b in zip((ours.chunked, ours.nucleotide, ours.protein), theirs))
    print(f"{label}: original_prepare  {theirs_s:8.3f} s  {bases / 1e6 / theirs_s:8.2f} Mbp/s  (best of {args.repeat})")
    print(f"{label}: speed-up          {theirs_s / ours_s:8.1f}x   outputs identical: {same}  "
          "(prepare_file also fsyncs and renames its 4 outputs; the original does neither)")
    if not same:
        print(f"ERROR: {label}: outputs differ from the original algorithm", file=sys.stderr)
    return same


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mbp", type=float, default=4.6, help="genome size for the speed test [4.6]")
    parser.add_argument("--chunk-size", type=int, default=500, help="chunk size [500]")
    parser.add_argument("--scale", type=int, default=10, help="the memory test's large inputs hold this many genomes [10]")
    parser.add_argument("--reads", type=int, default=100_000, help="reads in the short-read test (150 bp each; 0 skips it) [100000]")
    parser.add_argument("--assembly-mbp", type=float, default=52.0, help="bases of the assembly test, in Mbp (0 skips it) [52]")
    parser.add_argument("--assembly-records", type=int, default=7000, help="contigs in the assembly test [7000]")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each; the best is reported [3]")
    parser.add_argument("--skip-original", action="store_true", help="only time prepare_file")
    args = parser.parse_args(argv)

    from virnucpro_core.prepare import prepare_file
    from virnucpro_core.testing.original import original_prepare

    bases = int(args.size_mbp * 1e6)
    ok = True
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

        ok &= compare("genome", genome, work, args, prepare_file, original_prepare, bases)
        if args.reads:
            reads = work / "reads.fa"
            write_reads(reads, args.reads, 150, seed=7)
            print(f"input: {args.reads} reads of 150 bp ({args.reads * 150 / 1e6:.1f} Mbp), one FASTA line each, "
                  "drawn from another synthetic genome")
            ok &= compare("reads ", reads, work, args, prepare_file, original_prepare, args.reads * 150)

        if args.assembly_mbp:
            assembly = work / "assembly.fa"
            total = int(args.assembly_mbp * 1e6)
            lengths = write_assembly(assembly, total, args.assembly_records)
            print(f"input: synthetic assembly, {len(lengths)} contigs, {total / 1e6:.1f} Mbp, log-normal lengths "
                  f"{min(lengths)}-{max(lengths)} bp (median {int(np.median(lengths))}), 60 bases a line")
            ok &= compare("assembly", assembly, work, args, prepare_file, original_prepare, total)
            ok &= compare_cli("assembly", assembly, work, args)
            for stale in work.glob("assembly_*"):  # keep the temporary directory small for the memory test
                shutil.rmtree(stale)

        chromosome = work / "chromosome_x.fa"
        genomes = work / "genomes_x.fa"
        write_fasta(chromosome, args.scale, bases, joined=True)
        write_fasta(genomes, args.scale, bases)
        base_run = run_child(genome, work / "mem1", args.chunk_size)
        base_mb = base_run["maxrss_kb"] / 1024
        big = args.scale * bases / 1e6
        print(f"peak RSS, {bases / 1e6:5.1f} Mbp in 1 record            {base_mb:8.1f} MB  "
              f"({bases / 1e6 / base_run['seconds']:.2f} Mbp/s in a fresh process)")
        for path, what in ((chromosome, "1 record"), (genomes, f"{args.scale} records")):
            run = run_child(path, work / f"mem_{path.stem}", args.chunk_size)
            mb = run["maxrss_kb"] / 1024
            print(f"peak RSS, {big:5.1f} Mbp in {what:<12}        {mb:8.1f} MB  "
                  f"({big / run['seconds']:.2f} Mbp/s in a fresh process)  difference {mb - base_mb:+6.1f} MB  (limit +50 MB)")
            if mb - base_mb > 50:
                print(f"ERROR: peak RSS grew by more than 50 MB on {path.name}", file=sys.stderr)
                ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
