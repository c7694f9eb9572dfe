"""scipy's state helpers and zero-phase filtering in the functional API, against scipy."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import torch

from filterbank import filtfilt, lfilter, lfilter_zi, lfiltic, sosfilt, sosfilt_zi, sosfiltfilt
from helpers import assert_close64, random_filter, random_sos


@pytest.mark.parametrize("n_b, n_a", [(1, 1), (3, 3), (2, 5), (6, 3), (11, 11)])
def test_lfilter_zi_matches_scipy_and_is_steady(rng, n_b, n_a):
    b, a = random_filter(rng, n_b, n_a)
    zi = lfilter_zi(torch.tensor(b), torch.tensor(a))
    if max(n_b, n_a) == 1:  # no state (scipy's companion() rejects this case)
        assert zi.shape == (0,)
        return
    assert_close64(zi, torch.tensor(scipy.signal.lfilter_zi(b, a)), "zi")
    if zi.shape[-1]:
        y, _ = lfilter(torch.tensor(b), torch.tensor(a), torch.full((50,), 3.0, dtype=torch.float64), zi=3 * zi)
        assert_close64(y, torch.full_like(y, float(y[0])), "steady step response")


def test_state_helpers_batch(rng):
    filters = [random_filter(rng, 3, 4) for _ in range(5)]
    b = torch.tensor(np.stack([f[0] for f in filters]))
    a = torch.tensor(np.stack([f[1] for f in filters]))
    zi = lfilter_zi(b, a)
    assert zi.shape == (5, 3)
    for n, (bn, an) in enumerate(filters):
        assert_close64(zi[n], torch.tensor(scipy.signal.lfilter_zi(bn, an)), f"zi {n}")
    sos = torch.tensor(np.stack([random_sos(rng, 3) for _ in range(4)]))
    zis = sosfilt_zi(sos)
    assert zis.shape == (4, 3, 2)
    for n in range(4):
        assert_close64(zis[n], torch.tensor(scipy.signal.sosfilt_zi(sos[n].numpy())), f"sos zi {n}")


@pytest.mark.parametrize("n_b, n_a, n_y, n_x", [(3, 3, 2, 2), (4, 2, 1, None), (2, 5, 6, 1), (1, 3, 2, 3)])
def test_lfiltic_matches_scipy_and_continues(rng, n_b, n_a, n_y, n_x):
    b, a = random_filter(rng, n_b, n_a)
    y = rng.standard_normal(n_y)
    x = None if n_x is None else rng.standard_normal(n_x)
    got = lfiltic(torch.tensor(b), torch.tensor(a), torch.tensor(y), None if x is None else torch.tensor(x))
    assert_close64(got, torch.tensor(scipy.signal.lfiltic(b, a, y, x)), "lfiltic")


def test_lfiltic_state_reproduces_a_split_run(rng):
    b, a = random_filter(rng, 3, 3)
    signal = rng.standard_normal(40)
    whole = scipy.signal.lfilter(b, a, signal)
    zi = lfiltic(torch.tensor(b), torch.tensor(a), torch.tensor(whole[19::-1].copy()), torch.tensor(signal[19::-1].copy()))
    rest, _ = lfilter(torch.tensor(b), torch.tensor(a), torch.tensor(signal[20:]), zi=zi)
    assert_close64(rest, torch.tensor(whole[20:]), "continued")


@pytest.mark.parametrize("padtype, padlen", [("odd", None), ("even", None), ("constant", 7), (None, None),
                                             ("odd", 0), ("even", 30)])
@pytest.mark.parametrize("axis", [-1, 0])
def test_filtfilt_matches_scipy(rng, padtype, padlen, axis):
    b, a = scipy.signal.butter(4, 0.15)
    x = rng.standard_normal((120, 3)) if axis == 0 else rng.standard_normal((3, 120))
    got = filtfilt(torch.tensor(b), torch.tensor(a), torch.tensor(x), axis=axis, padtype=padtype, padlen=padlen)
    expected = scipy.signal.filtfilt(b, a, x, axis=axis, padtype=padtype, padlen=padlen)
    assert_close64(got, torch.tensor(expected.copy()), "filtfilt")


@pytest.mark.parametrize("n_b, n_a", [(1, 2), (2, 4), (5, 2), (9, 9)])
def test_filtfilt_random_orders(rng, n_b, n_a):
    b, a = random_filter(rng, n_b, n_a, max_radius=0.8)
    x = rng.standard_normal(200)
    got = filtfilt(torch.tensor(b), torch.tensor(a), torch.tensor(x))
    assert_close64(got, torch.tensor(scipy.signal.filtfilt(b, a, x).copy()), "filtfilt")


def test_filtfilt_bank_broadcasts(rng):
    filters = [random_filter(rng, 3, 3, max_radius=0.8) for _ in range(4)]
    b = torch.tensor(np.stack([f[0] for f in filters]))
    a = torch.tensor(np.stack([f[1] for f in filters]))
    x = rng.standard_normal((2, 90))
    got = filtfilt(b, a, torch.tensor(x).unsqueeze(-2))
    assert got.shape == (2, 4, 90)
    for i in range(2):
        for n, (bn, an) in enumerate(filters):
            assert_close64(got[i, n], torch.tensor(scipy.signal.filtfilt(bn, an, x[i]).copy()), f"[{i}, {n}]")


@pytest.mark.parametrize("padtype, padlen", [("odd", None), ("even", 11), ("constant", None), (None, None)])
def test_sosfiltfilt_matches_scipy(rng, padtype, padlen):
    sos = scipy.signal.butter(5, [0.1, 0.3], btype="bandpass", output="sos")
    x = rng.standard_normal((2, 3, 150))
    got = sosfiltfilt(torch.tensor(sos), torch.tensor(x), padtype=padtype, padlen=padlen)
    expected = scipy.signal.sosfiltfilt(sos, x, padtype=padtype, padlen=padlen)
    assert_close64(got, torch.tensor(expected.copy()), "sosfiltfilt")


def test_sosfiltfilt_counts_first_order_sections_like_scipy(rng):
    sos = scipy.signal.butter(3, 0.2, output="sos")  # one section is first order
    x = rng.standard_normal(100)
    got = sosfiltfilt(torch.tensor(sos), torch.tensor(x))
    assert_close64(got, torch.tensor(scipy.signal.sosfiltfilt(sos, x).copy()), "sosfiltfilt")


def test_short_signals_get_scipys_error():
    b, a = scipy.signal.butter(2, 0.2)
    with pytest.raises(ValueError) as scipy_error:
        scipy.signal.filtfilt(b, a, np.ones(9))
    with pytest.raises(ValueError, match="The length of the input vector x must be greater than padlen, which is 9."):
        filtfilt(torch.tensor(b), torch.tensor(a), torch.ones(9, dtype=torch.float64))
    assert "which is 9" in str(scipy_error.value)
    sos = torch.tensor(scipy.signal.butter(4, 0.2, output="sos"))
    with pytest.raises(ValueError, match="greater than padlen, which is 15"):
        sosfiltfilt(sos, torch.ones(15, dtype=torch.float64))


@pytest.mark.parametrize("call, error, message", [
    (lambda: filtfilt(torch.ones(2), torch.ones(2), torch.ones(50), padtype="reflect"), ValueError,
     r"padtype must be one of even, odd, constant or None; got 'reflect'"),
    (lambda: filtfilt(torch.ones(2), torch.ones(2), torch.ones(50), padlen=-1), ValueError,
     r"padlen must be None or an int >= 0; got -1"),
    (lambda: filtfilt(torch.ones(2), torch.ones(2), torch.ones(50), method="gust"), NotImplementedError,
     r"Gustafsson"),
    (lambda: filtfilt(torch.ones(2), torch.ones(2), torch.ones(50), method="fft"), ValueError,
     r"method must be one of pad, gust; got 'fft'"),
    (lambda: lfilter_zi(torch.ones(2), torch.tensor([0.0, 1.0])), ValueError, r"a\[\.\.\., 0\] must be non-zero"),
    (lambda: sosfilt_zi(torch.ones(2, 5)), ValueError, r"sos must have shape \(\.\.\., n_sections, 6\)"),
    (lambda: lfiltic(torch.ones(2), torch.ones(2), [1.0]), TypeError, r"y must be a torch.Tensor; got list"),
    (lambda: sosfiltfilt(torch.tensor([[[1.0, 0, 0, 1, 0.1, 0]], [[1.0, 0.2, 0.1, 1, 0.1, 0.2]]]), torch.ones(2, 50)),
     ValueError, r"different numbers of first-order sections"),
])
def test_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_gradients(rng):
    b, a = (torch.tensor(v, requires_grad=True) for v in random_filter(rng, 3, 3, max_radius=0.7))
    x = torch.tensor(rng.standard_normal(30), requires_grad=True)
    assert torch.autograd.gradcheck(lambda b, a, x: filtfilt(b, a, x, padlen=6), (b, a, x))
    assert torch.autograd.gradcheck(lambda b, a: lfilter_zi(b, a), (b, a))
    sos = torch.tensor(random_sos(rng, 2, max_radius=0.7), requires_grad=True)
    assert torch.autograd.gradcheck(lambda sos, x: sosfiltfilt(sos, x, padlen=8), (sos, x))
    assert torch.autograd.gradcheck(sosfilt_zi, (sos,))


def test_steady_state_of_a_cascade(rng):
    sos = torch.tensor(random_sos(rng, 3))
    y, _ = sosfilt(sos, torch.full((60,), 2.0, dtype=torch.float64), zi=2 * sosfilt_zi(sos))
    assert_close64(y, torch.full_like(y, float(y[0])), "steady cascade")
