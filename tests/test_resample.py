"""filterbank.resample against its definition and on tones."""

import math

import pytest
import torch

from filterbank.resample import _kernel, resample


def resample_by_definition(x, orig_rate, new_rate, zeros=16, beta=8.0):
    """y[k] = sum_j h[half + k down - j up] x[j], h the up-sampled-rate kernel: a loop, obviously right."""
    divisor = math.gcd(orig_rate, new_rate)
    up, down = new_rate // divisor, orig_rate // divisor
    taps = _kernel(up, down, zeros, beta, torch.float64, "cpu")
    half = (taps.shape[0] - 1) // 2
    n_out = -(-x.shape[-1] * up // down)
    y = torch.zeros(x.shape[:-1] + (n_out,), dtype=torch.float64)
    for k in range(n_out):
        for j in range(x.shape[-1]):
            index = half + k * down - j * up
            if 0 <= index < taps.shape[0]:
                y[..., k] += taps[index] * x[..., j]
    return y


@pytest.mark.parametrize("orig_rate, new_rate", [(8000, 16000), (16000, 8000), (44100, 16000), (3, 5), (5, 3)])
def test_matches_the_definition(orig_rate, new_rate):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 61, dtype=torch.float64, generator=generator)
    if orig_rate == 44100:
        x = x[..., :41]
    y = resample(x, orig_rate, new_rate, zeros=4)
    expected = resample_by_definition(x, orig_rate, new_rate, zeros=4)
    assert y.shape == expected.shape == (2, 3, -(-x.shape[-1] * new_rate // orig_rate))
    torch.testing.assert_close(y, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("orig_rate, new_rate", [(8000, 16000), (16000, 8000), (22050, 16000), (16000, 44100)])
def test_tones_below_both_nyquists_come_through(orig_rate, new_rate):
    frequency, seconds = 1000.0, 0.5
    t = torch.arange(int(orig_rate * seconds), dtype=torch.float64) / orig_rate
    y = resample(torch.sin(2 * math.pi * frequency * t), orig_rate, new_rate)
    expected = torch.sin(2 * math.pi * frequency * torch.arange(y.shape[-1], dtype=torch.float64) / new_rate)
    middle = slice(new_rate // 20, -new_rate // 20)  # away from the ends, where the signal starts and stops
    assert (y[middle] - expected[middle]).abs().max() < 1e-3


def test_tones_above_the_new_nyquist_are_removed():
    t = torch.arange(16000, dtype=torch.float64) / 16000
    y = resample(torch.sin(2 * math.pi * 6000.0 * t), 16000, 8000)  # 6 kHz > 4 kHz
    assert y[400:-400].abs().max() < 1e-3


def test_same_rate_float32_and_errors():
    x = torch.randn(100)
    assert resample(x, 16000, 16000) is x
    assert resample(x, 16000, 8000).dtype == torch.float32
    with pytest.raises(ValueError, match="new_rate must be an int >= 1; got 0"):
        resample(x, 16000, 0)
    with pytest.raises(TypeError, match="orig_rate must be an int >= 1; got float"):
        resample(x, 16000.0, 8000)
    with pytest.raises(TypeError, match="x must be a real floating-point tensor .*; got torch.int64"):
        resample(torch.arange(10), 16000, 8000)
