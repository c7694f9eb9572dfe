"""Every kernel backend against the pure-torch reference, forward and backward.

Covers the shapes the kernels treat differently: lanes sharing an input row
(filterbanks), lanes with their own rows (batches), mixtures, partial tiles
and lane groups, single sections of order 0-10 and cascades, short signals
(shorter than the state), lengths that are not multiples of the time block or
the vector width, non-zero initial state and a gradient arriving on zf.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import scipy.signal
import torch

from helpers import (
    HARD_SECTIONS, assert_close64, assert_close_low, bank_of, emulated_kernels, normalised_sos, random_filter,
    random_sos, relative_error,
)
from filterbank import _ops
from filterbank.kernels import _memory, reference

# "emulated": the CUDA kernels' own source run on CPU threads (csrc/emulation.h),
# so that CI, which has no GPU, executes them.
BACKENDS = [
    pytest.param("cpu", id="cpu"),
    pytest.param("emulated", id="emulated"),
    pytest.param("cuda", id="cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")),
]


def backend(name, order=0):
    from filterbank.kernels import cuda

    if name == "cpu":
        from filterbank.kernels import cpu

        return cpu, "cpu"
    if order > cuda.MAX_ORDER:
        pytest.skip(f"the CUDA kernels take orders up to {cuda.MAX_ORDER} (the op layer uses the reference above)")
    if name == "emulated":
        return emulated_kernels(), "cpu"
    return cuda, "cuda"


def make_case(rng, n_rows, n_channels, n_sections, order, n_time, pattern, dtype=torch.float64):
    x = torch.tensor(rng.standard_normal((n_rows, n_time)), dtype=dtype)
    if pattern == "shared":
        x_index = torch.arange(n_channels) * n_rows // max(n_channels, 1)
    elif pattern == "distinct":
        x_index = torch.tensor(rng.permutation(n_channels) % n_rows)
    else:
        x_index = torch.tensor(rng.integers(0, n_rows, n_channels))
    if order == 2:
        sos = np.stack([random_sos(rng, n_sections) for _ in range(n_channels)]) if n_channels else np.zeros((0, n_sections, 6))
        b, a = sos[..., :3], sos[..., 3:]
    else:
        pairs = [[random_filter(rng, order + 1, order + 1) for _ in range(n_sections)] for _ in range(n_channels)]
        b = np.array([[p[0] for p in row] for row in pairs]).reshape(n_channels, n_sections, order + 1)
        a = np.array([[p[1] for p in row] for row in pairs]).reshape(n_channels, n_sections, order + 1)
    zi = rng.standard_normal((n_channels, n_sections, order))
    as_tensor = lambda v: torch.tensor(v, dtype=dtype)  # noqa: E731
    return x, x_index.long(), as_tensor(b), as_tensor(a), as_tensor(zi)


def run_both(module, device, case, seed):
    x, x_index, b, a, zi = case
    on = lambda t: t.to(device)  # noqa: E731
    y, zf = module.iir_cascade(on(x), on(x_index), on(b), on(a), on(zi))
    generator = torch.Generator().manual_seed(seed)
    grad_y = torch.randn(y.shape, generator=generator, dtype=torch.float64).to(x.dtype)
    grad_zf = torch.randn(zf.shape, generator=generator, dtype=torch.float64).to(x.dtype)
    grads = module.iir_cascade_backward(on(grad_y), on(grad_zf), on(x), on(x_index), on(b), on(a), on(zi))
    return (y.cpu(), zf.cpu()), tuple(g.cpu() for g in grads), (grad_y, grad_zf)


def reference_both(case, grad_y, grad_zf, dtype=torch.float64):
    x, x_index, b, a, zi = (t.to(dtype) if t.is_floating_point() else t for t in case)
    y, zf = reference.iir_cascade(x, x_index, b, a, zi)
    grads = reference.iir_cascade_backward(grad_y.to(dtype), grad_zf.to(dtype), x, x_index, b, a, zi)
    return (y, zf), grads


NAMES = ("y", "zf", "grad_x", "grad_b", "grad_a", "grad_zi")

# (rows, channels, sections, order, time, pattern)
CASES = [
    (1, 1, 1, 2, 1, "shared"),
    (1, 3, 1, 2, 7, "shared"),
    (2, 40, 1, 2, 300, "shared"),  # partial tile, partial lane group
    (3, 130, 1, 2, 257, "shared"),  # several tiles, runs split across tiles
    (70, 70, 1, 2, 129, "distinct"),
    (9, 70, 1, 2, 131, "mixed"),
    (2, 5, 1, 0, 33, "shared"),
    (2, 5, 1, 1, 33, "mixed"),
    (2, 17, 1, 3, 200, "shared"),
    (4, 17, 1, 5, 3, "distinct"),  # signal shorter than the state
    (3, 9, 1, 10, 150, "mixed"),
    (1, 20, 4, 2, 300, "shared"),
    (20, 20, 3, 2, 131, "distinct"),
    (5, 33, 2, 2, 1, "mixed"),
    (2, 6, 2, 4, 70, "shared"),
    (3, 0, 1, 2, 10, "shared"),  # no channels
    (2, 4, 1, 2, 0, "shared"),  # no samples
]


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize("rows, channels, sections, order, n_time, pattern", CASES)
def test_float64_matches_reference(rng, backend_name, rows, channels, sections, order, n_time, pattern):
    module, device = backend(backend_name, order)
    case = make_case(rng, rows, channels, sections, order, n_time, pattern)
    outputs, grads, (grad_y, grad_zf) = run_both(module, device, case, seed=1)
    expected_outputs, expected_grads = reference_both(case, grad_y, grad_zf)
    for name, got, expected in zip(NAMES, outputs + grads, expected_outputs + expected_grads):
        assert got.dtype == expected.dtype, name
        assert_close64(got, expected, name)


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize("n_time", [8000, 16323])
@pytest.mark.parametrize("pattern, sections", [("shared", 1), ("distinct", 1), ("mixed", 3)])
def test_long_signals(rng, backend_name, n_time, pattern, sections):
    # The Python-loop reference is too slow here: the forward is checked
    # against scipy, and the backward against the backward composed from
    # differentiable ops (itself checked against the reference above).
    module, device = backend(backend_name)
    case = make_case(rng, 3, 70, sections, 2, n_time, pattern)
    x, x_index, b, a, zi = case
    (y, zf), grads, (grad_y, grad_zf) = run_both(module, device, case, seed=2)
    for p in range(0, 70, 7):
        sos = normalised_sos(torch.cat([b[p], a[p]], -1).numpy())
        y_ref, zf_ref = scipy.signal.sosfilt(sos, x[x_index[p]].numpy(), zi=zi[p].numpy())
        assert_close64(y[p], torch.tensor(y_ref), f"y, channel {p}")
        assert_close64(zf[p], torch.tensor(zf_ref), f"zf, channel {p}")
    expected = _ops._backward_composite(grad_y, grad_zf, x, x_index, b, a, zi)
    for name, got, want in zip(NAMES[2:], grads, expected):
        assert_close64(got, want, name)


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("rows, channels, sections, order, n_time, pattern",
                         [(2, 40, 1, 2, 1000, "shared"), (30, 30, 2, 2, 500, "distinct"), (3, 9, 1, 4, 300, "mixed")])
def test_low_precision_by_ratio(backend_name, dtype, rows, channels, sections, order, n_time, pattern):
    module, device = backend(backend_name, order)
    # Every backend gets the same draw (float16 overflows on some draws' gradients, for every backend alike).
    rng = np.random.default_rng(zlib.crc32(repr((str(dtype), rows, channels, sections, order, n_time)).encode()))
    case64 = make_case(rng, rows, channels, sections, order, n_time, pattern)
    case = tuple(t.to(dtype) if t.is_floating_point() else t for t in case64)
    # The float64 truth is computed from the coefficients as rounded to dtype.
    case64 = tuple(t.double() if t.is_floating_point() else t for t in case)
    outputs, grads, (grad_y, grad_zf) = run_both(module, device, case, seed=3)
    truth_outputs, truth_grads = reference_both(case64, grad_y.double(), grad_zf.double())
    same_outputs, same_grads = reference_both(case, grad_y, grad_zf, dtype=dtype)
    for name, got, truth, same in zip(NAMES, outputs + grads, truth_outputs + truth_grads, same_outputs + same_grads):
        assert got.dtype == dtype, name
        assert_close_low(got, truth, same, name)


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hard_sections_against_scipy(backend_name, dtype):
    # Low bands and poles at the unit circle (tests/helpers.py), 16000
    # samples. float32 is judged by its ratio to scipy's own sequential
    # float32 sosfilt (transposed direct form II, an independent recursion).
    module, device = backend(backend_name)
    signal = np.random.default_rng(7).standard_normal(16000)
    b, a, zi = bank_of(HARD_SECTIONS, dtype)
    x_index = torch.zeros(len(HARD_SECTIONS), dtype=torch.long)
    y, _ = module.iir_cascade(*(t.to(device) for t in (torch.tensor(signal, dtype=dtype)[None], x_index, b, a, zi)))
    for p, (name, sos) in enumerate(HARD_SECTIONS):
        truth = torch.tensor(scipy.signal.sosfilt(sos, signal))
        error = relative_error(y[p].cpu(), truth)
        if dtype == torch.float64:
            assert error <= 1e-10, f"{name}: {error:.2e}"
        else:
            sequential = scipy.signal.sosfilt(sos.astype(np.float32), signal.astype(np.float32))
            bound = 4 * relative_error(torch.tensor(sequential), truth)
            assert error <= bound, f"{name}: {error:.2e} > {bound:.2e}"


@pytest.mark.parametrize("batch, n_sections, kept, n_time, n_frames, square, compression", [
    ((), 1, 160, 160, 1, True, "log"), ((2,), 4, 100, 37, 0, True, None), ((2, 3), 2, 200, 400, 3, False, "power"),
    ((1,), 1, 0, 5, 0, True, "log"), ((3,), 2, 150, 250, 2, True, None),
])
def test_stream_step_matches_reference(rng, batch, n_sections, kept, n_time, n_frames, square, compression):
    # One streaming step (filter a block, frames over the kept band signals)
    # in one CPU kernel call, against the reference's composition.
    from filterbank.kernels import cpu

    n_filters, hop = 5, 100
    window = torch.tensor(rng.uniform(0.1, 1.0, 2 * hop))
    sos = torch.tensor(np.stack([random_sos(rng, n_sections) for _ in range(n_filters)]))
    x = torch.tensor(rng.standard_normal(batch + (n_time,)))
    zi = torch.tensor(rng.standard_normal(batch + (n_filters, n_sections, 2)))
    history = torch.tensor(rng.standard_normal(batch + (n_filters, kept)))
    n_frames = min(n_frames, max(0, (kept + n_time - 2 * hop) // hop + 1))
    options = (compression, 1e-6, 0.3)
    got = cpu.stream_band_energy(x, sos, zi, history, window, hop, n_frames, square, *options)
    want = reference.stream_band_energy(x, sos, zi, history, window, hop, n_frames, square, *options)
    for name, g, w in zip(("energy", "zf", "bands"), got, want):
        assert g.shape == w.shape, name
        assert_close64(g, w, name)
    low = cpu.stream_band_energy(*(t.float() for t in (x, sos, zi, history, window)), hop, n_frames, square,
                                 *options)
    same = reference.stream_band_energy(*(t.float() for t in (x, sos, zi, history, window)), hop, n_frames,
                                        square, *options)
    for name, g, w, s_ in zip(("energy", "zf", "bands"), low, want, same):
        assert g.dtype == torch.float32
        assert_close_low(g, w, s_, name)


def test_stream_step_reports_a_zero_a0(rng):
    from filterbank.kernels import cpu

    sos = torch.tensor(np.stack([random_sos(rng, 1) for _ in range(3)]))
    sos[1, 0, 3] = 0
    with pytest.raises(ValueError, match=r"a\[\.\.\., 0\] must be non-zero; got 0 in filter 1"):
        cpu.stream_band_energy(torch.zeros(1, 10, dtype=torch.float64), sos,
                               torch.zeros(1, 3, 1, 2, dtype=torch.float64), torch.zeros(1, 3, 0, dtype=torch.float64),
                               torch.ones(4, dtype=torch.float64), 2, 0, True)


@pytest.mark.parametrize("shape, dtype", [((3, 5), torch.float32), ((512, 8192), torch.float32),
                                          ((300, 7001), torch.float64), ((4096, 1024), torch.float16)])
def test_output_buffers(shape, dtype):
    # Large float buffers are mapped with huge pages; whatever the path, they
    # are ordinary contiguous tensors that do not share memory while alive.
    first, second = _memory.empty(shape, dtype), _memory.empty(shape, dtype)
    assert first.shape == shape and first.dtype == dtype and first.is_contiguous()
    first.fill_(1.0)
    second.fill_(2.0)
    assert bool((first == 1).all()) and bool((second == 2).all())
    if _memory._HUGE_PAGES and dtype in (torch.float32, torch.float64) and first.nbytes >= _memory._THRESHOLD:
        assert first.data_ptr() % (2 << 20) == 0, "large buffers start on a huge-page boundary"


@pytest.mark.skipif(not _memory._HUGE_PAGES, reason="no transparent huge pages on this system: large buffers come from torch.empty")
def test_output_buffers_are_recycled_only_when_free(monkeypatch):
    _memory.empty_cache()
    shape = (1024, 4096)  # 16 MiB of float32
    y = _memory.empty(shape, torch.float32)
    address = y.data_ptr()
    view = y[3]
    del y
    other = _memory.empty(shape, torch.float32)
    assert other.data_ptr() != address, "a buffer still viewed by a live tensor must not be reused"
    del view
    assert _memory.cached_bytes() > 0
    again = _memory.empty(shape, torch.float32)
    assert again.data_ptr() == address, "a freed buffer of the same size is reused"
    assert _memory.empty((1024, 4097), torch.float32).data_ptr() != address
    # With the cache limit at zero nothing is kept.
    del again, other
    _memory.empty_cache()
    monkeypatch.setattr(_memory, "_CACHE_LIMIT", 0)
    y = _memory.empty(shape, torch.float32)
    del y
    assert _memory.cached_bytes() == 0


def test_kernels_flush_subnormals_and_leave_the_callers_floating_point_mode_alone():
    # A resonance ringing out over silence decays through the subnormal range,
    # which the kernels flush to zero (x86 arithmetic on subnormals is slow);
    # the caller's thread keeps its own mode.
    from filterbank.kernels import cpu

    x = torch.zeros(1, 20000, dtype=torch.float32)
    x[0, 0] = 1.0
    b = torch.tensor([[[1.0, 0.0, 0.0]]])
    a = torch.tensor([[[1.0, -1.8, 0.81]]])                   # a double pole at 0.9
    y, _ = cpu.iir_cascade(x, torch.zeros(1, dtype=torch.long), b, a, torch.zeros(1, 1, 2))
    smallest = torch.finfo(torch.float32).tiny
    assert not bool(((y != 0) & (y.abs() < smallest)).any())  # no subnormal output
    assert (y[0, :100] != 0).all() and float(y[0, 5000:].abs().max()) < 1e-37
    assert np.float32(smallest) * np.float32(0.5) != 0        # numpy still sees subnormals here
    assert float(torch.tensor(1e-39, dtype=torch.float32) * 1.0) != 0
