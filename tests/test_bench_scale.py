"""``benchmarks/bench_scale.py --smoke``: the scale benchmark runs end to end on a tiny input,
every stage writes its files, and the stage-by-stage results equal ``predict``'s."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_scale_smoke(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_scale.py"), "--smoke", "--workdir", str(tmp_path),
                           "--json", str(tmp_path / "out.json")], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for what in ("| predict ", "| prepare ", "| classify ", "| report ", "| aggregate ", "| convert ", "| classify (768+2560)"):
        assert what in done.stdout, what
    import json

    results = json.loads((tmp_path / "out.json").read_text())
    measures = results["2000"]["measures"]
    assert all(m["peak_rss_mb"] > 10 for m in measures if "in process" not in m["what"])
    assert 1000 < results["2000"]["frames"] < 3000
