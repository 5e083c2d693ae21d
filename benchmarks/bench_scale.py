"""How the cost of ``predict`` grows with the input: time, peak memory and peak disk per stage.

    python benchmarks/bench_scale.py [--frames 300000 1000000 3000000] [--workdir DIR] [--json OUT]
    python benchmarks/bench_scale.py --real-widths [--frames 300000]
    python benchmarks/bench_scale.py --smoke           # seconds; what CI runs

For each size, 150 bp reads are drawn from a synthetic bacterial genome (the mutated
H. pylori tiles of ``bench_prepare.py``), enough to give about that many stop-free
frames at ``--model-type 300`` (one chunk per read), and then:

1. ``virnucpro predict`` as a whole (``--backend kmer=v1`` for nucleotides, the tiny
   ESM-2 of ``models init-tiny`` for proteins, a random MLP of the matching width), in its
   default mode (no embedding files kept), with its stage times from ``run.json``, the size
   of its results and how far its peak disk rose above them (the parts in flight);
2. each stage alone as its own command, on the same files: ``prepare``, ``embed``
   (nucleotide, kmer), ``classify`` (on that file and protein rows of the tiny ESM-2's
   width: random ones, since the tiny ESM-2 embeds about 2,000 frames/s on one core and
   its time is already in predict's classify stage; with ``--smoke`` the real ones, so that
   the check below can compare bytes), the report (sequence summary and viral FASTA,
   through :mod:`virnucpro_core.report` in a child process), ``convert`` of the nucleotide
   file, and ``aggregate`` of the nucleotide embeddings computed as two ``--shard`` jobs.

Every command runs as its own child process; its peak RSS is that child's own high-water
mark (``VmHWM``, written by the child at exit; ``ru_maxrss`` would not do, since Linux
carries the parent's peak over fork and exec into the child's), and peak disk is the largest size of its output folder, sampled every 0.2 s while it runs.
Frames/s is frames over the command's wall time, start-up included; frames/CPU-s is
frames over the command's own CPU time (``ru_utime + ru_stime`` from ``os.wait4``), which
is what one core sustains even on a busy machine (start-up included too).

``--real-widths`` writes synthetic embeddings of the real widths (DNABERT-S 768 and
ESM-2 3B 2560, float32, 13.3 KB a frame) for the frames of the first size and times
``classify`` (with a 3328-input MLP) and ``convert`` (HDF5 to HDF5) on them: the I/O of
the real sizes without the real models.

Each size's figures are printed as a table (and written as JSON with ``--json``).
``--smoke`` runs one tiny size (2,000 frames) through everything and checks that each
stage produced its files, so the benchmark itself stays tested.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_prepare import synthetic_genome  # noqa: E402

READ_LENGTH = 150
GENOME_BASES = 4_000_000
MODEL_TYPE = 300
KMER_DIM = 256
TINY_ESM_DIM = 32
REAL_WIDTHS = (768, 2560)
THREADS = 1  # set from --threads


@dataclass(frozen=True)
class Measure:
    """One command: what it was, how long it took, its peak RSS and the peak size of its outputs."""

    what: str
    frames: int
    seconds: float
    peak_rss_mb: float
    peak_disk_mb: float
    cpu_seconds: float = float("nan")

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds if self.seconds else float("nan")

    @property
    def frames_per_cpu_s(self) -> float:
        """Frames per second of CPU time (user + system) of the command: what one core
        sustains, also on a machine busy with other work."""
        return self.frames / self.cpu_seconds if self.cpu_seconds else float("nan")


def _tree_bytes(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def run(what: str, cmd: list[str], frames: int, watch: Path, env: dict[str, str] | None = None) -> Measure:
    """Run ``cmd`` as a child; its own peak RSS (``wait4``) and the peak size of ``watch``."""
    watch.mkdir(parents=True, exist_ok=True)
    base = _tree_bytes(watch)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            peak[0] = max(peak[0], _tree_bytes(watch) - base)

    sampler = threading.Thread(target=sample, daemon=True)
    peak_file = Path(tempfile.mkstemp(prefix="bench-peak-")[1])
    # every command on the number of cores asked for (classify has no --threads; torch reads OMP_NUM_THREADS)
    env = {**(env or os.environ), "BENCH_PEAK_FILE": str(peak_file), "OMP_NUM_THREADS": str(THREADS)}
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    sampler.start()
    output = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - start
    done.set()
    sampler.join()
    peak[0] = max(peak[0], _tree_bytes(watch) - base)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{what} failed ({proc.returncode}): {' '.join(cmd[3:])}\n{output.decode(errors='replace')[-3000:]}")
    peak_kb = int(peak_file.read_text() or "0")
    peak_file.unlink()
    return Measure(what, frames, seconds, peak_kb / 1024, peak[0] / 2**20, usage.ru_utime + usage.ru_stime)


def write_reads(path: Path, reads: int, seed: int = 1) -> None:
    """``reads`` reads of 150 bp from a synthetic genome, one FASTA line each, written in blocks."""
    genome = np.frombuffer(synthetic_genome(GENOME_BASES, seed=seed), dtype=np.uint8)
    rng = np.random.default_rng(seed)
    with open(path, "wb") as out:
        for first in range(0, reads, 100_000):
            n = min(100_000, reads - first)
            starts = rng.integers(0, genome.size - READ_LENGTH, n)
            block = genome[starts[:, None] + np.arange(READ_LENGTH)]
            out.write(b"".join(b">read%d\n%s\n" % (first + i + 1, row.tobytes()) for i, row in enumerate(block)))


def frames_per_read(workdir: Path) -> float:
    """Stop-free frames per read of :func:`write_reads`, from a 20,000-read sample."""
    from virnucpro_core.prepare import prepare_file

    sample = workdir / "sample.fa"
    write_reads(sample, 20_000, seed=99)
    result = prepare_file(sample, workdir / "sample-prep", MODEL_TYPE)
    shutil.rmtree(workdir / "sample-prep")
    sample.unlink()
    return result.frames / 20_000


def write_mlp(path: Path, input_dim: int) -> Path:
    from virnucpro_core.testing.mlp import write_original_mlp

    if not path.exists():
        write_original_mlp(path, input_dim=input_dim)
    return path


def write_synthetic_embeddings(ids_fasta: Path, out: Path, modality: str, dim: int) -> int:
    """Random rows of width ``dim`` for every record of ``ids_fasta``, in its order."""
    from virnucpro_core.formats.base import EmbeddingMeta
    from virnucpro_core.formats.hdf5 import Hdf5Writer
    from virnucpro_core.seqio import iter_fasta

    rng = np.random.default_rng(dim)
    rows = 0
    batch: list[str] = []
    with Hdf5Writer(out, EmbeddingMeta(dim=dim, modality=modality, backend="synthetic", version="v0")) as writer:
        for record_id, _ in iter_fasta(ids_fasta):
            batch.append(record_id)
            if len(batch) == 4096:
                writer.write(batch, rng.standard_normal((len(batch), dim), dtype=np.float32))
                rows += len(batch)
                batch = []
        if batch:
            writer.write(batch, rng.standard_normal((len(batch), dim), dtype=np.float32))
            rows += len(batch)
    return rows


#: Prepended to every child: at exit it writes its own VmHWM (kB) to $BENCH_PEAK_FILE.
PEAK_HOOK = """
import atexit, os
def _bench_peak():
    with open("/proc/self/status") as status:
        peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(os.environ["BENCH_PEAK_FILE"], "w") as out:
        out.write(peak)
atexit.register(_bench_peak)
"""


def cli(*args: str) -> list[str]:
    code = PEAK_HOOK + "import sys\nsys.argv[0] = 'virnucpro'\nfrom virnucpro_core.cli import main\nmain()\n"
    return [sys.executable, "-c", code, *args]


#: Scores the rows of two aligned embedding files with the MLP, the way classify does (256-row
#: batches), and writes the rows and the CPU seconds of score() alone to the file named last.
MLP_ROWS = 20_000
MLP_CHILD = PEAK_HOOK + f"MLP_ROWS = {MLP_ROWS}\n" + """
import sys, time
import numpy as np
import h5py
from virnucpro_core.classifier import load_mlp, score
mlp_path, nucleotide, protein, report = sys.argv[1:5]
model = load_mlp(mlp_path)
with h5py.File(nucleotide, "r") as n, h5py.File(protein, "r") as p:
    features = np.concatenate([n["embeddings"][:MLP_ROWS], p["embeddings"][:MLP_ROWS]], axis=1)
start = time.process_time()
score(model, features)
with open(report, "w") as out:
    out.write(f"{len(features)} {time.process_time() - start}")
"""


REPORT_CHILD = PEAK_HOOK + """
import sys
from virnucpro_core.report import write_sequence_summary, write_viral_fasta
tsv, predictions, reads, out = sys.argv[1:5]
write_sequence_summary(tsv, predictions, out + "/sequence_summary.tsv")
write_viral_fasta(reads, out + "/sequence_summary.tsv", out + "/viral_sequences.fa")
"""


def bench_size(target: int, workdir: Path, ratio: float, models: Path, mlp: Path, threads: int, smoke: bool = False) -> tuple[list[Measure], dict]:
    size_dir = workdir / f"f{target}"
    shutil.rmtree(size_dir, ignore_errors=True)
    size_dir.mkdir(parents=True)
    reads = size_dir / "reads.fa"
    write_reads(reads, max(1, round(target / ratio)))
    common = ["--models-dir", str(models), "--mlp", str(mlp), "--model-type", str(MODEL_TYPE), "-t", str(threads)]
    measures: list[Measure] = []

    run_dir = size_dir / "predict"
    # the default: no embedding files are kept, so the peak disk is the results plus the parts in flight
    whole = run("predict", cli("predict", str(reads), "-o", str(run_dir), "--backend", "kmer=v1", "-q", *common), 0, run_dir)
    manifest = json.loads((run_dir / "run.json").read_text())
    frames = int(manifest["counts"]["prepare"]["frames"])
    final_mb = _tree_bytes(run_dir) / 2**20
    measures.append(Measure("predict", frames, whole.seconds, whole.peak_rss_mb, whole.peak_disk_mb, whole.cpu_seconds))
    stage_seconds = {name: stage.get("seconds") for name, stage in manifest["stages"].items()}
    for name, seconds in stage_seconds.items():  # inside predict: no start-up, RSS and disk only for the whole
        measures.append(Measure(f"  predict stage {name} (in process)", frames, float(seconds or 0), float("nan"), float("nan")))

    prep = size_dir / "prepare"
    measures.append(run("prepare", cli("prepare", str(reads), "-o", str(prep), "--chunk-size", str(MODEL_TYPE)), frames, prep))
    nuc_fa = next(prep.glob("*_identified_nucleotide.fa"))
    tsv = next(prep.glob("*_sequences.tsv"))
    emb = size_dir / "emb"
    measures.append(run("embed nucleotide (kmer=v1)",
                        cli("embed", str(nuc_fa), "--backend", "kmer=v1", "-o", str(emb / "nucleotide.h5"), "-t", str(threads)),
                        frames, emb))
    if smoke:  # the tiny ESM-2's own rows, so that classify must reproduce predict's bytes
        measures.append(run("embed protein (tiny ESM-2)", cli("embed", str(next(prep.glob("*_identified_protein.faa"))), "--backend",
                                                              "esm2", "--models-dir", str(models), "-o", str(emb / "protein.h5"),
                                                              "-t", str(threads)), frames, emb))
    else:  # the tiny ESM-2 embeds ~2,000 frames/s on one core: its time is in predict's classify stage already
        write_synthetic_embeddings(next(prep.glob("*_identified_protein.faa")), emb / "protein.h5", "protein", TINY_ESM_DIM)
    cls = size_dir / "classify"
    measures.append(run("classify", cli("classify", "--nucleotide", str(emb / "nucleotide.h5"), "--protein", str(emb / "protein.h5"),
                                        "--mlp", str(mlp), "-o", str(cls)), frames, cls))
    measures.append(run("report", [sys.executable, "-c", REPORT_CHILD, str(tsv), str(cls / "prediction_results.txt"), str(reads), str(cls)],
                        frames, cls))
    conv = size_dir / "convert"
    measures.append(run("convert nucleotide.h5 (kmer, 256)", cli("convert", str(emb / "nucleotide.h5"), str(conv / "nucleotide.h5")),
                        frames, conv))
    shards = size_dir / "shards"
    for index in range(2):
        subprocess.run(cli("embed", str(nuc_fa), "--backend", "kmer=v1", "--shard", f"{index}/2", "-o", str(shards / str(index)),
                           "-t", str(threads)), check=True, capture_output=True)
    agg = size_dir / "aggregate"
    measures.append(run("aggregate (nucleotide, 2 shards)",
                        cli("aggregate", str(shards / "0"), str(shards / "1"), "-o", str(agg / "nucleotide.h5")), frames, agg))
    for stage_dir in (size_dir / "emb", shards, agg, conv):
        shutil.rmtree(stage_dir, ignore_errors=True)
    return measures, {"frames": frames, "reads": sum(1 for _ in open(tsv)) - 1, "predict_stage_seconds": stage_seconds,
                      "predict_final_mb": final_mb, "predict_peak_over_final_mb": whole.peak_disk_mb - final_mb}


def bench_real_widths(workdir: Path, target: int, ratio: float, threads: int) -> list[Measure]:
    """classify and convert on synthetic 768/2560-wide embeddings (the real widths)."""
    size_dir = workdir / f"real{target}"
    shutil.rmtree(size_dir, ignore_errors=True)
    size_dir.mkdir(parents=True)
    reads = size_dir / "reads.fa"
    write_reads(reads, max(1, round(target / ratio)))
    prep = size_dir / "prepare"
    subprocess.run(cli("prepare", str(reads), "-o", str(prep), "--chunk-size", str(MODEL_TYPE)), check=True, capture_output=True)
    emb = size_dir / "emb"
    emb.mkdir()
    start = time.monotonic()
    frames = write_synthetic_embeddings(next(prep.glob("*_identified_nucleotide.fa")), emb / "nucleotide.h5", "nucleotide", REAL_WIDTHS[0])
    write_synthetic_embeddings(next(prep.glob("*_identified_protein.faa")), emb / "protein.h5", "protein", REAL_WIDTHS[1])
    written = time.monotonic() - start
    disk = _tree_bytes(emb) / 2**20
    mlp = write_mlp(workdir / "mlp-3328.pth", sum(REAL_WIDTHS))
    out = [Measure("write synthetic 768+2560 embeddings (in process)", frames, written, float("nan"), disk)]
    cls = size_dir / "classify"
    out.append(run("classify (768+2560)", cli("classify", "--nucleotide", str(emb / "nucleotide.h5"), "--protein", str(emb / "protein.h5"),
                                             "--mlp", str(mlp), "-o", str(cls)), frames, cls))
    # the MLP's own arithmetic (3328 x 512 then 512 x 2 per frame, ~3.4 MFLOP) on the same rows, alone: on a GPU node
    # it runs on the device, so what the host itself must sustain is classify's CPU time without it
    mlp_cpu = size_dir / "mlp-cpu-seconds"
    run("the MLP alone", [sys.executable, "-c", MLP_CHILD, str(mlp), str(emb / "nucleotide.h5"), str(emb / "protein.h5"), str(mlp_cpu)],
        frames, cls)
    rows, seconds = mlp_cpu.read_text().split()
    mlp_seconds = frames * float(seconds) / int(rows)  # at the rate measured on the first rows
    nan = float("nan")
    out.append(Measure(f"  the MLP's arithmetic alone (first {int(rows)} rows)", frames, nan, nan, nan, mlp_seconds))
    out.append(Measure("  classify without the MLP's arithmetic", frames, nan, nan, nan, out[1].cpu_seconds - mlp_seconds))
    conv = size_dir / "convert"
    out.append(run("convert protein.h5 (2560)", cli("convert", str(emb / "protein.h5"), str(conv / "protein.h5")), frames, conv))
    shutil.rmtree(size_dir, ignore_errors=True)
    return out


def table(measures: list[Measure]) -> str:
    lines = [f"| {'what':<48} | {'frames':>9} | {'seconds':>8} | {'frames/s':>9} | {'CPU s':>7} | {'frames/CPU-s':>12} | "
             f"{'peak RSS MB':>11} | {'peak disk MB':>12} |",
             f"|{'-' * 50}|{'-' * 11}|{'-' * 10}|{'-' * 11}|{'-' * 9}|{'-' * 14}|{'-' * 13}|{'-' * 14}|"]
    for m in measures:
        lines.append(f"| {m.what:<48} | {m.frames:>9} | {m.seconds:>8.1f} | {m.frames_per_s:>9.0f} | {m.cpu_seconds:>7.1f} | "
                     f"{m.frames_per_cpu_s:>12.0f} | {m.peak_rss_mb:>11.0f} | {m.peak_disk_mb:>12.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[300_000, 1_000_000, 3_000_000])
    parser.add_argument("--workdir", type=Path, help="where the inputs and runs go (default: a temporary folder, removed)")
    parser.add_argument("--json", type=Path, help="write every measurement here")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of every command (-t, OMP_NUM_THREADS) [1]")
    parser.add_argument("--real-widths", action="store_true", help="also classify/convert synthetic 768/2560-wide embeddings")
    parser.add_argument("--smoke", action="store_true", help="one tiny size through everything (what CI runs)")
    args = parser.parse_args(argv)
    global THREADS
    THREADS = args.threads
    sizes = [2_000] if args.smoke else args.frames
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="virnucpro-bench-scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    try:
        models = workdir / "tiny"
        if not (models / "models.json").exists():
            subprocess.run(cli("models", "init-tiny", str(models)), check=True, capture_output=True)
        mlp = write_mlp(workdir / f"mlp-{KMER_DIM + TINY_ESM_DIM}.pth", KMER_DIM + TINY_ESM_DIM)
        ratio = frames_per_read(workdir)
        print(f"{ratio:.3f} stop-free frames per 150 bp read (model type {MODEL_TYPE})", flush=True)
        for target in sizes:
            measures, info = bench_size(target, workdir, ratio, models, mlp, args.threads, smoke=args.smoke)
            print(f"\n{info['frames']} frames ({info['reads']} reads); predict stage seconds: {info['predict_stage_seconds']}; "
                  f"predict's results {info['predict_final_mb']:.1f} MB, its peak disk {info['predict_peak_over_final_mb']:.1f} MB above them")
            print(table(measures), flush=True)
            results[str(target)] = {**info, "measures": [{**asdict(m), "frames_per_s": m.frames_per_s, "frames_per_cpu_s": m.frames_per_cpu_s} for m in measures]}
            if args.smoke:
                run_dir = workdir / f"f{target}" / "predict"
                for name in ("prediction_results.txt", "prediction_results_highestscore.csv", "sequence_summary.tsv", "viral_sequences.fa"):
                    assert (run_dir / name).is_file(), f"predict wrote no {name}"
                cls = workdir / f"f{target}" / "classify"
                assert (cls / "prediction_results.txt").read_bytes() == (run_dir / "prediction_results.txt").read_bytes()
                assert (cls / "sequence_summary.tsv").read_bytes() == (run_dir / "sequence_summary.tsv").read_bytes()
            shutil.rmtree(workdir / f"f{target}", ignore_errors=True)
        if args.real_widths or args.smoke:
            measures = bench_real_widths(workdir, sizes[0], ratio, args.threads)
            print(f"\nreal widths, {measures[0].frames} frames")
            print(table(measures), flush=True)
            results["real_widths"] = {"measures": [{**asdict(m), "frames_per_s": m.frames_per_s, "frames_per_cpu_s": m.frames_per_cpu_s} for m in measures]}
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
