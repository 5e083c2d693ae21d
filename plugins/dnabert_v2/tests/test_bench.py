"""The benchmark's GPU-check mode runs end to end in its --smoke form on the CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[3] / "benchmarks" / "bench_dnabert.py"


def test_gpu_check_smoke_runs_on_the_cpu_and_reports_every_path(tmp_path):
    pytest.importorskip("virnucpro_dnabert_v1")
    done = subprocess.run([sys.executable, str(BENCH), "--gpu-check", str(tmp_path), "--smoke", "--device", "cpu"],
                          capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["passed"] and report["shape"] == "tiny" and report["sequences"] == 48
    checks = {(c["precision"], c["attention"]): c for c in report["checks"]}
    assert set(checks) == {(p, a) for p in ("bf16", "fp16") for a in ("flash", "sdpa")}
    assert checks[("bf16", "flash")]["skipped"] == "flash-attn runs on CUDA only"
    for precision in ("bf16", "fp16"):
        sdpa = checks[(precision, "sdpa")]
        assert sdpa["passed"] and sdpa["min_cosine"] >= 0.999 and 0 < sdpa["max_abs_diff"]
    # the device is the CPU here; the subset is packed into other batches than the full set, so
    # equal to fp32 rounding (rows of a matrix product may round differently with its height)
    assert report["fp32_device_vs_cpu_max_abs_diff"] <= 1e-5
    assert [b["precision"] for b in report["benchmarks"]] == ["fp32", "bf16"]
    fp32 = report["benchmarks"][0]
    assert [r["backend"] for r in fp32["results"]] == ["dnabert=v1", "dnabert=v2"]
    assert fp32["max_abs_diff_v1_v2"] <= 1e-5 and fp32["tokens"] > 0
    assert "v2 / v1 tokens/s" in done.stdout
