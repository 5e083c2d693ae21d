"""``predict --resume`` after a real kill: the outputs equal an uninterrupted run's, byte for byte.

A ``virnucpro predict`` subprocess (tiny models, one frame per checkpoint part) is
killed with SIGKILL, or interrupted with SIGINT, as soon as the first part of the per-part
stage (embed both modalities + score) is written; ``--resume`` then finishes it. Every
result file must be the bytes an uninterrupted run wrote (with ``--keep-embeddings``, both
embedding files too; without it none is left), every frame must be scored exactly once,
and the resumed run must really have reused the parts the killed one left (so the
comparison is not between two fresh runs).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from virnucpro_core.registry import load_registry

DATA = Path(__file__).parent / "data"

_installed = {b.key for b in load_registry().list_backends()}
pytestmark = pytest.mark.skipif(
    not {"esm2=v1", "dnabert=v1"} <= _installed,
    reason="needs virnucpro-esm2-v1 and virnucpro-dnabert-v1 installed (pip install -r requirements-dev.txt)",
)

#: One frame per part: a dozen parts, so a kill lands well inside the stage.
CHECKPOINT_EVERY = "1"
#: Files a finished run leaves that must not depend on whether it was interrupted (run.json holds times).
COMPARED = [
    "prepare/lambda_chunked500.fa",
    "prepare/lambda_identified_nucleotide.fa",
    "prepare/lambda_identified_protein.faa",
    "prepare/lambda_sequences.tsv",
    "prediction_results.txt",
    "prediction_results_highestscore.csv",
    "sequence_summary.tsv",
    "viral_sequences.fa",
]
EMBEDDINGS = ["embeddings/nucleotide.h5", "embeddings/protein.h5"]


def _predict(source: Path, outdir: Path, models: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "virnucpro_core", "predict", str(source), "-o", str(outdir), "--models-dir", str(models),
            "--device", "cpu", "-q", "--checkpoint-every", CHECKPOINT_EVERY, "--min-viral-fraction", "0", *extra]


@pytest.fixture(scope="module")
def lambda_fa(tmp_path_factory) -> Path:
    """The first 16 kb of phage lambda: about 15 stop-free frames, so 15 parts per stage."""
    with gzip.open(DATA / "genomes" / "lambda_NC_001416.fa.gz", "rt") as handle:
        header, *lines = handle.read().splitlines()
    seq = "".join(lines)[:16_000]
    path = tmp_path_factory.mktemp("input") / "lambda.fa"
    path.write_text(f"{header}\n" + "".join(seq[i : i + 70] + "\n" for i in range(0, len(seq), 70)))
    return path


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, lambda_fa, tiny_models) -> Path:
    outdir = tmp_path_factory.mktemp("reference") / "out"
    done = subprocess.run(_predict(lambda_fa, outdir, tiny_models, "--keep-embeddings"), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return outdir


def _interrupt_when_a_part_exists(command: list[str], parts: Path, sig: int) -> subprocess.CompletedProcess:
    """Run ``command`` and send ``sig`` once ``parts`` holds a finished part file; return how it ended."""
    # A test runner started in the background of a non-interactive shell ignores SIGINT, and so would its
    # children (Python then installs no KeyboardInterrupt handler): give the child the terminal's default.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 600
        while not any(parts.glob("part-*.h5")) and not any(parts.glob("scores-*.tsv")):
            if process.poll() is not None:
                out, err = process.communicate()
                pytest.fail(f"the run ended (exit {process.returncode}) before a part appeared in {parts}:\n{err}")
            if time.monotonic() > deadline:
                pytest.fail(f"no part appeared in {parts} within 10 minutes")
            time.sleep(0.005)
        os.kill(process.pid, sig)
        out, err = process.communicate(timeout=600)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return subprocess.CompletedProcess(command, process.returncode, out, err)


@pytest.mark.parametrize(
    "keep, sig",
    [((), signal.SIGKILL), (("--keep-embeddings",), signal.SIGKILL), ((), signal.SIGINT)],
    ids=["kill-9", "kill-9-keeping-embeddings", "sigint"],
)
def test_resume_after_a_real_interruption_gives_the_uninterrupted_bytes(tmp_path, lambda_fa, tiny_models, uninterrupted,
                                                                        keep, sig):
    outdir = tmp_path / "out"
    parts = outdir / "checkpoints" / "score"
    ended = _interrupt_when_a_part_exists(_predict(lambda_fa, outdir, tiny_models, *keep), parts, sig)
    if sig == signal.SIGKILL:
        assert ended.returncode == -signal.SIGKILL
    else:
        assert ended.returncode == 130, ended.stderr
        assert "Traceback" not in ended.stderr
        (line,) = [line for line in ended.stderr.splitlines() if line.startswith("interrupted:")]
        assert re.fullmatch(r"interrupted: \d+ of \d+ parts done \(embed \+ score\); continue with: virnucpro predict .* --resume", line), line
    assert json.loads((outdir / "run.json").read_text())["status"] != "done"
    left = {p.name.split("-")[1].split(".")[0] for p in [*parts.glob("part-*.h5"), *parts.glob("scores-*.tsv")]}
    assert left, f"the interrupted run left no part in {parts}"
    assert bool(keep) == (outdir / "checkpoints" / "protein").is_dir()  # embedding parts only when kept

    resumed = subprocess.run(_predict(lambda_fa, outdir, tiny_models, *keep, "--resume"), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    manifest = json.loads((outdir / "run.json").read_text())
    assert manifest["status"] == "done"
    counts = manifest["counts"]["classify"]
    assert counts["parts_reused"] >= len(left) >= 1  # the killed run's parts were used, not recomputed
    assert counts["parts_reused"] + counts["parts_computed"] == counts["frames_scored"] == manifest["counts"]["prepare"]["frames"]
    frames = [line[1:].split()[0] for line in (outdir / "prepare" / "lambda_identified_protein.faa").read_text().splitlines()
              if line.startswith(">")]
    scored = [line.split("\t")[0] for line in (outdir / "prediction_results.txt").read_text().splitlines()[1:]]
    assert scored == frames and len(set(frames)) == len(frames) > 10  # every frame exactly once, in order
    for name in COMPARED + (EMBEDDINGS if keep else []):
        assert (outdir / name).read_bytes() == (uninterrupted / name).read_bytes(), f"{name} differs after the resume"
    assert keep or not (outdir / "embeddings").exists()
    assert not (outdir / "checkpoints").exists()
    leftovers = [p.name for p in outdir.rglob("*") if p.name.endswith((".part", ".tmp")) or p.name == ".virnucpro.lock"]
    assert leftovers == []
