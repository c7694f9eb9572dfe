"""Filter design formulas against independent derivations and scipy."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import torch

from filterbank import design


def test_bandpass_is_the_bilinear_transform_of_the_analog_prototype():
    # RBJ's band-pass is H(s) = (s / Q) / (s^2 + s / Q + 1) mapped with
    # s = cot(w0 / 2) (1 - z^-1) / (1 + z^-1); compare responses on a grid.
    sample_rate = 16000.0
    centres = torch.tensor([60.0, 440.0, 3000.0, 7600.0], dtype=torch.float64)
    qs = torch.tensor([0.7, 2.0, 8.0, 30.0], dtype=torch.float64)
    b, a = design.bandpass_biquad(centres, qs, sample_rate)
    assert b.shape == a.shape == (4, 3)
    torch.testing.assert_close(a[:, 0], torch.ones(4, dtype=torch.float64), rtol=0, atol=0)
    for f, (centre, q) in enumerate(zip(centres.tolist(), qs.tolist())):
        w, response = scipy.signal.freqz(b[f].numpy(), a[f].numpy(), worN=512)
        w0 = 2 * np.pi * centre / sample_rate
        s = 1j * np.tan(w / 2) / np.tan(w0 / 2)
        analog = (s / q) / (s**2 + s / q + 1)
        np.testing.assert_allclose(response, analog, rtol=1e-9, atol=1e-12)
        _, peak = scipy.signal.freqz(b[f].numpy(), a[f].numpy(), worN=[w0])
        np.testing.assert_allclose(np.abs(peak), 1.0, rtol=1e-12)
        assert np.all(np.abs(np.roots(a[f].numpy())) < 1)


def test_bandpass_broadcasts_and_is_differentiable():
    centres = torch.tensor([[300.0], [1200.0]], dtype=torch.float64, requires_grad=True)
    qs = torch.tensor([1.0, 3.0, 9.0], dtype=torch.float64, requires_grad=True)
    b, a = design.bandpass_biquad(centres, qs, 8000.0)
    assert b.shape == a.shape == (2, 3, 3)
    assert torch.autograd.gradcheck(lambda c, q: design.bandpass_biquad(c, q, 8000.0), (centres, qs))
    b32, _ = design.bandpass_biquad(440.0, 2.0, 16000.0)
    assert b32.dtype == torch.float32 and b32.shape == (3,)


@pytest.mark.parametrize("centre, q, rate, message", [
    (0.0, 1.0, 16000.0, r"centre_hz must lie in \(0, 8000\) Hz .* got values in \[0, 0\]"),
    (8000.0, 1.0, 16000.0, r"centre_hz must lie in \(0, 8000\) Hz"),
    (100.0, 0.0, 16000.0, r"q must be > 0; got a minimum of 0"),
    (100.0, 1.0, -1.0, r"sample_rate must be a positive number of Hz; got -1.0"),
])
def test_bandpass_rejects_bad_arguments(centre, q, rate, message):
    with pytest.raises(ValueError, match=message):
        design.bandpass_biquad(centre, q, rate)


def test_bandpass_rejects_integer_tensors():
    with pytest.raises(TypeError, match=r"centre_hz must be a floating-point tensor or a number; got torch.int64"):
        design.bandpass_biquad(torch.tensor([100]), 1.0, 16000.0)
