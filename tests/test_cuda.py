"""The CUDA kernels (csrc/) without a GPU, and with one.

Without a GPU the kernels' own source runs on CPU threads (csrc/emulation.h,
``filterbank.kernels.cuda.build_emulated``): every test here except the last
section runs in CI. ``test_kernels.py`` runs the same kernels ("emulated")
through its shape cases; this file adds the numerically hard filters, long
signals, the cascade grouping, the traffic model, determinism, the binding's
own checks and the public API routed through the kernels; and the coupled
recurrences' kernels (csrc/coupled.cu) against the reference.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import torch

import filterbank
import filterbank.coupled
from filterbank import _coupled_ops, _ops
from filterbank.kernels import cpu, cuda
from filterbank.kernels import reference as ref
from helpers import (
    FS, HARD_SECTIONS, TOLERANCE, assert_close64, assert_close_low, bank_of, emulated_kernels, random_filter,
    random_sos, relative_error,
)

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
RATIO = 4.0  # the emulated kernel's error against scipy may be at most this times the sequential kernel's


@pytest.fixture(scope="module")
def kernels():
    return emulated_kernels()


def test_kernels_compile_with_nvcc(tmp_path):
    # No GPU needed: a syntax or template error in csrc/ cannot land.
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc is not on PATH")
    for name in ("iir_scan.cu", "coupled.cu"):
        result = subprocess.run(
            ["nvcc", "-std=c++17", "-O3", "-arch=sm_90", "-c", str(CSRC / name), "-o", str(tmp_path / f"{name}.o")],
            capture_output=True, text=True,
        )
        assert result.returncode == 0, f"{name}: {result.stderr[-4000:]}"
        assert "warning" not in result.stderr.lower(), f"{name}: {result.stderr[-4000:]}"


def test_kernels_compile_as_cpp_without_warnings():
    # The CPU-thread build of the same source (g++, -Wall -Wextra).
    flags = ["g++", "-std=c++20", "-fsyntax-only", "-Wall", "-Wextra", "-Wno-unknown-pragmas", "-DFILTERBANK_EMULATE",
             f"-I{CSRC}"]
    # The scan through its race driver; the coupled kernels alone and with the scan in one unit (emulated.cpp).
    for source in (["tests/race_driver.cpp"], ["-x", "c++", "csrc/coupled.cu"], ["-x", "c++", "csrc/emulated.cpp"]):
        result = subprocess.run(flags + source[:-1] + [str(ROOT / source[-1])], capture_output=True, text=True)
        assert result.returncode == 0 and not result.stderr, f"{source[-1]}: {result.stderr[-4000:]}"


def _torch_has_cuda_headers() -> bool:
    include = Path(torch.__file__).parent / "include"
    return (include / "c10" / "cuda" / "impl" / "cuda_cmake_macros.h").exists()


@pytest.mark.skipif(shutil.which("nvcc") is None or not _torch_has_cuda_headers(),
                    reason="needs nvcc and a CUDA build of torch (the CPU wheel lacks c10/cuda's generated headers)")
def test_extension_builds(monkeypatch):
    monkeypatch.setattr(cuda, "_extension", None)
    extension = cuda.build()
    assert hasattr(extension, "cascade_forward") and hasattr(extension, "cascade_backward")
    assert extension.emulated is False


def test_emulated_build_is_the_kernel_source(kernels):
    assert kernels.extension.emulated is True
    assert all(f"#include \"{name}\"" in (CSRC / "emulated.cpp").read_text() for name in ("iir_scan.cu", "coupled.cu"))
    assert kernels.extension.threads == 128 and kernels.extension.tile_float32 == 4096


@pytest.mark.parametrize("sanitizer_status, expected", [(0, 0), (1, 1)])
def test_gpu_check_fails_when_a_step_fails(tmp_path, sanitizer_status, expected):
    # The device script with stand-ins for the GPU's tools: one failing step
    # must fail the script (its status once got lost in a pipeline).
    tools = tmp_path / "bin"
    tools.mkdir()
    for name, status in (("nvidia-smi", 0), ("python3", 0), ("compute-sanitizer", sanitizer_status)):
        (tools / name).write_text(f"#!/bin/sh\necho stand-in {name}\nexit {status}\n")
        (tools / name).chmod(0o755)
    env = {"PATH": f"{tools}:/usr/bin:/bin", "OUT": str(tmp_path / "out")}
    result = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh")], env=env, capture_output=True,
                            text=True)
    assert result.returncode == expected, result.stdout[-2000:]
    assert ("FAILED: sanitize_memcheck" in result.stdout) == bool(expected)


# --------------------------------------------------------------------------
# Hard filters: poles at the unit circle, low bands, long signals.


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hard_sections_forward(kernels, dtype):
    n_time = 16000
    signal = np.random.default_rng(0).standard_normal(n_time)
    x = torch.tensor(signal, dtype=dtype)[None]
    x_index = torch.zeros(len(HARD_SECTIONS), dtype=torch.long)
    b, a, zi = bank_of(HARD_SECTIONS, dtype)
    y, _ = kernels.iir_cascade(x, x_index, b, a, zi)
    y_cpu, _ = cpu.iir_cascade(x, x_index, b, a, zi)
    for p, (name, sos) in enumerate(HARD_SECTIONS):
        truth = torch.tensor(scipy.signal.sosfilt(sos, signal))
        error = relative_error(y[p], truth)
        if dtype == torch.float64:
            assert error <= 1e-10, f"{name}: float64 error {error:.2e}"
        else:
            sequential = relative_error(y_cpu[p], truth)
            assert error <= RATIO * sequential, f"{name}: float32 error {error:.2e}, sequential {sequential:.2e}"


def test_hard_sections_long_signal(kernels):
    # 2^20 samples: 256 tiles chained by the look-back (one low band and one
    # resonator, in both precisions).
    n_time = 1 << 20
    signal = np.random.default_rng(1).standard_normal(n_time)
    cases = [HARD_SECTIONS[0], HARD_SECTIONS[-5]]
    for dtype in (torch.float32, torch.float64):
        x = torch.tensor(signal, dtype=dtype)[None]
        b, a, zi = bank_of(cases, dtype)
        x_index = torch.zeros(len(cases), dtype=torch.long)
        y, zf = kernels.iir_cascade(x, x_index, b, a, zi)
        y_cpu, _ = cpu.iir_cascade(x, x_index, b, a, zi)
        for p, (name, sos) in enumerate(cases):
            truth, zf_truth = scipy.signal.sosfilt(sos, signal, zi=np.zeros((sos.shape[0], 2)))
            truth = torch.tensor(truth)
            error = relative_error(y[p], truth)
            if dtype == torch.float64:
                assert error <= 1e-10, f"{name}: float64 error {error:.2e}"
                assert_close64(zf[p, : sos.shape[0]], torch.tensor(zf_truth), f"{name} zf")
            else:
                assert error <= RATIO * relative_error(y_cpu[p], truth), f"{name}: float32 error {error:.2e}"


@pytest.mark.parametrize("cutoff", [50, 200, 1000])
def test_order_4_direct_form(kernels, cutoff):
    # One section of order 4 (lfilter): in float64 its own conditioning
    # limits every sequential implementation too, so the bound is the ratio.
    signal = np.random.default_rng(cutoff).standard_normal(16000)
    b_np, a_np = scipy.signal.butter(4, cutoff, fs=FS)
    truth = torch.tensor(scipy.signal.lfilter(b_np, a_np, signal))
    for dtype in (torch.float64, torch.float32):
        b = torch.tensor(b_np, dtype=dtype)[None, None]
        a = torch.tensor(a_np, dtype=dtype)[None, None]
        x = torch.tensor(signal, dtype=dtype)[None]
        args = (x, torch.zeros(1, dtype=torch.long), b, a, torch.zeros(1, 1, 4, dtype=dtype))
        sequential = cpu.iir_cascade(*args)[0][0]
        if not torch.isfinite(sequential).all():
            continue  # the coefficients rounded to float32 are unstable: no filter to compare
        error, sequential_error = relative_error(kernels.iir_cascade(*args)[0][0], truth), relative_error(sequential, truth)
        bound = RATIO * sequential_error if dtype == torch.float32 else max(1e-10, RATIO * sequential_error)
        assert error <= bound, f"{dtype}: error {error:.2e}, sequential {sequential_error:.2e}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hard_sections_backward(kernels, dtype):
    n_time = 12000
    rng = np.random.default_rng(2)
    cases = HARD_SECTIONS[:-4:2] + HARD_SECTIONS[-4:-1]
    x = torch.tensor(rng.standard_normal((1, n_time)), dtype=dtype)
    b, a, zi = bank_of(cases, dtype)
    x_index = torch.zeros(len(cases), dtype=torch.long)
    grad_y = torch.tensor(rng.standard_normal((len(cases), n_time)), dtype=dtype)
    grad_zf = torch.tensor(rng.standard_normal(zi.shape), dtype=dtype)
    got = kernels.iir_cascade_backward(grad_y, grad_zf, x, x_index, b, a, zi)
    truth = cpu.iir_cascade_backward(*(t.double() for t in (grad_y, grad_zf, x)), x_index, b.double(), a.double(),
                                     zi.double())
    sequential = cpu.iir_cascade_backward(grad_y, grad_zf, x, x_index, b, a, zi)
    for name, g, t, s in zip(("grad_x", "grad_b", "grad_a", "grad_zi"), got, truth, sequential):
        for p in range(len(cases)) if name != "grad_x" else [None]:
            g_p, t_p, s_p = (v if p is None else v[p] for v in (g, t, s))
            error = relative_error(g_p, t_p)
            if dtype == torch.float64:
                assert error <= 1e-10, f"{name} {cases[p][0] if p is not None else ''}: {error:.2e}"
            else:
                bound = max(RATIO * relative_error(s_p, t_p), TOLERANCE[torch.float32])  # the suite's float32 rule
                assert error <= bound, f"{name} {cases[p][0] if p is not None else ''}: {error:.2e} > {bound:.2e}"


# --------------------------------------------------------------------------
# Structure: cascades in groups, states, shared and scattered input rows.


@pytest.mark.parametrize("order, n_sections", [(2, 1), (2, 3), (2, 4), (2, 6), (2, 9), (1, 2), (3, 1), (4, 2),
                                               (6, 1), (8, 1)])
def test_cascades_match_scipy(kernels, rng, order, n_sections):
    n_time, n_rows, per_row = 4096 + 37, 3, 6
    x = torch.tensor(rng.standard_normal((n_rows, n_time)))
    x_index = torch.tensor(rng.permutation(np.repeat(np.arange(n_rows), per_row)))  # scattered, not sorted
    pairs = [[random_filter(rng, order + 1, order + 1, max_radius=0.99) for _ in range(n_sections)]
             for _ in range(n_rows * per_row)]
    b = torch.tensor(np.array([[p[0] for p in ch] for ch in pairs]))
    a = torch.tensor(np.array([[p[1] for p in ch] for ch in pairs]))
    zi = torch.tensor(rng.standard_normal((len(pairs), n_sections, order)))
    y, zf = kernels.iir_cascade(x, x_index, b, a, zi)
    for p in range(0, len(pairs), 5):
        signal = x[x_index[p]].numpy()
        for s in range(n_sections):
            signal, state = scipy.signal.lfilter(b[p, s].numpy(), a[p, s].numpy(), signal, zi=zi[p, s].numpy())
            assert_close64(zf[p, s], torch.tensor(state), f"zf channel {p} section {s}")
        assert_close64(y[p], torch.tensor(signal), f"y channel {p}")


@pytest.mark.parametrize("n_time", [1, 2, 31, 32, 33, 4095, 4096, 4097, 2 * 4096 + 1])
def test_awkward_lengths(kernels, rng, n_time):
    from test_kernels import NAMES, make_case, reference_both, run_both

    case = make_case(rng, 2, 19, 2, 2, n_time, "mixed")  # 19 channels: slices of unequal size
    outputs, grads, (grad_y, grad_zf) = run_both(kernels, "cpu", case, seed=4)
    expected_outputs, expected_grads = reference_both(case, grad_y, grad_zf)
    for name, got, want in zip(NAMES, outputs + grads, expected_outputs + expected_grads):
        assert_close64(got, want, f"{name}, T = {n_time}")


def test_unused_rows_get_zero_gradient(kernels, rng):
    # Rows no channel reads: their blocks have no channels but still write grad_x.
    x = torch.tensor(rng.standard_normal((4, 5000)))
    x_index = torch.tensor([1, 1, 3])
    sos = torch.tensor(np.stack([random_sos(rng, 1) for _ in range(3)]))
    b, a, zi = sos[..., :3], sos[..., 3:], torch.zeros(3, 1, 2, dtype=torch.float64)
    grad_x = kernels.iir_cascade_backward(torch.randn(3, 5000, dtype=torch.float64), torch.zeros_like(zi), x,
                                          x_index, b, a, zi)[0]
    assert (grad_x[[0, 2]] == 0).all()
    assert (grad_x[[1, 3]] != 0).any(dim=1).all()


def test_chunked_state_equals_one_pass(kernels, rng):
    sos = torch.tensor(np.stack([random_sos(rng, 3, max_radius=0.999) for _ in range(4)]))
    b, a = sos[..., :3], sos[..., 3:]
    x = torch.tensor(rng.standard_normal((2, 30000)))
    x_index = torch.tensor([0, 0, 1, 1])
    whole, zf_whole = kernels.iir_cascade(x, x_index, b, a, torch.zeros(4, 3, 2, dtype=torch.float64))
    state, pieces = torch.zeros(4, 3, 2, dtype=torch.float64), []
    for start in range(0, 30000, 7919):
        piece, state = kernels.iir_cascade(x[:, start : start + 7919], x_index, b, a, state)
        pieces.append(piece)
    assert_close64(torch.cat(pieces, -1), whole, "chunked y")
    assert_close64(state, zf_whole, "chunked zf")


def test_low_precision_inputs_return_their_dtype(kernels, rng):
    x = torch.randn(2, 3000, dtype=torch.bfloat16)
    sos = torch.tensor(np.stack([random_sos(rng, 2) for _ in range(3)]))
    b, a = sos[..., :3].to(torch.bfloat16), sos[..., 3:].to(torch.bfloat16)
    zi = torch.zeros(3, 2, 2, dtype=torch.bfloat16)
    x_index = torch.tensor([0, 1, 1])
    y, zf = kernels.iir_cascade(x, x_index, b, a, zi)
    assert y.dtype == zf.dtype == torch.bfloat16
    truth, _ = cpu.iir_cascade(x.float(), x_index, b.float(), a.float(), zi.float())
    assert float((y.float() - truth).abs().max()) <= 2 * 2 ** -8 * float(truth.abs().max())


# --------------------------------------------------------------------------
# Launches, traffic and determinism, counted by the emulation.


def _seed_like(rng, n_sections, dtype=torch.float32):
    n_rows, per_row, n_time = 2, 32, 2 * 4096 + 123
    x = torch.tensor(rng.standard_normal((n_rows, n_time)), dtype=dtype)
    x_index = torch.arange(n_rows).repeat_interleave(per_row)
    sos = torch.tensor(np.stack([random_sos(rng, n_sections) for _ in range(n_rows * per_row)]), dtype=dtype)
    return x, x_index, sos[..., :3], sos[..., 3:], torch.zeros(n_rows * per_row, n_sections, 2, dtype=dtype)


@pytest.mark.parametrize("n_sections", [1, 4])
def test_traffic_model(kernels, rng, n_sections):
    x, x_index, b, a, zi = _seed_like(rng, n_sections)
    y_bytes = x_index.numel() * x.shape[-1] * 4
    x_bytes = x.numel() * 4
    extension = kernels.extension
    extension.reset_traffic()
    kernels.iir_cascade(x, x_index, b, a, zi)
    read, written, launches = extension.traffic()
    assert launches == 1, "one kernel for the whole cascade"
    assert written <= 1.02 * y_bytes, f"forward writes {written / y_bytes:.3f} |y|"
    assert read <= 2 * x_bytes + 0.05 * y_bytes, f"forward reads {read / x_bytes:.2f} |x|"
    assert read + written <= 1.1 * (y_bytes + x_bytes)

    extension.reset_traffic()
    grad_y = torch.randn(y_bytes // 4).reshape(-1, x.shape[-1])
    kernels.iir_cascade_backward(grad_y, torch.zeros_like(zi), x, x_index, b, a, zi)
    back_read, back_written, back_launches = extension.traffic()
    assert back_launches == 2, "the tile states, then the fused backward"
    # The slices' input gradients are summed by torch afterwards: a read of
    # each partial and a write of grad_x, counted here too.
    splits = -(-32 // extension.channels_per_block)
    summing = (splits + 1) * x_bytes if splits > 1 else 0
    total = read + written + back_read + back_written + summing
    assert total <= 3 * y_bytes, f"forward + backward move {total / y_bytes:.2f} |y|"


def test_groups_of_sections_are_launches(kernels, rng):
    x, x_index, b, a, zi = _seed_like(rng, 9, torch.float64)
    kernels.extension.reset_traffic()
    kernels.iir_cascade(x[:, :500], x_index, b, a, zi)
    assert kernels.extension.traffic()[2] == 3  # sections 1-4, 5-8, 9


def test_backward_is_deterministic(kernels, rng):
    x, x_index, b, a, zi = _seed_like(rng, 2)
    grad_y = torch.randn(x_index.numel(), x.shape[-1])
    first = kernels.iir_cascade_backward(grad_y, torch.ones_like(zi), x, x_index, b, a, zi)
    second = kernels.iir_cascade_backward(grad_y, torch.ones_like(zi), x, x_index, b, a, zi)
    for one, two in zip(first, second):
        assert torch.equal(one, two)


def _race_driver(tmp_path, source_folder):
    binary = tmp_path / "race_driver"
    build = subprocess.run(
        ["g++", "-std=c++20", "-O1", "-g", "-fsanitize=thread", "-pthread", "-DFILTERBANK_EMULATE",
         f"-I{source_folder}", str(ROOT / "tests" / "race_driver.cpp"), "-o", str(binary)],
        capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-4000:]
    return subprocess.run([str(binary)], capture_output=True, text=True, env={"TSAN_OPTIONS": "exitcode=66"})


def test_thread_sanitizer_finds_no_race(tmp_path):
    # Every thread of a block is a real thread: ThreadSanitizer sees a
    # missing barrier between a shared-memory write and another thread's read.
    result = _race_driver(tmp_path, CSRC)
    assert result.returncode == 0, result.stderr[-6000:]
    assert "ThreadSanitizer" not in result.stderr
    assert "race driver ran" in result.stdout


def test_thread_sanitizer_would_find_a_missing_barrier(tmp_path):
    # The same driver over a copy of the kernels with one barrier removed.
    racy = tmp_path / "racy"
    racy.mkdir()
    for name in ("iir_scan.h", "scan.cuh", "emulation.h"):
        shutil.copy(CSRC / name, racy / name)
    source = (CSRC / "iir_scan.cu").read_text()
    barrier = "load(g_row + t) : scalar_t(0);\n    }\n    __syncthreads();"
    assert source.count(barrier) == 1
    (racy / "iir_scan.cu").write_text(source.replace(barrier, "load(g_row + t) : scalar_t(0);\n    }"))
    result = _race_driver(tmp_path, racy)
    assert "ThreadSanitizer: data race" in result.stderr


# --------------------------------------------------------------------------
# The binding's checks (the kernels' own invariants).


def test_binding_checks_its_arguments(kernels):
    extension = kernels.extension
    x = torch.zeros(2, 100)
    row_start = torch.tensor([0, 1, 2])
    order = torch.tensor([0, 1])
    b = torch.zeros(2, 1, 3)
    a = torch.ones(2, 1, 3)
    zi = torch.zeros(2, 1, 2)
    y, zf = torch.empty(2, 100), torch.empty(2, 1, 2)
    report = torch.zeros(1, dtype=torch.long)
    extension.cascade_forward(x, row_start, order, b, a, zi, y, zf, 1, report)
    with pytest.raises(RuntimeError, match="zi must have shape"):
        extension.cascade_forward(x, row_start, order, b, a, torch.zeros(2, 1, 3), y, zf, 1, report)
    with pytest.raises(RuntimeError, match="no kernel for groups of 3 sections"):
        extension.cascade_forward(x, row_start, order, torch.zeros(2, 3, 3), torch.ones(2, 3, 3),
                                  torch.zeros(2, 3, 2), y, torch.empty(2, 3, 2), 1, report)
    with pytest.raises(RuntimeError, match="float32 or float64"):
        extension.cascade_forward(x.half(), row_start, order, b.half(), a.half(), zi.half(), y.half(), zf.half(), 1,
                                  report)
    with pytest.raises(RuntimeError, match="b must have dtype"):
        extension.cascade_forward(x, row_start, order, b.double(), a, zi, y, zf, 1, report)


def test_zero_a0_is_reported_by_the_kernel(kernels, rng):
    # No host check before the launch (that would wait for a GPU): the kernel
    # reports the channel, and the glue raises it (at once on CPU threads).
    sos = torch.tensor(np.stack([random_sos(rng, 2) for _ in range(3)]))
    sos[2, 1, 3] = 0
    x = torch.randn(1, 500, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"a\[\.\.\., 0\] must be non-zero; a CUDA kernel found 0 in channel 2"):
        kernels.iir_cascade(x, torch.zeros(3, dtype=torch.long), sos[..., :3], sos[..., 3:],
                            torch.zeros(3, 2, 2, dtype=torch.float64))
    y, _ = kernels.iir_cascade(x, torch.zeros(2, dtype=torch.long), sos[:2, :, :3], sos[:2, :, 3:],
                               torch.zeros(2, 2, 2, dtype=torch.float64))  # the report was cleared
    assert torch.isfinite(y).all()


# --------------------------------------------------------------------------
# The public API through the emulated kernels: the op layer's glue and autograd.


@pytest.fixture
def through_kernels(kernels, monkeypatch):
    """Route the op layer's filtering of CPU tensors to the emulated CUDA kernels."""
    chosen = _ops._backend

    def backend(op, device, order=0, window=None):
        if op in ("iir_cascade", "iir_cascade_backward") and cuda.supports(order):
            return kernels
        return chosen(op, device, order, window)

    monkeypatch.setattr(_ops, "_backend", backend)


def test_public_api_gradients(through_kernels, rng):
    # gradcheck on a small case (each numerical derivative is two launches) ...
    sos = torch.tensor(random_sos(rng, 2)).requires_grad_()
    x = torch.tensor(rng.standard_normal(24)).requires_grad_()
    zi = torch.tensor(rng.standard_normal((2, 2))).requires_grad_()
    torch.autograd.gradcheck(lambda s, x_, z: filterbank.sosfilt(s, x_, zi=z), (sos, x, zi))


def test_public_api_matches_cpu_kernels(kernels, rng, monkeypatch):
    # ... and a larger one against the CPU kernels, outputs and gradients.
    sos = torch.tensor(np.stack([random_sos(rng, 5) for _ in range(6)]))
    x = torch.tensor(rng.standard_normal((2, 1, 5000)))
    zi = torch.tensor(rng.standard_normal((2, 6, 5, 2)))
    weights = torch.tensor(rng.standard_normal((2, 6, 5000)))

    def run():
        leaves = [t.clone().requires_grad_() for t in (sos, x, zi)]
        y, zf = filterbank.sosfilt(leaves[0], leaves[1], zi=leaves[2])
        ((y * weights).sum() + zf.square().sum()).backward()
        return [y.detach(), zf.detach()] + [leaf.grad for leaf in leaves]

    expected = run()
    chosen = _ops._backend
    monkeypatch.setattr(_ops, "_backend", lambda op, device, order=0, window=None: (
        kernels if op in ("iir_cascade", "iir_cascade_backward") else chosen(op, device, order, window)))
    for name, got, want in zip(("y", "zf", "grad sos", "grad x", "grad zi"), run(), expected):
        assert_close64(got, want, name)


def test_public_api_matches_scipy(through_kernels, rng):
    b, a = (torch.tensor(v) for v in random_filter(rng, 4, 5))
    x = torch.tensor(rng.standard_normal((3, 9000)))
    y, zf = filterbank.lfilter(b, a, x, zi=torch.zeros(3, 4, dtype=torch.float64))
    expected = [scipy.signal.lfilter(b.numpy(), a.numpy(), row, zi=np.zeros(4)) for row in x.numpy()]
    assert_close64(y, torch.tensor(np.stack([e[0] for e in expected])), "y")
    assert_close64(zf, torch.tensor(np.stack([e[1] for e in expected])), "zf")


# --------------------------------------------------------------------------
# Coupled recurrences (csrc/coupled.cu) against the reference. float64 within
# 1e-12 of the reference's scale; float32 by the suite's ratio rule
# (assert_close_low): the kernel's error against the float64 reference at most
# LOW_PRECISION_RATIO times the float32 reference's own error, or 1e-5 of the
# scale. The backwards take the same saved h in every comparison, so relu's
# slope is the same function for all of them.

NONLINEARITIES = ("identity", "tanh", "relu")
BANDWIDTHS = [(0, 0), (2, 1), (0, 3), (8, 8)]
SIZES = [(1, 100), (7, 1), (7, 100), (33, 5), (300, 5), (300, 100)]  # (C, T)
ROW_MATRIX = torch.tensor([2, 0, 2, 1, 0])  # five rows over three matrices, one row alone with its matrix


def _coupled(kernels, name, *args):
    """``filterbank.kernels.cuda.<name>`` on the emulated extension."""
    return kernels._call(name, *args)


def _band_case(rng, n_channels, n_time, bandwidths, dtype=torch.float64):
    lower, upper = bandwidths
    width = lower + upper + 1
    u = torch.tensor(rng.standard_normal((len(ROW_MATRIX), n_time, n_channels)), dtype=dtype)
    # Rows of |A| summing to at most 0.9: a contraction, so T = 100 stays of order one.
    band = torch.tensor(rng.uniform(-0.9, 0.9, (3, n_channels, width)) / width, dtype=dtype)
    h0 = torch.tensor(rng.standard_normal((len(ROW_MATRIX), n_channels)), dtype=dtype)
    return u, band, ROW_MATRIX, h0, lower


def _csr_case(rng, n_channels, n_time, density=0.2, dtype=torch.float64):
    mask = rng.random((n_channels, n_channels)) < density
    mask[rng.random(n_channels) < 0.3] = False  # empty rows (and so, often, empty columns)
    crow = torch.tensor(np.concatenate([[0], np.cumsum(mask.sum(1))]), dtype=torch.int64)
    col = torch.tensor(np.nonzero(mask)[1], dtype=torch.int64)
    per_row = max(1, int(mask.sum(1).max()))
    values = torch.tensor(rng.uniform(-0.9, 0.9, (3, col.numel())) / per_row, dtype=dtype)
    u = torch.tensor(rng.standard_normal((len(ROW_MATRIX), n_time, n_channels)), dtype=dtype)
    h0 = torch.tensor(rng.standard_normal((len(ROW_MATRIX), n_channels)), dtype=dtype)
    return u, crow, col, values, ROW_MATRIX, h0


def _close(got, want, what, rtol=1e-12):
    scale = max(float(want.abs().max()), 1e-300) if want.numel() else 1.0
    error = float((got.double() - want.double()).abs().max()) if want.numel() else 0.0
    assert got.shape == want.shape and got.dtype == want.dtype, f"{what}: {got.shape} {got.dtype}"
    assert error <= rtol * scale, f"{what}: max error {error:.3e} > {rtol:.0e} x scale {scale:.3e}"


@pytest.mark.parametrize("bandwidths", BANDWIDTHS)
@pytest.mark.parametrize("n_channels, n_time", SIZES)
@pytest.mark.parametrize("nonlinearity", NONLINEARITIES)
def test_banded_recurrence_float64(kernels, rng, nonlinearity, n_channels, n_time, bandwidths):
    u, band, index, h0, lower = _band_case(rng, n_channels, n_time, bandwidths)
    h = _coupled(kernels, "banded_recurrence", u, band, index, h0, lower, nonlinearity)
    _close(h, ref.banded_recurrence(u, band, index, h0, lower, nonlinearity), "h")
    grad_h = torch.tensor(rng.standard_normal(h.shape))
    got = _coupled(kernels, "banded_recurrence_backward", grad_h, h, band, index, h0, lower, nonlinearity)
    want = ref.banded_recurrence_backward(grad_h, h, band, index, h0, lower, nonlinearity)
    for name, g, w in zip(("grad_u", "grad_band", "grad_h0"), got, want):
        _close(g, w, name)
    # Band entries whose column falls outside the matrix get no gradient.
    columns = torch.arange(n_channels)[:, None] + torch.arange(band.shape[-1]) - lower
    assert (got[1][:, (columns < 0) | (columns >= n_channels)] == 0).all()


@pytest.mark.parametrize("bandwidths", [(2, 1), (8, 8)])
@pytest.mark.parametrize("n_channels, n_time", [(7, 100), (300, 100)])
@pytest.mark.parametrize("nonlinearity", NONLINEARITIES)
def test_banded_recurrence_float32(kernels, rng, nonlinearity, n_channels, n_time, bandwidths):
    u, band, index, h0, lower = _band_case(rng, n_channels, n_time, bandwidths)
    args32 = [t.float() for t in (u, band)] + [index, h0.float()]
    h = _coupled(kernels, "banded_recurrence", *args32, lower, nonlinearity)
    assert h.dtype == torch.float32
    assert_close_low(h, ref.banded_recurrence(u, band, index, h0, lower, nonlinearity),
                     ref.banded_recurrence(*args32, lower, nonlinearity), "h float32")
    grad_h = torch.tensor(rng.standard_normal(h.shape), dtype=torch.float32)
    got = _coupled(kernels, "banded_recurrence_backward", grad_h, h, args32[1], index, args32[3], lower, nonlinearity)
    want64 = ref.banded_recurrence_backward(grad_h.double(), h.double(), band, index, h0, lower, nonlinearity)
    want32 = ref.banded_recurrence_backward(grad_h, h, args32[1], index, args32[3], lower, nonlinearity)
    for name, g, w64, w32 in zip(("grad_u", "grad_band", "grad_h0"), got, want64, want32):
        assert g.dtype == torch.float32
        assert_close_low(g, w64, w32, f"{name} float32")


@pytest.mark.parametrize("n_channels, n_time", SIZES)
@pytest.mark.parametrize("nonlinearity", NONLINEARITIES)
def test_csr_recurrence_float64(kernels, rng, nonlinearity, n_channels, n_time):
    u, crow, col, values, index, h0 = _csr_case(rng, n_channels, n_time)
    h = _coupled(kernels, "csr_recurrence", u, crow, col, values, index, h0, nonlinearity)
    _close(h, ref.csr_recurrence(u, crow, col, values, index, h0, nonlinearity), "h")
    grad_h = torch.tensor(rng.standard_normal(h.shape))
    got = _coupled(kernels, "csr_recurrence_backward", grad_h, h, crow, col, values, index, h0, nonlinearity)
    want = ref.csr_recurrence_backward(grad_h, h, crow, col, values, index, h0, nonlinearity)
    for name, g, w in zip(("grad_u", "grad_values", "grad_h0"), got, want):
        _close(g, w, name)


@pytest.mark.parametrize("nonlinearity", NONLINEARITIES)
def test_csr_recurrence_float32(kernels, rng, nonlinearity):
    u, crow, col, values, index, h0 = _csr_case(rng, 120, 100, density=0.05)
    args32 = [u.float(), crow, col, values.float(), index, h0.float()]
    h = _coupled(kernels, "csr_recurrence", *args32, nonlinearity)
    assert_close_low(h, ref.csr_recurrence(u, crow, col, values, index, h0, nonlinearity),
                     ref.csr_recurrence(*args32, nonlinearity), "h float32")
    grad_h = torch.tensor(rng.standard_normal(h.shape), dtype=torch.float32)
    got = _coupled(kernels, "csr_recurrence_backward", grad_h, h, *args32[1:], nonlinearity)
    want64 = ref.csr_recurrence_backward(grad_h.double(), h.double(), crow, col, values, index, h0, nonlinearity)
    want32 = ref.csr_recurrence_backward(grad_h, h, *args32[1:], nonlinearity)
    for name, g, w64, w32 in zip(("grad_u", "grad_values", "grad_h0"), got, want64, want32):
        assert_close_low(g, w64, w32, f"{name} float32")


def test_csr_recurrence_without_non_zeros(kernels, rng):
    # A = 0: h = f(u), and grad_values has no entries.
    u = torch.tensor(rng.standard_normal((2, 5, 7)))
    crow, col = torch.zeros(8, dtype=torch.int64), torch.zeros(0, dtype=torch.int64)
    values, index = torch.zeros(1, 0, dtype=torch.float64), torch.zeros(2, dtype=torch.int64)
    h0 = torch.ones(2, 7, dtype=torch.float64)
    h = _coupled(kernels, "csr_recurrence", u, crow, col, values, index, h0, "tanh")
    _close(h, torch.tanh(u), "h")
    grad_u, grad_values, grad_h0 = _coupled(kernels, "csr_recurrence_backward", torch.ones_like(h), h, crow, col,
                                            values, index, h0, "tanh")
    _close(grad_u, 1 - h * h, "grad_u")
    assert grad_values.shape == (1, 0) and (grad_h0 == 0).all()


def test_coupled_wide_rows_keep_their_sums_in_global_memory(kernels, rng):
    # C = 2000 in float64 with 17 diagonals: a block of 1024 threads with two
    # channels each, the band's sums too large for shared memory.
    u, band, index, h0, lower = _band_case(rng, 2000, 3, (8, 8))
    u, index, h0 = u[:2], torch.tensor([1, 1]), h0[:2]
    h = _coupled(kernels, "banded_recurrence", u, band, index, h0, lower, "tanh")
    _close(h, ref.banded_recurrence(u, band, index, h0, lower, "tanh"), "h")
    grad_h = torch.tensor(rng.standard_normal(h.shape))
    got = _coupled(kernels, "banded_recurrence_backward", grad_h, h, band, index, h0, lower, "tanh")
    want = ref.banded_recurrence_backward(grad_h, h, band, index, h0, lower, "tanh")
    for name, g, w in zip(("grad_u", "grad_band", "grad_h0"), got, want):
        _close(g, w, name)


@pytest.mark.parametrize("kind", ["banded", "csr"])
def test_coupled_chunks_equal_one_pass(kernels, rng, kind):
    # Each piece starts from the previous piece's last state: the same steps, bit for bit.
    if kind == "banded":
        u, band, index, h0, lower = _band_case(rng, 33, 100, (2, 1))
        matrix = (band,)
    else:
        u, crow, col, values, index, h0 = _csr_case(rng, 33, 100)
        matrix, lower = (crow, col, values), None

    def run(u_, h0_):
        options = (lower, "tanh") if kind == "banded" else ("tanh",)
        return _coupled(kernels, f"{kind}_recurrence", u_, *matrix, index, h0_, *options)

    whole = run(u, h0)
    state, pieces = h0, []
    for start, stop in ((0, 37), (37, 38), (38, 100)):
        piece = run(u[:, start:stop], state)
        pieces.append(piece)
        state = piece[:, -1]
    assert torch.equal(torch.cat(pieces, 1), whole)


def test_coupled_backward_is_deterministic(kernels, rng):
    u, band, index, h0, lower = _band_case(rng, 33, 50, (2, 1), torch.float32)
    h = _coupled(kernels, "banded_recurrence", u, band, index, h0, lower, "tanh")
    grad_h = torch.randn(h.shape)
    first = _coupled(kernels, "banded_recurrence_backward", grad_h, h, band, index, h0, lower, "tanh")
    second = _coupled(kernels, "banded_recurrence_backward", grad_h, h, band, index, h0, lower, "tanh")
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_coupled_low_precision_inputs_return_their_dtype(kernels, rng):
    u, band, index, h0, lower = _band_case(rng, 7, 20, (2, 1))
    h = _coupled(kernels, "banded_recurrence", u.bfloat16(), band.bfloat16(), index, h0.bfloat16(), lower, "relu")
    assert h.dtype == torch.bfloat16
    truth = ref.banded_recurrence(u.bfloat16().float(), band.bfloat16().float(), index, h0.bfloat16().float(),
                                  lower, "relu")
    assert float((h.float() - truth).abs().max()) <= 2 * 2 ** -8 * float(truth.abs().max())


def test_coupled_binding_checks_its_arguments(kernels):
    extension = kernels.extension
    u, h = torch.zeros(2, 5, 7), torch.empty(2, 5, 7)
    band, index, h0 = torch.zeros(1, 3, 7), torch.zeros(2, dtype=torch.int64), torch.zeros(2, 7)
    extension.banded_forward(u, band, index, h0, h, 1, 1)
    with pytest.raises(RuntimeError, match="h0 must have shape"):
        extension.banded_forward(u, band, index, torch.zeros(3, 7), h, 1, 1)
    with pytest.raises(RuntimeError, match="lower must be in"):
        extension.banded_forward(u, band, index, h0, h, 3, 1)
    with pytest.raises(RuntimeError, match="nonlinearity must be"):
        extension.banded_forward(u, band, index, h0, h, 1, 3)
    with pytest.raises(RuntimeError, match="band must have dtype"):
        extension.banded_forward(u, band.double(), index, h0, h, 1, 1)
    with pytest.raises(RuntimeError, match="float32 or float64"):
        extension.banded_forward(u.half(), band.half(), index, h0.half(), h.half(), 1, 1)
    with pytest.raises(RuntimeError, match="crow must have shape"):
        extension.csr_forward(u, torch.zeros(7, dtype=torch.int64), torch.zeros(0, dtype=torch.int64),
                              torch.zeros(1, 0), index, h0, h, 0)
    with pytest.raises(RuntimeError, match="at most"):
        wide = extension.max_coupled_channels(4) + 1
        extension.banded_forward(torch.zeros(1, 1, wide), torch.zeros(1, 1, wide), index[:1], torch.zeros(1, wide),
                                 torch.empty(1, 1, wide), 0, 0)


def _coupled_backend(kernels, chosen):
    """An op-layer backend choice that gives the coupled ops the emulated CUDA kernels."""

    class Emulated:
        def __getattr__(self, name):
            return lambda *args: kernels._call(name, *args)

    return lambda op, device, *rest: Emulated() if "recurrence" in op else chosen(op, device, *rest)


@pytest.fixture
def coupled_through_kernels(kernels, monkeypatch):
    """Route the coupled ops on CPU tensors to the emulated CUDA kernels."""
    monkeypatch.setattr(_coupled_ops, "_backend", _coupled_backend(kernels, _coupled_ops._backend))


def _public_coupled(rng):
    u = torch.tensor(rng.standard_normal((3, 2, 17, 40)))  # (batch, rows, C, time)
    band = torch.tensor(rng.uniform(-0.3, 0.3, (2, 17, 4)))  # one matrix per row of the second axis
    h0 = torch.tensor(rng.standard_normal((3, 2, 17)))
    weights = torch.tensor(rng.standard_normal(u.shape))
    leaves = [t.clone().requires_grad_() for t in (u, band, h0)]
    h, h_last = filterbank.coupled.banded_recurrence(leaves[0], leaves[1], (2, 1), h0=leaves[2])
    ((h * weights).sum() + h_last.square().sum()).backward()
    return [h.detach(), h_last.detach()] + [leaf.grad for leaf in leaves]


def test_public_coupled_api_matches_cpu_kernels(kernels, rng, monkeypatch):
    # The same case through the numba kernels, then through the emulated CUDA ones.
    expected = _public_coupled(np.random.default_rng(11))
    monkeypatch.setattr(_coupled_ops, "_backend", _coupled_backend(kernels, _coupled_ops._backend))
    kernels.extension.reset_traffic()
    got = _public_coupled(np.random.default_rng(11))
    assert kernels.extension.traffic()[2] == 3, "forward, backward and the sum over rows ran on the kernels"
    for name, g, w in zip(("h", "h_last", "grad u", "grad A", "grad h0"), got, expected):
        _close(g, w, name)


def test_public_sparse_api_through_kernels(coupled_through_kernels, rng):
    u, crow, col, values, _, h0 = _csr_case(rng, 20, 30)
    values = values[0].requires_grad_()
    x = u[:2].transpose(1, 2).contiguous().requires_grad_()  # (batch, C, time)
    h, _ = filterbank.coupled.sparse_recurrence(x, (crow, col, values), h0=h0[:2], nonlinearity="relu")
    torch.autograd.gradcheck(
        lambda v, x_: filterbank.coupled.sparse_recurrence(x_, (crow, col, v), h0=h0[:2], nonlinearity="tanh")[0],
        (values, x[:, :, :6].detach().requires_grad_()))
    assert h.shape == x.shape


# --------------------------------------------------------------------------
# On a GPU: the lazily built extension through the public API.

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@needs_cuda
def test_cuda_device_public_api_matches_cpu(rng):
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
def test_cuda_device_hard_sections_long(rng):
    # 2^24 samples on the device: the look-back over 4096 tiles.
    assert cuda.available()
    signal = torch.tensor(np.random.default_rng(3).standard_normal(1 << 24), dtype=torch.float32)
    sos = torch.tensor(scipy.signal.butter(2, 20, fs=FS, output="sos"), dtype=torch.float32)
    y = filterbank.sosfilt(sos.cuda(), signal.cuda()).cpu()
    y_cpu = filterbank.sosfilt(sos, signal)
    truth = filterbank.sosfilt(sos.double(), signal.double())
    assert relative_error(y, truth) <= RATIO * relative_error(y_cpu, truth)


@needs_cuda
def test_cuda_device_coupled_matches_emulation(kernels, rng):
    # The coupled kernels on the device against their emulation: forward and backward, banded and CSR.
    assert cuda.available()
    u, band, index, h0, lower = _band_case(rng, 300, 200, (8, 8))
    h = kernels._call("banded_recurrence", u, band, index, h0, lower, "tanh")
    h_gpu = cuda.banded_recurrence(u.cuda(), band.cuda(), index.cuda(), h0.cuda(), lower, "tanh")
    _close(h_gpu.cpu(), h, "banded h")
    grad_h = torch.tensor(rng.standard_normal(h.shape))
    want = kernels._call("banded_recurrence_backward", grad_h, h, band, index, h0, lower, "tanh")
    got = cuda.banded_recurrence_backward(*(t.cuda() for t in (grad_h, h, band, index, h0)), lower, "tanh")
    for name, g, w in zip(("grad_u", "grad_band", "grad_h0"), got, want):
        _close(g.cpu(), w, f"banded {name}")
    u, crow, col, values, index, h0 = _csr_case(rng, 300, 200, density=0.02)
    h = kernels._call("csr_recurrence", u, crow, col, values, index, h0, "relu")
    _close(cuda.csr_recurrence(*(t.cuda() for t in (u, crow, col, values, index, h0)), "relu").cpu(), h, "csr h")
    want = kernels._call("csr_recurrence_backward", grad_h, h, crow, col, values, index, h0, "relu")
    got = cuda.csr_recurrence_backward(*(t.cuda() for t in (grad_h, h, crow, col, values, index, h0)), "relu")
    for name, g, w in zip(("grad_u", "grad_values", "grad_h0"), got, want):
        _close(g.cpu(), w, f"csr {name}")


@needs_cuda
def test_cuda_device_emulation_agrees(kernels, rng):
    from test_kernels import make_case

    x, x_index, b, a, zi = make_case(rng, 3, 40, 3, 2, 9000, "mixed")
    on_device = cuda.iir_cascade(*(t.cuda() for t in (x, x_index, b, a, zi)))
    emulated = kernels.iir_cascade(x, x_index, b, a, zi)
    for got, want in zip(on_device, emulated):
        assert_close64(got.cpu(), want, "device against emulation")
