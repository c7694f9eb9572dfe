#!/usr/bin/env bash
# Everything the CUDA kernels need a GPU for, in one command, run from the
# repository root of a machine with a GPU: build the extension, run the CUDA
# tests (the kernel cases CI runs on CPU threads, now on the device, and the
# device-only ones: 2^24 samples, the device against the emulation), the four
# compute-sanitizer tools on a small case, then bench/lfilter.py,
# bench/sweep.py and bench/coupled.py (BandedRNN against cuDNN's RNN) on
# the device, and the targets read off their JSON
# (bench/gpu_targets.py). Sized for 10 minutes including the first
# build. Logs go to ${OUT:-out/gpu}, the benchmark JSON to bench/results/
# and a copy beside the logs. Exits non-zero when any step failed.
# Uses the machine's python3 with torch, scipy, numba, pytest and hypothesis;
# nothing is downloaded.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-out/gpu}
mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
failed=()

# step NAME SECONDS COMMAND...: runs COMMAND with a time limit, its output
# into $out/NAME.log (the last lines echoed); the status is kept here, in
# this shell, not lost in a pipeline.
step() {
  local name=$1 limit=$2
  shift 2
  echo "== $name: $*"
  timeout "$limit" "$@" > "$out/$name.log" 2>&1
  local status=$?
  tail -n 12 "$out/$name.log"
  if [ $status -ne 0 ]; then
    echo "!! $name failed (exit $status)"
    failed+=("$name")
  fi
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$out/gpu.txt" 2>&1 || failed+=(nvidia-smi)
cat "$out/gpu.txt"
step build 300 python3 -m filterbank.kernels.cuda
step tests 300 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_kernels.py tests/test_ops.py \
  tests/test_nn.py -k "cuda or nvcc or extension_builds"

# A small case through forward and backward (2 tiles, a cascade of two
# groups, shared and own input rows), and the coupled recurrences' kernels,
# for the sanitizers.
cat > "$out/sanitize_case.py" <<'EOF'
import torch
import filterbank
import filterbank.coupled
x = torch.randn(3, 1, 9000, device="cuda")
sos = torch.tensor([[[0.2, 0.1, 0.3, 1.0, -0.5, 0.2]] * 5] * 4, device="cuda").requires_grad_()
y, zf = filterbank.sosfilt(sos, x, zi=torch.zeros(3, 4, 5, 2, device="cuda"))
(y.square().sum() + zf.sum()).backward()
b = torch.tensor([0.1, 0.2, 0.1], device="cuda")
a = torch.tensor([1.0, -1.6, 0.7], device="cuda")
filterbank.lfilter(b, a, torch.randn(2, 5000, device="cuda", dtype=torch.float64))
# The coupled recurrences (csrc/coupled.cu): grouped rows, and rows wider than a block.
for channels in (7, 1500):
    band = (0.1 * torch.randn(2, channels, 5, device="cuda")).requires_grad_()
    h, h_last = filterbank.coupled.banded_recurrence(torch.randn(3, 2, channels, 50, device="cuda"), band, (2, 2),
                                                     h0=torch.zeros(3, 2, channels, device="cuda"))
    (h.square().sum() + h_last.sum()).backward()
crow = torch.tensor([0, 2, 2, 3], device="cuda")
col = torch.tensor([0, 2, 1], device="cuda")
values = torch.tensor([0.5, -0.2, 0.3], device="cuda").requires_grad_()
filterbank.coupled.sparse_recurrence(torch.randn(4, 3, 20, device="cuda"), (crow, col, values)).sum().backward()
torch.cuda.synchronize()
print("sanitizer case ran")
EOF
for tool in memcheck racecheck synccheck initcheck; do
  step "sanitize_$tool" 150 compute-sanitizer --tool "$tool" --error-exitcode 1 python3 "$out/sanitize_case.py"
done

step bench_lfilter 240 python3 bench/lfilter.py --device cuda --skip-first-call
step bench_sweep 240 python3 bench/sweep.py --device cuda
step bench_coupled 180 python3 bench/coupled.py --device cuda --skip-slow --repeat 3
cp bench/results/*cuda*.json "$out/" 2>/dev/null
python3 bench/gpu_targets.py | tee "$out/targets.txt"

if [ ${#failed[@]} -ne 0 ]; then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
echo "all steps passed"
