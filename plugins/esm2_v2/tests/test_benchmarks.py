"""The GPU check runs end to end in its CPU rehearsal (SMOKE=1), so it is not dead code on CI:
a step that raises is recorded and the others run, the reports are on disk after every step,
and the exit status says whether everything passed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from gpu_report import CheckReport  # noqa: E402

#: A sitecustomize that breaks esm2=v2 in fp16 in every Python process of the check, as a
#: kernel fault would: the embedder raises.
BREAK_FP16 = """
from virnucpro_esm2_v2.embedder import Esm2V2Embedder

_embed = Esm2V2Embedder.embed


def embed(self, seqs):
    if self.precision == "fp16":
        raise RuntimeError("injected fault in the fp16 kernel")
    return _embed(self, seqs)


Esm2V2Embedder.embed = embed
"""


def steps_of(path) -> dict[str, dict]:
    return {step["name"]: step for step in json.loads(path.read_text())["steps"]}


def test_the_gpu_check_records_a_failing_implementation_runs_the_others_and_exits_1(tmp_path):
    inject, out = tmp_path / "inject", tmp_path / "out"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(BREAK_FP16)
    env = {**os.environ, "SMOKE": "1", "OUT": str(out),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(inject), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], capture_output=True, text=True, env=env,
                          timeout=900)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "gpu_check.sh: esm2 exit 1, dnabert exit 0; results in" in done.stdout
    assert sorted(p.name for p in out.iterdir()) == ["dnabert.json", "dnabert.log", "env.txt", "esm2.json", "esm2.log",
                                                     "summary.json"]  # at most 7 files come back from the device tool
    summary = json.loads((out / "summary.json").read_text())
    assert summary["parts"] == {"esm2": {"exit": 1, "timed_out": False}, "dnabert": {"exit": 0, "timed_out": False}}
    assert summary["passed"] is False and summary["smoke"] is True

    esm2 = json.loads((out / "esm2.json").read_text())
    assert esm2["finished"] is True and esm2["passed"] is False
    steps = steps_of(out / "esm2.json")
    assert list(steps) == ["reference", "v2 fp32 vs fair-esm fp32",
                           "v2 flash-attn fp16 vs fp32", "v2 torch-varlen fp16 vs fp32", "v2 sdpa-bucketed fp16 vs fp32",
                           "v2 flash-attn bf16 vs fp32", "v2 torch-varlen bf16 vs fp32", "v2 sdpa-bucketed bf16 vs fp32",
                           "labels", "bench tiny"]
    assert steps["reference"]["status"] == "done"
    assert steps["v2 fp32 vs fair-esm fp32"]["status"] == "passed" and steps["v2 fp32 vs fair-esm fp32"]["failures"] == 0
    broken = steps["v2 sdpa-bucketed fp16 vs fp32"]
    assert broken["status"] == "error" and broken["error"] == "RuntimeError: injected fault in the fp16 kernel"
    assert any("injected fault" in line for line in broken["traceback"])
    # the CPU cannot run the varlen kernels: skipped, but not for a missing package
    assert steps["v2 flash-attn bf16 vs fp32"] == {"name": "v2 flash-attn bf16 vs fp32", "status": "skipped",
                                                   "reason": "needs CUDA", "missing_dependency": False}
    after = steps["v2 sdpa-bucketed bf16 vs fp32"]  # the check went on after the error
    assert after["status"] == "passed" and after["failures"] == 0 and after["min_cosine"] >= 0.999
    assert steps["labels"]["status"] == "done" and set(steps["labels"]["agreement_with_fp32"]) == {"bf16"}
    bench = steps["bench tiny"]
    assert bench["status"] == "failed"
    assert bench["failed"] == {"v2 sdpa-bucketed fp16": "RuntimeError: injected fault in the fp16 kernel"}
    configs = [r["name"] for r in bench["results"]]
    assert configs == ["original fp32", "v1 fp32", "v1 fp16", "v1 bf16", "v2 sdpa-bucketed fp32", "v2 sdpa-bucketed bf16"]
    v2 = next(r for r in bench["results"] if r["name"] == "v2 sdpa-bucketed fp32")
    assert v2["error"]["fp32_failures"] == 0 and 0 < v2["utilisation"] <= 1 and v2["v2_over_v1"] > 0
    assert "v2 sdpa-bucketed fp16        FAILED: RuntimeError: injected fault in the fp16 kernel" in done.stdout

    # dnabert=v2 is not broken: its part passes on its own
    dnabert = json.loads((out / "dnabert.json").read_text())
    assert dnabert["passed"] is True and dnabert["finished"] is True
    assert "[error]" in (out / "esm2.log").read_text() and "torch" in (out / "env.txt").read_text()


def test_a_check_report_is_on_disk_after_every_step_and_goes_on_after_an_error(tmp_path):
    path = tmp_path / "report.json"
    report = CheckReport(path, {"check": "test", "finished": False})
    report.run("first", lambda: {"passed": True, "min_cosine": 0.9999})
    assert [(s["name"], s["status"]) for s in json.loads(path.read_text())["steps"]] == [("first", "passed")]
    report.run("second", lambda: 1 / 0)
    doc = json.loads(path.read_text())  # what a timeout right now would leave
    assert [(s["name"], s["status"]) for s in doc["steps"]] == [("first", "passed"), ("second", "error")]
    assert doc["steps"][1]["error"] == "ZeroDivisionError: division by zero" and doc["passed"] is False
    assert report.run("third", lambda: {"passed": True}) == {"passed": True}
    assert report.finish() == 1 and json.loads(path.read_text())["finished"] is True


def test_a_check_passes_only_without_failures_errors_or_missing_packages(tmp_path):
    def report_with(*skips: bool) -> CheckReport:
        report = CheckReport(tmp_path / "r.json", {})
        report.run("measured", lambda: {"tokens_per_s": 1.0})
        report.run("checked", lambda: {"passed": True})
        for missing in skips:
            report.skip("other", "needs CUDA" if not missing else "flash-attn is not installed", missing_dependency=missing)
        return report

    assert report_with().finish() == 0
    assert report_with(False).finish() == 0  # not applicable here (a CPU): not a failure
    assert report_with(False, True).finish() == 1  # a package is missing: the check is incomplete
    failed = CheckReport(tmp_path / "f.json", {})
    failed.run("checked", lambda: {"passed": False})
    assert failed.steps[0]["status"] == "failed" and failed.finish() == 1
    nothing = CheckReport(tmp_path / "n.json", {})
    nothing.run("measured", lambda: {"tokens_per_s": 1.0})
    assert nothing.finish() == 1  # nothing was checked


def test_an_error_outside_any_step_is_recorded_too(tmp_path):
    report = CheckReport(tmp_path / "r.json", {})
    try:
        raise MemoryError("no room for the model")
    except MemoryError as exc:
        report.error("setup", exc)
    step = json.loads((tmp_path / "r.json").read_text())["steps"][0]
    assert (step["name"], step["status"], step["error"]) == ("setup", "error", "MemoryError: no room for the model")
    assert report.finish() == 1


def test_the_whole_gpu_check_runs_on_a_simulated_gpu_and_passes(tmp_path):
    """Every CUDA branch of the check (flash-attn, torch varlen, the device timers) has run before
    the first real GPU: under the simulated CUDA device (``virnucpro_core.testing.simcuda``)."""
    out = tmp_path / "out"
    env = {**os.environ, "SMOKE": "1", "SMOKE_DEVICE": "cuda:0", "OUT": str(out)}
    done = subprocess.run([sys.executable, "-m", "virnucpro_core.testing.simcuda", "--devices", "1", "--flash-attn", "ok", "--",
                           "bash", str(ROOT / "benchmarks" / "gpu_check.sh")], capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    esm2, dnabert = steps_of(out / "esm2.json"), steps_of(out / "dnabert.json")
    for name in ("flash-attn", "torch-varlen", "sdpa-bucketed"):
        for precision in ("fp16", "bf16"):
            step = esm2[f"v2 {name} {precision} vs fp32"]
            assert step["status"] == "passed" and step["failures"] == 0, step
    assert {r["name"] for r in esm2["bench tiny"]["results"]} >= {"v2 flash-attn fp16", "v2 torch-varlen bf16"}
    assert all(step["status"] in ("passed", "done") for step in dnabert.values()), dnabert
    assert dnabert["bf16 flash vs fp32"]["status"] == "passed"
    assert "Simulated CUDA device" in (out / "esm2.log").read_text()
