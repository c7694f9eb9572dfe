"""Filter design formulas against independent derivations and scipy."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import torch

from filterbank import design
from helpers import TOLERANCE, assert_close64, normalised_sos, random_filter, random_sos


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


# --------------------------------------------------------------------------
# RBJ cookbook biquads.

SAMPLE_RATE = 16000.0


def assert_response_close64(out, reference, what=""):
    """Complex float64 comparison: max |out - reference| <= 1e-10 max |reference|.

    (``helpers.assert_close64`` casts to float64, which drops imaginary parts.)
    """
    out, reference = torch.as_tensor(out).cdouble(), torch.as_tensor(reference).cdouble()
    assert out.shape == reference.shape, f"{what}: shape {tuple(out.shape)} != {tuple(reference.shape)}"
    error, scale = float((out - reference).abs().max()), float(reference.abs().max())
    assert error <= TOLERANCE[torch.float64] * scale, f"{what}: max error {error:.3e} > 1e-10 x {scale:.3e}"


def _prototype(kind, s, q, A):
    """The cookbook's analog prototypes H(s), s normalised to the design frequency."""
    root = np.sqrt(A)
    return {
        "lowpass": lambda: 1 / (s**2 + s / q + 1),
        "highpass": lambda: s**2 / (s**2 + s / q + 1),
        "bandpass": lambda: (s / q) / (s**2 + s / q + 1),
        "bandpass_skirt": lambda: s / (s**2 + s / q + 1),
        "notch": lambda: (s**2 + 1) / (s**2 + s / q + 1),
        "allpass": lambda: (s**2 - s / q + 1) / (s**2 + s / q + 1),
        "peaking": lambda: (s**2 + s * A / q + 1) / (s**2 + s / (A * q) + 1),
        "lowshelf": lambda: A * (s**2 + root / q * s + A) / (A * s**2 + root / q * s + 1),
        "highshelf": lambda: A * (A * s**2 + root / q * s + 1) / (s**2 + root / q * s + A),
    }[kind]()


# (function, takes a gain, name of its frequency argument)
BIQUADS = {
    "lowpass": (design.lowpass_biquad, False, "cutoff_hz"),
    "highpass": (design.highpass_biquad, False, "cutoff_hz"),
    "bandpass": (design.bandpass_biquad, False, "centre_hz"),
    "bandpass_skirt": (design.bandpass_skirt_biquad, False, "centre_hz"),
    "notch": (design.notch_biquad, False, "centre_hz"),
    "allpass": (design.allpass_biquad, False, "centre_hz"),
    "peaking": (design.peaking_biquad, True, "centre_hz"),
    "lowshelf": (design.lowshelf_biquad, True, "cutoff_hz"),
    "highshelf": (design.highshelf_biquad, True, "cutoff_hz"),
}


def biquad(kind, frequency, q, gain_db=0.0, sample_rate=SAMPLE_RATE):
    function, has_gain, _ = BIQUADS[kind]
    return function(frequency, q, gain_db, sample_rate) if has_gain else function(frequency, q, sample_rate)


def random_biquad_parameters(rng, n, sample_rate=SAMPLE_RATE):
    nyquist = sample_rate / 2
    frequency = torch.from_numpy(rng.uniform(0.002, 0.998, n) * nyquist)
    q = torch.from_numpy(np.exp(rng.uniform(np.log(0.05), np.log(50.0), n)))
    gain_db = torch.from_numpy(rng.uniform(-40.0, 40.0, n))
    return frequency, q, gain_db


@pytest.mark.parametrize("kind", list(BIQUADS))
def test_biquads_are_bilinear_transforms_of_the_cookbook_prototypes(kind, rng):
    frequency, q, gain_db = random_biquad_parameters(rng, 6)
    frequency = torch.cat([frequency, torch.tensor([40.0, 7900.0], dtype=torch.float64)])
    q = torch.cat([q, torch.tensor([0.7, 8.0], dtype=torch.float64)])
    gain_db = torch.cat([gain_db, torch.tensor([12.0, -12.0], dtype=torch.float64)])
    b, a = biquad(kind, frequency, q, gain_db)
    assert b.shape == a.shape == (8, 3) and b.dtype == a.dtype == torch.float64
    assert torch.equal(a[:, 0], torch.ones(8, dtype=torch.float64))
    for f in range(8):
        w0 = 2 * np.pi * float(frequency[f]) / SAMPLE_RATE
        w, response = scipy.signal.freqz(b[f].numpy(), a[f].numpy(), worN=1024)
        s = 1j * np.tan(w / 2) / np.tan(w0 / 2)
        analog = _prototype(kind, s, float(q[f]), 10 ** (float(gain_db[f]) / 40))
        assert_response_close64(torch.from_numpy(response), torch.from_numpy(analog), f"{kind} filter {f}")


@pytest.mark.parametrize("kind", list(BIQUADS))
def test_biquad_gains_at_dc_nyquist_and_the_design_frequency(kind, rng):
    frequency, q, gain_db = random_biquad_parameters(rng, 5)
    b, a = biquad(kind, frequency, q, gain_db)
    w0 = 2 * np.pi * frequency / SAMPLE_RATE
    _, at_w0 = design.freqz(b, a, frequencies=w0.unsqueeze(-1))
    _, ends = design.freqz(b, a, frequencies=torch.tensor([0.0, np.pi], dtype=torch.float64))
    A = 10 ** (gain_db / 40)
    one, zero = torch.ones(5, dtype=torch.float64), torch.zeros(5, dtype=torch.float64)
    expected = {  # (|H(DC)|, |H(Nyquist)|, |H(w0)|)
        "lowpass": (one, zero, q), "highpass": (zero, one, q), "bandpass": (zero, zero, one),
        "bandpass_skirt": (zero, zero, q), "notch": (one, one, zero), "allpass": (one, one, one),
        "peaking": (one, one, A**2), "lowshelf": (A**2, one, A), "highshelf": (one, A**2, A),
    }[kind]
    got = (ends[:, 0].abs(), ends[:, 1].abs(), at_w0[:, 0].abs())
    for what, value, reference in zip(("DC", "Nyquist", "w0"), got, expected):
        torch.testing.assert_close(value, reference, rtol=1e-10, atol=1e-12, msg=f"{kind} at {what}")
    if kind == "allpass":  # unit magnitude everywhere, phase -pi at w0
        _, response = design.freqz(b, a, 256)
        torch.testing.assert_close(response.abs(), torch.ones_like(response.real), rtol=1e-12, atol=0)
        torch.testing.assert_close(at_w0[:, 0], -torch.ones(5, dtype=torch.complex128), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("scipy_q", [1.2, 3.0, 30.0])
def test_bandpass_and_notch_match_iirpeak_and_iirnotch(scipy_q):
    # scipy's peak and notch filters are RBJ's 0 dB band-pass and notch with
    # tan(w0 / (2 Q')) in place of alpha = sin(w0) / (2 Q) (Q' > w0 / pi keeps it positive).
    for centre in (50.0, 1000.0, 5000.0, 7900.0):
        w0 = 2 * np.pi * centre / SAMPLE_RATE
        q = np.sin(w0) / (2 * np.tan(w0 / (2 * scipy_q)))
        centre64 = torch.tensor(centre, dtype=torch.float64)
        for function, reference in ((design.bandpass_biquad, scipy.signal.iirpeak),
                                    (design.notch_biquad, scipy.signal.iirnotch)):
            b, a = function(centre64, q, SAMPLE_RATE)
            b_ref, a_ref = reference(centre, scipy_q, fs=SAMPLE_RATE)
            assert_close64(b, torch.from_numpy(b_ref), f"{function.__name__} b at {centre} Hz")
            assert_close64(a, torch.from_numpy(a_ref), f"{function.__name__} a at {centre} Hz")


def test_q_from_bandwidth():
    # At low w0 the digital relation tends to the analog one, 1 / Q = 2 sinh(ln 2 / 2 BW):
    # one octave is Q = sqrt(2) exactly (2 sinh(ln 2 / 2) = 2^0.5 - 2^-0.5).
    q = design.q_from_bandwidth(torch.tensor([1.0, 1.0], dtype=torch.float64), torch.tensor([1e-3, 12000.0]).double(),
                                48000.0)
    assert abs(float(q[0]) - np.sqrt(2)) < 1e-9
    # at w0 = pi / 2, w0 / sin(w0) = pi / 2: 1 / Q = 2 sinh(ln 2 pi / 4) = 2^(pi/4) - 2^(-pi/4)
    assert abs(float(q[1]) - 1 / (2 ** (np.pi / 4) - 2 ** (-np.pi / 4))) < 1e-6
    # The requested bandwidth is the -3 dB bandwidth of the 0 dB band-pass, to
    # within the cookbook's first-order warping compensation: the -3 dB
    # edges are where the prewarped analog frequency satisfies |W - 1/W| = 1/Q.
    for centre, octaves, tolerance in ((100.0, 1.0, 1e-4), (1000.0, 0.5, 2e-3), (3000.0, 2.0, 0.05)):
        q = float(design.q_from_bandwidth(torch.tensor(octaves, dtype=torch.float64), centre, SAMPLE_RATE))
        w0 = 2 * np.pi * centre / SAMPLE_RATE
        high = (1 / q + np.sqrt(1 / q**2 + 4)) / 2
        edges = 2 * np.arctan(np.array([1 / high, high]) * np.tan(w0 / 2))
        b, a = design.bandpass_biquad(torch.tensor(centre, dtype=torch.float64), q, SAMPLE_RATE)
        _, response = scipy.signal.freqz(b.numpy(), a.numpy(), worN=edges)
        np.testing.assert_allclose(np.abs(response) ** 2, 0.5, rtol=1e-10)
        assert abs(np.log2(edges[1] / edges[0]) - octaves) < tolerance * octaves
    bandwidth = torch.tensor([0.3, 1.0, 2.0], dtype=torch.float64, requires_grad=True)
    centre = torch.tensor([[200.0], [4000.0]], dtype=torch.float64, requires_grad=True)
    assert design.q_from_bandwidth(bandwidth, centre, SAMPLE_RATE).shape == (2, 3)
    assert torch.autograd.gradcheck(lambda bw, c: design.q_from_bandwidth(bw, c, SAMPLE_RATE), (bandwidth, centre))


@pytest.mark.parametrize("kind", list(BIQUADS))
def test_biquad_gradients(kind, rng):
    frequency, q, gain_db = (x[:3].clone().requires_grad_() for x in random_biquad_parameters(rng, 3))
    if BIQUADS[kind][1]:
        inputs = (frequency, q, gain_db)
        function = lambda f, q, g: biquad(kind, f, q, g)  # noqa: E731
    else:
        inputs = (frequency, q)
        function = lambda f, q: biquad(kind, f, q)  # noqa: E731
    assert torch.autograd.gradcheck(function, inputs)


@pytest.mark.parametrize("kind", list(BIQUADS))
def test_biquads_are_stable_and_broadcast(kind, rng):
    frequency, q, gain_db = random_biquad_parameters(rng, 2000)
    _, a = biquad(kind, frequency, q, gain_db)
    # Jury's conditions for z^2 + a1 z + a2: both roots inside the unit circle
    assert bool((a[:, 2].abs() < 1).all() and (a[:, 1].abs() < 1 + a[:, 2]).all())
    b, a = biquad(kind, torch.tensor([[300.0], [3000.0]], dtype=torch.float64),
                  torch.tensor([0.7, 2.0, 5.0], dtype=torch.float64), torch.tensor([6.0], dtype=torch.float64))
    assert b.shape == a.shape == (2, 3, 3)
    b_one, a_one = biquad(kind, 3000.0, 5.0, 6.0)
    assert b_one.dtype == a_one.dtype == torch.float32 and b_one.shape == (3,)
    torch.testing.assert_close(b_one, b[1, 2].float())
    torch.testing.assert_close(a_one, a[1, 2].float())


@pytest.mark.parametrize("kind", list(BIQUADS))
def test_biquads_reject_bad_arguments(kind):
    _, has_gain, name = BIQUADS[kind]
    cases = [
        (dict(frequency=0.0), ValueError,
         rf"{name} must lie in \(0, 8000\) Hz \(sample_rate / 2\); got values in \[0, 0\]"),
        (dict(frequency=torch.tensor([100.0, 9000.0])), ValueError,
         rf"{name} must lie in \(0, 8000\) Hz.*\[100, 9000\]"),
        (dict(frequency=float("nan")), ValueError, rf"{name} must lie in \(0, 8000\) Hz"),
        (dict(q=-1.0), ValueError, r"q must be > 0; got a minimum of -1"),
        (dict(q=float("inf")), ValueError, r"q must be finite"),
        (dict(sample_rate=0.0), ValueError, r"sample_rate must be a positive number of Hz; got 0.0"),
        (dict(sample_rate=torch.tensor(16000.0)), TypeError, r"sample_rate must be a positive number of Hz"),
        (dict(frequency=torch.tensor([100])), TypeError,
         rf"{name} must be a floating-point tensor or a number; got torch.int64"),
        (dict(frequency=[100.0]), TypeError, rf"{name} must be a floating-point tensor or a number; got list"),
        (dict(q=True), TypeError, r"q must be a floating-point tensor or a number; got bool"),
        (dict(frequency=torch.tensor([100.0]), q=torch.tensor([1.0], dtype=torch.float64)), TypeError,
         rf"q has dtype torch.float64 but {name} has dtype torch.float32"),
        (dict(frequency=torch.tensor([100.0, 200.0]), q=torch.ones(3)), ValueError,
         rf"shapes do not broadcast: {name} \(2,\), q \(3,\)"),
    ]
    if has_gain:
        cases.append((dict(gain_db=float("inf")), ValueError, r"gain_db must be finite; got values in \[inf, inf\]"))
    for change, error, message in cases:
        arguments = dict(frequency=1000.0, q=1.0, gain_db=3.0, sample_rate=SAMPLE_RATE) | change
        with pytest.raises(error, match=message):
            biquad(kind, **arguments)


# --------------------------------------------------------------------------
# Butterworth and Chebyshev sections.

IIR = {
    "butter": (lambda order, p, cutoff, btype: design.butter_sos(order, cutoff, SAMPLE_RATE, btype),
               lambda order, p, cutoff, btype: scipy.signal.butter(order, cutoff, btype, fs=SAMPLE_RATE, output="sos")),
    "cheby1": (lambda order, p, cutoff, btype: design.cheby1_sos(order, p, cutoff, SAMPLE_RATE, btype),
               lambda order, p, cutoff, btype: scipy.signal.cheby1(order, p, cutoff, btype, fs=SAMPLE_RATE,
                                                                   output="sos")),
    "cheby2": (lambda order, p, cutoff, btype: design.cheby2_sos(order, p, cutoff, SAMPLE_RATE, btype),
               lambda order, p, cutoff, btype: scipy.signal.cheby2(order, p, cutoff, btype, fs=SAMPLE_RATE,
                                                                   output="sos")),
}


def random_cutoffs(rng, btype, n):
    if btype == "bandpass":
        edges = np.sort(rng.uniform(20.0, 7980.0, (n, 2)), axis=-1)
        # a wide band (the odd orders' real prototype pole stays two real
        # poles) and a narrow one
        return np.concatenate([edges, [[30.0, 7500.0], [1000.0, 1100.0]]])
    return np.concatenate([rng.uniform(10.0, 7990.0, n), [30.0, 7900.0]])


@pytest.mark.parametrize("family", list(IIR))
@pytest.mark.parametrize("btype", ["lowpass", "highpass", "bandpass"])
def test_iir_sections_match_scipy(family, btype, rng):
    ours, reference = IIR[family]
    w = np.linspace(0, np.pi, 2048, endpoint=False)
    for order in range(1, 9):
        cutoffs = random_cutoffs(rng, btype, 3)
        parameters = rng.uniform(0.1, 3.0, len(cutoffs)) if family == "cheby1" else rng.uniform(10, 80, len(cutoffs))
        # one batched call against scipy's one-at-a-time
        sos = ours(order, torch.from_numpy(parameters), torch.from_numpy(cutoffs), btype)
        n_sections = order if btype == "bandpass" else (order + 1) // 2
        assert sos.shape == (len(cutoffs), n_sections, 6) and sos.dtype == torch.float64
        for i, (cutoff, parameter) in enumerate(zip(cutoffs, parameters)):
            sos_ref = reference(order, parameter, cutoff, btype)
            what = f"{family} {btype} order {order} cutoff {cutoff}"
            assert_close64(sos[i], torch.from_numpy(sos_ref), what + " sections")
            _, response = scipy.signal.sosfreqz(sos[i].numpy(), worN=w)
            _, response_ref = scipy.signal.sosfreqz(sos_ref, worN=w)
            assert_response_close64(torch.from_numpy(response), torch.from_numpy(response_ref), what + " response")


def test_iir_batches_broadcast_and_round_once_to_float32():
    cutoffs = torch.tensor([[300.0, 3400.0], [100.0, 200.0], [2000.0, 7000.0]], dtype=torch.float64)
    ripple = torch.tensor([[0.5], [2.0]], dtype=torch.float64)
    sos = design.cheby1_sos(3, ripple, cutoffs, SAMPLE_RATE, btype="bandpass")
    assert sos.shape == (2, 3, 3, 6)
    for i in range(2):
        for j in range(3):
            assert_close64(sos[i, j], design.cheby1_sos(3, ripple[i, 0], cutoffs[j], SAMPLE_RATE, "bandpass"))
    sos32 = design.butter_sos(5, 1000.0, SAMPLE_RATE)
    assert sos32.dtype == torch.float32 and sos32.shape == (3, 6)
    torch.testing.assert_close(sos32, design.butter_sos(5, torch.tensor(1000.0, dtype=torch.float64),
                                                        SAMPLE_RATE).float(), rtol=0, atol=0)
    assert design.cheby2_sos(4, 40.0, torch.empty(0, 2), SAMPLE_RATE, "bandpass").shape == (0, 4, 6)


def test_iir_gradients():
    cutoff = torch.tensor([500.0, 2500.0], dtype=torch.float64, requires_grad=True)
    band = torch.tensor([[300.0, 1200.0]], dtype=torch.float64, requires_grad=True)
    ripple = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    attenuation = torch.tensor([30.0, 50.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda c: design.butter_sos(3, c, SAMPLE_RATE), (cutoff,))
    assert torch.autograd.gradcheck(lambda c, r: design.cheby1_sos(3, r, c, SAMPLE_RATE, "bandpass"), (band, ripple))
    assert torch.autograd.gradcheck(lambda c, r: design.cheby2_sos(4, r, c, SAMPLE_RATE, "highpass"),
                                    (cutoff, attenuation))


@pytest.mark.parametrize("family", list(IIR))
def test_iir_filters_are_stable(family, rng):
    ours, _ = IIR[family]
    for btype in ("lowpass", "highpass", "bandpass"):
        cutoffs = random_cutoffs(rng, btype, 200)
        parameters = rng.uniform(0.05, 5.0, len(cutoffs)) if family == "cheby1" else rng.uniform(5, 100, len(cutoffs))
        for order in (1, 4, 7):
            a = ours(order, torch.from_numpy(parameters), torch.from_numpy(cutoffs), btype)[..., 3:]
            assert bool((a[..., 2].abs() < 1).all() and (a[..., 1].abs() < 1 + a[..., 2]).all()), (btype, order)


@pytest.mark.parametrize("call, error, message", [
    (lambda: design.butter_sos(0, 100.0, SAMPLE_RATE), ValueError, r"order must be an int >= 1; got 0"),
    (lambda: design.butter_sos(2.0, 100.0, SAMPLE_RATE), TypeError, r"order must be an int >= 1; got float"),
    (lambda: design.butter_sos(True, 100.0, SAMPLE_RATE), TypeError, r"order must be an int >= 1; got bool"),
    (lambda: design.butter_sos(2, 100.0, SAMPLE_RATE, "bandstop"), ValueError,
     r"btype must be one of lowpass, highpass, bandpass; got 'bandstop'"),
    (lambda: design.butter_sos(2, 8000.0, SAMPLE_RATE), ValueError,
     r"cutoff_hz must lie in \(0, 8000\) Hz \(sample_rate / 2\); got values in \[8000, 8000\]"),
    (lambda: design.butter_sos(2, torch.tensor([300.0, 400.0, 500.0]), SAMPLE_RATE, "bandpass"), ValueError,
     r"cutoff_hz must have a last dimension of 2 \(low, high\) for btype='bandpass'; got shape \(3,\)"),
    (lambda: design.butter_sos(2, 300.0, SAMPLE_RATE, "bandpass"), ValueError,
     r"cutoff_hz must have a last dimension of 2 .* got shape \(\)"),
    (lambda: design.butter_sos(2, torch.tensor([400.0, 300.0]), SAMPLE_RATE, "bandpass"), ValueError,
     r"cutoff_hz\[..., 0\] \(low\) must be < cutoff_hz\[..., 1\] \(high\); got cutoff_hz\[..., 0\] \(low\) in "
     r"\[400, 400\] and cutoff_hz\[..., 1\] \(high\) in \[300, 300\]"),
    (lambda: design.butter_sos(2, torch.tensor([300]), SAMPLE_RATE), TypeError,
     r"cutoff_hz must be a floating-point tensor or a number; got torch.int64"),
    (lambda: design.butter_sos(2, 300.0, -2), ValueError, r"sample_rate must be a positive number of Hz; got -2"),
    (lambda: design.cheby1_sos(2, 0.0, 300.0, SAMPLE_RATE), ValueError, r"ripple_db must be > 0; got a minimum of 0"),
    (lambda: design.cheby2_sos(2, float("inf"), 300.0, SAMPLE_RATE), ValueError, r"attenuation_db must be finite"),
    (lambda: design.cheby1_sos(2, torch.ones(3), torch.tensor([[300.0, 400.0]] * 2), SAMPLE_RATE, "bandpass"),
     ValueError, r"shapes do not broadcast: cutoff_hz\[..., 0\] \(2,\), ripple_db \(3,\)"),
    (lambda: design.cheby2_sos(2, torch.tensor(40.0, dtype=torch.float64), torch.tensor(300.0), SAMPLE_RATE),
     TypeError, r"attenuation_db has dtype torch.float64 but cutoff_hz has dtype torch.float32"),
])
def test_iir_rejects_bad_arguments(call, error, message):
    with pytest.raises(error, match=message):
        call()


# --------------------------------------------------------------------------
# Gammatone.


def test_gammatone_matches_scipy():
    centres = [30.0, 100.0, 440.0, 1000.0, 2000.0, 3500.0, 6000.0, 7900.0]
    sos = design.gammatone_sos(torch.tensor(centres, dtype=torch.float64), SAMPLE_RATE)
    assert sos.shape == (len(centres), 4, 6)
    for f, centre in enumerate(centres):
        b_ref, a_ref = scipy.signal.gammatone(centre, "iir", fs=SAMPLE_RATE)
        # The cascade multiplied out is scipy's transfer function, gain included.
        b, a = np.ones(1), np.ones(1)
        for section in sos[f].numpy():
            b, a = np.convolve(b, section[:3]), np.convolve(a, section[3:])
        assert np.all(b[5:] == 0)
        assert_close64(torch.from_numpy(b[:5]), torch.from_numpy(b_ref), f"gammatone b at {centre} Hz")
        assert_close64(torch.from_numpy(a), torch.from_numpy(a_ref), f"gammatone a at {centre} Hz")
        # Unit gain at the centre (scipy's normalisation).
        _, peak = design.sosfreqz(sos[f], sample_rate=SAMPLE_RATE, frequencies=torch.tensor([centre],
                                                                                          dtype=torch.float64))
        assert abs(float(peak.abs()) - 1) < 1e-12
        # Complex responses agree where scipy's single 8th-order polynomial is
        # well conditioned; below ~fs / 8 its four-fold poles near z = 1 make
        # the (b, a) form itself lose digits (the coefficients above still agree).
        if centre >= SAMPLE_RATE / 8:
            w, response_ref = scipy.signal.freqz(b_ref, a_ref, worN=2048, fs=SAMPLE_RATE)
            _, response = design.sosfreqz(sos[f], 2048, sample_rate=SAMPLE_RATE)
            assert_response_close64(response, torch.from_numpy(response_ref), f"gammatone response at {centre} Hz")


def test_gammatone_gradients_shapes_and_dtype():
    centre = torch.tensor([[150.0], [2500.0]], dtype=torch.float64, requires_grad=True)
    assert design.gammatone_sos(centre, SAMPLE_RATE).shape == (2, 1, 4, 6)
    assert torch.autograd.gradcheck(lambda c: design.gammatone_sos(c, SAMPLE_RATE), (centre,))
    sos = design.gammatone_sos(1000.0, SAMPLE_RATE)
    assert sos.dtype == torch.float32 and sos.shape == (4, 6)
    a = design.gammatone_sos(torch.linspace(1.0, 7999.0, 500, dtype=torch.float64), SAMPLE_RATE)[..., 3:]
    assert bool((a[..., 2].abs() < 1).all() and (a[..., 1].abs() < 1 + a[..., 2]).all())
    with pytest.raises(ValueError, match=r"centre_hz must lie in \(0, 8000\) Hz"):
        design.gammatone_sos(torch.tensor([100.0, 8000.0]), SAMPLE_RATE)


def test_erb_bandwidth():
    # Glasberg & Moore: 24.7 (4.37 f / 1000 + 1); 24.7 Hz at 0 and 24.7 * 5.37 at 1 kHz
    erb = design.erb_bandwidth(torch.tensor([0.0, 1000.0], dtype=torch.float64))
    torch.testing.assert_close(erb, torch.tensor([24.7, 132.639], dtype=torch.float64), rtol=1e-14, atol=0)
    assert design.erb_bandwidth(500.0).dtype == torch.float32
    with pytest.raises(ValueError, match=r"centre_hz must lie in \[0, inf\) Hz; got values in \[-1, -1\]"):
        design.erb_bandwidth(-1.0)


# --------------------------------------------------------------------------
# Frequency scales.


def test_scales_reference_values():
    f = torch.tensor([0.0, 440.0, 1000.0, 2000.0, 6400.0], dtype=torch.float64)
    # Slaney (librosa's default): 3 mel / 200 Hz below 1 kHz, 27 mel per factor 6.4 above
    slaney = [0.0, 6.6, 15.0, 15.0 + 27 * np.log(2) / np.log(6.4), 42.0]
    torch.testing.assert_close(design.hz_to_mel(f), torch.tensor(slaney, dtype=torch.float64), rtol=1e-14, atol=0)
    # HTK: 2595 log10(1 + f / 700): 700 Hz is 2595 log10(2); 2595 mel is 6300 Hz
    torch.testing.assert_close(design.hz_to_mel(torch.tensor([700.0, 2100.0], dtype=torch.float64), htk=True),
                               torch.tensor([781.1728387480312, 2 * 781.1728387480312], dtype=torch.float64),
                               rtol=1e-14, atol=0)
    assert abs(float(design.mel_to_hz(torch.tensor(2595.0, dtype=torch.float64), htk=True)) - 6300) < 1e-9
    # ERB-number: 1 + 0.00437 f = 10 gives 21.4
    assert abs(float(design.hz_to_erb_rate(torch.tensor(9 / 0.00437, dtype=torch.float64))) - 21.4) < 1e-12
    # Traunmüller: 1960 Hz is 26.81 / 2 - 0.53 = 12.875 (no correction); 100 Hz is
    # 0.77146 before the low correction, 0.95574 after; 10317.48 Hz is 22.0 before
    # the high correction, 22.418 after; 0 Hz is -0.1505
    bark = design.hz_to_bark(torch.tensor([1960.0, 100.0, 22.53 * 1960 / 4.28, 0.0], dtype=torch.float64))
    torch.testing.assert_close(bark, torch.tensor([12.875, 0.9557378640776699, 22.418, -0.1505], dtype=torch.float64),
                               rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("forward, inverse, top", [
    (design.hz_to_mel, design.mel_to_hz, 20000.0),
    (lambda f: design.hz_to_mel(f, htk=True), lambda m: design.mel_to_hz(m, htk=True), 20000.0),
    (design.hz_to_erb_rate, design.erb_rate_to_hz, 20000.0),
    (design.hz_to_bark, design.bark_to_hz, 40000.0),
], ids=["mel", "mel_htk", "erb", "bark"])
def test_scales_invert_and_are_differentiable(forward, inverse, top, rng):
    f = torch.from_numpy(np.sort(rng.uniform(0.0, top, 200)))
    scale = forward(f)
    assert bool((scale[1:] > scale[:-1]).all())
    torch.testing.assert_close(inverse(scale), f, rtol=1e-12, atol=1e-9)
    x = torch.tensor([30.0, 500.0, 999.0, 1001.0, 5000.0, 15000.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(forward, (x,))
    assert torch.autograd.gradcheck(inverse, (forward(x).detach().requires_grad_(),))
    assert forward(100.0).dtype == torch.float32 and forward(100.0).shape == ()


def test_scale_conversions_reject_bad_arguments():
    for call, message in [
        (lambda: design.hz_to_mel(-1.0), r"f must lie in \[0, inf\) Hz; got values in \[-1, -1\]"),
        (lambda: design.mel_to_hz(float("nan")), r"m must lie in \[0, inf\) mel"),
        (lambda: design.hz_to_erb_rate(float("inf")), r"f must lie in \[0, inf\) Hz"),
        (lambda: design.erb_rate_to_hz(-2.0), r"e must lie in \[0, inf\)"),
        (lambda: design.hz_to_bark(torch.tensor([-5.0, 5.0])), r"f must lie in \[0, inf\) Hz; got values in \[-5, 5\]"),
        (lambda: design.bark_to_hz(27.7), r"z must lie in \[-0.1505, 27.6396\) Bark"),
    ]:
        with pytest.raises(ValueError, match=message):
            call()
    with pytest.raises(TypeError, match=r"f must be a floating-point tensor or a number; got str"):
        design.hz_to_mel("440")
    with pytest.raises(TypeError, match=r"htk must be a bool; got str"):
        design.mel_to_hz(10.0, htk="yes")


@pytest.mark.parametrize("scale", ["mel", "mel_htk", "erb", "bark", "linear", "log"])
def test_centre_frequencies_are_equally_spaced_on_their_scale(scale):
    forward = {"mel": design.hz_to_mel, "mel_htk": lambda f: design.hz_to_mel(f, htk=True),
               "erb": design.hz_to_erb_rate, "bark": design.hz_to_bark, "linear": lambda f: f,
               "log": torch.log}[scale]
    centres = design.centre_frequencies(12, 50.0, 7600.0, scale=scale, dtype=torch.float64)
    assert centres.shape == (12,) and centres.dtype == torch.float64
    assert float(centres[0]) == 50.0 and float(centres[-1]) == 7600.0
    assert bool((centres[1:] > centres[:-1]).all())
    steps = forward(centres).diff()
    torch.testing.assert_close(steps, steps.mean().expand(11), rtol=1e-10, atol=0)
    assert design.centre_frequencies(5, 50.0, 7600.0, scale=scale).dtype == torch.float32
    f_min = torch.tensor([[50.0], [100.0]], dtype=torch.float64, requires_grad=True)
    f_max = torch.tensor([4000.0, 7000.0, 7900.0], dtype=torch.float64, requires_grad=True)
    batched = design.centre_frequencies(6, f_min, f_max, scale=scale, dtype=torch.float64)
    assert batched.shape == (2, 3, 6)
    torch.testing.assert_close(batched[1, 2], design.centre_frequencies(6, 100.0, 7900.0, scale, torch.float64))
    assert torch.autograd.gradcheck(lambda lo, hi: design.centre_frequencies(6, lo, hi, scale, torch.float64),
                                    (f_min, f_max))
    assert design.centre_frequencies(1, 50.0, 7600.0, scale=scale).tolist() == [50.0]


@pytest.mark.parametrize("call, error, message", [
    (lambda: design.centre_frequencies(0, 50.0, 100.0), ValueError, r"n_filters must be an int >= 1; got 0"),
    (lambda: design.centre_frequencies(4.0, 50.0, 100.0), TypeError, r"n_filters must be an int >= 1; got float"),
    (lambda: design.centre_frequencies(4, 50.0, 100.0, scale="octave"), ValueError,
     r"scale must be one of mel, mel_htk, erb, bark, linear, log; got 'octave'"),
    (lambda: design.centre_frequencies(4, 100.0, 100.0), ValueError,
     r"f_min must be < f_max; got f_min in \[100, 100\] and f_max in \[100, 100\]"),
    (lambda: design.centre_frequencies(4, 0.0, 100.0, scale="log"), ValueError,
     r"f_min must be > 0; got a minimum of 0"),
    (lambda: design.centre_frequencies(4, -1.0, 100.0), ValueError, r"f_min must lie in \[0, inf\) Hz"),
    (lambda: design.centre_frequencies(4, 1.0, float("inf")), ValueError, r"f_max must be finite"),
    (lambda: design.centre_frequencies(4, torch.tensor(1.0, dtype=torch.float64), 100.0), TypeError,
     r"f_min is torch.float64 but dtype is torch.float32; pass dtype=torch.float64"),
    (lambda: design.centre_frequencies(4, 1.0, 100.0, dtype=torch.int32), TypeError,
     r"dtype must be a floating torch.dtype; got torch.int32"),
])
def test_centre_frequencies_rejects_bad_arguments(call, error, message):
    with pytest.raises(error, match=message):
        call()


# --------------------------------------------------------------------------
# Frequency responses.


def test_freqz_matches_scipy(rng):
    filters = [random_filter(rng, n_b, n_a) for n_b, n_a in ((3, 5), (3, 5), (3, 5))]
    b = torch.from_numpy(np.stack([f[0] for f in filters]))
    a = torch.from_numpy(np.stack([f[1] for f in filters]))
    explicit = torch.from_numpy(rng.uniform(0, 8000.0, 37))
    for n, kwargs in [(512, {}), (301, dict(whole=True)), (64, dict(sample_rate=SAMPLE_RATE)),
                      (7, dict(sample_rate=SAMPLE_RATE, whole=True))]:
        w, response = design.freqz(b, a, n, **kwargs)
        assert w.shape == (n,) and response.shape == (3, n) and response.dtype == torch.complex128
        for f in range(3):
            w_ref, response_ref = scipy.signal.freqz(b[f].numpy(), a[f].numpy(), worN=n,
                                                     whole=kwargs.get("whole", False),
                                                     fs=kwargs.get("sample_rate", 2 * np.pi))
            torch.testing.assert_close(w, torch.from_numpy(w_ref), rtol=1e-15, atol=0)
            assert_response_close64(response[f], torch.from_numpy(response_ref), f"freqz filter {f} {kwargs}")
    w, response = design.freqz(b, a, sample_rate=SAMPLE_RATE, frequencies=explicit)
    assert w is explicit
    for f in range(3):
        _, response_ref = scipy.signal.freqz(b[f].numpy(), a[f].numpy(), worN=explicit.numpy(), fs=SAMPLE_RATE)
        assert_response_close64(response[f], torch.from_numpy(response_ref), f"freqz at given frequencies, filter {f}")
    # a shared FIR numerator broadcasting against a batch of denominators
    _, response = design.freqz(b[0], a, 16)
    assert response.shape == (3, 16)
    _, response32 = design.freqz(b.float(), a.float(), 16)
    assert response32.dtype == torch.complex64


def test_sosfreqz_matches_scipy(rng):
    sos = torch.from_numpy(np.stack([random_sos(rng, 3) for _ in range(4)]))  # (4, 3, 6), a0 != 1
    for n, kwargs in [(512, {}), (100, dict(whole=True, sample_rate=48000.0))]:
        w, response = design.sosfreqz(sos, n, **kwargs)
        assert response.shape == (4, n)
        for f in range(4):
            w_ref, response_ref = scipy.signal.sosfreqz(normalised_sos(sos[f].numpy()), worN=n,
                                                        whole=kwargs.get("whole", False),
                                                        fs=kwargs.get("sample_rate", 2 * np.pi))
            torch.testing.assert_close(w, torch.from_numpy(w_ref), rtol=1e-15, atol=0)
            assert_response_close64(response[f], torch.from_numpy(response_ref), f"sosfreqz filter {f}")
    # one frequency per filter: (n_filters, 1) broadcasts against the batch
    per_filter = torch.tensor([[100.0], [1000.0], [3000.0], [7000.0]], dtype=torch.float64)
    _, response = design.sosfreqz(sos, sample_rate=SAMPLE_RATE, frequencies=per_filter)
    assert response.shape == (4, 1)
    for f in range(4):
        _, response_ref = scipy.signal.sosfreqz(normalised_sos(sos[f].numpy()), worN=per_filter[f].numpy(),
                                                fs=SAMPLE_RATE)
        assert_response_close64(response[f], torch.from_numpy(response_ref), f"sosfreqz at filter {f}'s frequency")


def test_responses_take_scipys_positional_order(rng):
    b, a = (torch.from_numpy(x) for x in random_filter(rng, 3, 4))
    sos = torch.from_numpy(random_sos(rng, 2))
    for ours, theirs in [(design.freqz(b, a, 64, True), scipy.signal.freqz(b.numpy(), a.numpy(), 64, True)),
                         (design.sosfreqz(sos, 64, True), scipy.signal.sosfreqz(normalised_sos(sos.numpy()), 64, True))]:
        torch.testing.assert_close(ours[0], torch.from_numpy(theirs[0]), rtol=1e-15, atol=0)
        assert_response_close64(ours[1], torch.from_numpy(theirs[1]), "positional whole")
    # The old order (n_frequencies, sample_rate, whole) still works for a release, with a warning.
    expected = design.freqz(b, a, 32, True, sample_rate=SAMPLE_RATE)
    with pytest.warns(DeprecationWarning, match=r"the fourth positional argument is now whole, as in scipy"):
        old = design.freqz(b, a, 32, SAMPLE_RATE, True)
    for got, want in zip(old, expected):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    with pytest.warns(DeprecationWarning):
        old = design.sosfreqz(sos, 32, SAMPLE_RATE)
    for got, want in zip(old, design.sosfreqz(sos, 32, sample_rate=SAMPLE_RATE)):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    with pytest.raises(TypeError, match=r"whole must be a bool; got str"):
        design.freqz(b, a, 32, "yes")


def test_registries_name_every_design():
    assert design.SCALES == ("mel", "mel_htk", "erb", "bark", "linear", "log")
    assert set(design.BIQUADS) == {"lowpass", "highpass", "bandpass", "bandpass_skirt", "notch", "allpass", "peaking",
                                   "lowshelf", "highshelf"}
    for kind, entry in design.BIQUADS.items():
        assert entry.function is getattr(design, f"{kind}_biquad")
        assert entry.takes_gain == (kind in ("peaking", "lowshelf", "highshelf"))
        assert entry.frequency in entry.function.__code__.co_varnames
        assert "{" not in entry.function.__doc__, "every shared block of the docstring is filled in"
    assert {name: entry.function for name, entry in design.CLASSIC.items()} == {
        "butter": design.butter_sos, "cheby1": design.cheby1_sos, "cheby2": design.cheby2_sos}
    assert "ripple_db: (...) pass-band ripple in dB (> 0)." in design.cheby1_sos.__doc__


def test_responses_are_differentiable(rng):
    b, a = (torch.from_numpy(x).requires_grad_() for x in random_filter(rng, 3, 4))
    sos = torch.from_numpy(random_sos(rng, 2)).requires_grad_()
    assert torch.autograd.gradcheck(lambda b, a: design.freqz(b, a, 16)[1].abs(), (b, a))
    assert torch.autograd.gradcheck(lambda s: design.sosfreqz(s, 16, whole=True)[1].abs(), (sos,))
    frequencies = torch.tensor([0.3, 1.1, 2.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s, w: design.sosfreqz(s, frequencies=w)[1].abs(), (sos, frequencies))
    # a magnitude loss at chosen frequencies reaches a designed filter's parameters
    centre = torch.tensor([1000.0, 2000.0], dtype=torch.float64, requires_grad=True)
    sos = design.gammatone_sos(centre, SAMPLE_RATE)
    _, response = design.sosfreqz(sos, sample_rate=SAMPLE_RATE, frequencies=torch.tensor([[1100.0], [1900.0]],
                                                                                          dtype=torch.float64))
    response.abs().log().sum().backward()
    assert torch.isfinite(centre.grad).all() and bool((centre.grad != 0).all())


@pytest.mark.parametrize("call, error, message", [
    (lambda: design.freqz(torch.ones(3), torch.tensor([0.0, 1.0])), ValueError,
     r"a\[..., 0\] must be non-zero; got 0 at a\[0\]$"),
    (lambda: design.freqz(torch.ones(2, 3), torch.tensor([[1.0, 0.5], [0.0, 1.0]])), ValueError,
     r"a\[..., 0\] must be non-zero; got 0 at a\[1, 0\]"),
    (lambda: design.freqz([1.0], torch.ones(1)), TypeError, r"b must be a torch.Tensor; got list"),
    (lambda: design.freqz(torch.ones(3), torch.ones(1, dtype=torch.int64)), TypeError,
     r"a must be a real floating-point tensor .*; got torch.int64"),
    (lambda: design.freqz(torch.ones(3), torch.ones(1, dtype=torch.float64)), TypeError,
     r"a has dtype torch.float64 but b has dtype torch.float32"),
    (lambda: design.freqz(torch.ones(2, 3), torch.ones(3, 1)), ValueError,
     r"the batch dimensions do not broadcast: b \(2,\), a \(3,\)"),
    (lambda: design.freqz(torch.ones(3), torch.ones(1), 0), ValueError, r"n_frequencies must be an int >= 1; got 0"),
    (lambda: design.freqz(torch.ones(3), torch.ones(1), sample_rate=-8000.0), ValueError,
     r"sample_rate must be a positive number of Hz; got -8000.0"),
    (lambda: design.freqz(torch.ones(3), torch.ones(1), whole=True, frequencies=torch.ones(4)), ValueError,
     r"whole=True asks for scipy's grid"),
    (lambda: design.freqz(torch.ones(3), torch.ones(1), frequencies=torch.ones(4, dtype=torch.float64)), TypeError,
     r"frequencies has dtype torch.float64 but b has dtype torch.float32"),
    (lambda: design.freqz(torch.ones(3), torch.ones(1), frequencies=torch.tensor(1.0)), ValueError,
     r"frequencies must have shape \(..., n_frequencies\); got a 0-d tensor"),
    (lambda: design.freqz(torch.ones(3), torch.ones(1), frequencies=[1.0]), TypeError,
     r"frequencies must be a torch.Tensor; got list"),
    (lambda: design.sosfreqz(torch.ones(2, 5)), ValueError,
     r"sos must have shape \(..., n_sections, 6\) with n_sections >= 1; got \(2, 5\)"),
    (lambda: design.sosfreqz(torch.ones(6)), ValueError, r"sos must have shape \(..., n_sections, 6\) with n_sections >= 1; got \(6,\)"),
    (lambda: design.sosfreqz(torch.ones(4, 0, 6)), ValueError, r"sos must have shape \(..., n_sections, 6\) with n_sections >= 1; got \(4, 0, 6\)"),
    (lambda: design.sosfreqz(torch.tensor([[1.0, 0, 0, 1, 0, 0], [1.0, 0, 0, 0, 1, 0]])), ValueError,
     r"sos\[..., 3\] must be non-zero; got 0 at sos\[1, 3\]"),
    (lambda: design.sosfreqz(torch.ones(4, 2, 6), frequencies=torch.ones(3, 1)), ValueError,
     r"the batch dimensions do not broadcast: sos \(4,\), frequencies \(3,\)"),
])
def test_responses_reject_bad_arguments(call, error, message):
    with pytest.raises(error, match=message):
        call()


# --------------------------------------------------------------------------
# torch.compile: the value checks step aside and nothing breaks the graph.


def test_design_compiles_without_graph_breaks():
    def design_everything(centre, q, gain_db, band, f_min):
        b, a = design.peaking_biquad(centre, q, gain_db, SAMPLE_RATE)
        _, at_centre = design.freqz(b, a, sample_rate=SAMPLE_RATE, frequencies=centre.unsqueeze(-1))
        _, gammatone = design.sosfreqz(design.gammatone_sos(centre, SAMPLE_RATE), 32)
        return (b, a, at_centre.abs(), gammatone.abs(), design.cheby1_sos(1, 1.0, band, SAMPLE_RATE, "bandpass"),
                design.centre_frequencies(5, f_min, 7000.0, "mel", torch.float64),
                design.q_from_bandwidth(1.0, centre, SAMPLE_RATE))

    inputs = (torch.tensor([300.0, 3000.0], dtype=torch.float64), torch.tensor([1.0, 2.0], dtype=torch.float64),
              torch.tensor([3.0, -6.0], dtype=torch.float64), torch.tensor([[300.0, 3400.0]], dtype=torch.float64),
              torch.tensor(40.0, dtype=torch.float64))
    compiled = torch.compile(design_everything, fullgraph=True, backend="aot_eager")(*inputs)
    for got, expected in zip(compiled, design_everything(*inputs)):
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
