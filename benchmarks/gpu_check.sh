#!/usr/bin/env bash
# Every GPU check of VirNucPro in one call of the device tool (one H200; at most about 9 minutes):
# esm2=v2 fp16/bf16 x each attention path against fp32 at the ESM-2 3B shape, label agreement
# through a fixed random MLP, tokens/s and fraction of peak of v2 vs v1 vs the original loop at
# the 650M and 3B shapes; then dnabert=v2 (bf16/fp16 x flash/SDPA vs fp32, v1 vs v2) at the
# DNABERT-S shape. All on random weights.
#
# Results, 6 files under $OUT, each written as soon as there is something to write (a timeout
# keeps what finished): env.txt (GPU, driver, versions, which optional packages import),
# esm2.json + esm2.log, dnabert.json + dnabert.log (one entry per step: passed, failed, error
# with its message, done, or skipped with its reason), summary.json (each part's exit status).
# A failing step never stops the others. Exit status 0 only when every step of both parts passed:
# 1 when a step failed or raised, or was skipped for a missing package (fair-esm, flash-attn),
# or a part ran out of time.
#
# Wheels (the GPU image has torch 2.11, transformers, h5py, pluggy, click; not fair-esm,
# Biopython or flash-attn): put them in .whl/ at the repository root (ignored by git), and this
# script installs them with
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
# Fetch them once, on the development machine, in the repository root (README, "GPU check"):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl fair-esm==2.0.0
# Then with the device tool:  run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=600)
# Anywhere else:              OUT=/tmp/gpu-check bash benchmarks/gpu_check.sh
# A CPU rehearsal (tiny shapes, two minutes; tested in CI): SMOKE=1 OUT=/tmp/gpu-check bash benchmarks/gpu_check.sh
# The same on a simulated GPU, every CUDA branch of the check included (tested in CI):
#   python -m virnucpro_core.testing.simcuda --devices 1 --flash-attn ok -- \
#     env SMOKE=1 SMOKE_DEVICE=cuda:0 OUT=/tmp/gpu-check bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-${1:-gpu-check-out}}
mkdir -p "$OUT"
SMOKE=${SMOKE:-0}
wheels="none in .whl/"
if ls .whl/*.whl >/dev/null 2>&1; then
  if python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl; then
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    wheels=$(cd .whl && echo *.whl)
  else
    wheels="installing .whl/*.whl failed"
  fi
fi
export PYTHONPATH=.:plugins/esm2_v1:plugins/esm2_v2:plugins/dnabert_v1:plugins/dnabert_v2${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
  echo "wheels: $wheels"
  python3 - <<'EOF'
import importlib.util, sys
import torch
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda)
for name in ("esm", "Bio", "flash_attn", "transformers", "h5py"):
    print(f"{name}: {'importable' if importlib.util.find_spec(name) else 'missing'}")
EOF
} > "$OUT/env.txt" 2>&1

declare -A code=()
summary() {  # summary.json: each part's exit status so far (124: it ran out of time)
  python3 - "$OUT/summary.json" "$SMOKE" "$wheels" "${code[esm2]:-}" "${code[dnabert]:-}" <<'EOF'
import json, sys
path, smoke, wheels, *codes = sys.argv[1:]
parts = {name: {"exit": int(c), "timed_out": int(c) in (124, 137)} for name, c in zip(("esm2", "dnabert"), codes) if c}
json.dump({"smoke": smoke == "1", "wheels": wheels, "parts": parts,
           "passed": len(parts) == 2 and all(p["exit"] == 0 for p in parts.values())}, open(path, "w"), indent=2)
EOF
}
part() {  # NAME SECONDS COMMAND...: run it, its output to the screen and NAME.log
  local name=$1 limit=$2
  shift 2
  timeout -k 10 "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
  code[$name]=${PIPESTATUS[0]}
  summary
}

smoke=(); device=()
if [ "$SMOKE" = 1 ]; then smoke=(--smoke); device=(--device "${SMOKE_DEVICE:-cpu}"); fi
part esm2 390 python3 benchmarks/gpu_check_esm2.py "$OUT" "${smoke[@]}" "${device[@]}"
part dnabert 150 python3 benchmarks/bench_dnabert.py --gpu-check "$OUT" "${smoke[@]}" "${device[@]}"
rc=0
for name in esm2 dnabert; do [ "${code[$name]}" = 0 ] || rc=1; done
echo "gpu_check.sh: esm2 exit ${code[esm2]}, dnabert exit ${code[dnabert]}; results in $OUT"
exit $rc
