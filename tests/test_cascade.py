"""The coupled cascade filterbank: its recurrence against the cascade written stage by stage, gradients,
stability, streaming, the front-end over it, the CLI's ``--kind cascade`` and its errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile
import torch
from torch.func import functional_call

from filterbank import cli, coupled, design
from filterbank.nn import FrontEnd
from filterbank.nn import CascadeFilterbank
from filterbank.tbptt import tbptt

FS = 16000


def cascade_loop(x: np.ndarray, frequency: np.ndarray, damping: np.ndarray, sample_rate: float) -> np.ndarray:
    """The cascade written out: stage after stage, each filtering the previous output delayed by one sample.

    Stage k: w[t] = 2 r cos(theta) w[t-1] - r^2 w[t-2] + g v[t] with unit DC gain g, output y[t] = w[t-1];
    band k is y scaled to unit gain at the stage's frequency, that gain taken from the transfer functions.
    x: (time,) -> (n_stages, time).
    """
    theta = 2 * np.pi * frequency / sample_rate
    radius = np.exp(-2 * np.pi * damping * frequency / sample_rate)
    gain = 1 - 2 * radius * np.cos(theta) + radius**2
    bands, v = [], list(x)
    for k in range(len(frequency)):
        w1 = w2 = 0.0                          # w[t-1], w[t-2]
        y = []
        for t in range(len(v)):
            w = 2 * radius[k] * np.cos(theta[k]) * w1 - radius[k] ** 2 * w2 + gain[k] * v[t]
            y.append(w1)
            w2, w1 = w1, w
        bands.append(y)
        v = [0.0] + y[:-1]                     # the one-sample delay between stages
    bands = np.array(bands)
    for k in range(len(frequency)):
        z = np.exp(-1j * theta[k])             # z^-1 at band k's frequency
        response = np.prod([gain[j] * z / (1 - 2 * radius[j] * np.cos(theta[j]) * z + radius[j] ** 2 * z**2)
                            for j in range(k + 1)])
        bands[k] /= abs(response)
    return bands


def bank64(n_filters=4, **kwargs) -> CascadeFilterbank:
    return CascadeFilterbank(n_filters, FS, dtype=torch.float64, **kwargs)


def set_parameters(bank, frequency, damping):
    with torch.no_grad():
        bank.raw_frequency.copy_(torch.logit((torch.as_tensor(frequency) / (FS / 2) - 1e-3) / (1 - 2e-3)))
        bank.raw_damping.copy_(torch.logit((torch.as_tensor(damping) - 0.01) / (2 - 0.01)))


def test_recurrence_equals_the_cascade_stage_by_stage(rng):
    frequency = np.array([5000.0, 2100.0, 1900.0, 300.0, 40.0])      # two stages close together, one low
    damping = np.array([0.3, 0.05, 0.8, 0.2, 0.5])
    bank = bank64(5)
    set_parameters(bank, frequency, damping)
    torch.testing.assert_close(bank.centre_hz, torch.tensor(frequency), rtol=1e-12, atol=1e-9)
    x = rng.standard_normal(700)
    with torch.no_grad():
        y = bank(torch.tensor(x))
    np.testing.assert_allclose(y.numpy(), cascade_loop(x, frequency, damping, FS), rtol=1e-12, atol=1e-12)


def test_band_matrix_is_tridiagonal_with_the_stages_poles(rng):
    frequency = torch.tensor([6000.0, 2500.0, 900.0, 100.0], dtype=torch.float64)
    damping = torch.tensor([0.1, 0.4, 0.02, 1.5], dtype=torch.float64)
    recurrence = design.cascade_recurrence(frequency, damping, FS)
    assert design.CASCADE_BANDWIDTHS == (1, 1)
    A = coupled.dense_from_band(recurrence.band, design.CASCADE_BANDWIDTHS)
    theta, radius = 2 * math.pi * frequency / FS, torch.exp(-2 * math.pi * damping * frequency / FS)
    expected = torch.zeros(8, 8, dtype=torch.float64)
    for k in range(4):
        expected[2 * k, 2 * k : 2 * k + 2] = torch.stack([2 * radius[k] * torch.cos(theta[k]), -radius[k] ** 2])
        expected[2 * k + 1, 2 * k] = 1
        if k:
            expected[2 * k, 2 * k - 1] = 1 - 2 * radius[k] * torch.cos(theta[k]) + radius[k] ** 2
    torch.testing.assert_close(A, expected, rtol=1e-14, atol=1e-15)
    poles = torch.linalg.eigvals(A)
    expected_poles = torch.cat([radius * torch.exp(1j * theta), radius * torch.exp(-1j * theta)])
    assert torch.allclose(poles.abs().sort().values, expected_poles.abs().sort().values, atol=1e-9)


def test_responses_match_the_impulse_response_and_are_one_at_the_centres():
    bank = bank64(5, damping=0.3, f_min=200.0)
    impulse = torch.zeros(8192, dtype=torch.float64)
    impulse[0] = 1
    with torch.no_grad():
        y = bank(impulse)
        bins = torch.arange(0, 4096, 37)
        measured = torch.fft.rfft(y)[:, bins]
        predicted = design.cascade_response(bank.centre_hz, bank.damping, FS, bins.double() * FS / 8192)
        at_centres = design.cascade_response(bank.centre_hz, bank.damping, FS, bank.centre_hz)
    torch.testing.assert_close(measured, predicted, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(at_centres.diagonal().abs(), torch.ones(5, dtype=torch.float64), rtol=1e-12, atol=0)
    frequencies, magnitude = bank.responses(256)
    assert frequencies.shape == (256,) and magnitude.shape == (5, 256)


def test_gradients_of_frequencies_and_dampings(rng):
    bank = bank64(3, f_min=500.0, f_max=6000.0, damping=torch.tensor([0.2, 0.4, 0.1]))
    x = torch.tensor(rng.standard_normal((2, 40)))
    h0 = torch.tensor(rng.standard_normal((2, 6)), requires_grad=True)

    def run(raw_frequency, raw_damping, h0):
        y, h_last = functional_call(bank, {"raw_frequency": raw_frequency, "raw_damping": raw_damping}, (x, h0))
        return y, h_last

    inputs = (bank.raw_frequency.detach().clone().requires_grad_(), bank.raw_damping.detach().clone().requires_grad_(),
              h0)
    assert torch.autograd.gradcheck(run, inputs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_stable_whatever_the_parameters(rng, dtype):
    bank = CascadeFilterbank(8, FS, dtype=dtype)
    x = torch.tensor(rng.standard_normal(20000), dtype=dtype)
    for scale in (1.0, 10.0, 60.0):
        with torch.no_grad():
            bank.raw_frequency.copy_(torch.tensor(rng.standard_normal(8) * scale))
            bank.raw_damping.copy_(torch.tensor(rng.standard_normal(8) * scale))
            recurrence = bank.recurrence()
            A = coupled.dense_from_band(recurrence.band.double(), design.CASCADE_BANDWIDTHS)
            assert float(torch.linalg.eigvals(A).abs().max()) < 1
            assert bool(((bank.centre_hz > 0) & (bank.centre_hz < FS / 2)).all())
            assert bool(((bank.damping >= 0.01) & (bank.damping <= 2)).all())
            assert bool(torch.isfinite(bank(x)).all())


@pytest.mark.parametrize("shape", [(), (3,), (2, 2)])
def test_streaming_in_chunks_equals_one_pass(rng, shape):
    bank = bank64(6)
    x = torch.tensor(rng.standard_normal(shape + (1500,)))
    with torch.no_grad():
        whole = bank(x)
        pieces, state, start = [], None, 0
        for size in (1, 7, 0, 400, 92, 1000):
            y, state = bank.stream(x[..., start : start + size], state)
            pieces.append(y)
            start += size
    assert whole.shape == shape + (6, 1500)
    torch.testing.assert_close(torch.cat(pieces, dim=-1), whole, rtol=1e-12, atol=1e-12)
    assert state["h"].shape == shape + (12,)


def test_tbptt_through_the_stream(rng):
    bank = bank64(4)
    x = torch.tensor(rng.standard_normal(900))
    seen = []

    def step(y, index):
        y.square().mean().backward()
        seen.append((bank.raw_frequency.grad.clone(), bank.raw_damping.grad.clone()))
        bank.zero_grad()

    _, final = tbptt(bank.stream, x, 300, step)
    with torch.no_grad():
        _, state = bank.stream(x[:600])
    y, _ = bank.stream(x[600:], state)
    y.square().mean().backward()
    torch.testing.assert_close(seen[2][0], bank.raw_frequency.grad, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(seen[2][1], bank.raw_damping.grad, rtol=1e-10, atol=1e-14)
    assert not final["h"].requires_grad


@pytest.mark.parametrize("compression", ["log", "pcen"])
def test_front_end_over_the_cascade(rng, compression):
    bank = bank64(6)
    front_end = FrontEnd(sample_rate=FS, hop_length=160, filterbank=bank, compression=compression,
                         dtype=torch.float64)
    x = torch.tensor(rng.standard_normal((2, 1700)))
    out = front_end(x)
    assert out.shape == (2, 6, 1 + 1700 // 160)
    out.mean().backward()
    for parameter in (bank.raw_frequency, bank.raw_damping):
        assert parameter.grad is not None and bool(parameter.grad.abs().sum() > 0)
    with torch.no_grad():
        whole = front_end(x)
        pieces, state, start = [], None, 0
        for size in (5, 300, 161, 1234):
            features, state = front_end.stream(x[..., start : start + size], state)
            pieces.append(features)
            start += size
        pieces.append(front_end.finish(state))
    torch.testing.assert_close(torch.cat(pieces, dim=-1), whole, rtol=1e-10, atol=1e-10)


def test_front_end_on_a_padded_batch_equals_each_signal_alone(rng):
    front_end = FrontEnd(sample_rate=FS, hop_length=160, filterbank=bank64(5), dtype=torch.float64)
    x = torch.tensor(rng.standard_normal((2, 1000)))
    x[1, 600:] = 0
    with torch.no_grad():
        out = front_end(x, torch.tensor([1000, 600]))
        alone = front_end(x[1, :600])
    torch.testing.assert_close(out[1, :, : alone.shape[-1]], alone, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("seconds, options", [(0.3, []), (1.0, ["--memory-mb", "1"])])   # batched; streamed
def test_cli_extract_kind_cascade(tmp_path, rng, seconds, options):
    audio = (0.1 * rng.standard_normal(int(seconds * FS))).astype(np.float32)
    wav = tmp_path / "noise.wav"
    soundfile.write(str(wav), audio, FS, subtype="FLOAT")
    out = tmp_path / "features"
    assert cli.main(["extract", str(wav), "--out", str(out), "--n-filters", "8", "--kind", "cascade",
                     *options]) == 0
    bank = CascadeFilterbank(8, FS, scale="mel", learn=())
    front_end = FrontEnd(sample_rate=FS, hop_length=160, filterbank=bank)
    with torch.no_grad():
        expected = front_end(torch.from_numpy(audio)[None])[0]
    features = np.load(out / "noise.npy")
    assert features.shape == (8, 1 + len(audio) // 160)
    np.testing.assert_allclose(features, expected.numpy(), rtol=1e-4, atol=1e-4)


def test_cli_response_kind_cascade(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "cascade.png"
    assert cli.main(["response", "--out", str(out), "--kind", "cascade", "--n-filters", "8"]) == 0
    assert out.stat().st_size > 0


@pytest.mark.parametrize("make, error, message", [
    (lambda: CascadeFilterbank(0, FS), ValueError, "n_filters must be an int >= 1; got 0"),
    (lambda: CascadeFilterbank(2.5, FS), TypeError, "n_filters must be an int"),
    (lambda: CascadeFilterbank(4, -1), ValueError, "sample_rate must be a positive number"),
    (lambda: CascadeFilterbank(4, FS, f_min=4000.0, f_max=1000.0), ValueError, "need 0 < f_min < f_max"),
    (lambda: CascadeFilterbank(4, FS, f_min=1000.0, f_max=1000.0), ValueError, "need 0 < f_min < f_max"),
    (lambda: CascadeFilterbank(4, FS, f_max=9000.0), ValueError, "sample_rate / 2 = 8000 Hz"),
    (lambda: CascadeFilterbank(4, FS, scale="cents"), ValueError, "scale must be one of"),
    (lambda: CascadeFilterbank(4, FS, damping=0.0), ValueError, r"damping must lie in \(0.01, 2\)"),
    (lambda: CascadeFilterbank(4, FS, damping=torch.ones(3)), ValueError, r"damping must be a number or have shape"),
    (lambda: CascadeFilterbank(4, FS, learn=("q",)), ValueError, "learn takes"),
    (lambda: CascadeFilterbank(4, FS)(torch.randn(10, dtype=torch.float64)), TypeError, "x has dtype"),
    (lambda: CascadeFilterbank(4, FS)(torch.randn(1, 1, 1, 10)), ValueError, "x must have shape"),
    (lambda: CascadeFilterbank(4, FS).stream(torch.randn(2, 10), CascadeFilterbank(4, FS).stream(torch.randn(10))[1]),
     ValueError, r"state\['h'\] has shape \(8,\) but this module and input need \(2, 8\)"),
    (lambda: CascadeFilterbank(4, FS).stream(torch.randn(10), {"h": torch.zeros(8)}), TypeError,
     "must be a filterbank.streaming.State"),
    (lambda: design.cascade_recurrence(torch.tensor([9000.0]), 0.1, FS), ValueError,
     r"frequency_hz must lie in \(0, 8000\) Hz"),
    (lambda: design.cascade_recurrence(torch.tensor([1000.0]), 0.0, FS), ValueError, "damping must be > 0"),
])
def test_errors(make, error, message):
    with pytest.raises(error, match=message):
        make()
