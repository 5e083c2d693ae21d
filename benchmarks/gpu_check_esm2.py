"""One-GPU check of esm2=v2 for the device tool: equivalence, labels, throughput; JSON under OUT.

    python benchmarks/gpu_check_esm2.py "$OUT"            # on the GPU machine (~6 minutes on one H200)
    python benchmarks/gpu_check_esm2.py /tmp/out --smoke  # anywhere: tiny shape on the CPU (tested in CI)

Steps, each writing its JSON as soon as it is done (so a run cut short still reports):

1. ``equivalence.json``: a 3B-shaped random ESM-2 (36 layers, 2560 dims, 40 heads; weights
   built on the device without fair-esm); the fp32 reference is esm2=v2 with exact SDPA
   (TF32 off); every GPU attention implementation x fp16/bf16 is compared per protein:
   cosine >= 0.999 and norm ratio within 0.5%; with fair-esm present, v2 fp32 is also
   checked against fair-esm's own forward (esm2=v1) with the fp32 bounds.
2. ``labels.json``: label agreement with fp32 through a fixed random MLP of the published
   architecture (Linear(768+d, 512), BatchNorm1d, ReLU, Linear(512, 2)) on z-scored
   protein features and fixed random nucleotide features.
3. ``bench_650M.json``, ``bench_3B.json``: ``bench_esm2.run_benchmark`` at those shapes.

The GPU image has torch, h5py, pluggy and click but not fair-esm, Biopython or flash-attn:
v2 needs none of them (random proteins replace the prepared ones without Biopython).
To include the original loop and v1, build a wheel here and carry it (ignored paths):
``pip download fair-esm==2.0.0 --no-deps -d wheels/`` and start the command with
``pip install --no-deps wheels/fair_esm-2.0.0-py3-none-any.whl &&``. The repository's
packages are put on ``sys.path`` directly when they are not installed, and the entry
points are not needed: the script calls the backends' classes.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "plugins" / "esm2_v1", ROOT / "plugins" / "esm2_v2", ROOT / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


def write(out: Path, name: str, payload: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / name).write_text(json.dumps(payload, indent=2, default=float))
    print(f"wrote {out / name}", flush=True)


def equivalence_and_labels(out: Path, device: str, shape: str, sequences: int) -> None:
    import numpy as np
    import torch

    from bench_esm2 import benchmark_proteins, fair_esm_model
    from virnucpro_esm2_v1.embedder import Esm2V1Embedder
    from virnucpro_esm2_v2 import attention as attn
    from virnucpro_esm2_v2.embedder import Esm2V2Embedder
    from virnucpro_esm2_v2.equivalence import RowComparison
    from virnucpro_esm2_v2.synthetic import SHAPES, random_checkpoint_data

    torch.backends.cuda.matmul.allow_tf32 = False
    layers, dim, heads = SHAPES[shape]
    seqs, source = benchmark_proteins(sequences)
    seqs += ["M", "W" * 1100]  # a single residue, and longer than max_length
    start = time.perf_counter()
    data = random_checkpoint_data(layers, dim, heads, seed=1, device=device)
    ref_embedder = Esm2V2Embedder.from_checkpoint_data(data, model_id=shape, device=device, precision="fp32", attention="sdpa-bucketed")
    reference = ref_embedder.embed(seqs)
    ref_embedder.close()
    report = {"shape": shape, "device": device, "gpu": torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu",
              "proteins": len(seqs), "protein_source": source, "reference": "v2 sdpa-bucketed fp32", "checks": [], "passed": True}
    if importlib.util.find_spec("esm"):
        model, alphabet = fair_esm_model(data, device, torch.float32)
        stock = Esm2V1Embedder(model, alphabet, model_id=shape).embed(seqs)
        del model
        cmp = RowComparison.of(reference, stock)
        report["checks"].append({"name": "v2 fp32 vs fair-esm fp32", **cmp.summary(), "failures": len(cmp.fp32_failures()),
                                 "bounds": "max|d| <= 1e-4 (1 + max|x|), norm ratio within 1e-4"})
        report["passed"] &= not cmp.fp32_failures()
    else:
        report["fair_esm"] = "not installed: v2 fp32 vs fair-esm skipped (carry the wheel, see the docstring)"
    rows = {"fp32": reference}
    device_type = "cuda" if device.startswith("cuda") else "cpu"
    for precision, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
        for name in attn.available(device_type, dtype):
            t = time.perf_counter()
            embedder = Esm2V2Embedder.from_checkpoint_data(data, model_id=shape, device=device, precision=precision, attention=name)
            got = embedder.embed(seqs)
            embedder.close()
            cmp = RowComparison.of(got, reference)
            bad = cmp.reduced_failures()
            report["checks"].append({"name": f"v2 {name} {precision} vs fp32", **cmp.summary(), "failures": len(bad),
                                     "first_failures": bad[:10], "seconds": time.perf_counter() - t,
                                     "bounds": "cosine >= 0.999, norm ratio within 0.5%"})
            report["passed"] &= not bad
            rows.setdefault(precision, got)
    report["seconds"] = time.perf_counter() - start
    write(out, "equivalence.json", report)
    del data
    if device.startswith("cuda"):
        torch.cuda.empty_cache()

    # labels through a fixed random MLP of the published architecture
    gen = torch.Generator().manual_seed(7)
    mean, std = reference.mean(0), reference.std(0) + 1e-6
    nucleotide = torch.randn(len(seqs), 768, generator=gen)
    mlp = torch.nn.Sequential(torch.nn.Linear(768 + dim, 512), torch.nn.BatchNorm1d(512), torch.nn.ReLU(), torch.nn.Linear(512, 2))
    with torch.no_grad():
        for p in mlp.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (1.0 / np.sqrt(p.shape[-1]) if p.dim() > 1 else 0.1))
    mlp.eval()

    def labels(protein_rows):
        features = torch.cat([nucleotide, torch.from_numpy((protein_rows - mean) / std).float()], dim=1)
        with torch.no_grad():
            return mlp(features).argmax(1).numpy()

    base = labels(reference)
    agreement = {p: float((labels(r) == base).mean()) for p, r in rows.items() if p != "fp32"}
    write(out, "labels.json", {"proteins": len(seqs), "fp32_virus_fraction": float(base.mean()), "agreement_with_fp32": agreement,
                               "mlp": "Linear(768+d,512) BatchNorm1d ReLU Linear(512,2), random seed 7; z-scored protein features"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="directory for the JSON files ($OUT on the device machine)")
    parser.add_argument("--device", default=None, help="[cuda:0, or cpu with --smoke]")
    parser.add_argument("--smoke", action="store_true", help="tiny shape, few proteins, CPU: checks the script itself")
    parser.add_argument("--sequences", type=int, default=None)
    args = parser.parse_args()
    import torch

    from bench_esm2 import run_benchmark

    device = args.device or ("cpu" if args.smoke or not torch.cuda.is_available() else "cuda:0")
    if not args.smoke and not device.startswith("cuda"):
        parser.error("no CUDA device: run with --smoke for the CPU check of the script")
    started = time.perf_counter()
    shape = "tiny" if args.smoke else "3B"
    equivalence_and_labels(args.out, device, shape, args.sequences or (40 if args.smoke else 600))
    plan = [("tiny", 60, 1)] if args.smoke else [("650M", args.sequences or 2000, 2), ("3B", args.sequences or 1000, 2)]
    for bench_shape, count, repeat in plan:
        report = run_benchmark(bench_shape, device, sequences=count, repeat=repeat, precisions=("fp32", "fp16", "bf16"))
        write(args.out, f"bench_{bench_shape}.json", report)
    write(args.out, "summary.json", {"seconds": time.perf_counter() - started, "device": device, "smoke": args.smoke})


if __name__ == "__main__":
    main()
