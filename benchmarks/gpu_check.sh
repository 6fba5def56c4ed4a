#!/usr/bin/env bash
# The GPU check: on a machine with one CUDA GPU (torch with CUDA and triton already
# installed, no network), install the project from this checkout, run every test
# marked for CUDA and the Triton tests on CUDA, run the benchmark suite on CUDA, and
# write the report and one log per step into OUTDIR. Designed to finish in under
# 8 minutes on an H200: every step has a time limit, and the whole run a deadline.
#
#   benchmarks/gpu_check.sh OUTDIR
#
# OUTDIR receives: summary.txt (each step's exit status and seconds), <step>.log,
# tests_*.xml (JUnit), bench.json / bench.md / plots/ (fastgan-kernels bench),
# peaks.log (each row as a fraction of the GPU's peak), generator.json / generator.md (the
# whole-generator suite, when registered), pytest-benchmark.json. A failing step is recorded and the next one runs anyway;
# the script exits 1 when any step failed, 0 otherwise.
#
# Environment: PYTHON (default python3), GPU_CHECK_BUDGET_S (default 465),
# FASTGAN_CHECK_DEVICE (default cuda; "cpu" dry-runs the plumbing on a machine
# without a GPU), FASTGAN_CHECK_SKIP_INSTALL=1 (use the installed package as it is),
# BENCH_EXTRA (extra arguments for `fastgan-kernels bench`, e.g. --quick).
set -u

if [ $# -ne 1 ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
mkdir -p "$1" || exit 2
OUT=$(cd "$1" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 2

PY=${PYTHON:-python3}
DEVICE=${FASTGAN_CHECK_DEVICE:-cuda}
BUDGET=${GPU_CHECK_BUDGET_S:-465}
START=$(date +%s)
DEADLINE=$((START + BUDGET))
SUMMARY="$OUT/summary.txt"
FAILED=0
export PYTHONUNBUFFERED=1
export MAX_JOBS=${MAX_JOBS:-$(nproc)}

echo "gpu_check: $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
     "device $DEVICE budget ${BUDGET}s" >"$SUMMARY"

# step NAME CAP_S RESERVE_S CMD...: run CMD with a limit of min(CAP, time left - RESERVE),
# RESERVE being what the later steps need at least (their floors: install 60, backends 10,
# tests_cuda 60, tests_triton 40, bench 90, pytest_bench 45 s); log to NAME.log; record the outcome.
limit_for() {  # limit_for CAP RESERVE -> the seconds a step starting now may take
    local left=$((DEADLINE - $(date +%s) - $2))
    echo $(( $1 < left ? $1 : left ))
}

step() {
    local name=$1 cap=$2 reserve=$3
    shift 3
    local now limit rc t0 status
    now=$(date +%s)
    limit=$(limit_for "$cap" "$reserve")
    if [ "$limit" -lt 10 ]; then
        printf '%-14s SKIPPED  no time left (%ss before the deadline)\n' "$name" "$((DEADLINE - now))" >>"$SUMMARY"
        FAILED=1
        return
    fi
    t0=$(date +%s)
    { echo "\$ $*"; echo "(limit ${limit}s)"; } >"$OUT/$name.log"
    timeout --kill-after=10 "$limit" "$@" >>"$OUT/$name.log" 2>&1
    rc=$?
    case $rc in
        0) status="ok";;
        124|137) status="TIMEOUT after ${limit}s";;
        5) status="FAILED (pytest collected no tests)";;
        *) status="FAILED";;
    esac
    [ $rc -eq 0 ] || FAILED=1
    printf '%-14s rc=%-4s %4ss  %s\n' "$name" "$rc" "$(( $(date +%s) - t0 ))" "$status" >>"$SUMMARY"
    echo "[gpu_check] $name: rc=$rc ($status)"
}

# 1. What machine is this?
step env 30 305 bash -c "nvidia-smi || echo 'nvidia-smi: not available'; \
    $PY -c 'import sys, torch; print(sys.version); print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, \
\"available\", torch.cuda.is_available()); print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else \"no GPU\")'; \
    $PY -c 'import triton; print(\"triton\", triton.__version__)'; \
    $PY -m pip list 2>/dev/null | grep -i -E '^(torch|triton|pytest|pytest-benchmark|nvidia-ml-py|matplotlib|tqdm|ninja) '"

# 2. Install from the checkout (builds the extension, with the CUDA kernels when nvcc is there).
if [ "${FASTGAN_CHECK_SKIP_INSTALL:-0}" = "1" ]; then
    echo "install        skipped (FASTGAN_CHECK_SKIP_INSTALL=1)" >>"$SUMMARY"
else
    step install 200 245 "$PY" -m pip install --no-build-isolation --no-deps --no-index -e .
fi
step backends 30 235 "$PY" -c "
import torch, fastgan_kernels
from fastgan_kernels import _ext, backends
print('fastgan_kernels', fastgan_kernels.__file__, 'extension:', _ext.AVAILABLE, _ext.REASON)
dev = torch.device('$DEVICE')
for op in ('fused_linear_fwd', 'fused_linear_bwd', 'bsr_linear_fwd', 'bsr_linear_bwd', 'int8_linear_fwd', 'quantize_per_token'):
    print(op, {k: v or 'available' for k, v in backends.available(dev, op).items()})
"

# 3. Tests: everything marked cuda, then the Triton tests (on CUDA: tests/conftest.py
#    enables the interpreter only where there is no GPU).
step tests_cuda 120 175 "$PY" -m pytest tests -m cuda -q -rs -p no:cacheprovider \
    --junitxml="$OUT/tests_cuda.xml"
step tests_triton 110 135 "$PY" -m pytest tests -k triton -m "not cuda" -q -rs -p no:cacheprovider \
    --junitxml="$OUT/tests_triton.xml"

# 4. The benchmark suite on the device, with the report, JSON and plots.
# The harness stops starting new cases 30 s before the step's limit and saves its JSON after
# every case, so even a slow run leaves a report.
BENCH_BUDGET=$(( $(limit_for 150 45) - 30 ))
[ "$BENCH_BUDGET" -gt 10 ] || BENCH_BUDGET=10
# shellcheck disable=SC2086  # BENCH_EXTRA is a list of words
step bench 150 45 "$PY" -m fastgan_kernels.cli bench --device "$DEVICE" --no-progress --budget-s "$BENCH_BUDGET" \
    --json "$OUT/bench.json" --markdown "$OUT/bench.md" --plot "$OUT/plots" ${BENCH_EXTRA:-}

if [ -s "$OUT/bench.json" ] && [ ! -s "$OUT/bench.md" ]; then  # cut short: render what it saved
    step bench_render 30 45 "$PY" -m fastgan_kernels.cli bench --from-json "$OUT/bench.json" \
        --markdown "$OUT/bench.md" --plot "$OUT/plots"
fi

# 4b. Every row as a fraction of the GPU's peak compute (per dtype) and memory bandwidth, the GPU
#     recognised by name (fastgan_kernels/bench/peaks.py); printed at the end too.
if [ -s "$OUT/bench.json" ]; then
    step peaks 20 45 "$PY" -m fastgan_kernels.bench.peaks "$OUT/bench.json"
fi

# 4c. The whole-generator suite, when this checkout's registry has one (it runs inside "bench" too,
#     where the budget may cut it short); its rows against the peaks as well.
if "$PY" -c "import sys; from fastgan_kernels.bench.registry import suite_names; sys.exit('generator' not in suite_names())" \
        >/dev/null 2>&1; then
    step generator 100 45 bash -c "\"$PY\" -m fastgan_kernels.cli bench --op generator --device $DEVICE --no-progress \
        --budget-s 60 --json \"$OUT/generator.json\" --markdown \"$OUT/generator.md\" && \
        \"$PY\" -m fastgan_kernels.bench.peaks \"$OUT/generator.json\""
else
    echo "generator      skipped: no 'generator' suite in this checkout's benchmark registry" >>"$SUMMARY"
fi

# 5. The same through pytest-benchmark: the quick case set and short rounds (the harness run above
#    is the full measurement; this checks the pytest-benchmark path and its JSON on the device).
step pytest_bench 150 0 "$PY" -m pytest benchmarks --benchmark-only --fastgan-device "$DEVICE" --fastgan-quick -q -rs \
    -p no:cacheprovider --benchmark-max-time 0.2 --benchmark-json "$OUT/pytest-benchmark.json"

echo "total $(( $(date +%s) - START ))s; $([ $FAILED -eq 0 ] && echo 'all steps passed' || echo 'some steps failed')" \
    >>"$SUMMARY"
for log in peaks generator; do  # the fractions of peak, on the console as well
    [ -s "$OUT/$log.log" ] && { echo; echo "== $log"; tail -n +3 "$OUT/$log.log"; }
done
cat "$SUMMARY"
exit $FAILED
