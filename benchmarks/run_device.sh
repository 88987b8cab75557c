#!/usr/bin/env bash
# One call on a CUDA machine (e.g. the lent H100) does the whole device run and leaves
# every result under $OUT (default: benchmarks/results/device-run):
# It first installs fastgan into the machine's Python (no dependency changes), then:
#   bench    `fastgan bench` for the issue's target configuration (bf16, batch 256),
#            and the batch-64 / float32 / class-conditional variants;
#   profile  a torch.profiler summary of the fastgan (and eager) step: top kernels by
#            device time and launches per step (benchmarks/profile_step.py);
#   suites   the pytest-benchmark suites in full mode (DCGAN-64, batch 64/256, bf16/fp32);
#   scripts  the per-op scripts (conv layers, loss / batch norm).
# Stages can run separately (a device call is limited to 10 minutes and the full suites
# compile ~40 torch.compile cases): run_device.sh [all|bench|profile|suites|scripts]...
# Nothing here has run on a GPU yet: the first run is owed (see benchmarks/README.md).
set -uo pipefail
STAGES="${*:-all}"
want() { [[ " $STAGES " == *" all "* || " $STAGES " == *" $1 "* ]]; }
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results/device-run}"
mkdir -p "$OUT"
unset TRITON_INTERPRET FASTGAN_BENCH_QUICK
PY="${PYTHON:-python}"
status=0
step() { echo "== $*" | tee -a "$OUT/log.txt"; "$@" >>"$OUT/log.txt" 2>&1 || { echo "   failed: $*" | tee -a "$OUT/log.txt"; status=1; }; }

step "$PY" -m pip install --no-deps --no-build-isolation -e .
step nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv
if want bench; then
for cfg in "--dtype bfloat16 --batch 256" "--dtype bfloat16 --batch 64" "--dtype float32 --batch 256" \
           "--dtype bfloat16 --batch 256 --cond class"; do
    name=$(echo "$cfg" | tr -d '-' | tr ' ' '_')
    step "$PY" -m fastgan bench --device cuda $cfg --steps 50 --warmup 10 --json "$OUT/gan_step_${name}.json"
done
fi
if want profile; then
    for provider in fastgan eager; do
        step "$PY" benchmarks/profile_step.py --provider $provider --dtype bfloat16 --batch 256 \
            --out "$OUT/profile_${provider}_step.json"
    done
fi
if want suites; then
    step "$PY" -m pytest -q benchmarks -p no:cacheprovider --benchmark-json "$OUT/suites.json" \
        --benchmark-columns=median,min,max,rounds
fi
if want scripts; then
    step "$PY" benchmarks/bench_conv_layers.py --batch 256 --out "$OUT"
    step "$PY" benchmarks/bench_loss_bn.py --out "$OUT"
fi
# The short table last: the reply carries the end of the output.
grep -h -A8 "^provider" "$OUT/log.txt" | tail -30
exit $status
