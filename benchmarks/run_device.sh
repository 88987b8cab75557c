#!/usr/bin/env bash
# The device run, most valuable figures first, sized for a fresh lent H200: 15 minutes of
# device time in all, the machine's start-up (1-3 minutes) included, and at most 10
# minutes (600 s) per call. The stage limits below add up to BUDGET_S (560 s with the
# kill grace) and the correctness sweep and the bf16 DCGAN step end within the first
# 300 s (limits, not measured times: no device run has timed these stages yet); `--plan` prints them without running anything. Every stage runs under its own
# `timeout` (SIGINT first: pytest still writes its report) and writes its JSON under
# $OUT as soon as it ends, so a stage that runs out of time still leaves the earlier
# ones' data. $OUT gets at most 8 files (what a device call brings back):
#   log.txt, stages.jsonl (the environment, then one line per stage: exit code,
#   seconds, timed out) and one JSON per stage:
#   1 correctness     the `-m gpu` tests (test_gpu_sweep.py first: conv / transposed
#                     conv / linear, forward and both gradients, every shipped tile; then
#                     batch norm, loss) in bf16, fp16 and fp32 against a float64
#                     reference, on pytest-xdist workers when it is there -> correctness.json
#   2 step-bf16-b256  DCGAN-64 training step, eager / torch.compile / fastgan (and
#                     fastgan-cuda-graph) side by side with MFU   -> gan_step_bf16_b256.json
#   3 step-fp32-b64   the same in float32 at batch 64 (eager, compile, fastgan)
#                                                                 -> gan_step_fp32_b64.json
#   4 layers-conv     per-layer conv figures                      -> conv_layers_<device>_<date>.json
#   5 layers-loss-bn  loss and batch norm, bf16                   -> loss_bn_<device>_<date>.json
#   6 profile         torch.profiler summary of the fastgan step  -> profile_fastgan_step.json
# Usage (repository root or anywhere): benchmarks/run_device.sh [--plan] [group ...]
# with groups correctness, step, layers, profile (default: all, in the order above).
# Limits (seconds) from the environment: SETUP_S, CORRECTNESS_S, STEP_BF16_S,
# STEP_FP32_S, LAYERS_CONV_S, LAYERS_LOSS_BN_S, PROFILE_S; BUDGET_S, FIRST_S.
# Needs PyTorch + Triton on the machine (python3, no network): fastgan is installed with
# `pip install --no-deps -e .`, or, when that fails, imported from a folder of links
# (fastgan/ plus kernels/ as fastgan/kernels, the layout pyproject.toml installs).
set -uo pipefail
PLAN=0
if [[ "${1:-}" == "--plan" ]]; then PLAN=1; shift; fi
GROUPS_WANTED="${*:-all}"
want() { [[ " $GROUPS_WANTED " == *" all "* || " $GROUPS_WANTED " == *" $1 "* ]]; }
cd "$(dirname "$0")/.."
ROOT="$PWD"

SETUP_S=${SETUP_S:-55}           # pip install 30, import check 10, environment 10, nvidia-smi 5
CORRECTNESS_S=${CORRECTNESS_S:-90}
STEP_BF16_S=${STEP_BF16_S:-140}
STEP_FP32_S=${STEP_FP32_S:-80}
LAYERS_CONV_S=${LAYERS_CONV_S:-60}
LAYERS_LOSS_BN_S=${LAYERS_LOSS_BN_S:-35}
PROFILE_S=${PROFILE_S:-35}
KILL_AFTER_S=5                   # after SIGINT, SIGKILL this much later
BUDGET_S=${BUDGET_S:-560}        # every limit plus its grace: fits one 600 s call
FIRST_S=${FIRST_S:-300}          # correctness and the bf16 step end by then

# group stage limit: the stages in run order (setup always runs).
PLAN_ROWS=(
    "setup setup $SETUP_S"
    "correctness correctness $CORRECTNESS_S"
    "step step-bf16-b256 $STEP_BF16_S"
    "step step-fp32-b64 $STEP_FP32_S"
    "layers layers-conv $LAYERS_CONV_S"
    "layers layers-loss-bn $LAYERS_LOSS_BN_S"
    "profile profile $PROFILE_S"
)
plan() {
    local total=0 first=0 row group name limit
    printf "%-16s %6s %8s\n" stage limit "ends by"
    for row in "${PLAN_ROWS[@]}"; do
        read -r group name limit <<<"$row"
        [[ $group == setup ]] || want "$group" || continue
        total=$((total + limit + KILL_AFTER_S))
        [[ $name == setup || $name == correctness || $name == step-bf16-b256 ]] && first=$total
        printf "%-16s %6d %8d\n" "$name" "$limit" "$total"
    done
    echo "total ${total}s (budget ${BUDGET_S}s); correctness + bf16 step by ${first}s (target ${FIRST_S}s)"
    ((total <= BUDGET_S && first <= FIRST_S))
}
if ((PLAN)); then plan; exit $?; fi
plan >/dev/null || { plan; echo "stage limits exceed the budget" >&2; exit 2; }

OUT="${OUT:-benchmarks/results/device-run}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
WORK="$(mktemp -d)"  # what must not land in $OUT (8 files come back)
unset TRITON_INTERPRET FASTGAN_BENCH_QUICK
export TRITON_DEFAULT_FP_FUSION=1 PYTHONUNBUFFERED=1
PY="${PYTHON:-$(command -v python3 || command -v python)}"
status=0
log() { echo "== $(date -u +%H:%M:%S) $*" | tee -a "$OUT/log.txt"; }
# stage NAME SECONDS command...: run under a timeout, output to log.txt and
# $WORK/NAME.log, one line to stages.jsonl.
stage() {
    local name=$1 limit=$2
    shift 2
    log "$name (limit ${limit}s): $*"
    local t0=$SECONDS
    timeout -s INT --kill-after="$KILL_AFTER_S" "$limit" "$@" 2>&1 | tee "$WORK/$name.log" >>"$OUT/log.txt"
    local rc=${PIPESTATUS[0]}
    local timed_out=false
    [[ $rc == 124 || $rc == 137 ]] && timed_out=true
    echo "{\"stage\": \"$name\", \"rc\": $rc, \"seconds\": $((SECONDS - t0)), \"timed_out\": $timed_out}" \
        >>"$OUT/stages.jsonl"
    [[ $rc == 0 ]] || { log "$name: exit $rc"; status=1; }
}

log "setup (limit ${SETUP_S}s)"
if ! timeout 30 "$PY" -m pip install -q --no-deps --no-build-isolation -e . >>"$OUT/log.txt" 2>&1 ||
    ! timeout 10 "$PY" -c "import fastgan.kernels" >>"$OUT/log.txt" 2>&1; then
    # The package layout without installing: fastgan/'s entries and kernels/ as fastgan/kernels.
    mkdir -p "$WORK/site/fastgan"
    for entry in "$ROOT"/fastgan/*; do ln -s "$entry" "$WORK/site/fastgan/"; done
    ln -s "$ROOT/kernels" "$WORK/site/fastgan/kernels"
    export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
    log "setup: pip install failed, fastgan imported from $WORK/site"
fi
timeout 10 "$PY" benchmarks/device_run.py environment >>"$OUT/stages.jsonl" 2>>"$OUT/log.txt" ||
    log "setup: no environment line"
timeout 5 nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv \
    >>"$OUT/log.txt" 2>&1

if want correctness; then
    XDIST=()
    "$PY" -c "import xdist" 2>/dev/null && XDIST=(-n 12)  # Triton compiles on 12 cores at once
    stage correctness "$CORRECTNESS_S" "$PY" -m pytest -v -m gpu tests/kernels/test_gpu_sweep.py tests/kernels \
        -p no:cacheprovider "${XDIST[@]}" --junitxml "$WORK/correctness.xml"
    "$PY" benchmarks/device_run.py correctness "$WORK/correctness.xml" "$WORK/correctness.log" \
        >"$OUT/correctness.json" 2>>"$OUT/log.txt"
fi

if want step; then
    stage step-bf16-b256 "$STEP_BF16_S" "$PY" -m fastgan bench --device cuda --dtype bfloat16 --batch 256 \
        --providers eager,compile,fastgan,fastgan-cuda-graph --steps 10 --warmup 3 \
        --json "$OUT/gan_step_bf16_b256.json"
    stage step-fp32-b64 "$STEP_FP32_S" "$PY" -m fastgan bench --device cuda --dtype float32 --batch 64 \
        --providers eager,compile,fastgan --steps 10 --warmup 2 --json "$OUT/gan_step_fp32_b64.json"
fi

if want layers; then
    stage layers-conv "$LAYERS_CONV_S" "$PY" benchmarks/bench_conv_layers.py --batch 256 --out "$OUT"
    stage layers-loss-bn "$LAYERS_LOSS_BN_S" "$PY" benchmarks/bench_loss_bn.py --dtypes bfloat16 --out "$OUT"
fi

if want profile; then
    stage profile "$PROFILE_S" "$PY" benchmarks/profile_step.py --provider fastgan --dtype bfloat16 \
        --batch 256 --steps 3 --warmup 3 --out "$OUT/profile_fastgan_step.json"
fi

# The short summary last: the reply carries the end of the output.
echo "--- stages"; cat "$OUT/stages.jsonl" 2>/dev/null
[[ -f "$OUT/correctness.json" ]] &&
    "$PY" -c "import json,sys; print('correctness', json.load(open(sys.argv[1]))['counts'])" "$OUT/correctness.json"
grep -h -A8 "^provider" "$OUT/log.txt" | tail -24
files=$(find "$OUT" -type f | wc -l)
((files <= 8)) || log "warning: $files files under \$OUT; a device call brings back 8"
rm -rf "$WORK"
exit $status
