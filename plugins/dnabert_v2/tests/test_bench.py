"""The benchmark's GPU-check mode runs end to end in its --smoke form on the CPU; a step that
raises is recorded with its error, the others run, and the exit status is 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[3] / "benchmarks" / "bench_dnabert.py"

#: A sitecustomize that breaks dnabert=v2 in fp16, as a kernel fault would: the embedder raises.
BREAK_FP16 = """
from virnucpro_dnabert_v2.embedder import DnabertV2Embedder

_embed = DnabertV2Embedder.embed


def embed(self, seqs, *args, **kwargs):
    if self.precision == "fp16":
        raise RuntimeError("injected fault in the fp16 kernel")
    return _embed(self, seqs, *args, **kwargs)


DnabertV2Embedder.embed = embed
"""


def test_gpu_check_smoke_reports_every_path_and_goes_on_after_a_failing_one(tmp_path):
    pytest.importorskip("virnucpro_dnabert_v1")
    inject, out = tmp_path / "inject", tmp_path / "out"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(BREAK_FP16)
    env = {**os.environ, "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(inject), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, str(BENCH), "--gpu-check", str(out), "--smoke", "--device", "cpu"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 1, done.stdout + done.stderr
    assert [p.name for p in out.iterdir()] == ["dnabert.json"]
    report = json.loads((out / "dnabert.json").read_text())
    assert report["passed"] is False and report["finished"] is True
    assert (report["shape"], report["sequences"]) == ("tiny", 48)
    steps = {s["name"]: s for s in report["steps"]}
    assert list(steps) == ["reference", "fp32 cpu vs cpu", "bf16 flash vs fp32", "bf16 sdpa vs fp32", "fp16 flash vs fp32",
                           "fp16 sdpa vs fp32", "bench fp32", "bench bf16"]
    assert steps["bf16 flash vs fp32"] == {"name": "bf16 flash vs fp32", "status": "skipped",
                                           "reason": "flash-attn runs on CUDA only", "missing_dependency": False}
    bf16 = steps["bf16 sdpa vs fp32"]
    assert bf16["status"] == "passed" and bf16["min_cosine"] >= 0.999 and 0 < bf16["max_abs_diff"]
    broken = steps["fp16 sdpa vs fp32"]
    assert broken["status"] == "error" and broken["error"] == "RuntimeError: injected fault in the fp16 kernel"
    # the subset is packed into other batches than the full set: equal to fp32 rounding (rows of a
    # matrix product may round differently with its height)
    assert steps["fp32 cpu vs cpu"]["max_abs_diff"] <= 1e-5
    fp32 = steps["bench fp32"]  # after the error, the benchmarks ran
    assert fp32["status"] == "done" and [r["backend"] for r in fp32["results"]] == ["dnabert=v1", "dnabert=v2"]
    assert fp32["max_abs_diff_v1_v2"] <= 1e-5 and fp32["tokens"] > 0
    assert steps["bench bf16"]["status"] == "done" and steps["bench bf16"]["precision"] == "bf16"
    assert "v2 / v1 tokens/s" in done.stdout and "FAILED; report:" in done.stdout
