#!/usr/bin/env bash
# Everything the CUDA kernels need a GPU for, in one command (run it on a lent
# GPU machine from the repository root): build the extension, run the CUDA
# tests, run compute-sanitizer over a small case, then the benchmarks. Logs
# and JSON go to ${OUT:-out/gpu}; the benchmark JSON also to bench/results/.
# Uses the machine's python3 with torch, scipy, numba, pytest and hypothesis
# installed; nothing is downloaded.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-out/gpu}
mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
status=0
step() { echo "== $*"; "$@" || { echo "!! failed: $*"; status=1; }; }

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
step python3 -m filterbank.kernels.cuda > "$out/build.log" 2>&1
tail -3 "$out/build.log"
step python3 -m pytest -q -x -p no:cacheprovider tests/test_cuda.py tests/test_kernels.py tests/test_ops.py \
  tests/test_functional.py 2>&1 | tee "$out/tests.log" | tail -15
step compute-sanitizer --tool memcheck --error-exitcode 1 python3 -c "
import torch, filterbank
x = torch.randn(3, 1, 9000, device='cuda')
sos = torch.tensor([[[0.2, 0.1, 0.3, 1.0, -0.5, 0.2]] * 2] * 5, device='cuda').requires_grad_()
y, zf = filterbank.sosfilt(sos, x, zi=torch.zeros(3, 5, 2, 2, device='cuda'))
(y.square().sum() + zf.sum()).backward()
torch.cuda.synchronize()
print('memcheck case ran')
" 2>&1 | tail -5 | tee "$out/memcheck.log"
step python3 bench/lfilter.py --device cuda --skip-first-call 2>&1 | tee "$out/bench_lfilter.log" | tail -20
step python3 bench/sweep.py --device cuda 2>&1 | tee "$out/bench_sweep.log" | tail -12
cp bench/results/*cuda*.json "$out/" 2>/dev/null
exit $status
