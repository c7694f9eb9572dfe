"""Front-end maths (filterbank.features) and the frame-energy kernels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import filterbank
from filterbank import _ops, features
from filterbank.kernels import reference
from helpers import assert_close64


def naive_frame_energy(y: np.ndarray, window: np.ndarray, hop: int, square: bool) -> np.ndarray:
    """The definition, one sample at a time: frame f centred on f * hop."""
    n_time = y.shape[-1]
    n_frames = 1 + n_time // hop
    offset = len(window) // 2
    out = np.zeros(y.shape[:-1] + (n_frames,))
    for f in range(n_frames):
        for i, w in enumerate(window):
            t = f * hop - offset + i
            if 0 <= t < n_time:
                out[..., f] += w * (y[..., t] ** 2 if square else abs(y[..., t]))
    return out


@pytest.mark.parametrize("hop, n_time, kind, energy", [
    (160, 16000, "hann", "square"), (160, 1000, "box", "abs"), (7, 100, "hann", "abs"), (8, 5, "hann", "square"),
    (3, 1, "box", "square"), (4, 0, "hann", "square"), (1, 9, "hann", "square"),
])
def test_frame_energy_matches_the_definition(rng, hop, n_time, kind, energy):
    y = rng.standard_normal((2, 3, n_time))
    window = features.smoothing_window(hop, kind=kind, dtype=torch.float64)
    got = features.frame_energy(torch.tensor(y), hop, energy=energy, window=window)
    expected = naive_frame_energy(y, window.numpy(), hop, energy == "square")
    assert got.shape == (2, 3, 1 + n_time // hop)
    assert_close64(got, torch.tensor(expected), "frame energy")
    # The kernel and the torch reference agree too.
    flat = torch.tensor(y).reshape(6, n_time)
    expected_reference = reference.frame_energy(flat, window, hop, len(window) // 2, 1 + n_time // hop,
                                                energy == "square")
    assert_close64(got.reshape(6, -1), expected_reference, "reference")


def test_frame_energy_takes_any_window_and_framing(rng):
    # A window over more than three hops is past the CPU kernels: the op takes the reference.
    y = torch.tensor(rng.standard_normal((3, 101)))
    window = torch.tensor(rng.uniform(0, 1, 23))
    got = features.frame_energy(y, 4, window=window)
    assert_close64(got, torch.tensor(naive_frame_energy(y.numpy(), window.numpy(), 4, True)), "long window")
    # offset and n_frames: windows starting at f * hop - offset, as many frames as asked for.
    window = features.smoothing_window(5, dtype=torch.float64)
    got = features.frame_energy(y, 5, window=window, offset=0, n_frames=7)
    expected = [float((window * y[:, f * 5: f * 5 + 10].square()).sum(-1)[1]) for f in range(7)]
    assert got.shape == (3, 7)
    torch.testing.assert_close(got[1], torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=0)


def test_frame_energy_float32_and_default_window(rng):
    y = torch.tensor(rng.standard_normal((4, 3200)), dtype=torch.float32)
    got = features.frame_energy(y, 160)
    expected = naive_frame_energy(y.double().numpy(), features.smoothing_window(160, dtype=torch.float64).numpy(),
                                  160, True)
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_frame_energy_gradients(rng):
    y = torch.tensor(rng.standard_normal((3, 37)), requires_grad=True)
    window = features.smoothing_window(5, dtype=torch.float64)
    for square in (True, False):
        def energy(y):
            return _ops.frame_energy(y, window, 5, len(window) // 2, 1 + 37 // 5, square)

        assert torch.autograd.gradcheck(energy, (y,))
    assert torch.autograd.gradgradcheck(lambda y: _ops.frame_energy(y, window, 5, 5, 8, True), (y,))
    # A learnable window gets its gradient through the reference.
    learnable = window.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda y, w: _ops.frame_energy(y, w, 5, 5, 8, True), (y, learnable))


def test_frame_energy_opcheck(rng):
    y = torch.tensor(rng.standard_normal((3, 50)), requires_grad=True)
    window = features.smoothing_window(6, dtype=torch.float64)
    torch.library.opcheck(torch.ops.filterbank.frame_energy.default, (y, window, 6, 6, 9, True))
    grad = torch.randn(3, 9, dtype=torch.float64)
    torch.library.opcheck(torch.ops.filterbank.frame_energy_backward.default, (grad, y.detach(), window, 6, 6, True))


@pytest.mark.parametrize("call, error, message", [
    (lambda: features.frame_energy(torch.ones(10), 0), ValueError, r"hop_length must be an int >= 1; got 0"),
    (lambda: features.frame_energy(torch.ones(10), 2, energy="cube"), ValueError,
     r"energy must be one of square, abs; got 'cube'"),
    (lambda: features.frame_energy(torch.ones(10), 2, window=torch.ones(3, dtype=torch.float64)), TypeError,
     r"window has dtype torch.float64 but bands has dtype torch.float32"),
    (lambda: features.frame_energy(torch.ones(10), 2, window=torch.ones(3, 2)), ValueError,
     r"window must have shape \(W,\) with W >= 1; got \(3, 2\)"),
    (lambda: features.smoothing_window(4, kind="kaiser"), ValueError, r"kind must be one of hann, box; got 'kaiser'"),
    (lambda: features.log_compress(torch.ones(3), floor=0.0), ValueError, r"floor must be > 0; got 0.0"),
    (lambda: features.power_compress(torch.ones(3), power=2.0), ValueError, r"power must lie in \(0, 1\]; got 2.0"),
    (lambda: features.band_energy(torch.ones(4, 1, 6), torch.ones(2, 10), 5, lengths=[10]), ValueError,
     r"lengths must be 2 integers"),
    (lambda: features.band_energy(torch.ones(4, 6), torch.ones(10), 5), ValueError,
     r"sos must have shape \(n_filters, n_sections, 6\); got \(4, 6\)"),
])
def test_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


def naive_pcen(energy, smooth, alpha, delta, root, floor):
    out = np.empty_like(energy)
    for n in range(energy.shape[-2]):
        m = energy[..., n, 0]
        for t in range(energy.shape[-1]):
            m = (1 - smooth[n]) * m + smooth[n] * energy[..., n, t]
            out[..., n, t] = (energy[..., n, t] / (floor + m) ** alpha[n] + delta[n]) ** root[n] - delta[n] ** root[n]
    return out


def _pcen_parameters(rng, n_filters):
    return (torch.tensor(rng.uniform(0.01, 0.5, n_filters)), torch.tensor(rng.uniform(0.5, 1.0, n_filters)),
            torch.tensor(rng.uniform(0.5, 3.0, n_filters)), torch.tensor(rng.uniform(0.2, 1.0, n_filters)))


def test_pcen_matches_its_recursion_and_streams(rng):
    energy = torch.tensor(rng.uniform(0, 5, (2, 4, 60)))
    parameters = _pcen_parameters(rng, 4)
    got, zf = features.pcen(energy, *parameters)
    expected = naive_pcen(energy.numpy(), *(p.numpy() for p in parameters), 1e-6)
    assert_close64(got, torch.tensor(expected), "pcen")
    # Two chunks with the smoother's state carried equal one pass.
    first, state = features.pcen(energy[..., :25], *parameters)
    second, state = features.pcen(energy[..., 25:], *parameters, zi=state)
    assert_close64(torch.cat([first, second], -1), got, "chunked pcen")
    assert_close64(state, zf, "pcen state")


def test_pcen_gradients(rng):
    energy = torch.tensor(rng.uniform(0.1, 5, (1, 3, 12)), requires_grad=True)
    parameters = tuple(p.requires_grad_() for p in _pcen_parameters(rng, 3))
    assert torch.autograd.gradcheck(lambda e, *p: features.pcen(e, *p)[0], (energy,) + parameters)


def test_pcen_rejects_wrong_parameter_shapes():
    with pytest.raises(ValueError, match=r"alpha must have shape \(3,\) \(one per filter\); got \(2,\)"):
        features.pcen(torch.ones(3, 5), torch.ones(3) * 0.1, torch.ones(2), torch.ones(3), torch.ones(3))


@pytest.mark.parametrize("shape", [(700,), (3, 700), (2, 2, 701)])
def test_band_energy_is_filtering_then_frame_energy(rng, shape):
    sos = torch.tensor(np.stack([[[0.2, 0.0, -0.2, 1.0, -1.7 + 0.1 * f, 0.8]] * 2 for f in range(5)]))  # (5, 2, 6)
    x = torch.tensor(rng.standard_normal(shape))
    expected = features.frame_energy(filterbank.sosfilt(sos, x.unsqueeze(-2)), 50)
    with torch.no_grad():
        fused = features.band_energy(sos, x, 50)                       # one pass, the bands never stored
    composed = features.band_energy(sos.clone().requires_grad_(), x, 50)  # a gradient: the composition
    assert fused.shape == expected.shape == shape[:-1] + (5, 1 + shape[-1] // 50)
    torch.testing.assert_close(fused, expected, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(composed.detach(), expected, rtol=1e-12, atol=1e-14)
    if len(shape) > 1:
        lengths = torch.tensor([shape[-1] - 90 * i for i in range(shape[0])])
        with torch.no_grad():
            padded = features.band_energy(sos, x, 50, lengths=lengths)
        for i, length in enumerate(lengths.tolist()):
            alone = features.band_energy(sos, x[i, ..., :length], 50)
            torch.testing.assert_close(padded[i, ..., : alone.shape[-1]], alone, rtol=1e-12, atol=1e-14)
