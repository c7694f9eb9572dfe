"""The fused filter-and-frame-energy kernel (kernels/_fused.py) against the reference, and FrontEnd's use of it."""

from __future__ import annotations

import pytest
import torch

from filterbank import _ops, nn
from filterbank.features import smoothing_window
from filterbank.kernels import cpu, reference
from test_kernels import make_case


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-13), (torch.float32, 2e-6)])
@pytest.mark.parametrize("n_rows, n_channels, n_sections, n_time, hop, pattern", [
    (1, 64, 1, 4000, 160, "shared"),     # a bank over one signal: shared-input tiles
    (3, 70, 2, 1111, 80, "mixed"),       # partial tiles, cascades, a length off the hop grid
    (5, 5, 1, 333, 64, "distinct"),
    (2, 9, 3, 50, 160, "mixed"),         # shorter than a hop
    (2, 4, 1, 129, 1, "shared"),         # hop 1
])
@pytest.mark.parametrize("square", [True, False])
def test_kernel_matches_the_unfused_kernels(rng, dtype, tolerance, n_rows, n_channels, n_sections, n_time, hop,
                                            pattern, square):
    x, x_index, b, a, zi = make_case(rng, n_rows, n_channels, n_sections, 2, n_time, pattern, dtype=dtype)
    zi = zi * 0.5
    window = smoothing_window(hop, dtype=dtype)
    n_frames = 1 + n_time // hop
    limits = torch.tensor(rng.integers(0, n_time + 1, n_channels))
    limits[0] = n_time
    arguments = (x, x_index, b, a, zi, window, hop, window.shape[0] // 2, n_frames, square, limits)
    got = cpu.iir_cascade_frame_energy(*arguments)
    expected = reference.iir_cascade_frame_energy(*arguments)
    assert got.shape == expected.shape == (n_channels, n_frames) and got.dtype == dtype
    assert (got - expected).abs().max() <= tolerance * expected.abs().max()


def test_kernel_edges(rng):
    x, x_index, b, a, zi = make_case(rng, 2, 3, 1, 2, 0, "mixed")
    window = smoothing_window(4, dtype=torch.float64)
    energy = cpu.iir_cascade_frame_energy(x, x_index, b, a, zi, window, 4, 4, 1, True, torch.zeros(3, dtype=torch.long))
    assert energy.shape == (3, 1) and (energy == 0).all()
    x, x_index, b, a, zi = make_case(rng, 2, 3, 1, 2, 40, "mixed")
    with pytest.raises(ValueError, match=r"limits must have shape \(3,\) \(one per channel\); got \(2,\)"):
        _ops.iir_cascade_frame_energy(x, x_index, b, a, zi, window, 4, 4, 11, True, torch.zeros(2, dtype=torch.long))


def _banks():
    return [nn.BiquadFilterbank(24, 16000, dtype=torch.float64),
            nn.GammatoneFilterbank(10, 16000, dtype=torch.float64),
            nn.IIRFilterbank(12, 16000, n_sections=3, dtype=torch.float64)]


@pytest.mark.parametrize("bank", _banks(), ids=["biquad", "gammatone", "iir"])
@pytest.mark.parametrize("compression, energy", [("log", "square"), ("pcen", "abs"), (None, "square")])
@pytest.mark.parametrize("shape", [(900,), (3, 900), (2, 2, 901)])
def test_front_end_inference_uses_the_fused_kernel_with_the_same_features(monkeypatch, bank, compression, energy,
                                                                         shape):
    front_end = nn.FrontEnd(sample_rate=16000, hop_length=80, filterbank=bank, compression=compression,
                            energy=energy, dtype=torch.float64)
    x = torch.randn(shape, dtype=torch.float64)
    trained = front_end(x)                          # parameters need gradients: the unfused path
    calls = []
    original = cpu.iir_cascade_frame_energy
    monkeypatch.setattr(cpu, "iir_cascade_frame_energy", lambda *a: calls.append(1) or original(*a))
    with torch.no_grad():
        inferred = front_end(x)
        if len(shape) > 1:
            lengths = torch.tensor([shape[-1] - 7 * i for i in range(shape[0])])
            padded = front_end(x, lengths)
    assert calls == [1] * (1 if len(shape) == 1 else 2)
    torch.testing.assert_close(inferred, trained.detach(), rtol=1e-10, atol=1e-12)
    if len(shape) > 1:
        with torch.enable_grad():
            expected = front_end(x, lengths).detach()
        torch.testing.assert_close(padded, expected, rtol=1e-10, atol=1e-12)


def test_fused_path_is_left_when_a_gradient_or_a_trace_needs_the_bands(monkeypatch):
    front_end = nn.FrontEnd(n_filters=8, sample_rate=8000, hop_length=40)
    x = torch.randn(2, 400)
    expected = front_end(x).detach()
    monkeypatch.setattr(cpu, "iir_cascade_frame_energy", lambda *a: pytest.fail("the fused kernel ran"))
    front_end(x).sum().backward()                                  # learnable filters need the bands
    assert front_end.filterbank.raw_frequency.grad is not None
    compiled = torch.compile(front_end, fullgraph=True, backend="eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), expected)          # traced: the custom ops, not the fused kernel


@pytest.mark.parametrize("order", [1, 3, 4])
def test_kernel_other_orders(rng, order):
    x, x_index, b, a, zi = make_case(rng, 2, 20, 2, order, 700, "mixed")
    window = smoothing_window(50, dtype=torch.float64)
    limits = torch.tensor(rng.integers(0, 701, 20))
    arguments = (x, x_index, b, a, zi, window, 50, 50, 15, True, limits)
    expected = reference.iir_cascade_frame_energy(*arguments)
    assert (cpu.iir_cascade_frame_energy(*arguments) - expected).abs().max() <= 1e-13 * expected.abs().max()


@pytest.mark.parametrize("shape", [(2, 0), (0, 100), (0, 2, 100), (2, 3, 0)])
def test_front_end_inference_on_empty_inputs(shape):
    front_end = nn.FrontEnd(n_filters=4, sample_rate=8000, hop_length=40)
    x = torch.zeros(shape)
    expected = front_end(x).detach()                 # the unfused path
    with torch.no_grad():
        got = front_end(x)
    assert got.shape == expected.shape == shape[:-1] + (4, 1 + shape[-1] // 40)
    torch.testing.assert_close(got, expected)
    if shape[0] == 0:
        with torch.no_grad():
            assert front_end(x, torch.zeros(0, dtype=torch.long)).shape == expected.shape
