"""The public functions against scipy: shapes, axes, broadcasting, state,
dtypes, layouts, gradients and every error path."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import filterbank
from filterbank import _ops, lfilter, sosfilt
from helpers import assert_close64, assert_close_low, normalised_sos, random_filter, random_sos

HYPOTHESIS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def scipy_lfilter_bank(b, a, x, axis, zi=None):
    """scipy.signal.lfilter looped over broadcast filters (float64 numpy)."""
    axis = axis % x.ndim
    x_moved = np.moveaxis(x, axis, -1)
    batch = np.broadcast_shapes(x_moved.shape[:-1], b.shape[:-1], a.shape[:-1],
                                *(() if zi is None else (zi.shape[:-1],)))
    x_b = np.broadcast_to(x_moved, batch + x_moved.shape[-1:])
    b_b = np.broadcast_to(b, batch + b.shape[-1:])
    a_b = np.broadcast_to(a, batch + a.shape[-1:])
    order = max(b.shape[-1], a.shape[-1]) - 1
    y = np.empty(x_b.shape)
    zf = np.empty(batch + (order,))
    for index in np.ndindex(*batch):
        if zi is None:
            y[index] = scipy.signal.lfilter(b_b[index], a_b[index], x_b[index])
        else:
            zi_b = np.broadcast_to(zi, batch + zi.shape[-1:])
            y[index], zf[index] = scipy.signal.lfilter(b_b[index], a_b[index], x_b[index], zi=zi_b[index])
    return np.moveaxis(y, -1, axis - x.ndim), zf


@st.composite
def lfilter_cases(draw):
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    ndim = draw(st.integers(1, 3))
    x_shape = [draw(st.integers(1, 4)) for _ in range(ndim)]
    axis = draw(st.integers(-ndim, ndim - 1))
    x_shape[axis] = draw(st.sampled_from([1, 2, 5, 33, 200]))
    batch_ndim = ndim - 1
    # Coefficient batch: broadcastable against x's batch, possibly adding dims.
    extra = draw(st.integers(0, 1))
    x_batch = [s for i, s in enumerate(x_shape) if i != axis % ndim]
    coefficient_batch = [draw(st.sampled_from([1, s])) for s in x_batch]
    if extra:
        coefficient_batch = [draw(st.integers(2, 3))] + [1] * batch_ndim if not coefficient_batch else \
            [draw(st.integers(2, 3))] + coefficient_batch
    n_b = draw(st.integers(1, 11))
    n_a = draw(st.integers(1, 11))
    n_filters = int(np.prod(coefficient_batch)) if coefficient_batch else 1
    pairs = [random_filter(rng, n_b, n_a) for _ in range(n_filters)]
    b = np.array([p[0] for p in pairs]).reshape(coefficient_batch + [n_b])
    a = np.array([p[1] for p in pairs]).reshape(coefficient_batch + [n_a])
    x = rng.standard_normal(x_shape)
    use_state = draw(st.booleans())
    order = max(n_b, n_a) - 1
    zi = rng.standard_normal(coefficient_batch + [order]) if use_state else None
    return b, a, x, axis, zi


@HYPOTHESIS
@given(lfilter_cases())
def test_lfilter_matches_scipy(case):
    b, a, x, axis, zi = case
    y_ref, zf_ref = scipy_lfilter_bank(b, a, x, axis, zi)
    result = lfilter(torch.tensor(b), torch.tensor(a), torch.tensor(x), axis=axis,
                     zi=None if zi is None else torch.tensor(zi))
    if zi is None:
        assert_close64(result, torch.tensor(y_ref), "y")
    else:
        y, zf = result
        assert_close64(y, torch.tensor(y_ref), "y")
        assert_close64(zf, torch.tensor(zf_ref), "zf")


@HYPOTHESIS
@given(seed=st.integers(0, 2**31), n_sections=st.integers(1, 5), n_time=st.sampled_from([1, 4, 100, 257]),
       n_filters=st.integers(1, 3), n_signals=st.integers(1, 3), axis=st.sampled_from([0, -1]), with_state=st.booleans())
def test_sosfilt_bank_matches_scipy(seed, n_sections, n_time, n_filters, n_signals, axis, with_state):
    rng = np.random.default_rng(seed)
    sos = np.stack([random_sos(rng, n_sections) for _ in range(n_filters)])       # (filter, section, 6)
    x = rng.standard_normal((n_signals, n_time))
    zi = rng.standard_normal((n_signals, n_filters, n_sections, 2)) if with_state else None
    x_in = torch.tensor(x if axis == -1 else x.T)
    signal_axis = -2 if axis == -1 else 1  # the filter axis goes before the signal's own batch axis
    x_bank = x_in.unsqueeze(signal_axis) if axis == -1 else x_in.unsqueeze(-1)
    result = sosfilt(torch.tensor(sos), x_bank, axis=axis - (0 if axis == -1 else 0),
                     zi=None if zi is None else torch.tensor(zi))
    y, zf = result if with_state else (result, None)
    for i in range(n_signals):
        for f in range(n_filters):
            kwargs = {} if zi is None else {"zi": zi[i, f]}
            expected = scipy.signal.sosfilt(normalised_sos(sos[f]), x[i], **kwargs)
            got = y[i, f] if axis == -1 else y[:, i, f]
            assert_close64(got, torch.tensor(expected[0] if zi is not None else expected), f"y[{i}, {f}]")
            if zi is not None:
                assert_close64(zf[i, f], torch.tensor(expected[1]), f"zf[{i}, {f}]")


@pytest.mark.parametrize("function", ["lfilter", "sosfilt"])
def test_chunked_state_equals_one_pass(rng, function):
    x = torch.tensor(rng.standard_normal((2, 3, 5000)))
    if function == "lfilter":
        b, a = (torch.tensor(v) for v in random_filter(rng, 5, 7))
        run = lambda chunk, zi: lfilter(b, a, chunk, zi=zi)  # noqa: E731
        zi = torch.zeros(6, dtype=x.dtype)
    else:
        sos = torch.tensor(random_sos(rng, 3))
        run = lambda chunk, zi: sosfilt(sos, chunk, zi=zi)  # noqa: E731
        zi = torch.zeros(3, 2, dtype=x.dtype)
    whole, zf_whole = run(x, zi)
    bounds = np.sort(rng.choice(np.arange(1, 5000), 12, replace=False))
    pieces, state = [], zi
    for start, stop in zip(np.r_[0, bounds], np.r_[bounds, 5000]):
        piece, state = run(x[..., start:stop], state)
        pieces.append(piece)
    torch.testing.assert_close(torch.cat(pieces, -1), whole, rtol=0, atol=1e-12)
    torch.testing.assert_close(state, zf_whole, rtol=0, atol=1e-12)


def test_batch_consistency_and_layouts(rng):
    b = torch.tensor(rng.standard_normal((8, 3)))
    a = torch.tensor(np.stack([random_filter(rng, 3, 3)[1] for _ in range(8)]))
    x = torch.tensor(rng.standard_normal((4, 3000)))
    bank = lfilter(b, a, x.unsqueeze(-2))                          # (4, 8, 3000)
    for i in range(4):
        torch.testing.assert_close(bank[i], lfilter(b, a, x[i].unsqueeze(0)), rtol=0, atol=0)
    # Non-contiguous inputs: a transposed signal with the time axis first.
    x_t = x.T.contiguous().T
    torch.testing.assert_close(lfilter(b, a, x_t.unsqueeze(-2)), bank, rtol=0, atol=0)
    columns = lfilter(b, a, x.T.unsqueeze(-1), axis=0)             # (3000, 4, 8)
    torch.testing.assert_close(columns.permute(1, 2, 0), bank, rtol=0, atol=0)
    strided = torch.tensor(rng.standard_normal((4, 6000)))[:, ::2]
    torch.testing.assert_close(lfilter(b, a, strided.unsqueeze(-2)), lfilter(b, a, strided.contiguous().unsqueeze(-2)))
    # An input already expanded over the filters gives the same result.
    torch.testing.assert_close(lfilter(b, a, x.unsqueeze(-2).expand(4, 8, 3000)), bank, rtol=0, atol=0)


def test_shared_input_is_not_copied(monkeypatch):
    seen = {}
    original = _ops.call_iir_cascade

    def spy(rows, x_index, b, a, zi):
        seen["rows"] = rows.shape
        return original(rows, x_index, b, a, zi)

    monkeypatch.setattr(_ops, "call_iir_cascade", spy)
    x = torch.randn(32, 1000)
    b = torch.randn(128, 3)
    a = torch.tensor([1.0, -1.5, 0.7]).repeat(128, 1)
    assert lfilter(b, a, x.unsqueeze(-2)).shape == (32, 128, 1000)
    assert seen["rows"] == (32, 1000)
    lfilter(b, a, x.unsqueeze(-2).expand(32, 128, 1000))
    assert seen["rows"] == (32, 1000)


def test_float32_against_scipy(rng):
    sos = random_sos(rng, 4)
    x = rng.standard_normal((3, 4000))
    truth = scipy.signal.sosfilt(normalised_sos(sos), x)
    same_dtype = scipy.signal.sosfilt(normalised_sos(sos).astype(np.float32), x.astype(np.float32))
    got = sosfilt(torch.tensor(sos, dtype=torch.float32), torch.tensor(x, dtype=torch.float32))
    assert got.dtype == torch.float32
    assert_close_low(got, torch.tensor(truth), torch.tensor(same_dtype), "float32 sosfilt")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_returns_input_dtype(dtype):
    x = torch.randn(2, 1, 500, dtype=dtype, requires_grad=True)
    b = torch.tensor([[0.2, 0.0, -0.2]] * 3, dtype=dtype)
    a = torch.tensor([[1.0, -1.5, 0.8]] * 3, dtype=dtype)
    y = lfilter(b, a, x)
    assert y.dtype == dtype and y.shape == (2, 3, 500)
    expected = lfilter(b.float(), a.float(), x.detach().float())
    torch.testing.assert_close(y.float(), expected, atol=2e-2, rtol=2e-2)
    y.float().sum().backward()
    assert x.grad.dtype == dtype


def test_gradcheck_through_broadcasting(rng):
    b = torch.tensor(rng.standard_normal((3, 3)), requires_grad=True)
    a = torch.tensor(np.stack([random_filter(rng, 3, 3)[1] for _ in range(3)]), requires_grad=True)
    x = torch.tensor(rng.standard_normal((2, 1, 12)), requires_grad=True)
    zi = torch.tensor(rng.standard_normal((2, 1, 2)), requires_grad=True)
    assert torch.autograd.gradcheck(lambda b, a, x, zi: lfilter(b, a, x, zi=zi), (b, a, x, zi))
    sos = torch.tensor(random_sos(rng, 2), requires_grad=True)
    assert torch.autograd.gradcheck(lambda sos, x: sosfilt(sos, x, axis=0), (sos, x[0].T.contiguous()))


def test_loss_on_final_state_backpropagates(rng):
    # A loss on zf alone reaches x, b, a and zi; compare with plain autograd
    # through the pure-torch reference (which never sees the fused backward).
    from filterbank.kernels import reference

    b_np, a_np = random_filter(rng, 3, 4)
    weights = torch.tensor(rng.standard_normal(3))
    leaves = [torch.tensor(v, requires_grad=True) for v in (b_np, a_np, rng.standard_normal(50), rng.standard_normal(3))]
    b, a, x, zi = leaves
    _, zf = lfilter(b, a, x, zi=zi)
    (weights * zf).sum().backward()
    got = [t.grad.clone() for t in leaves]
    for t in leaves:
        t.grad = None
    b_padded = torch.nn.functional.pad(b, (0, 1))
    _, zf_ref = reference.iir_cascade(x[None], torch.tensor([0]), b_padded[None, None], a[None, None], zi[None, None])
    (weights * zf_ref[0, 0]).sum().backward()
    for name, g, t in zip("b a x zi".split(), got, leaves):
        assert float(g.abs().max()) > 0, f"no gradient reached {name}"
        assert_close64(g, t.grad, f"grad {name}")


def test_empty_inputs():
    b = torch.tensor([1.0, 0.5])
    a = torch.tensor([1.0, -0.5])
    y, zf = lfilter(b, a, torch.zeros(3, 0), zi=torch.ones(1))
    assert y.shape == (3, 0) and torch.equal(zf, torch.ones(3, 1))
    assert lfilter(b, a, torch.zeros(0, 10)).shape == (0, 10)


# --------------------------------------------------------------------------
# Errors: named argument, expectation and what came, before any work.


@pytest.mark.parametrize("call, error, message", [
    (lambda: lfilter([1.0], torch.ones(1), torch.ones(5)), TypeError, r"b must be a torch.Tensor; got list"),
    (lambda: lfilter(torch.ones(1), torch.ones(1), np.ones(5)), TypeError, r"x must be a torch.Tensor; got ndarray"),
    (lambda: lfilter(torch.ones(1), torch.ones(1), torch.ones(5, dtype=torch.int64)), TypeError,
     r"x must be a real floating-point tensor .* got torch.int64"),
    (lambda: lfilter(torch.ones(1), torch.ones(1), torch.ones(5, dtype=torch.complex64)), TypeError,
     r"x must be a real floating-point tensor .* got torch.complex64"),
    (lambda: lfilter(torch.ones(1, dtype=torch.float64), torch.ones(1), torch.ones(5)), TypeError,
     r"b has dtype torch.float64 but x has dtype torch.float32"),
    (lambda: lfilter(torch.ones(1), torch.ones(1, device="meta"), torch.ones(5)), ValueError,
     r"a is on meta but x is on cpu"),
    (lambda: lfilter(torch.ones(0), torch.ones(1), torch.ones(5)), ValueError,
     r"b must have at least one coefficient in its last dimension; got shape \(0,\)"),
    (lambda: lfilter(torch.ones(1), torch.tensor(1.0), torch.ones(5)), ValueError,
     r"a must have at least one coefficient in its last dimension; got shape \(\)"),
    (lambda: lfilter(torch.ones(1), torch.tensor([[1.0, 0.1], [0.0, 0.2]]), torch.ones(5)), ValueError,
     r"a\[\.\.\., 0\] must be non-zero; got 0 at a\[1, 0\]"),
    (lambda: lfilter(torch.ones(3, 2), torch.ones(4, 1), torch.ones(5)), ValueError,
     r"the batch dimensions do not broadcast: x \(\), b \(3,\), a \(4,\)"),
    (lambda: lfilter(torch.ones(3), torch.ones(1), torch.ones(5), zi=torch.zeros(3)), ValueError,
     r"zi must have shape \(\.\.\., 2\) .* got \(3,\)"),
    (lambda: lfilter(torch.ones(3), torch.ones(1), torch.ones(2, 5), zi=torch.zeros(3, 2)), ValueError,
     r"the batch dimensions do not broadcast: x \(2,\), b \(\), a \(\), zi \(3,\)"),
    (lambda: lfilter(torch.ones(1), torch.ones(1), torch.ones(5), axis=1), ValueError,
     r"axis must be in \[-1, 0\] for x with 1 dimensions; got 1"),
    (lambda: lfilter(torch.ones(1), torch.ones(1), torch.ones(5), axis=0.0), TypeError, r"axis must be an int; got float"),
    (lambda: lfilter(torch.ones(1), torch.ones(1), torch.tensor(1.0)), ValueError, r"x must have at least one dimension"),
    (lambda: sosfilt(torch.ones(2, 5), torch.ones(5)), ValueError,
     r"sos must have shape \(\.\.\., n_sections, 6\) with n_sections >= 1; got \(2, 5\)"),
    (lambda: sosfilt(torch.ones(0, 6), torch.ones(5)), ValueError, r"sos must have shape .* got \(0, 6\)"),
    (lambda: sosfilt(torch.tensor([[1.0, 0, 0, 0, 0, 0]]), torch.ones(5)), ValueError,
     r"sos\[\.\.\., 3\] must be non-zero; got 0 at sos\[0, 3\]"),
    (lambda: sosfilt(torch.ones(2, 6), torch.ones(5), zi=torch.zeros(2, 3)), ValueError,
     r"zi must have shape \(\.\.\., 2, 2\); got \(2, 3\)"),
    (lambda: sosfilt(torch.ones(2, 6), torch.ones(5, dtype=torch.float64)), TypeError,
     r"sos has dtype torch.float32 but x has dtype torch.float64"),
])
def test_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_package_exports():
    assert filterbank.__all__ == ["lfilter", "sosfilt", "filtfilt", "sosfiltfilt", "lfilter_zi", "sosfilt_zi", "lfiltic",
                                  "banded_recurrence", "sparse_recurrence", "empty_cache", "__version__"]
    assert isinstance(filterbank.__version__, str)


@pytest.mark.parametrize("shapes", [[(3, 1), (1, 4)], [(), (2,)], [(5, 0), (1, 1)], [(2, 3, 1), (3, 7)], [(0,), (1,)],
                                    [(2,), (3,)], [(4, 2), (3, 2)], []])
def test_broadcast_shapes_agrees_with_torch(shapes):
    from filterbank._shapes import broadcast_shapes

    try:
        expected = torch.broadcast_shapes(*shapes)
    except RuntimeError:
        with pytest.raises(RuntimeError, match="does not broadcast"):
            broadcast_shapes(*shapes)
    else:
        assert broadcast_shapes(*shapes) == expected


def test_errors_name_the_arguments_the_caller_passed():
    b64, a64 = torch.tensor([1.0, 0.5], dtype=torch.float64), torch.tensor([1.0, -0.5], dtype=torch.float64)
    with pytest.raises(TypeError, match=r"a has dtype torch.float32 but b has dtype torch.float64"):
        filterbank.lfilter_zi(b64, a64.float())
    with pytest.raises(TypeError, match=r"y has dtype torch.float32 but b has dtype torch.float64"):
        filterbank.lfiltic(b64, a64, torch.ones(1))
    with pytest.raises(ValueError, match=r"the batch dimensions do not broadcast: x \(2,\), b \(3,\), a \(3,\)"):
        filterbank.filtfilt(torch.ones(3, 2), torch.ones(3, 2), torch.ones(2, 50))
    with pytest.raises(ValueError, match=r"the batch dimensions do not broadcast: x \(2,\), sos \(3,\)"):
        filterbank.sosfiltfilt(torch.ones(3, 1, 6), torch.ones(2, 50))
    with pytest.raises(ValueError, match=r"the batch dimensions do not broadcast: b \(3,\), a \(2,\)"):
        filterbank.lfilter_zi(torch.ones(3, 2), torch.ones(2, 2))


def test_axis_takes_any_integer_like():
    x = torch.randn(5, 3, dtype=torch.float64)
    b, a = torch.tensor([0.5, 0.2], dtype=torch.float64), torch.tensor([1.0, -0.3], dtype=torch.float64)
    torch.testing.assert_close(lfilter(b, a, x, axis=np.int64(0)), lfilter(b, a, x, axis=0), rtol=0, atol=0)


@pytest.mark.parametrize("fake", [False, True], ids=["meta", "fake"])
def test_shapes_alone_on_meta_and_fake_tensors(fake):
    # Shape propagation needs no values: no value check may read them.
    from torch._subclasses.fake_tensor import FakeTensorMode

    def run():
        device = None if fake else "meta"
        b = torch.tensor([0.2, 0.0, -0.2], device=device)
        a = torch.tensor([1.0, -1.6, 0.8], device=device)
        x = torch.randn(3, 100, device=device)
        sos = torch.cat([b, a])[None]
        shapes = [lfilter(b, a, x).shape, sosfilt(sos, x).shape, filterbank.filtfilt(b, a, x).shape,
                  filterbank.sosfiltfilt(sos, x).shape, lfilter(b, a, x, zi=torch.zeros(3, 2, device=device))[1].shape]
        return shapes

    if fake:
        with FakeTensorMode():
            shapes = run()
    else:
        shapes = run()
    assert shapes == [(3, 100)] * 4 + [(3, 2)]
