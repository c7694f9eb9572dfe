"""The CUDA backend without a GPU: csrc/ compiles, the scan algorithm is right,
and the Python glue gives the reference's results.

On a GPU the CUDA kernels themselves are checked by test_kernels.py (the
"cuda" backend parameter) and test_cuda_device below.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import torch

from cuda_model import ModelExtension
from helpers import assert_close64, assert_close_low, random_filter, random_sos
from filterbank.kernels import cuda, reference

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not on PATH")
def test_kernels_compile_with_nvcc(tmp_path):
    # No GPU needed: a syntax or template error in csrc/ cannot land.
    result = subprocess.run(
        ["nvcc", "-std=c++17", "-O3", "-arch=sm_90", "-c", str(CSRC / "iir_scan.cu"), "-o", str(tmp_path / "scan.o")],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "warning" not in result.stderr.lower(), result.stderr[-4000:]


def _torch_has_cuda_headers() -> bool:
    include = Path(torch.__file__).parent / "include"
    return (include / "c10" / "cuda" / "impl" / "cuda_cmake_macros.h").exists()


@pytest.mark.skipif(shutil.which("nvcc") is None or not _torch_has_cuda_headers(),
                    reason="needs nvcc and a CUDA build of torch (the CPU wheel lacks c10/cuda's generated headers)")
def test_extension_builds(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setattr(cuda, "_extension", None)
    extension = cuda.build()
    assert hasattr(extension, "section_scan") and hasattr(extension, "correlate")


# --------------------------------------------------------------------------
# The algorithm, through the model of the kernels (tests/cuda_model.py).


@pytest.mark.parametrize("order, n_time, reverse", [
    (2, 1, False), (2, 7, False), (2, 32, False), (2, 33, True), (1, 100, False), (3, 129, True),
    (5, 64 * 3 + 5, False), (8, 150, True), (2, 64 * 9 + 3, False),
])
def test_scan_model_matches_scipy(rng, order, n_time, reverse):
    # Small tiles (chunk 4, 4 threads: 16 samples a tile) so that several
    # tiles, rounds of the tile chain and partial chunks all occur.
    model = ModelExtension(chunk=8, threads=4)
    n_channels = 5
    x = torch.tensor(rng.standard_normal((3, n_time)))
    x_index = torch.tensor([0, 2, 1, 1, 0])
    pairs = [random_filter(rng, order + 1, order + 1) for _ in range(n_channels)]
    b = torch.tensor(np.stack([p[0] / p[1][0] for p in pairs]))
    a = torch.tensor(np.stack([p[1] / p[1][0] for p in pairs]))
    zi = torch.tensor(rng.standard_normal((n_channels, order)))
    y = torch.empty((n_channels, n_time), dtype=torch.float64)
    model.section_scan(x, x_index, b, a, zi, y, reverse)
    for p in range(n_channels):
        signal = x[x_index[p]].numpy()
        if reverse:
            signal = signal[::-1]
        expected = scipy.signal.lfilter(b[p].numpy(), a[p].numpy(), signal, zi=zi[p].numpy())[0]
        if reverse:
            expected = expected[::-1]
        assert_close64(y[p], torch.tensor(expected.copy()), f"channel {p}")


def test_model_uses_the_kernels_constants():
    header = (CSRC / "iir_scan.h").read_text()
    model = ModelExtension()
    assert f"constexpr int kChunk = {model.chunk};" in header
    assert f"constexpr int kThreads = {model.threads};" in header
    assert f"constexpr int kMaxOrder = {cuda.MAX_ORDER};" in header


# --------------------------------------------------------------------------
# The Python glue (filterbank/kernels/cuda.py) on the model's extension.


@pytest.fixture
def model_extension(monkeypatch):
    monkeypatch.setattr(cuda, "_extension", ModelExtension(chunk=8, threads=4))


@pytest.mark.parametrize("sections, order, n_time, pattern", [
    (1, 2, 70, "shared"), (3, 2, 41, "mixed"), (1, 4, 5, "distinct"), (1, 3, 2, "shared"), (2, 1, 33, "mixed"),
    (1, 0, 9, "shared"),
])
def test_glue_matches_reference(rng, model_extension, sections, order, n_time, pattern):
    from test_kernels import NAMES, make_case, reference_both

    case = make_case(rng, 3, 6, sections, order, n_time, pattern)
    x, x_index, b, a, zi = case
    y, zf = cuda.iir_cascade(x, x_index, b, a, zi)
    generator = torch.Generator().manual_seed(5)
    grad_y = torch.randn(y.shape, generator=generator, dtype=torch.float64)
    grad_zf = torch.randn(zf.shape, generator=generator, dtype=torch.float64)
    grads = cuda.iir_cascade_backward(grad_y, grad_zf, x, x_index, b, a, zi)
    expected_outputs, expected_grads = reference_both(case, grad_y, grad_zf)
    for name, got, want in zip(NAMES, (y, zf) + tuple(grads), expected_outputs + expected_grads):
        assert got.dtype == want.dtype, name
        assert_close64(got, want, name)


def test_glue_low_precision_returns_input_dtype(rng, model_extension):
    x = torch.randn(2, 40, dtype=torch.bfloat16)
    sos = torch.tensor(random_sos(rng, 2))
    b, a = sos[None, :, :3].repeat(3, 1, 1).to(torch.bfloat16), sos[None, :, 3:].repeat(3, 1, 1).to(torch.bfloat16)
    zi = torch.zeros(3, 2, 2, dtype=torch.bfloat16)
    x_index = torch.tensor([0, 1, 1])
    y, zf = cuda.iir_cascade(x, x_index, b, a, zi)
    assert y.dtype == zf.dtype == torch.bfloat16
    truth, _ = reference.iir_cascade(*(t.double() for t in (x,)), x_index, b.double(), a.double(), zi.double())
    same_dtype, _ = reference.iir_cascade(x, x_index, b, a, zi)
    assert_close_low(y, truth, same_dtype, "bfloat16 y")


# --------------------------------------------------------------------------
# On a GPU: the lazily built extension through the public API.

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@needs_cuda
def test_cuda_device_public_api_matches_cpu(rng):
    import filterbank

    assert cuda.available(), "the CUDA kernels did not build here"
    x = torch.tensor(rng.standard_normal((4, 1, 20000)))
    sos = torch.tensor(np.stack([random_sos(rng, 3) for _ in range(16)]))
    zi = torch.tensor(rng.standard_normal((4, 16, 3, 2)))
    leaves_cpu = [t.clone().requires_grad_() for t in (sos, x, zi)]
    leaves_gpu = [t.cuda().requires_grad_() for t in (sos, x, zi)]
    y_cpu, zf_cpu = filterbank.sosfilt(leaves_cpu[0], leaves_cpu[1], zi=leaves_cpu[2])
    y_gpu, zf_gpu = filterbank.sosfilt(leaves_gpu[0], leaves_gpu[1], zi=leaves_gpu[2])
    assert_close64(y_gpu, y_cpu, "y")
    assert_close64(zf_gpu, zf_cpu, "zf")
    weights = torch.randn(y_cpu.shape, dtype=torch.float64)
    ((y_cpu * weights).sum() + zf_cpu.sum()).backward()
    ((y_gpu * weights.cuda()).sum() + zf_gpu.sum()).backward()
    for name, cpu_leaf, gpu_leaf in zip(("sos", "x", "zi"), leaves_cpu, leaves_gpu):
        assert_close64(gpu_leaf.grad, cpu_leaf.grad, f"grad {name}")


@needs_cuda
def test_cuda_device_chunked_state_equals_one_pass(rng):
    import filterbank

    b, a = (torch.tensor(v, device="cuda") for v in random_filter(rng, 3, 5))
    x = torch.tensor(rng.standard_normal((3, 50000)), device="cuda")
    whole, zf_whole = filterbank.lfilter(b, a, x, zi=torch.zeros(3, 4, dtype=x.dtype, device="cuda"))
    state, pieces = torch.zeros(3, 4, dtype=x.dtype, device="cuda"), []
    for start in range(0, 50000, 7919):
        piece, state = filterbank.lfilter(b, a, x[:, start : start + 7919], zi=state)
        pieces.append(piece)
    assert_close64(torch.cat(pieces, -1), whole, "chunked y")
    assert_close64(state, zf_whole, "chunked zf")
