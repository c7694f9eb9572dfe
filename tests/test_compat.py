"""filterbank.compat.torchaudio: torchaudio 2.11's filtering API.

Always: every helper against scipy with independently computed coefficients.
Where torchaudio imports (a torch 2.11 environment), against torchaudio itself.
"""

from __future__ import annotations


import numpy as np
import pytest
import scipy.signal
import torch

import filterbank.compat.torchaudio as F
from filterbank import design

try:
    import torchaudio.functional as TAF
except Exception:  # absent, or built for another torch
    TAF = None

needs_torchaudio = pytest.mark.skipif(TAF is None, reason="torchaudio is not importable beside this torch")


def clamped_scipy(b, a, x):
    return np.clip(scipy.signal.lfilter(np.asarray(b, float), np.asarray(a, float), x), -1, 1)


def test_helpers_against_scipy_with_the_cookbook(rng):
    x = rng.uniform(-0.5, 0.5, (2, 4000))
    xt = torch.tensor(x)
    rate = 16000.0

    def hz(value):  # float64 design (numbers alone would design in float32)
        return torch.tensor(value, dtype=torch.float64)

    cases = [
        (F.lowpass_biquad(xt, 16000, 1000.0, 0.9), design.lowpass_biquad(hz(1000.0), 0.9, rate)),
        (F.highpass_biquad(xt, 16000, 500.0, 0.6), design.highpass_biquad(hz(500.0), 0.6, rate)),
        (F.bandpass_biquad(xt, 16000, 800.0, 2.0), design.bandpass_biquad(hz(800.0), 2.0, rate)),
        (F.bandpass_biquad(xt, 16000, 800.0, 2.0, const_skirt_gain=True), design.bandpass_skirt_biquad(hz(800.0), 2.0, rate)),
        (F.bandreject_biquad(xt, 16000, 1200.0, 3.0), design.notch_biquad(hz(1200.0), 3.0, rate)),
        (F.allpass_biquad(xt, 16000, 700.0, 1.5), design.allpass_biquad(hz(700.0), 1.5, rate)),
        (F.equalizer_biquad(xt, 16000, 2000.0, 6.0, 1.2), design.peaking_biquad(hz(2000.0), 1.2, 6.0, rate)),
        (F.bass_biquad(xt, 16000, -4.0, 150.0, 0.8), design.lowshelf_biquad(hz(150.0), 0.8, -4.0, rate)),
        (F.treble_biquad(xt, 16000, 5.0, 4000.0, 0.8), design.highshelf_biquad(hz(4000.0), 0.8, 5.0, rate)),
    ]
    for index, (got, (b, a)) in enumerate(cases):
        expected = clamped_scipy(b.double().numpy(), a.double().numpy(), x)
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-9, atol=1e-12, err_msg=f"case {index}")


def test_lfilter_shapes_and_clamp(rng):
    x = torch.tensor(rng.standard_normal((3, 2, 500)))
    a = torch.tensor([[1.0, -1.5, 0.7], [1.0, -0.5, 0.1]], dtype=torch.float64)
    b = torch.tensor([[0.3, 0.2, 0.1], [1.0, 0.0, -1.0]], dtype=torch.float64)
    batched = F.lfilter(x, a, b, clamp=False)                      # filter i on channel i
    assert batched.shape == (3, 2, 500)
    for i in range(2):
        np.testing.assert_allclose(batched[:, i].numpy(), scipy.signal.lfilter(b[i], a[i], x[:, i].numpy()),
                                   rtol=1e-10, atol=1e-12)
    bank = F.lfilter(x[:, 0], a, b, clamp=False, batching=False)   # every filter on every signal
    assert bank.shape == (3, 2, 500)
    np.testing.assert_allclose(bank[:, 1].numpy(), scipy.signal.lfilter(b[1], a[1], x[:, 0].numpy()), rtol=1e-10,
                               atol=1e-12)
    clamped = F.lfilter(x[:, 0], a[0], b[0])
    assert clamped.shape == (3, 500) and float(clamped.abs().max()) <= 1.0


def test_filtfilt_runs_from_rest_both_ways(rng):
    x = rng.uniform(-0.3, 0.3, 300)
    b, a = scipy.signal.butter(2, 0.2)
    got = F.filtfilt(torch.tensor(x), torch.tensor(a), torch.tensor(b))
    forward = scipy.signal.lfilter(b, a, x)
    expected = np.clip(scipy.signal.lfilter(b, a, forward[::-1])[::-1], -1, 1)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10, atol=1e-12)


def test_batched_parameters_make_a_bank(rng):
    x = torch.tensor(rng.uniform(-0.5, 0.5, (2, 1000)))
    centres = torch.tensor([300.0, 900.0, 2500.0], dtype=torch.float64)
    bank = F.bandpass_biquad(x, 16000, centres, 2.0)
    assert bank.shape == (2, 3, 1000)
    for n in range(3):
        torch.testing.assert_close(bank[:, n], F.bandpass_biquad(x, 16000, float(centres[n]), 2.0))


def test_gradients_reach_the_parameters(rng):
    x = torch.tensor(rng.uniform(-0.2, 0.2, 200), requires_grad=True)
    frequency = torch.tensor(800.0, dtype=torch.float64, requires_grad=True)
    gain = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    F.equalizer_biquad(x, 16000, frequency, gain).sum().backward()
    assert frequency.grad is not None and gain.grad is not None and x.grad is not None
    assert torch.autograd.gradcheck(lambda f: F.lowpass_biquad(x.detach(), 16000, f, 0.7), (frequency,))


@pytest.mark.parametrize("call, message", [
    (lambda: F.lfilter(torch.ones(10), torch.ones(3), torch.ones(2)), r"Expected coeffs to be the same size"),
    (lambda: F.lfilter(torch.ones(10), torch.ones(1, 1, 3), torch.ones(1, 1, 3)), r"at most 2 dimensions"),
    (lambda: F.lfilter(torch.ones(3, 10), torch.ones(2, 3), torch.ones(2, 3)),
     r"Expected number of batches in waveform and coeffs to be the same"),
    (lambda: F.deemph_biquad(torch.ones(10), 16000), r"Sample rate must be 44100 \(audio-CD\) or 48000 \(DAT\)"),
    (lambda: F.riaa_biquad(torch.ones(10), 16000), r"Sample rate must be 44.1k, 48k, 88.2k, or 96k"),
])
def test_errors_like_torchaudio(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# --------------------------------------------------------------------------
# Against torchaudio itself.

HELPERS = [
    ("allpass_biquad", (16000, 700.0, 1.3)), ("band_biquad", (16000, 900.0, 1.5)),
    ("band_biquad", (16000, 900.0, 1.5, True)), ("bandpass_biquad", (16000, 1200.0, 2.0)),
    ("bandpass_biquad", (16000, 1200.0, 2.0, True)), ("bandreject_biquad", (16000, 1500.0, 3.0)),
    ("bass_biquad", (16000, 6.0)), ("bass_biquad", (16000, -6.0, 200.0, 0.5)),
    ("treble_biquad", (16000, 4.0)), ("treble_biquad", (16000, -3.0, 5000.0, 1.0)),
    ("equalizer_biquad", (16000, 2500.0, 5.0)), ("equalizer_biquad", (16000, 2500.0, -5.0, 2.0)),
    ("highpass_biquad", (16000, 300.0)), ("lowpass_biquad", (16000, 3000.0, 0.9)),
    ("deemph_biquad", (44100,)), ("deemph_biquad", (48000,)), ("riaa_biquad", (44100,)), ("riaa_biquad", (96000,)),
]


@needs_torchaudio
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name, args", HELPERS, ids=[f"{n}{i}" for i, (n, _) in enumerate(HELPERS)])
def test_helpers_match_torchaudio(rng, dtype, name, args):
    x = torch.tensor(rng.uniform(-0.9, 0.9, (2, 3, 2000)), dtype=dtype)
    got = getattr(F, name)(x, *args)
    expected = getattr(TAF, name)(x, *args)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    tolerance = 1e-10 if dtype == torch.float64 else 1e-4
    torch.testing.assert_close(got, expected, rtol=tolerance, atol=tolerance)


@needs_torchaudio
@pytest.mark.parametrize("shape, coefficients, batching, clamp", [
    ((500,), (3,), True, True), ((2, 500), (3,), True, False), ((4, 3, 500), (3, 3), True, False),
    ((2, 500), (4, 3), False, True), ((7, 500), (2, 5), False, False), ((3, 2, 500), (2, 2), True, True),
])
def test_lfilter_and_filtfilt_match_torchaudio(rng, shape, coefficients, batching, clamp):
    # The shape cases of torchaudio's own tests: 1-D and 2-D coefficients,
    # batching on and off, clamp on and off.
    x = torch.tensor(rng.uniform(-1, 1, shape))
    n = coefficients[0] if len(coefficients) == 2 else None
    poles = rng.uniform(0.3, 0.9, (n or 1, coefficients[-1] - 1)) * rng.choice([-1, 1], (n or 1, coefficients[-1] - 1))
    a = torch.tensor(np.stack([np.poly(p) for p in poles]))
    b = torch.tensor(rng.standard_normal(a.shape)) * 0.3
    if n is None:
        a, b = a[0], b[0]
    got = F.lfilter(x, a, b, clamp=clamp, batching=batching)
    expected = TAF.lfilter(x, a, b, clamp=clamp, batching=batching)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-10)
    if n is None or batching:
        torch.testing.assert_close(F.filtfilt(x, a, b, clamp=clamp), TAF.filtfilt(x, a, b, clamp=clamp),
                                   rtol=1e-9, atol=1e-10)


@needs_torchaudio
def test_gradients_match_torchaudio(rng):
    x = torch.tensor(rng.uniform(-0.5, 0.5, (2, 300)))
    for module in (F, TAF):
        frequency = torch.tensor(900.0, dtype=torch.float64, requires_grad=True)
        q = torch.tensor(1.2, dtype=torch.float64, requires_grad=True)
        leaf = x.clone().requires_grad_()
        module.bandpass_biquad(leaf, 16000, frequency, q).square().sum().backward()
        if module is F:
            ours = (frequency.grad, q.grad, leaf.grad)
        else:
            theirs = (frequency.grad, q.grad, leaf.grad)
    for got, expected in zip(ours, theirs):
        torch.testing.assert_close(got, expected, rtol=1e-7, atol=1e-9)


def test_errors_where_torchaudio_checks_nothing_are_filterbanks():
    # Documented differences: filterbank's own checks where torchaudio has none.
    with pytest.raises(TypeError, match=r"x must be a real floating-point tensor .* got torch.int64"):
        F.lfilter(torch.ones(10, dtype=torch.int64), torch.ones(3), torch.ones(3))
    with pytest.raises(ValueError, match=r"a\[\.\.\., 0\] must be non-zero"):
        F.lfilter(torch.ones(10), torch.tensor([0.0, 1.0, 0.5]), torch.ones(3))
