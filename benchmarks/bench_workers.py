"""Benchmark the engine on CPU: N worker processes x T threads against 1 process x N*T threads.

Embeds the same proteins (stop-free frames of phage lambda and the H. pylori fragment in
tests/data, repeated) with ``esm2=v1`` on a randomly initialised ESM-2 of the size asked
for, through :func:`virnucpro_core.embedding.embed_fasta` exactly as ``virnucpro embed``
runs it, alternating the two set-ups ``--repeats`` times so that load from other processes
hits both alike. Prints sequences/s of each run, the median ratio, and each worker's
start-up time (spawn + imports + model load, until it asks for its first part).

    python benchmarks/bench_workers.py                          # 2 workers x 1 thread vs 1 process x 2 threads
    python benchmarks/bench_workers.py --workers 4 --threads 2 --sequences 4000 --layers 12 --dim 480 --heads 20
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="threads per worker; the single process gets workers x threads")
    parser.add_argument("--sequences", type=int, default=600)
    parser.add_argument("--part", type=int, default=50, help="sequences per checkpoint part")
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--dim", type=int, default=320)
    parser.add_argument("--heads", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import numpy as np
    import torch

    from bench_esm2 import benchmark_proteins
    from virnucpro_core.embedding import embed_fasta
    from virnucpro_core.engine.config import EngineConfig
    from virnucpro_core.formats.hdf5 import Hdf5Reader
    from virnucpro_core.registry import get_registry
    from virnucpro_core.testing import write_tiny_esm2

    registry = get_registry()
    backend = registry.get_backend("esm2", "v1")
    fmt = registry.get_format("hdf5")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = write_tiny_esm2(tmp / "model", name=f"esm2_t{args.layers}_bench", num_layers=args.layers,
                                embed_dim=args.dim, attention_heads=args.heads)
        seqs, _ = benchmark_proteins(args.sequences)
        fasta = tmp / "proteins.faa"
        fasta.write_text("".join(f">p{i}\n{s}\n" for i, s in enumerate(seqs)))
        residues = sum(map(len, seqs))
        from virnucpro_core.backends import EmbedderOptions

        options = EmbedderOptions(model=str(model), device="cpu")
        setups = {
            f"{args.workers} workers x {args.threads} thread(s)": EngineConfig(devices=("cpu",) * args.workers, threads=args.threads),
            f"1 process x {args.workers * args.threads} threads": EngineConfig(devices=("cpu",), threads=args.workers * args.threads),
        }
        print(f"{len(seqs)} proteins ({residues} residues), parts of {args.part}, ESM-2 {args.layers} layers x {args.dim}, "
              f"torch {torch.__version__}, {args.repeats} alternating repeats")
        rates: dict[str, list[float]] = {name: [] for name in setups}
        startup: list[float] = []
        outputs: dict[str, np.ndarray] = {}
        for repeat in range(args.repeats):
            for name, engine in setups.items():
                out = tmp / f"out-{repeat}-{len(rates[name])}-{engine.devices.__len__()}.h5"
                if len(engine.devices) == 1:
                    torch.set_num_threads(engine.threads)
                start = time.perf_counter()
                result = embed_fasta(fasta, out, backend, options, fmt=fmt, parts_dir=tmp / f"{out.name}.parts",
                                     checkpoint_every=args.part, engine=engine)
                seconds = time.perf_counter() - start
                rates[name].append(result.sequences / seconds)
                startup += [w.startup_seconds for w in result.workers if w.startup_seconds]
                print(f"  run {repeat + 1}: {name:<28} {seconds:7.2f} s  {result.sequences / seconds:8.1f} seq/s "
                      f"{residues / seconds:9.0f} residues/s" + (
                          f"  (per worker: {', '.join(f'{w.parts} parts, ready after {w.startup_seconds:.2f} s' for w in result.workers)})"
                          if len(result.workers) > 1 else ""))
                with Hdf5Reader(out) as reader:
                    outputs[name] = np.concatenate([b for _, b in reader.iter_batches()])
        names = list(setups)
        medians = {name: statistics.median(r) for name, r in rates.items()}
        print(f"median: {names[0]} {medians[names[0]]:.1f} seq/s, {names[1]} {medians[names[1]]:.1f} seq/s, "
              f"ratio {medians[names[0]] / medians[names[1]]:.2f}x")
        print(f"worker start-up (spawn, imports, model load): median {statistics.median(startup):.2f} s, "
              f"min {min(startup):.2f} s, max {max(startup):.2f} s over {len(startup)} workers")
        delta = float(np.abs(outputs[names[0]] - outputs[names[1]]).max())
        print(f"max |difference| between the two set-ups' embeddings: {delta:.3g} (thread counts differ, so bits may)")


if __name__ == "__main__":
    main()
