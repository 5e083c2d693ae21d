#!/usr/bin/env bash
# Every GPU check of VirNucPro in one call of the device tool (one H200; about 10 minutes):
# esm2=v2 fp16/bf16 x each attention path against fp32 at the ESM-2 3B shape, label agreement
# through a fixed random MLP, tokens/s and fraction of peak of v2 vs v1 vs the original loop at
# the 650M and 3B shapes, and dnabert=v2 (bf16/fp16 x flash/SDPA vs fp32, v1 vs v2) at the
# DNABERT-S shape. All on random weights. Results: JSON and logs under $OUT (7 files).
#
# Once, on the development machine, in the repository root (the GPU image has no fair-esm):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl fair-esm==2.0.0
# Then with the device tool:  run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=600)
# Anywhere else:              OUT=/tmp/gpu-check bash benchmarks/gpu_check.sh
# A CPU rehearsal (tiny shapes, a minute): SMOKE=1 OUT=/tmp/gpu-check bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-${1:-gpu-check-out}}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=.:plugins/esm2_v1:plugins/esm2_v2:plugins/dnabert_v1:plugins/dnabert_v2${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
rc=0
esm2_smoke=(); dnabert_smoke=()
if [ "${SMOKE:-0}" = 1 ]; then esm2_smoke=(--smoke); dnabert_smoke=(--smoke --device cpu); fi
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1; python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"; } \
  > "$OUT/esm2.log"
timeout 430 python3 benchmarks/gpu_check_esm2.py "$OUT" "${esm2_smoke[@]}" 2>&1 | tee -a "$OUT/esm2.log" || rc=1
timeout 140 python3 benchmarks/bench_dnabert.py --gpu-check "$OUT/dnabert" "${dnabert_smoke[@]}" 2>&1 | tee "$OUT/dnabert.log" || rc=1
echo "gpu_check.sh: exit $rc; results in $OUT"
exit $rc
