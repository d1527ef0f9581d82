#!/usr/bin/env bash
# make bench-gpu: the GPU rows of bench/RESULTS.md (and bench/results_gpu_*.json), one section per target,
# each heading naming the device.  Uses $PY as is (installs nothing).  Sized for one H100 / H200 in about
# 8 minutes: per case at most BENCH_GPU_TIME_LIMIT s (default 90) and a 2 s timing budget, 3 timed reps;
# float64 reference checks only up to N = 16,384.
set -uo pipefail
PY=${PY:-python3}
LIMIT=${BENCH_GPU_TIME_LIMIT:-90}
cd "$(dirname "$0")/.."
env -u TRITON_INTERPRET "$PY" -m gankernels.gpucheck || exit $?
DEV=$("$PY" -c "import torch; print(torch.cuda.get_device_name(0))")
COMMON=(--device cuda --dtype float32 --time-limit "$LIMIT" --budget-s 2 --max-reps 3 --check-max-n 16384
        --mem-cap-gb 64 --quiet --md bench/RESULTS.md)
status=0
run() {  # run <json name> <section title> <bench args...>
  local name=$1 title=$2; shift 2
  echo "== $title"
  env -u TRITON_INTERPRET "$PY" -m gankernels bench "$@" "${COMMON[@]}" --json "bench/results_gpu_$name.json" \
    --section "## GPU ($DEV): $title" || { echo "bench-gpu: '$title' failed" >&2; status=1; }
}
run mmd2_16k "mmd2 fwd+bwd, N = M = 16,384, D = 64 (fused vs torch.compile, KeOps)" \
  --ops mmd2 --sizes 16384 --dims 64 --modes fwdbwd --impls fused,compile,keops
run kernel_sum_1m "kernel_sum Gaussian, N = M = 1,000,000, D = 3" \
  --ops kernel_sum --sizes 1000000 --dims 3 --modes fwd --impls fused,keops --kernels gaussian
run kid_50k "exact KID, 50,000 x 50,000, D = 2,048" \
  --ops kid --sizes 50000 --dims 2048 --modes fwd --impls fused
run mmd2_64k_memory "mmd2 fwd+bwd memory, N = M = 65,536, D = 128" \
  --ops mmd2 --sizes 65536 --dims 128 --modes fwdbwd --impls fused
exit $status
