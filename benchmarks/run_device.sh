#!/usr/bin/env bash
# The device run, sized for a lent H200: 15 minutes of device time in all, each machine's
# start-up (1-3 minutes) included, at most 10 minutes (600 s) per call. Two calls:
#   1. benchmarks/run_device.sh correctness warm [launch]    (EXPORT_CACHE=1)
#      the `-m gpu` tests on 10 pytest-xdist workers while `warm` runs, in the
#      background, every benchmark below once untimed: Triton's and inductor's compiles
#      land in /tmp/fastgan-cache, which EXPORT_CACHE=1 packs into $OUT
#      (compile-cache.tar.xz.part*, intermediate IR left out); then, with `launch`,
#      the launch-overhead check alone on the GPU (it fits this call, not the second).
#   2. benchmarks/run_device.sh step layers profile
#      with those parts carried in .device-cache/: setup unpacks them, so the timed
#      stages start with every kernel compiled (on the same image, GPU and versions the
#      cache keys match; a miss only costs compile time).
# Every stage runs under its own `timeout` (SIGINT first: pytest still writes its
# report) and writes its JSON under $OUT as soon as it ends (`fastgan bench` rewrites
# its JSON after every provider), so a stage that runs out of time keeps what it
# measured. $OUT gets at most 8 files (what a device call brings back):
#   log.txt, stages.jsonl (the environment, then one line per stage: exit code,
#   seconds, timed out) and one JSON per stage:
#   correctness     the `-m gpu` tests: conv / transposed conv / linear sweep (every
#                   shipped tile, forward and both gradients), batch norm, loss, in bf16,
#                   fp16 and fp32 against a float64 reference; CUDA-graph replay equal to
#                   the eager step bit for bit; launch programs on against off bit for
#                   bit; every step provider at a small size
#                                                           -> correctness.json
#   step-bf16-b256  DCGAN-64 training step: eager, fastgan, fastgan-cuda-graph, compile,
#                   compile-reduce-overhead side by side with MFU -> gan_step_bf16_b256.json
#   step-fp32-b64   the same in float32 at batch 64 (eager, fastgan, compile)
#                                                           -> gan_step_fp32_b64.json
#   layers-conv     per-layer conv figures                  -> conv_layers_<device>_<date>.json
#   layers-loss-bn  loss and batch norm, bf16               -> loss_bn_<device>_<date>.json
#   profile         torch.profiler summary of the fastgan step -> profile_fastgan_step.json
#   launch          host us per launch of each kernel family with the direct launch
#                   path (kernels/_launch.py) off and on, outputs bit-equal between
#                   them (benchmarks/launch_overhead.py)  -> launch_overhead.json
# Usage (repository root or anywhere): benchmarks/run_device.sh [--plan] [group ...]
# with groups correctness, warm, tune, step, layers, profile, launch (default: all but
# tune, which does not fit one call at the default limits: --plan says so). Limits
# (seconds) from the environment: SETUP_S, CORRECTNESS_S, WARM_S, STEP_BF16_S,
# STEP_FP32_S, LAYERS_CONV_S, LAYERS_LOSS_BN_S, PROFILE_S, LAUNCH_S (0 skips a stage); BUDGET_S (one call), FIRST_S (the first
# figures); CORRECTNESS_TESTS (pytest arguments instead of the default selection).
# Groups run in the order given.
# Needs PyTorch + Triton on the machine (python3, no network): fastgan is installed with
# `pip install --no-deps -e .`, or, when that fails, imported from a folder of links
# (fastgan/ plus kernels/ as fastgan/kernels, the layout pyproject.toml installs).
set -uo pipefail
PLAN=0
if [[ "${1:-}" == "--plan" ]]; then PLAN=1; shift; fi
GROUPS_WANTED="${*:-all}"
[[ " $GROUPS_WANTED " == *" all "* ]] && GROUPS_WANTED="correctness warm step layers profile launch"
for group in $GROUPS_WANTED; do
    [[ " correctness warm tune step layers profile launch " == *" $group "* ]] ||
        { echo "unknown group $group (correctness, warm, tune, step, layers, profile, launch, all)" >&2; exit 2; }
done
want() { [[ " $GROUPS_WANTED " == *" $1 "* ]]; }
cd "$(dirname "$0")/.."
ROOT="$PWD"

SETUP_S=${SETUP_S:-60}           # cache unpack 10, pip install 30, import check 10, environment 10
CORRECTNESS_S=${CORRECTNESS_S:-225}
WARM_S=${WARM_S:-$CORRECTNESS_S} # in the background, beside correctness
STEP_BF16_S=${STEP_BF16_S:-170}
STEP_FP32_S=${STEP_FP32_S:-80}
LAYERS_CONV_S=${LAYERS_CONV_S:-80}
LAYERS_LOSS_BN_S=${LAYERS_LOSS_BN_S:-40}
PROFILE_S=${PROFILE_S:-45}
LAUNCH_S=${LAUNCH_S:-60}         # its compiles included (about 20-40 s on an H200)
TUNE_COMPILE_S=${TUNE_COMPILE_S:-90} # in the background, beside correctness
TUNE_S=${TUNE_S:-90}
EXPORT_S=30                      # packing the compile cache (EXPORT_CACHE=1)
KILL_AFTER_S=5                   # after SIGINT, SIGKILL this much later
BUDGET_S=${BUDGET_S:-560}        # every limit plus its grace: fits one 600 s call
FIRST_S=${FIRST_S:-300}          # the first figures (correctness or the bf16 step) by then

# group stage limit: the stages in run order (setup always runs; warm runs beside
# correctness, so the longer of the two counts).
PLAN_ROWS=(
    "setup setup $SETUP_S"
    "correctness correctness $CORRECTNESS_S"
    "warm warm $WARM_S"
    "tune tune-compile $TUNE_COMPILE_S"
    "tune tune $TUNE_S"
    "step step-bf16-b256 $STEP_BF16_S"
    "step step-fp32-b64 $STEP_FP32_S"
    "layers layers-conv $LAYERS_CONV_S"
    "layers layers-loss-bn $LAYERS_LOSS_BN_S"
    "profile profile $PROFILE_S"
    "launch launch $LAUNCH_S"
)
plan() {
    local total=0 first=0 beside=0 row group wanted name limit
    printf "%-16s %6s %8s\n" stage limit "ends by"
    for wanted in setup $GROUPS_WANTED; do
        for row in "${PLAN_ROWS[@]}"; do
            read -r group name limit <<<"$row"
            [[ $group == "$wanted" && $limit != 0 ]] || continue  # a limit of 0 skips the stage
            if [[ $name == correctness ]]; then
                beside=$((limit + KILL_AFTER_S))
            elif [[ $name == warm || $name == tune-compile ]]; then
                # Beside correctness: only what it runs past correctness adds.
                local extra=$((limit + KILL_AFTER_S - beside))
                ((extra > 0)) || extra=0
                total=$((total + extra))
                printf "%-16s %6d %8d  (beside correctness)\n" "$name" "$limit" "$total"
                continue
            fi
            total=$((total + limit + KILL_AFTER_S))
            ((first == 0)) && [[ $name == correctness || $name == step-bf16-b256 ]] && first=$total
            printf "%-16s %6d %8d\n" "$name" "$limit" "$total"
        done
    done
    [[ ${EXPORT_CACHE:-0} == 1 ]] && total=$((total + EXPORT_S)) && printf "%-16s %6d %8d\n" export "$EXPORT_S" "$total"
    echo "total ${total}s (budget ${BUDGET_S}s); first figures by ${first}s (target ${FIRST_S}s)"
    ((total <= BUDGET_S && first <= FIRST_S)) && return 0
    ((total > BUDGET_S)) && echo "over one call's budget: run the groups in two calls (correctness warm; step layers profile)"
    return 1
}
if ((PLAN)); then plan; exit $?; fi
plan >/dev/null || { plan; echo "stage limits exceed the budget" >&2; exit 2; }

OUT="${OUT:-benchmarks/results/device-run}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
WORK="$(mktemp -d)"  # what must not land in $OUT (8 files come back)
unset FASTGAN_BENCH_QUICK
# Compiled kernels on the GPU: tests/conftest.py turns the interpreter on unless it is
# set, and "unset" would leave it to that default.
export TRITON_INTERPRET=0 TRITON_DEFAULT_FP_FUSION=1 PYTHONUNBUFFERED=1
CACHE_ROOT="${CACHE_ROOT:-/tmp/fastgan-cache}"
export TRITON_CACHE_DIR="${TRITON_CACHE_DIR:-$CACHE_ROOT/triton}"
export TORCHINDUCTOR_CACHE_DIR="${TORCHINDUCTOR_CACHE_DIR:-$CACHE_ROOT/inductor}"
CACHE_IN="${CACHE_IN:-$ROOT/.device-cache}"
PY="${PYTHON:-$(command -v python3 || command -v python)}"
status=0
log() { echo "== $(date -u +%H:%M:%S) $*" | tee -a "$OUT/log.txt"; }
stage_line() {  # NAME RC SECONDS
    local timed_out=false
    [[ $2 == 124 || $2 == 137 ]] && timed_out=true
    echo "{\"stage\": \"$1\", \"rc\": $2, \"seconds\": $3, \"timed_out\": $timed_out}" >>"$OUT/stages.jsonl"
    [[ $2 == 0 ]] || { log "$1: exit $2"; status=1; }
}
# stage NAME SECONDS command...: run under a timeout, output to log.txt and
# $WORK/NAME.log, one line to stages.jsonl.
stage() {
    local name=$1 limit=$2
    shift 2
    [[ $limit == 0 ]] && { log "$name: skipped (limit 0)"; return 0; }
    log "$name (limit ${limit}s): $*"
    local t0=$SECONDS
    timeout -s INT --kill-after="$KILL_AFTER_S" "$limit" "$@" 2>&1 | tee "$WORK/$name.log" >>"$OUT/log.txt"
    stage_line "$name" "${PIPESTATUS[0]}" $((SECONDS - t0))
}

log "setup (limit ${SETUP_S}s)"
if compgen -G "$CACHE_IN/compile-cache.tar.xz.part*" >/dev/null; then
    # Parts in name order (split's aa, ab, ...); tar restores the absolute cache paths.
    if cat "$CACHE_IN"/compile-cache.tar.xz.part* | timeout 20 xz -d | tar -C / -x 2>>"$OUT/log.txt"; then
        log "setup: compile cache unpacked ($(find "$CACHE_ROOT" -type f | wc -l) files)"
    else
        log "setup: compile cache could not be unpacked (compiles will run)"
    fi
fi
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

# The benchmarks' commands, shared by warm (untimed, one step) and the timed stages.
BENCH=("$PY" -m fastgan bench --device cuda)
BF16=(--dtype bfloat16 --batch 256)
FP32=(--dtype float32 --batch 64)
BF16_PROVIDERS=${BF16_PROVIDERS:-eager,fastgan,fastgan-cuda-graph,compile,compile-reduce-overhead}  # most valuable first
FP32_PROVIDERS=eager,fastgan,compile
LAYERS_CONV=("$PY" benchmarks/bench_conv_layers.py --batch 256)
LAYERS_LOSS_BN=("$PY" benchmarks/bench_loss_bn.py --dtypes bfloat16)
PROFILE=("$PY" benchmarks/profile_step.py --provider fastgan --dtype bfloat16 --batch 256)
# in_background LOG SECONDS command...: a warm job, its pid added to WARM_PIDS.
WARM_PIDS=()
in_background() {
    local out=$1 limit=$2
    shift 2
    timeout -s INT --kill-after="$KILL_AFTER_S" "$limit" "$@" >>"$out" 2>&1 &
    WARM_PIDS+=($!)
}

if want warm; then
    # Every compile the timed stages will need, while correctness runs (its results do
    # not depend on timing), in three queues. Output to $WORK only: these runs' figures,
    # taken beside the tests, mean nothing.
    log "warm (limit ${WARM_S}s, in the background)"
    WARM_T0=$SECONDS
    warm_queue() {  # LOG command... ; command... (each command one string)
        local out=$1
        shift
        in_background "$out" "$WARM_S" bash -c "$(printf '%s && ' "$@") true"
    }
    q() { printf '%q ' "$@"; }
    warm_queue "$WORK/warm-bf16.log" \
        "$(q "${BENCH[@]}" "${BF16[@]}" --providers fastgan,compile,compile-reduce-overhead --steps 1 --warmup 1)" \
        "$(q "${PROFILE[@]}" --steps 1 --warmup 1 --out "$WORK/warm-profile.json")"
    warm_queue "$WORK/warm-fp32.log" "$(q "${BENCH[@]}" "${FP32[@]}" --providers fastgan,compile --steps 1 --warmup 1)"
    warm_queue "$WORK/warm-layers.log" "$(q "${LAYERS_CONV[@]}" --out "$WORK/warm-layers")" \
        "$(q "${LAYERS_LOSS_BN[@]}" --out "$WORK/warm-layers")"
fi

if want tune; then
    # The tile search's compiles, one process per layer at once, beside correctness;
    # the timed pass (run_tune) then finds every candidate in Triton's cache.
    log "tune-compile (limit ${TUNE_COMPILE_S}s, in the background)"
    WARM_T0=${WARM_T0:-$SECONDS}
    for layer in G0 G1 G2 G3 G4 D0 D1 D2 D3 D4; do
        in_background "$WORK/warm-tune-$layer.log" "$TUNE_COMPILE_S" \
            "$PY" benchmarks/tune_conv_tiles.py --compile-only --layers "$layer"
    done
fi

run_tune() {
    # Tiles tuned on this GPU: kernels/configs/<device>.json rewritten here (the timed
    # stages after this one use it) and copied to $OUT, with the search's log.
    local table
    table=$("$PY" -c "import torch; from fastgan.kernels import _tiles; print(_tiles.device_key(torch.device('cuda')))")
    stage tune "$TUNE_S" "$PY" benchmarks/tune_conv_tiles.py
    cp "kernels/configs/$table.json" "$OUT/tuned_$table.json" 2>>"$OUT/log.txt"
    grep -h "best" "$WORK/tune.log" >"$OUT/tune_best.txt" 2>/dev/null
}

run_correctness() {
    local XDIST=()
    "$PY" -c "import xdist" 2>/dev/null && XDIST=(-n 10)  # Triton compiles on 10 cores at once; warm uses the rest
    # The longest tests first (xdist hands tests out in this order). CORRECTNESS_TESTS
    # (pytest arguments) replaces the selection, e.g. to rerun a few tests.
    local tests=(tests/test_cuda_graph.py tests/test_bench_graph_providers.py tests/test_launch_programs.py
        tests/kernels/test_gpu_sweep.py tests/kernels)
    [[ -n ${CORRECTNESS_TESTS:-} ]] && read -r -a tests <<<"$CORRECTNESS_TESTS"
    stage correctness "$CORRECTNESS_S" "$PY" -m pytest -v -m gpu "${tests[@]}" -p no:cacheprovider "${XDIST[@]}" \
        --junitxml "$WORK/correctness.xml"
    "$PY" benchmarks/device_run.py correctness "$WORK/correctness.xml" "$WORK/correctness.log" \
        >"$OUT/correctness.json" 2>>"$OUT/log.txt"
}

finish_warm() {  # once, after correctness or before the first timed stage
    ((${#WARM_PIDS[@]})) || return 0
    local warm_rc=0 pid f
    for pid in "${WARM_PIDS[@]}"; do wait "$pid" || warm_rc=$?; done
    WARM_PIDS=()
    stage_line warm "$warm_rc" $((SECONDS - WARM_T0))
    # Prefixed: the summary below greps log.txt for the timed tables.
    for f in "$WORK"/warm-*.log; do tail -n 15 "$f" | sed "s|^|warm $(basename "$f" .log)\| |" >>"$OUT/log.txt"; done
}

run_step() {
    stage step-bf16-b256 "$STEP_BF16_S" "${BENCH[@]}" "${BF16[@]}" --providers "$BF16_PROVIDERS" --steps 10 \
        --warmup 3 --json "$OUT/gan_step_bf16_b256.json"
    stage step-fp32-b64 "$STEP_FP32_S" "${BENCH[@]}" "${FP32[@]}" --providers "$FP32_PROVIDERS" --steps 10 \
        --warmup 2 --json "$OUT/gan_step_fp32_b64.json"
}

run_layers() {
    stage layers-conv "$LAYERS_CONV_S" "${LAYERS_CONV[@]}" --out "$OUT"
    stage layers-loss-bn "$LAYERS_LOSS_BN_S" "${LAYERS_LOSS_BN[@]}" --out "$OUT"
}

run_profile() {
    stage profile "$PROFILE_S" "${PROFILE[@]}" --steps 3 --warmup 3 --out "$OUT/profile_fastgan_step.json"
}

run_launch() {  # its JSON is written when it ends; exit 1: outputs differ, 3: direct path unused
    stage launch "$LAUNCH_S" "$PY" benchmarks/launch_overhead.py --json "$OUT/launch_overhead.json"
}

# The groups in the order given (warm has started already, in the background).
for group in $GROUPS_WANTED; do
    case $group in
    correctness) run_correctness; finish_warm ;;
    tune | step | layers | profile | launch) finish_warm; "run_$group" ;;
    esac
done
finish_warm

if [[ ${EXPORT_CACHE:-0} == 1 && -d $CACHE_ROOT ]]; then
    # The compiled kernels for the next call (carried in .device-cache/): without the
    # intermediate IR, which a cache hit never reads (Triton loads the .json and .cubin).
    # 15 MiB parts: a device call brings back files of at most 16 MiB.
    t0=$SECONDS
    tar -C / -c --exclude='*.llir' --exclude='*.ttir' --exclude='*.ttgir' --exclude='*.ptx' --exclude='*.source' \
        "${CACHE_ROOT#/}" 2>>"$OUT/log.txt" | timeout "$EXPORT_S" xz -T0 -3 |
        split -b 15M - "$OUT/compile-cache.tar.xz.part"
    stage_line export "${PIPESTATUS[1]}" $((SECONDS - t0))
    log "export: $(du -ch "$OUT"/compile-cache.tar.xz.part* | tail -1)"
fi

# The short summary last: the reply carries the end of the output.
echo "--- stages"; cat "$OUT/stages.jsonl" 2>/dev/null
[[ -f "$OUT/correctness.json" ]] && "$PY" - "$OUT/correctness.json" <<'PYTHON'
import json, sys
c = json.load(open(sys.argv[1]))
print("correctness", c["counts"])
bad = [x["test"] for x in c["cases"] if x["outcome"] in ("failure", "error")]
print("\n".join(f"  not passed: {t}" for t in bad[:15]) + (f"\n  ... {len(bad) - 15} more" if len(bad) > 15 else ""))
PYTHON
grep -h -A8 "^provider" "$OUT/log.txt" | tail -24
files=$(find "$OUT" -type f | wc -l)
((files <= 8)) || log "warning: $files files under \$OUT; a device call brings back 8"
rm -rf "$WORK"
exit $status
