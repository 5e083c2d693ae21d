"""The GPU check script runs end to end in its CPU smoke mode, so it is not dead code on CI."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT


def test_gpu_check_smoke_mode_writes_every_report(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check_esm2.py"), str(tmp_path), "--smoke",
                             "--sequences", "24"], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    equivalence = json.loads((tmp_path / "equivalence.json").read_text())
    assert equivalence["passed"] is True
    names = [c["name"] for c in equivalence["checks"]]
    assert names == ["v2 fp32 vs fair-esm fp32", "v2 sdpa-bucketed fp16 vs fp32", "v2 sdpa-bucketed bf16 vs fp32"]
    assert all(c["failures"] == 0 for c in equivalence["checks"])
    labels = json.loads((tmp_path / "labels.json").read_text())
    assert set(labels["agreement_with_fp32"]) == {"fp16", "bf16"}
    bench = json.loads((tmp_path / "bench_tiny.json").read_text())
    configs = [r["name"] for r in bench["results"]]
    assert configs[:2] == ["original fp32", "v1 fp32"] and "v2 sdpa-bucketed fp32" in configs
    v2 = next(r for r in bench["results"] if r["name"] == "v2 sdpa-bucketed fp32")
    assert v2["error"]["fp32_failures"] == 0 and 0 < v2["utilisation"] <= 1 and v2["v2_over_v1"] > 0
    assert "configuration" in result.stdout and "tokens/s" in result.stdout
