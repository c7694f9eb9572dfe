#!/usr/bin/env bash
# The package as a user gets it: build a wheel, install it into a fresh
# virtual environment and use it from a folder outside the checkout (no
# source tree on the path): import, lfilter with gradients, FrontEnd, the RNN layers,
# `filterbank extract` on a generated wav, `filterbank bench`, `filterbank compile`, and the CUDA
# sources found inside the installed package. CI runs this after the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pip_quiet=(--quiet --disable-pip-version-check)
"${PYTHON:-python3}" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install "${pip_quiet[@]}" build "${TORCH_SPEC:-torch==2.13.0}"
"$work/venv/bin/python" -m build --wheel --outdir "$work/dist" . > "$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
"$work/venv/bin/python" -m pip install "${pip_quiet[@]}" "$work"/dist/filterbank-*.whl
cd "$work"
export NUMBA_CACHE_DIR="$work/numba-cache"
"$work/venv/bin/python" -I - <<'PY'
from pathlib import Path

import numpy as np
import soundfile
import torch

import filterbank
from filterbank.kernels import cuda

installed = Path(filterbank.__file__).resolve().parent
assert "site-packages" in installed.parts, f"filterbank imported from {installed}, not the wheel"
for name in cuda.FILES:  # both builds' sources (the CUDA one and the CPU-thread one)
    source = cuda.source_folder() / name
    assert source.is_file() and installed in source.resolve().parents, f"CUDA source not in the wheel: {source}"
x = torch.randn(2, 4000, requires_grad=True)
b, a = filterbank.design.bandpass_biquad(torch.tensor([300.0, 1000.0, 2500.0]), 2.0, 8000.0)
y = filterbank.lfilter(b.requires_grad_(), a, x.unsqueeze(-2))
y.square().sum().backward()
assert y.shape == (2, 3, 4000) and torch.isfinite(x.grad).all() and torch.isfinite(b.grad).all()
features = filterbank.nn.FrontEnd(n_filters=8, sample_rate=8000, hop_length=80)(torch.randn(1, 8000))
assert features.shape == (1, 8, 101) and torch.isfinite(features).all()
output, h_n = filterbank.nn.BandedRNN(3, 16, bandwidth=2)(torch.randn(50, 2, 3))
output.sum().backward()
assert output.shape == (50, 2, 16) and h_n.shape == (1, 2, 16)
sparse = filterbank.nn.SparseRNN(3, 16, density=0.2)(torch.randn(50, 2, 3))[0]
assert sparse.shape == (50, 2, 16) and torch.isfinite(sparse).all()
soundfile.write("clip.wav", (0.5 * np.sin(0.3 * np.arange(8000))).astype(np.float32), 8000)
print(f"wheel: filterbank {filterbank.__version__} from {installed}; lfilter, gradients, FrontEnd and the RNN "
      "layers work")
PY
"$work/venv/bin/filterbank" extract clip.wav --out features --n-filters 8
"$work/venv/bin/python" -I -c "
import json, numpy as np
assert np.load('features/clip.npy').shape == (8, 51)
assert json.loads(open('features/manifest.jsonl').readline())['status'] == 'ok'
print('wheel: filterbank extract wrote features/clip.npy (8, 51) and its manifest')"
"$work/venv/bin/filterbank" bench --batch 2 --filters 4 --time 2000 --repeat 1 > bench.txt
grep -q "filterbank forward+backward" bench.txt
# The kernels compiled ahead from the installed package (its children import the wheel, not the checkout).
"$work/venv/bin/filterbank" compile --family sparse --jobs 1 > compile.txt
grep -q "site-packages" compile.txt && grep -q "done in" compile.txt
echo "wheel: filterbank bench and filterbank compile ran; the wheel works outside the checkout"
