"""One-GPU check of esm2=v2 for the device tool: equivalence, labels, throughput; OUT/esm2.json.

    python benchmarks/gpu_check_esm2.py "$OUT"            # on the GPU machine (~6 minutes on one H200)
    python benchmarks/gpu_check_esm2.py /tmp/out --smoke  # anywhere: tiny shape on the CPU (tested in CI)

Every step goes through :class:`gpu_report.CheckReport`: an implementation that raises is
recorded with its error and the next step runs, and ``esm2.json`` is rewritten after
each step, so a run cut short keeps what finished. Steps:

1. ``reference``: a 3B-shaped random ESM-2 (36 layers, 2560 dims, 40 heads; weights built
   on the device without fair-esm) embedded by esm2=v2 with exact SDPA in fp32 (TF32 off).
2. ``v2 fp32 vs fair-esm fp32``: fair-esm's own forward (esm2=v1) with the fp32 bounds;
   skipped as a missing dependency without fair-esm.
3. ``v2 <attention> <fp16|bf16> vs fp32``, for every attention implementation: per protein
   cosine >= 0.999 and norm ratio within 0.5%. One that cannot run is skipped with its
   reason: on a GPU that is a missing dependency (flash-attn), on a CPU it is not.
4. ``labels``: label agreement with fp32 through a fixed random MLP of the published
   architecture (Linear(768+d, 512), BatchNorm1d, ReLU, Linear(512, 2)) on z-scored
   protein features and fixed random nucleotide features.
5. ``bench 650M``, ``bench 3B`` (``bench tiny`` with --smoke): ``bench_esm2.run_benchmark``;
   a configuration that raises is reported there and the others are timed.

Exit status 0 when every step passed (no failure, error or missing dependency), else 1.
The GPU image has torch, h5py, pluggy and click but not fair-esm, Biopython or flash-attn:
``benchmarks/gpu_check.sh`` installs the wheels found in ``.whl/`` (README, "GPU check").
The repository's packages are put on ``sys.path`` directly when they are not installed.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "plugins" / "esm2_v1", ROOT / "plugins" / "esm2_v2", ROOT / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

REPORT = "esm2.json"
FAIR_ESM_MISSING = "fair-esm is not installed: put its wheel in .whl/ (README, GPU check)"


def check(out: Path, device: str, smoke: bool, sequences: int, bench_sequences: int | None) -> int:
    import torch

    from gpu_report import CheckReport

    shape = "tiny" if smoke else "3B"
    gpu = torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu"
    report = CheckReport(out / REPORT, {"check": "esm2=v2", "shape": shape, "device": device, "gpu": gpu,
                                        "torch": torch.__version__, "smoke": smoke, "finished": False,
                                        "bounds": {"fp32": "max|d| <= 1e-4 (1 + max|x|), norm ratio within 1e-4",
                                                   "fp16/bf16": "cosine >= 0.999, norm ratio within 0.5%"}})
    report.write()
    try:
        equivalence_and_labels(report, device, shape, sequences)
    except Exception as exc:  # outside its steps (the proteins, the random model): the benchmarks still run
        report.error("equivalence setup", exc)
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    benchmarks(report, device, smoke, bench_sequences)
    return report.finish()


def equivalence_and_labels(report, device: str, shape: str, sequences: int) -> None:
    import numpy as np
    import torch

    from bench_esm2 import benchmark_proteins, fair_esm_model
    from virnucpro_core.backends import torch_dtype
    from virnucpro_esm2_v2 import attention as attn
    from virnucpro_esm2_v2.embedder import Esm2V2Embedder
    from virnucpro_esm2_v2.equivalence import RowComparison
    from virnucpro_esm2_v2.synthetic import SHAPES, random_checkpoint_data

    torch.backends.cuda.matmul.allow_tf32 = False
    layers, dim, heads = SHAPES[shape]
    seqs, source = benchmark_proteins(sequences)
    seqs += ["M", "W" * 1100]  # a single residue, and longer than max_length
    report.header.update(proteins=len(seqs), protein_source=source)
    data = random_checkpoint_data(layers, dim, heads, seed=1, device=device)
    rows: dict[str, np.ndarray] = {}

    def embed(precision: str, attention: str) -> np.ndarray:
        embedder = Esm2V2Embedder.from_checkpoint_data(data, model_id=shape, device=device, precision=precision, attention=attention)
        try:
            return embedder.embed(seqs)
        finally:
            embedder.close()

    def reference() -> dict:
        rows["fp32"] = embed("fp32", attn.SDPA_BUCKETED)
        return {"implementation": f"v2 {attn.SDPA_BUCKETED} fp32"}

    report.run("reference", reference)

    def against_fair_esm() -> dict:
        from virnucpro_esm2_v1.embedder import Esm2V1Embedder

        model, alphabet = fair_esm_model(data, device, torch.float32)
        stock = Esm2V1Embedder(model, alphabet, model_id=shape).embed(seqs)
        del model
        cmp = RowComparison.of(rows["fp32"], stock)
        return {**cmp.summary(), "failures": len(cmp.fp32_failures()), "passed": not cmp.fp32_failures()}

    name = "v2 fp32 vs fair-esm fp32"
    if "fp32" not in rows:
        report.skip(name, "no fp32 reference (its step did not finish)", missing_dependency=False)
    elif not importlib.util.find_spec("esm"):
        report.skip(name, FAIR_ESM_MISSING, missing_dependency=True)
    else:
        report.run(name, against_fair_esm)

    device_type = "cuda" if device.startswith("cuda") else "cpu"
    for precision in ("fp16", "bf16"):
        for implementation in attn.IMPLEMENTATIONS:
            name = f"v2 {implementation} {precision} vs fp32"
            reason = attn.unavailable_reason(implementation, device_type, torch_dtype(precision))
            if reason:  # on a GPU only a package can be missing (fp16/bf16 are what every kernel takes)
                report.skip(name, reason, missing_dependency=device_type == "cuda")
                continue
            if "fp32" not in rows:
                report.skip(name, "no fp32 reference (its step did not finish)", missing_dependency=False)
                continue

            def compare(precision=precision, implementation=implementation) -> dict:
                got = embed(precision, implementation)
                cmp = RowComparison.of(got, rows["fp32"])
                bad = cmp.reduced_failures()
                rows.setdefault(precision, got)
                return {**cmp.summary(), "failures": len(bad), "first_failures": bad[:10], "passed": not bad}

            report.run(name, compare)
    del data

    def labels() -> dict:
        reference_rows = rows["fp32"]
        gen = torch.Generator().manual_seed(7)
        mean, std = reference_rows.mean(0), reference_rows.std(0) + 1e-6
        nucleotide = torch.randn(len(seqs), 768, generator=gen)
        mlp = torch.nn.Sequential(torch.nn.Linear(768 + dim, 512), torch.nn.BatchNorm1d(512), torch.nn.ReLU(), torch.nn.Linear(512, 2))
        with torch.no_grad():
            for p in mlp.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * (1.0 / np.sqrt(p.shape[-1]) if p.dim() > 1 else 0.1))
        mlp.eval()

        def predict(protein_rows):
            features = torch.cat([nucleotide, torch.from_numpy((protein_rows - mean) / std).float()], dim=1)
            with torch.no_grad():
                return mlp(features).argmax(1).numpy()

        base = predict(reference_rows)
        return {"fp32_virus_fraction": float(base.mean()),
                "agreement_with_fp32": {p: float((predict(r) == base).mean()) for p, r in rows.items() if p != "fp32"},
                "mlp": "Linear(768+d,512) BatchNorm1d ReLU Linear(512,2), random seed 7; z-scored protein features"}

    if "fp32" in rows and len(rows) > 1:
        report.run("labels", labels)
    else:
        report.skip("labels", "no fp32 reference or no reduced-precision rows to compare", missing_dependency=False)


def benchmarks(report, device: str, smoke: bool, sequences: int | None) -> None:
    from bench_esm2 import run_benchmark

    plan = [("tiny", sequences or 24, 1)] if smoke else [("650M", sequences or 2000, 2), ("3B", sequences or 1000, 2)]
    for shape, count, repeat in plan:
        def bench(shape=shape, count=count, repeat=repeat) -> dict:
            result = run_benchmark(shape, device, sequences=count, repeat=repeat, precisions=("fp32", "fp16", "bf16"))
            return {**result, "passed": not result["failed"]}

        report.run(f"bench {shape}", bench)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="directory for esm2.json ($OUT on the device machine)")
    parser.add_argument("--device", default=None, help="[cuda:0, or cpu with --smoke]")
    parser.add_argument("--smoke", action="store_true", help="tiny shape, few proteins, CPU: checks the script itself")
    parser.add_argument("--sequences", type=int, default=None, help="proteins of the equivalence steps [600; 24 with --smoke]")
    parser.add_argument("--bench-sequences", type=int, default=None, help="proteins of each benchmark [2000 and 1000; 24 with --smoke]")
    args = parser.parse_args()
    import torch

    device = args.device or ("cpu" if args.smoke or not torch.cuda.is_available() else "cuda:0")
    if not args.smoke and not device.startswith("cuda"):
        parser.error("no CUDA device: run with --smoke for the CPU check of the script")
    started = time.perf_counter()
    status = check(args.out, device, args.smoke, args.sequences or (24 if args.smoke else 600), args.bench_sequences)
    print(f"esm2 GPU check: {time.perf_counter() - started:.0f} s", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
