"""Benchmark dnabert=v1 against dnabert=v2 on the same model and nucleotides; and the GPU check.

Benchmark (default): both backends embed the same DNA in one process, in interleaved
rounds (v1, v2, v2, v1, ...) so that machine noise hits both alike; the best round of
each is reported as tokens/s and sequences/s, with the peak memory of its rounds (GPU:
``max_memory_allocated``; CPU: the peak resident-set growth over the process's size
before the round, sampled every 2 ms) and max |v1 - v2|.

- Nucleotides: the stop-free frames' spans that the real pipeline embeds, from phage
  lambda and the H. pylori fragment in tests/data at 500 bp chunks (``--sequences``).
- Model: ``virnucpro_core.testing.write_tiny_dnabert`` with random weights in the
  real DNABERT-S layout: ``--shape tiny`` (32 hidden, 2 layers, 4 heads, 64
  intermediate: what the tests use) or ``--shape dnabert-s`` (the published
  config.json, tests/data/dnabert_s_config.json: 768 hidden, 12 layers, 12 heads,
  3072 intermediate, vocab 4096). Its tokenizer is the tiny BPE one, so a 500 bp span
  is more tokens than with the real DNABERT-S vocabulary; tokens/s is what compares.
- dnabert=v1 runs the folder's remote code, which is VirNucPro's re-statement of
  DNABERT-S's (same computation, same unpad/pad per layer and (B, H, L, L) bias).
  ``--remote-code DIR`` copies the ``*.py`` of DIR over it instead (say a local copy of
  the real hub files); nothing is fetched.

GPU check (``--gpu-check OUTDIR``): at the DNABERT-S shape on ``--device`` (default
cuda), each reduced precision (bf16, fp16) and each attention path that can run
(``flash`` when flash-attn is installed, ``sdpa``) against v2 fp32 SDPA on the same
device: per-sequence cosine >= 0.999 and norm ratio within 0.5%; fp32 on the device
against fp32 on the CPU (max |d|, a subset); then the v1-vs-v2 benchmark at fp32 and
bf16. Each step is recorded as it ends in ``OUTDIR/dnabert.json`` (rewritten after every
step; a step that raises is recorded with its error and the next runs); exit status 1
if a criterion fails, a step raises, or flash-attn is missing on a GPU. ``--smoke``
makes it a quick run at the tiny shape that works on a CPU (tested).

    python benchmarks/bench_dnabert.py                                  # CPU, tiny shape
    python benchmarks/bench_dnabert.py --shape dnabert-s --sequences 200 --rounds 2 --json bench.json
    python benchmarks/bench_dnabert.py --gpu-check out/               # on a GPU machine
    python benchmarks/bench_dnabert.py --gpu-check out/ --smoke --device cpu
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
GENOMES = ROOT / "tests" / "data" / "genomes"
DNABERT_S_CONFIG = ROOT / "tests" / "data" / "dnabert_s_config.json"
COSINE_MIN = 0.999
NORM_RATIO_TOLERANCE = 0.005
#: The GPU check's report, in its OUTDIR.
GPU_CHECK_REPORT = "dnabert.json"


def shape_arguments(shape: str) -> dict[str, int]:
    """``write_tiny_dnabert`` shape arguments for ``tiny`` or the published DNABERT-S config."""
    if shape == "tiny":
        return {"hidden_size": 32, "num_layers": 2, "num_heads": 4, "intermediate_size": 64, "vocab_size": 128}
    config = json.loads(DNABERT_S_CONFIG.read_text())
    return {
        "hidden_size": config["hidden_size"],
        "num_layers": config["num_hidden_layers"],
        "num_heads": config["num_attention_heads"],
        "intermediate_size": config["intermediate_size"],
        "vocab_size": config["vocab_size"],
        "alibi_starting_size": config["alibi_starting_size"],
    }


def nucleotides(limit: int) -> list[str]:
    """The nucleotide spans the pipeline embeds (stop-free frames), repeated up to ``limit``."""
    from virnucpro_core.prepare import prepare_file

    out: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("lambda_NC_001416.fa.gz", "hpylori_G27_first60kb.fa.gz"):
            result = prepare_file(GENOMES / name, Path(tmp), 500)
            out += [line.strip() for line in open(result.nucleotide) if not line.startswith(">")]
    return (out * (limit // max(1, len(out)) + 1))[:limit]


def write_model(folder: Path, shape: str, remote_code: Path | None) -> Path:
    from virnucpro_core.testing.dnabert import write_tiny_dnabert

    write_tiny_dnabert(folder, seed=0, **shape_arguments(shape))
    if remote_code is not None:
        for source in sorted(Path(remote_code).glob("*.py")):
            shutil.copy(source, folder / source.name)
    return folder


class PeakMemory:
    """Peak memory of a block: CUDA allocator peak, or sampled RSS growth on the CPU."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.peak_mb = 0.0

    @staticmethod
    def _rss_mb() -> float:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def __enter__(self) -> PeakMemory:
        import torch

        if self.device.startswith("cuda"):
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return self
        self._base = self._rss_mb()
        self._peak = self._base
        self._stop = threading.Event()

        def sample() -> None:
            while not self._stop.wait(0.002):
                self._peak = max(self._peak, self._rss_mb())

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        import torch

        if self.device.startswith("cuda"):
            torch.cuda.synchronize(self.device)
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
            return
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self._peak, self._rss_mb()) - self._base


@dataclass(frozen=True)
class Measured:
    backend: str
    seconds: float
    tokens_per_s: float
    sequences_per_s: float
    peak_memory_mb: float


def build_embedders(folder: Path, device: str, precision: str, batch_tokens: int | None) -> dict:
    from virnucpro_dnabert_v1.embedder import DnabertV1Embedder
    from virnucpro_dnabert_v1.loading import load_dnabert as load_v1
    from virnucpro_dnabert_v2.embedder import DnabertV2Embedder
    from virnucpro_dnabert_v2.loading import load_dnabert as load_v2

    return {
        "dnabert=v1": DnabertV1Embedder(load_v1(str(folder)), device=device, precision=precision, batch_tokens=batch_tokens),
        "dnabert=v2": DnabertV2Embedder(load_v2(str(folder)), device=device, precision=precision, batch_tokens=batch_tokens),
    }


def benchmark(folder: Path, seqs: list[str], device: str, precision: str, rounds: int, batch_tokens: int | None) -> dict:
    """Interleaved rounds of v1 and v2; the best round of each, ratios, and max |v1 - v2|."""
    import torch

    embedders = build_embedders(folder, device, precision, batch_tokens)
    tokens = sum(len(ids) for ids in embedders["dnabert=v2"].tokenize(seqs))
    for embedder in embedders.values():  # warm-up: first-call allocations, kernels
        embedder.embed(seqs[:16])
    best: dict[str, Measured] = {}
    outputs: dict[str, np.ndarray] = {}
    names = list(embedders)
    for round_index in range(rounds):
        for name in names if round_index % 2 == 0 else names[::-1]:
            with PeakMemory(device) as memory:
                start = time.perf_counter()
                outputs[name] = embedders[name].embed(seqs)
                if device.startswith("cuda"):
                    torch.cuda.synchronize(device)
                seconds = time.perf_counter() - start
            peak = max(memory.peak_mb, best[name].peak_memory_mb if name in best else 0.0)
            if name not in best or seconds < best[name].seconds:
                best[name] = Measured(name, seconds, tokens / seconds, len(seqs) / seconds, peak)
            else:
                best[name] = Measured(name, best[name].seconds, best[name].tokens_per_s, best[name].sequences_per_s, peak)
    v2_attention = embedders["dnabert=v2"].attributes["attention"]
    for embedder in embedders.values():
        embedder.close()
    return {
        "device": device,
        "precision": precision,
        "sequences": len(seqs),
        "tokens": tokens,
        "rounds": rounds,
        "v2_attention": v2_attention,
        "results": [asdict(best[name]) for name in names],
        "v2_over_v1_tokens_per_s": best["dnabert=v2"].tokens_per_s / best["dnabert=v1"].tokens_per_s,
        "max_abs_diff_v1_v2": float(np.abs(outputs["dnabert=v1"] - outputs["dnabert=v2"]).max()),
    }


def print_benchmark(result: dict) -> None:
    print(f"{result['sequences']} sequences, {result['tokens']} tokens; {result['device']}, {result['precision']}, "
          f"best of {result['rounds']} interleaved rounds; v2 attention: {result['v2_attention']}")
    for row in result["results"]:
        print(f"  {row['backend']:<11} {row['tokens_per_s']:>12,.0f} tok/s {row['sequences_per_s']:>10,.1f} seq/s "
              f"{row['seconds']:>8.2f} s  peak memory {row['peak_memory_mb']:>8.1f} MB")
    print(f"  v2 / v1 tokens/s: {result['v2_over_v1_tokens_per_s']:.2f}x; max |v1 - v2| {result['max_abs_diff_v1_v2']:.2e}")


def compare(reference: np.ndarray, other: np.ndarray) -> dict:
    """Per-sequence cosine and norm ratio of ``other`` against ``reference`` (fp32)."""
    ref_norm = np.linalg.norm(reference, axis=1)
    other_norm = np.linalg.norm(other, axis=1)
    cosine = (reference * other).sum(axis=1) / (ref_norm * other_norm)
    ratio = other_norm / ref_norm
    return {
        "min_cosine": float(cosine.min()),
        "max_norm_ratio_error": float(np.abs(ratio - 1.0).max()),
        "max_abs_diff": float(np.abs(reference - other).max()),
        "passed": bool(cosine.min() >= COSINE_MIN and np.abs(ratio - 1.0).max() <= NORM_RATIO_TOLERANCE),
    }


def gpu_check(outdir: Path, device: str, smoke: bool, remote_code: Path | None) -> int:
    """Precision and attention-path equivalence at the DNABERT-S shape, then the v1-vs-v2 benchmark.

    Every step goes through :class:`gpu_report.CheckReport`: one that raises is recorded
    with its error and the next runs; ``OUTDIR/dnabert.json`` is rewritten after each.
    """
    import torch

    from gpu_report import CheckReport
    from virnucpro_dnabert_v2.attention import flash_unavailable
    from virnucpro_dnabert_v2.embedder import DnabertV2Embedder
    from virnucpro_dnabert_v2.loading import load_dnabert

    shape = "tiny" if smoke else "dnabert-s"
    seqs = nucleotides(48 if smoke else 2000)
    device_type = torch.device(device).type
    report = CheckReport(outdir / GPU_CHECK_REPORT, {
        "check": "dnabert=v2", "shape": shape, "device": device, "torch": torch.__version__, "sequences": len(seqs),
        "gpu": torch.cuda.get_device_name(device) if device_type == "cuda" else "cpu", "smoke": smoke, "finished": False,
        "criteria": {"min_cosine": COSINE_MIN, "norm_ratio_tolerance": NORM_RATIO_TOLERANCE}})
    report.write()
    rows: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_model(Path(tmp) / "model", shape, remote_code)

        def embed(batch: list[str], on: str, **options) -> np.ndarray:
            embedder = DnabertV2Embedder(load_dnabert(str(folder)), device=on, **options)
            try:
                return embedder.embed(batch)
            finally:
                embedder.close()

        def reference() -> dict:
            rows["fp32"] = embed(seqs, device, attention="sdpa")
            return {"implementation": "dnabert=v2 sdpa fp32"}

        report.run("reference", reference)
        subset = seqs[: 16 if smoke else 64]
        if "fp32" in rows:
            # the subset is packed into other batches than the full set: equal to fp32 rounding, not bit for bit
            report.run(f"fp32 {device} vs cpu", lambda: {
                "sequences": len(subset),
                "max_abs_diff": float(np.abs(rows["fp32"][: len(subset)] - embed(subset, "cpu")).max())})
        for precision in ("bf16", "fp16"):
            for attention in ("flash", "sdpa"):
                name = f"{precision} {attention} vs fp32"
                reason = flash_unavailable(device_type, precision) if attention == "flash" else None
                if reason:  # on a GPU, flash-attn can only be missing
                    report.skip(name, reason, missing_dependency=device_type == "cuda")
                elif "fp32" not in rows:
                    report.skip(name, "no fp32 reference (its step did not finish)", missing_dependency=False)
                else:
                    report.run(name, lambda precision=precision, attention=attention: {
                        "precision": precision, "attention": attention,
                        **compare(rows["fp32"], embed(seqs, device, precision=precision, attention=attention))})
        for precision in ("fp32", "bf16"):
            report.run(f"bench {precision}", lambda precision=precision: benchmark(
                folder, seqs, device, precision, 2 if smoke else 3, None))
    for step in report.steps:
        if step["name"].startswith("bench ") and step["status"] == "done":
            print_benchmark(step)
    return report.finish()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=["tiny", "dnabert-s"], default="tiny")
    parser.add_argument("--sequences", type=int, default=2000)
    parser.add_argument("--device", default=None, help="cpu (default) or cuda[:N]; the GPU check defaults to cuda")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--batch-tokens", type=int, default=None, help="both backends' token budget [each one's default]")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per backend (best reported)")
    parser.add_argument("--remote-code", type=Path, default=None, help="folder whose *.py replace the re-statement (for v1)")
    parser.add_argument("--json", type=Path, default=None, help="also write the benchmark's numbers here")
    parser.add_argument("--gpu-check", type=Path, default=None, metavar="OUTDIR")
    parser.add_argument("--smoke", action="store_true", help="with --gpu-check: tiny shape, few sequences (runs on a CPU)")
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    if args.gpu_check is not None:
        return gpu_check(args.gpu_check, args.device or "cuda", args.smoke, args.remote_code)
    device = args.device or "cpu"
    seqs = nucleotides(args.sequences)
    print(f"DNABERT-S {args.shape} shape {shape_arguments(args.shape)}, random weights; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_model(Path(tmp) / "model", args.shape, args.remote_code)
        result = benchmark(folder, seqs, device, args.precision, args.rounds, args.batch_tokens)
    result["shape"] = args.shape
    result["command"] = " ".join(["python", "benchmarks/bench_dnabert.py", *(argv if argv is not None else sys.argv[1:])])
    print_benchmark(result)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
