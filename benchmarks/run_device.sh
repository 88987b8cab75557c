#!/usr/bin/env bash
# The device run, most valuable figures first, sized for a fresh lent H200 (15 minutes
# of device time in all, start-up included; one call may run 10 minutes). Every stage
# runs under its own `timeout` and writes its JSON under $OUT as soon as it ends, so a
# stage that runs out of time still leaves the earlier ones' data:
#   1 correctness  the `-m gpu` tests: every kernel kind (conv / transposed conv /
#                  linear, forward and both gradients, batch norm, loss) in bf16, fp16
#                  and fp32 against a float64 reference       -> correctness.json
#   2 step         the DCGAN-64 training step, every provider of
#                  fastgan.bench.dcgan.PROVIDERS side by side with MFU, bf16 batch 256
#                  then fp32 batch 64                         -> gan_step_*.json
#   3 layers       per-layer figures: conv layers, loss / batch norm -> conv_layers_*.json, ...
#   4 profile      torch.profiler summary of the fastgan step -> profile_fastgan_step.json
# Usage (repository root or anywhere): benchmarks/run_device.sh [stage ...] (default:
# all, in the order above). Stage timeouts: CORRECTNESS_S, STEP_S, LAYERS_S, PROFILE_S.
# Needs PyTorch + Triton on the machine (no network): fastgan is installed with
# --no-deps, or found through PYTHONPATH when that fails.
set -uo pipefail
STAGES="${*:-all}"
want() { [[ " $STAGES " == *" all "* || " $STAGES " == *" $1 "* ]]; }
cd "$(dirname "$0")/.."
ROOT="$PWD"
OUT="${OUT:-benchmarks/results/device-run}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
unset TRITON_INTERPRET FASTGAN_BENCH_QUICK
export TRITON_DEFAULT_FP_FUSION=1
PY="${PYTHON:-python}"
status=0
log() { echo "== $(date -u +%H:%M:%S) $*" | tee -a "$OUT/log.txt"; }
# stage NAME SECONDS command...: run under a timeout, log, remember the outcome.
stage() {
    local name=$1 limit=$2
    shift 2
    log "$name (limit ${limit}s): $*"
    local t0=$SECONDS
    timeout --kill-after=10 "$limit" "$@" >>"$OUT/log.txt" 2>&1
    local rc=$?
    echo "{\"stage\": \"$name\", \"rc\": $rc, \"seconds\": $((SECONDS - t0)), \"timed_out\": $([[ $rc == 124 || $rc == 137 ]] && echo true || echo false)}" \
        >>"$OUT/stages.jsonl"
    [[ $rc == 0 ]] || { log "$name: exit $rc"; status=1; }
}

log "setup"
timeout 180 "$PY" -m pip install --no-deps --no-build-isolation -e . >>"$OUT/log.txt" 2>&1 \
    || export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
timeout 30 nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv \
    >>"$OUT/log.txt" 2>&1
"$PY" - >"$OUT/environment.json" 2>>"$OUT/log.txt" <<'EOF'
import json, torch, triton
print(json.dumps({"device": torch.cuda.get_device_name(), "capability": torch.cuda.get_device_capability(),
                  "torch": torch.__version__, "triton": triton.__version__}))
EOF

if want correctness; then
    stage correctness "${CORRECTNESS_S:-240}" "$PY" -m pytest -q -m gpu tests/kernels -p no:cacheprovider -x \
        --junitxml "$OUT/correctness.xml"
    "$PY" - "$OUT/correctness.xml" >"$OUT/correctness.json" 2>>"$OUT/log.txt" <<'EOF'
import json, sys, xml.etree.ElementTree as ET
cases = []
for case in ET.parse(sys.argv[1]).iter("testcase"):
    outcome = next((c.tag for c in case if c.tag in ("failure", "error", "skipped")), "passed")
    cases.append({"test": f"{case.get('classname')}::{case.get('name')}", "outcome": outcome,
                  "seconds": float(case.get("time", 0))})
counts = {o: sum(c["outcome"] == o for c in cases) for o in ("passed", "failure", "error", "skipped")}
print(json.dumps({"counts": counts, "cases": cases}, indent=1))
EOF
fi

if want step; then
    # Every provider of dcgan.PROVIDERS (the CLI's default): eager, torch.compile, fastgan, ...
    stage step-bf16-b256 "${STEP_S:-240}" "$PY" -m fastgan bench --device cuda --dtype bfloat16 --batch 256 \
        --steps 20 --warmup 5 --json "$OUT/gan_step_bf16_b256.json"
    stage step-fp32-b64 "${STEP_S:-240}" "$PY" -m fastgan bench --device cuda --dtype float32 --batch 64 \
        --steps 10 --warmup 3 --json "$OUT/gan_step_fp32_b64.json"
fi

if want layers; then
    stage layers-conv "${LAYERS_S:-180}" "$PY" benchmarks/bench_conv_layers.py --batch 256 --out "$OUT"
    stage layers-loss-bn "${LAYERS_S:-120}" "$PY" benchmarks/bench_loss_bn.py --out "$OUT"
fi

if want profile; then
    stage profile "${PROFILE_S:-120}" "$PY" benchmarks/profile_step.py --provider fastgan --dtype bfloat16 \
        --batch 256 --out "$OUT/profile_fastgan_step.json"
fi

# The short summary last: the reply carries the end of the output.
echo "--- stages"; cat "$OUT/stages.jsonl" 2>/dev/null
[[ -f "$OUT/correctness.json" ]] && "$PY" -c "import json,sys; print('correctness', json.load(open(sys.argv[1]))['counts'])" "$OUT/correctness.json"
grep -h -A8 "^provider" "$OUT/log.txt" | tail -24
exit $status
