"""The pure-torch reference against scipy, in float64: the ground truth is right."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import torch

from helpers import assert_close64, normalised_sos, random_filter, random_sos
from filterbank.kernels import reference


def _lfilter_case(rng, n_b, n_a, n_time, n_channels=3):
    x = rng.standard_normal((n_channels, n_time))
    filters = [random_filter(rng, n_b, n_a) for _ in range(n_channels)]
    order = max(n_b, n_a) - 1
    zi = rng.standard_normal((n_channels, order))
    return x, filters, zi


@pytest.mark.parametrize("n_b, n_a", [(1, 1), (1, 2), (2, 1), (3, 3), (2, 5), (6, 3), (11, 11), (4, 9)])
@pytest.mark.parametrize("n_time", [1, 2, 7, 50])
def test_lfilter_matches_scipy(rng, n_b, n_a, n_time):
    x, filters, zi = _lfilter_case(rng, n_b, n_a, n_time)
    order = max(n_b, n_a) - 1
    b = torch.tensor(np.stack([np.pad(f[0], (0, order + 1 - n_b)) for f in filters]))[:, None]
    a = torch.tensor(np.stack([np.pad(f[1], (0, order + 1 - n_a)) for f in filters]))[:, None]
    y, zf = reference.iir_cascade(torch.tensor(x), torch.arange(3), b, a, torch.tensor(zi)[:, None])
    for p, (bp, ap) in enumerate(filters):
        y_ref, zf_ref = scipy.signal.lfilter(bp, ap, x[p], zi=zi[p]) if order else (scipy.signal.lfilter(bp, ap, x[p]), np.zeros(0))
        assert_close64(y[p], torch.tensor(y_ref), f"y, filter {p}")
        assert_close64(zf[p, 0], torch.tensor(zf_ref), f"zf, filter {p}")


@pytest.mark.parametrize("n_sections", [1, 2, 5])
@pytest.mark.parametrize("n_time", [1, 3, 64])
def test_sosfilt_matches_scipy(rng, n_sections, n_time):
    x = rng.standard_normal((2, n_time))
    sos = [random_sos(rng, n_sections) for _ in range(2)]
    zi = rng.standard_normal((2, n_sections, 2))
    b = torch.tensor(np.stack([s[:, :3] for s in sos]))
    a = torch.tensor(np.stack([s[:, 3:] for s in sos]))
    y, zf = reference.iir_cascade(torch.tensor(x), torch.tensor([1, 0]), b, a, torch.tensor(zi))
    for p, source in enumerate([1, 0]):
        y_ref, zf_ref = scipy.signal.sosfilt(normalised_sos(sos[p]), x[source], zi=zi[p])
        assert_close64(y[p], torch.tensor(y_ref), f"y, channel {p}")
        assert_close64(zf[p], torch.tensor(zf_ref), f"zf, channel {p}")


def test_reference_backward_is_autograd(rng):
    # The reference backward is plain autograd; check it against finite differences.
    x = torch.tensor(rng.standard_normal((2, 9)), requires_grad=True)
    b = torch.tensor(random_sos(rng, 2)[None, :, :3].repeat(3, 0), requires_grad=True)
    a = torch.tensor(random_sos(rng, 2)[None, :, 3:].repeat(3, 0), requires_grad=True)
    zi = torch.tensor(rng.standard_normal((3, 2, 2)), requires_grad=True)
    index = torch.tensor([0, 1, 1])
    assert torch.autograd.gradcheck(lambda *t: reference.iir_cascade(t[0], index, *t[1:]), (x, b, a, zi))
