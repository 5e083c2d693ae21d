"""Benchmark ESM-2 embedding: the original loop, esm2=v1 and esm2=v2, in one process.

On the same proteins and the same random weights (an ESM-2 of the published shape asked
for with ``--shape``), interleaved so machine noise hits every configuration alike:

- ``original``: the original VirNucPro loop (fair-esm ``FastaBatchedDataset`` →
  ``get_batch_indices(2048, extra_toks_per_seq=1)`` → ``model(toks, repr_layers=[L])`` →
  per-protein mean), fp32;
- ``v1 <precision>``: this project's esm2=v1 (the same computation, rows in input order);
- ``v2 <attention> <precision>``: esm2=v2 for every attention implementation that runs
  here and every precision asked for.

Prints tokens/s, sequences/s, peak memory, utilisation (real tokens over the tokens each
batch computed: padded batches for the original and v1, the token budget for v2), the
v2/v1 ratio at the same precision and the v2/original ratio, the per-protein error
against the original's fp32 rows (max |Δ| relative to 1 + max |x| in fp32; min cosine and
worst norm ratio in reduced precision) and, on a GPU, the fraction of the dense fp16/bf16
peak (2 x non-embedding parameters FLOP per token; ``--peak-tflops`` or the table below).
fair-esm is needed for ``original`` and ``v1``; without it only v2 runs (the GPU image).
Proteins are the stop-free frames of lambda and H. pylori through ``prepare`` (300 and
500 bp chunks), repeated to ``--sequences``; without Biopython, random proteins with
lengths uniform in 34..166 (the VirNucPro range).

    python benchmarks/bench_esm2.py --shape 8M                                  # CPU fp32
    python benchmarks/bench_esm2.py --shape 8M --precisions fp32 bf16 --json bench.json
    python benchmarks/bench_esm2.py --shape 3B --device cuda:0 --sequences 4000 --precisions fp32 fp16 bf16
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from virnucpro_core import accel

ROOT = Path(__file__).resolve().parent.parent
GENOMES = ROOT / "tests" / "data" / "genomes"

#: Dense fp16/bf16 tensor-core peaks (TFLOP/s, no sparsity) of GPUs we may meet.
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "RTX 4090": 165.2, "A10": 125.0, "L4": 121.0}


def benchmark_proteins(count: int, seed: int = 0) -> tuple[list[str], str]:
    """``count`` proteins and where they came from."""
    try:
        from virnucpro_core.testing.proteins import prepared_proteins

        out = prepared_proteins([GENOMES / "lambda_NC_001416.fa.gz", GENOMES / "hpylori_G27_first60kb.fa.gz"])
        source = f"{len(out)} stop-free frames of lambda + H. pylori (300/500 bp chunks)"
    except ImportError as exc:  # no Biopython (the GPU image)
        rng = random.Random(seed)
        out = ["".join(rng.choice("ACDEFGHIKLMNPQRSTVWY") for _ in range(rng.randint(34, 166))) for _ in range(min(count, 1000))]
        source = f"random proteins, lengths 34..166 ({exc.name} missing)"
    return (out * (count // len(out) + 1))[:count], source


@dataclass
class Result:
    name: str
    backend: str
    precision: str
    attention: str = ""
    seconds: list[float] = field(default_factory=list)
    peak_mb: float = 0.0
    utilisation: float = 0.0
    error: dict = field(default_factory=dict)

    @property
    def best(self) -> float:
        return min(self.seconds)


def padded_utilisation(seqs: list[str], batches: list[list[int]]) -> float:
    real = sum(len(seqs[i]) + 2 for b in batches for i in b)
    padded = sum(len(b) * (max(len(seqs[i]) for i in b) + 2) for b in batches)
    return real / padded


def original_loop(model, alphabet, seqs: list[str], device: str) -> np.ndarray:
    """The original extract_esm loop (2048-token batches), rows put back in input order."""
    import esm
    import torch

    dataset = esm.FastaBatchedDataset([str(i) for i in range(len(seqs))], seqs)
    batches = dataset.get_batch_indices(2048, extra_toks_per_seq=1)
    loader = torch.utils.data.DataLoader(dataset, collate_fn=alphabet.get_batch_converter(), batch_sampler=batches)
    out = np.zeros((len(seqs), model.embed_dim), dtype=np.float32)
    layer = model.num_layers
    with torch.no_grad():
        for labels, strs, toks in loader:
            reps = model(accel.to_device(toks, device), repr_layers=[layer])["representations"][layer]
            for i, label in enumerate(labels):
                out[int(label)] = reps[i, 1 : min(1024, len(strs[i])) + 1].float().mean(0).cpu().numpy()
    return out


def fair_esm_model(data: dict, device: str, dtype):
    """fair-esm's ESM2 built on ``device`` from a checkpoint dict (fair-esm's own module, our state dict)."""
    import esm
    import torch

    from virnucpro_esm2_v2.model import strip_prefixes

    cfg = data["cfg"]["model"]
    with torch.device(accel.storage_device(device)):
        model = esm.model.esm2.ESM2(num_layers=cfg.encoder_layers, embed_dim=cfg.encoder_embed_dim,
                                    attention_heads=cfg.encoder_attention_heads,
                                    alphabet=esm.Alphabet.from_architecture("ESM-1b"), token_dropout=cfg.token_dropout)
    missing, unexpected = model.load_state_dict(strip_prefixes(data["model"]), strict=False)
    if unexpected or any(not k.startswith("contact_head.") for k in missing):
        raise RuntimeError(f"state dict does not fit fair-esm's ESM2: missing {missing}, unexpected {unexpected}")
    return model.to(dtype).eval(), model.alphabet


def peak_tflops(device: str, override: float | None) -> tuple[float | None, str]:
    if override:
        return override, "--peak-tflops"
    if not device.startswith("cuda"):
        return None, ""
    import torch

    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_TFLOPS.items():
        if key.lower() in name.lower():
            return value, name
    return None, name


def run_benchmark(shape: str, device: str = "cpu", *, sequences: int = 1000, repeat: int = 2, precisions=("fp32",),
                  attentions=None, include_original: bool = True, include_v1: bool = True, batch_tokens: int | None = None,
                  peak: float | None = None, seed: int = 0, out=sys.stdout) -> dict:
    """Run every configuration ``repeat`` times, interleaved; print the table and return it as a dict."""
    import importlib.util

    import torch

    from virnucpro_esm2_v1.embedder import Esm2V1Embedder
    from virnucpro_esm2_v2 import attention as attn
    from virnucpro_esm2_v2.embedder import Esm2V2Embedder
    from virnucpro_esm2_v2.equivalence import RowComparison
    from virnucpro_esm2_v2.model import Esm2Config
    from virnucpro_esm2_v2.synthetic import SHAPES, random_checkpoint_data

    from virnucpro_core.backends import torch_dtype

    cuda = device.startswith("cuda")
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32, for the references too
    layers, dim, heads = SHAPES[shape]
    seqs, source = benchmark_proteins(sequences, seed)
    tokens = sum(len(s) + 2 for s in seqs)
    data = random_checkpoint_data(layers, dim, heads, seed=seed, device=device)
    config = Esm2Config.from_checkpoint(data["cfg"]["model"])
    flop_per_token = 2 * config.non_embedding_params
    have_esm = importlib.util.find_spec("esm") is not None
    peak_value, gpu_name = peak_tflops(device, peak)
    print(f"ESM-2 {shape} shape ({layers} layers, {dim} dims, {heads} heads; {config.non_embedding_params / 1e6:.0f}M "
          f"non-embedding params, {flop_per_token / 1e9:.3f} GFLOP/token), random weights (seed {seed}); {len(seqs)} proteins, "
          f"{tokens} tokens (mean {tokens / len(seqs):.0f}): {source}; device {device} {gpu_name}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; best of {repeat}, interleaved", file=out)

    runners: list[tuple[Result, object]] = []
    fair_models: dict[str, tuple] = {}

    def fair(precision):
        if precision not in fair_models:
            fair_models[precision] = fair_esm_model(data, device, torch_dtype(precision))
        return fair_models[precision]

    if have_esm and include_original:
        model, alphabet = fair("fp32")
        dataset_batches = __import__("esm").FastaBatchedDataset([str(i) for i in range(len(seqs))], seqs).get_batch_indices(2048, 1)
        runners.append((Result("original fp32", "original", "fp32", utilisation=padded_utilisation(seqs, dataset_batches)),
                        lambda s, m=model, a=alphabet: original_loop(m, a, s, device)))
    if have_esm and include_v1:
        for precision in precisions:
            model, alphabet = fair(precision)
            v1 = Esm2V1Embedder(model, alphabet, model_id=f"random {shape}")
            runners.append((Result(f"v1 {precision}", "v1", precision, utilisation=padded_utilisation(seqs, v1.plan_batches(seqs))), v1))
    elif not have_esm:
        print("fair-esm is not installed: original and v1 are skipped (pip install fair-esm to compare)", file=out)
    device_type = "cuda" if cuda else "cpu"
    #: configurations that raised, with the error's first line: reported, never timed again
    failed: dict[str, str] = {}
    for precision in precisions:
        dtype = torch_dtype(precision)
        for name in attentions or attn.available(device_type, dtype):
            if attn.unavailable_reason(name, device_type, dtype):
                continue
            try:
                v2 = Esm2V2Embedder.from_checkpoint_data(data, model_id=f"random {shape}", device=device, precision=precision,
                                                         attention=name, batch_tokens=batch_tokens)
            except Exception as exc:  # one implementation failing must not stop the others
                failed[f"v2 {name} {precision}"] = _first_line(exc)
                continue
            runners.append((Result(f"v2 {name} {precision}", "v2", precision, name), v2))

    rows: dict[str, np.ndarray] = {}
    for rep in range(repeat + 1):  # round 0 warms up on a slice
        for result, runner in runners:
            if result.name in failed:
                continue
            batch = seqs[:64] if rep == 0 else seqs
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats(device)
                base = torch.cuda.memory_allocated(device)
            start = time.perf_counter()
            try:
                got = runner(batch) if callable(runner) and not hasattr(runner, "embed") else runner.embed(batch)
                if cuda:
                    torch.cuda.synchronize()
            except Exception as exc:
                failed[result.name] = _first_line(exc)
                print(f"{result.name} failed: {failed[result.name]}", file=out)
                continue
            elapsed = time.perf_counter() - start
            if rep:
                result.seconds.append(elapsed)
                rows[result.name] = got
                result.peak_mb = max(result.peak_mb, (torch.cuda.max_memory_allocated(device) - base) / 2**20 if cuda
                                     else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    for runner in (r for result, r in runners if result.name in failed and hasattr(r, "close")):
        runner.close()
    runners = [(result, runner) for result, runner in runners if result.name not in failed]
    for result, runner in runners:
        if hasattr(runner, "stats"):
            result.utilisation = runner.stats.utilisation

    reference = rows.get("original fp32")
    ref_name = "original fp32"
    if reference is None:
        fp32_v2 = [r.name for r, _ in runners if r.backend == "v2" and r.precision == "fp32"]
        ref_name = fp32_v2[0] if fp32_v2 else ""
        reference = rows.get(ref_name)
    by_name = {r.name: r for r, _ in runners}
    header = f"{'configuration':<28} {'tokens/s':>12} {'seq/s':>9} {'peak MB':>9} {'util':>6} {'v2/v1':>6} {'v2/orig':>7} {'%peak':>6}  error vs " + (ref_name or "-")
    print(header, file=out)
    for name, error in failed.items():
        print(f"{name:<28} FAILED: {error}", file=out)
    table = []
    for result, _ in runners:
        tps = tokens / result.best
        v1_same = by_name.get(f"v1 {result.precision}")
        ratio_v1 = v1_same.best / result.best if result.backend == "v2" and v1_same else None
        ratio_orig = by_name["original fp32"].best / result.best if "original fp32" in by_name and result.backend == "v2" else None
        frac = (tps * flop_per_token / (peak_value * 1e12)) if peak_value and result.precision != "fp32" else None
        if reference is not None and result.name != ref_name:
            cmp = RowComparison.of(rows[result.name], reference)
            result.error = {**cmp.summary(), "fp32_failures": len(cmp.fp32_failures()), "reduced_failures": len(cmp.reduced_failures())}
        err = result.error
        if not err:
            err_text = "(reference)" if result.name == ref_name else ""
        elif result.precision == "fp32":
            err_text = f"max|d|/(1+max|x|) {err['max_relative']:.1e}, {err['fp32_failures']} outside 1e-4"
        else:
            err_text = f"min cos {err['min_cosine']:.5f}, norm {err['worst_norm_ratio_deviation']:.1e}, {err['reduced_failures']} outside 0.999/0.5%"
        print(f"{result.name:<28} {tps:>12,.0f} {len(seqs) / result.best:>9,.1f} {result.peak_mb:>9,.0f} {result.utilisation:>6.1%} "
              f"{f'{ratio_v1:.2f}x' if ratio_v1 else '':>6} {f'{ratio_orig:.2f}x' if ratio_orig else '':>7} "
              f"{f'{frac:.1%}' if frac else '':>6}  {err_text}", file=out)
        table.append({**asdict(result), "tokens_per_s": tps, "seq_per_s": len(seqs) / result.best, "v2_over_v1": ratio_v1,
                      "v2_over_original": ratio_orig, "fraction_of_peak": frac})
    for runner in (r for _, r in runners if hasattr(r, "close")):
        runner.close()
    return {"shape": shape, "layers": layers, "dim": dim, "heads": heads, "device": device, "gpu": gpu_name,
            "peak_tflops": peak_value, "torch": torch.__version__, "threads": torch.get_num_threads(), "sequences": len(seqs),
            "tokens": tokens, "proteins": source, "flop_per_token": flop_per_token, "repeat": repeat, "reference": ref_name,
            "results": table, "failed": failed, "command": " ".join(sys.argv)}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()


def main(argv=None) -> None:
    from virnucpro_esm2_v2.synthetic import SHAPES

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=[s for s in SHAPES if s != "15B"], default="8M")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sequences", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--precisions", nargs="+", default=["fp32"], choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--attention", nargs="+", default=None, help="v2 attention implementations [all that run here]")
    parser.add_argument("--batch-tokens", type=int, default=None, help="v2 token budget [its default]")
    parser.add_argument("--no-original", action="store_true")
    parser.add_argument("--no-v1", action="store_true")
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense fp16/bf16 peak of this GPU [table]")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    report = run_benchmark(args.shape, args.device, sequences=args.sequences, repeat=args.repeat, precisions=tuple(args.precisions),
                           attentions=args.attention, include_original=not args.no_original, include_v1=not args.no_v1,
                           batch_tokens=args.batch_tokens, peak=args.peak_tflops)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
