#!/usr/bin/env bash
# What a GPU run checks, in one run of under 8 minutes on one GPU (run from anywhere; installs nothing):
#   1. the device-agnostic tests (those taking pytest's device fixture) with --device cuda;
#   2. overhead.py on cuda, batch 100 and 1000 -> results/overhead_cuda.md;
#   3. speed_paired.py on cuda, batch 100 and 1000, elbo and iwae k=5 (needs static binarized MNIST in DATA_DIR)
#      -> results/speed_paired_cuda_b100.md, results/speed_paired_cuda_b1000.md;
#   4. evaluate --k 5000 throughput on the test split of a one-epoch run -> results/gpu_check.md.
# Environment: DEVICE (default cuda), DATA_DIR (default ../shared/data/binarized_mnist), PYTHON (default python),
# REPORT (default benchmarks/results/gpu_check.md).
# Each step has its own time limit, so that one that hangs leaves the others their time; the script goes on
# after a failed step and exits non-zero at the end if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
DATA_DIR=$(realpath -m "${DATA_DIR:-../shared/data/binarized_mnist}")
PYTHON=${PYTHON:-python}
RESULTS=benchmarks/results
REPORT=${REPORT:-$RESULTS/gpu_check.md}
failed=()

step() {  # step NAME SECONDS COMMAND...: run COMMAND under a time limit; a failure is recorded under NAME
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit}s)"
    if ! timeout "$limit" "$@"; then
        failed+=("$name")
        echo "== $name FAILED"
    fi
}

{
    echo "# GPU check"
    echo
    echo "- machine: $(nvidia-smi -L 2>/dev/null | head -1 || echo "no nvidia-smi"); $("$PYTHON" -c 'import torch, pyro; print(f"torch {torch.__version__}, pyro {pyro.__version__}")')"
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- command: \`DEVICE=$DEVICE bash benchmarks/gpu_check.sh\`"
    echo "- budget: the steps below, each under its own time limit; the whole under 8 minutes"
} >"$REPORT"

step "device-agnostic tests" 90 "$PYTHON" -m pytest -q -p no:cacheprovider --device "$DEVICE" tests/core/test_devices.py
step "overhead" 210 env -C benchmarks "$PYTHON" overhead.py --device "$DEVICE" --batch-sizes 100,1000 --rounds 5 \
    --steps 100 --out "overhead_$DEVICE.md"
if [ -d "$DATA_DIR" ]; then
    for batch in 100 1000; do
        step "speed_paired batch $batch" 45 env -C benchmarks "$PYTHON" speed_paired.py --data-dir "$DATA_DIR" \
            --device "$DEVICE" --rounds 3 --batch-size "$batch" --configurations "elbo,iwae k=5" \
            --out "speed_paired_${DEVICE}_b$batch.md"
    done
else
    echo "== speed_paired: skipped, no binarized MNIST in $DATA_DIR" | tee -a "$REPORT"
fi

run_dir=$(mktemp -d)/run
step "train one epoch" 40 pyrovae train --out "$run_dir" --epochs 1 --device "$DEVICE" --no-progress
start=$(date +%s.%N)
step "evaluate --k 5000" 60 pyrovae evaluate "$run_dir" --k 5000 --device "$DEVICE"
end=$(date +%s.%N)
if [ -f "$run_dir/bounds.csv" ]; then
    {
        echo
        echo "## evaluate --k 5000 (mnist-5k's 500 test images, the default VAE after one epoch)"
        echo
        echo "- wall time of the command, start-up included: $(awk "BEGIN { print $end - $start }") s"
        echo
        echo '```'
        cat "$run_dir/bounds.csv"
        echo '```'
    } >>"$REPORT"
fi

{
    echo
    if [ ${#failed[@]} -eq 0 ]; then echo "All steps passed."; else echo "Failed: ${failed[*]}."; fi
} >>"$REPORT"
cat "$REPORT"
[ ${#failed[@]} -eq 0 ]
