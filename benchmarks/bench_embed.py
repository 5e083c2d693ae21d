"""Benchmark the embedding backends on CPU or GPU: tokens/s and sequences/s.

Compares, in one process, on the same randomly initialised model and the same proteins:

- ``plain fair-esm``: the original VirNucPro loop (``FastaBatchedDataset`` →
  ``get_batch_indices(2048, extra_toks_per_seq=1)`` → ``model(toks, repr_layers=[L])`` →
  mean of residues), the baseline users have today;
- ``esm2=v1``: this project's v1 backend (the same computation, rows put back in input order);
- any other installed ``esm2`` version that can run here (``--backends esm2=v2``).

Proteins are the stop-free frames of real genomes (phage lambda and the H. pylori fragment
shipped in tests/data), i.e. the ~100–166-residue sequences the published pipeline embeds.
The model is a randomly initialised fair-esm ESM-2 of the size asked for (``--layers``,
``--dim``, ``--heads``; the defaults are a small model that runs on a laptop CPU; ESM-2 3B is
``--layers 36 --dim 2560 --heads 40``). Prints tokens/s, sequences/s, peak memory and the
ratio of each backend to the plain loop, and checks that every backend gives the plain
loop's numbers (max |Δ|).

    python benchmarks/bench_embed.py                      # CPU, small model
    python benchmarks/bench_embed.py --device cuda:0 --layers 36 --dim 2560 --heads 40 --precision bf16
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
GENOMES = ROOT / "tests" / "data" / "genomes"


def proteins(limit: int) -> list[str]:
    from virnucpro_core.prepare import prepare_file

    out: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("lambda_NC_001416.fa.gz", "hpylori_G27_first60kb.fa.gz"):
            result = prepare_file(GENOMES / name, Path(tmp), 500)
            out += [line.strip() for line in open(result.protein) if not line.startswith(">")]
    return (out * (limit // max(1, len(out)) + 1))[:limit]


def plain_fair_esm(model, alphabet, seqs: list[str], device: str, toks_per_batch: int) -> np.ndarray:
    """The original extract_esm loop, returning rows in input order."""
    import esm
    import torch

    dataset = esm.FastaBatchedDataset([str(i) for i in range(len(seqs))], seqs)
    batches = dataset.get_batch_indices(toks_per_batch, extra_toks_per_seq=1)
    loader = torch.utils.data.DataLoader(dataset, collate_fn=alphabet.get_batch_converter(), batch_sampler=batches)
    out = np.zeros((len(seqs), model.embed_dim), dtype=np.float32)
    layer = model.num_layers
    with torch.no_grad():
        for labels, strs, toks in loader:
            reps = model(toks.to(device), repr_layers=[layer])["representations"][layer]
            for i, label in enumerate(labels):
                n = min(1024, len(strs[i]))
                out[int(label)] = reps[i, 1 : n + 1].float().mean(0).cpu().numpy()
    return out


def peak_mb(device: str) -> float:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", type=int, default=2000)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--dim", type=int, default=320)
    parser.add_argument("--heads", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--batch-tokens", type=int, default=2048)
    parser.add_argument("--backends", nargs="*", default=["esm2=v1"])
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()

    import torch

    from virnucpro_core.backends import EmbedderOptions
    from virnucpro_core.errors import BackendError
    from virnucpro_core.registry import load_registry
    from virnucpro_core.testing import write_tiny_esm2

    seqs = proteins(args.sequences)
    tokens = sum(len(s) + 2 for s in seqs)
    gflop_per_token = 2 * 12 * args.layers * args.dim**2 / 1e9  # weights only (attention scores excluded)
    print(f"{len(seqs)} proteins, {tokens} tokens (mean {tokens / len(seqs):.0f}); ESM-2 random init "
          f"{args.layers} layers x {args.dim} dims, {args.heads} heads (~{gflop_per_token:.3f} GFLOP/token); "
          f"device {args.device}, {args.precision}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    registry = load_registry()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = write_tiny_esm2(Path(tmp), name=f"esm2_t{args.layers}_bench", num_layers=args.layers,
                               embed_dim=args.dim, attention_heads=args.heads)
        from virnucpro_esm2_v1.loading import load_esm2
        from virnucpro_esm2_v1.embedder import torch_dtype

        model, alphabet = load_esm2(str(ckpt), device=args.device, dtype=torch_dtype(args.precision))
        results: dict[str, tuple[float, np.ndarray]] = {}
        plain_fair_esm(model, alphabet, seqs[:50], args.device, args.batch_tokens)  # warm-up
        best = float("inf")
        for _ in range(args.repeat):
            start = time.perf_counter()
            ref = plain_fair_esm(model, alphabet, seqs, args.device, args.batch_tokens)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
        results["plain fair-esm"] = (best, ref)
        print(f"{'plain fair-esm':<16} {tokens / best:>12,.0f} tok/s {len(seqs) / best:>10,.1f} seq/s  "
              f"peak {peak_mb(args.device):,.0f} MB")
        del model
        for key in args.backends:
            family, version = key.split("=")
            try:
                backend = registry.get_backend(family, version)
            except BackendError as exc:
                print(f"{key:<16} skipped: {exc}")
                continue
            reason = backend.unavailable_reason()
            if reason:
                print(f"{key:<16} skipped: {reason}")
                continue
            embedder = backend.factory(EmbedderOptions(model=str(ckpt), device=args.device, precision=args.precision,
                                                       batch_tokens=args.batch_tokens))
            embedder.embed(seqs[:50])
            best = float("inf")
            for _ in range(args.repeat):
                start = time.perf_counter()
                out = embedder.embed(seqs)
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                best = min(best, time.perf_counter() - start)
            embedder.close()
            delta = float(np.abs(out - ref).max())
            plain = results["plain fair-esm"][0]
            print(f"{key:<16} {tokens / best:>12,.0f} tok/s {len(seqs) / best:>10,.1f} seq/s  "
                  f"peak {peak_mb(args.device):,.0f} MB  {plain / best:.2f}x plain  max|d| vs plain {delta:.2e}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
