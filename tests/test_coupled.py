"""Coupled recurrences (filterbank.coupled, filterbank.nn.rnn): kernels, ops, functional API and RNN layers.

Ground truth is a plain loop over time with the dense matrix, written here
(``dense_loop``); the layers are also checked against ``torch.nn.RNN``
loaded with the same weights. float64 to 1e-12 of the scale; float32 by the
ratio of its error to the float32 dense loop's error (helpers.py's table).
"""

from __future__ import annotations

import math

import pytest
import torch
from helpers import assert_close_low

import filterbank
from filterbank import _coupled_ops, coupled, tbptt
from filterbank.kernels import cpu, reference
from filterbank.nn import BandedRNN, SparseRNN

TOLERANCE64 = 1e-12
ACTIVATE = {"identity": lambda z: z, "tanh": torch.tanh, "relu": torch.relu}


def assert_close12(got, want, what=""):
    got, want = got.detach().double(), want.detach().double()
    error = float((got - want).abs().max()) if want.numel() else 0.0
    scale = float(want.abs().max()) if want.numel() else 0.0
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    assert error <= TOLERANCE64 * max(scale, 1e-300), f"{what}: error {error:.3e}, scale {scale:.3e}"


def dense_loop(u, matrices, h0, nonlinearity):
    """h (..., C, T) for u (..., C, T), matrices (..., C, C), h0 (..., C): one step at a time."""
    state, steps = h0, []
    for t in range(u.shape[-1]):
        state = ACTIVATE[nonlinearity]((matrices @ state.unsqueeze(-1)).squeeze(-1) + u[..., t])
        steps.append(state)
    return torch.stack(steps, -1) if steps else torch.zeros_like(u)


def random_band(generator, shape, n_channels, lower, upper, dtype, radius=0.9):
    """Band storage (shape..., C, W) whose matrices have row sums of |entries| <= radius (so stable)."""
    width = lower + upper + 1
    band = torch.rand(tuple(shape) + (n_channels, width), generator=generator, dtype=torch.float64) * 2 - 1
    return (band * radius / width).to(dtype)


def random_pattern(generator, n_channels, density):
    mask = torch.rand(n_channels, n_channels, generator=generator) < density
    crow = torch.zeros(n_channels + 1, dtype=torch.int64)
    crow[1:] = mask.sum(1).cumsum(0)
    return crow, mask.nonzero()[:, 1].contiguous()


def csr_dense(crow, col, values):
    n_channels = crow.shape[0] - 1
    dense = values.new_zeros(values.shape[:-1] + (n_channels, n_channels))
    rows = torch.repeat_interleave(torch.arange(n_channels), crow.diff())
    dense[..., rows, col] = values
    return dense


@pytest.fixture
def generator(request):
    import zlib

    return torch.Generator().manual_seed(zlib.crc32(request.node.nodeid.encode()))


# --------------------------------------------------------------------------
# The functional API against the dense loop.

SIZES = [(1, 1, 0, 0), (7, 5, 2, 1), (33, 40, 0, 3), (20, 17, 8, 8), (64, 9, 3, 0)]  # C, T, kl, ku


@pytest.mark.parametrize("nonlinearity", ["identity", "tanh", "relu"])
@pytest.mark.parametrize("n_channels, n_time, lower, upper", SIZES)
def test_banded_matches_dense_loop(generator, nonlinearity, n_channels, n_time, lower, upper):
    lower, upper = min(lower, n_channels - 1), min(upper, n_channels - 1)
    u = torch.randn(3, n_channels, n_time, generator=generator, dtype=torch.float64)
    band = random_band(generator, (3,), n_channels, lower, upper, torch.float64)
    h0 = torch.randn(3, n_channels, generator=generator, dtype=torch.float64)
    h, h_last = filterbank.banded_recurrence(u, band, (lower, upper), h0=h0, nonlinearity=nonlinearity)
    want = dense_loop(u, coupled.dense_from_band(band, (lower, upper)), h0, nonlinearity)
    assert_close12(h, want, "h")
    assert_close12(h_last, want[..., -1], "h_last")


@pytest.mark.parametrize("nonlinearity", ["identity", "tanh", "relu"])
@pytest.mark.parametrize("n_channels, density", [(1, 1.0), (9, 0.3), (50, 0.05), (31, 0.0)])
def test_sparse_matches_dense_loop(generator, nonlinearity, n_channels, density):
    crow, col = random_pattern(generator, n_channels, density)
    values = torch.randn(2, col.shape[0], generator=generator, dtype=torch.float64)
    values = values / max(1.0, math.sqrt(col.shape[0] / n_channels)) * 0.5
    u = torch.randn(2, n_channels, 23, generator=generator, dtype=torch.float64)
    h0 = torch.randn(n_channels, generator=generator, dtype=torch.float64)
    h, h_last = filterbank.sparse_recurrence(u, (crow, col, values), h0=h0, nonlinearity=nonlinearity)
    want = dense_loop(u, csr_dense(crow, col, values), h0.expand(2, -1), nonlinearity)
    assert_close12(h, want, "h")
    assert_close12(h_last, want[..., -1], "h_last")


@pytest.mark.filterwarnings("ignore:Sparse")
def test_sparse_csr_tensor_and_its_arrays_agree(generator):
    crow, col = random_pattern(generator, 12, 0.3)
    values = torch.randn(col.shape[0], generator=generator, dtype=torch.float64) * 0.3
    matrix = torch.sparse_csr_tensor(crow, col, values, (12, 12))
    u = torch.randn(4, 12, 30, generator=generator, dtype=torch.float64)
    assert torch.equal(filterbank.sparse_recurrence(u, matrix), filterbank.sparse_recurrence(u, (crow, col, values)))
    assert_close12(filterbank.sparse_recurrence(u, matrix), dense_loop(u, matrix.to_dense(),
                                                                        torch.zeros(4, 12, dtype=torch.float64),
                                                                        "tanh"))


def test_broadcasting_reads_one_matrix_per_batch(generator):
    """A matrix per element of one batch dimension, h0 shared: like lfilter's coefficients."""
    u = torch.randn(2, 3, 10, 15, generator=generator, dtype=torch.float64)
    band = random_band(generator, (3,), 10, 1, 2, torch.float64)
    h0 = torch.randn(10, generator=generator, dtype=torch.float64)
    h, h_last = filterbank.banded_recurrence(u, band, (1, 2), h0=h0)
    assert h.shape == (2, 3, 10, 15) and h_last.shape == (2, 3, 10)
    want = dense_loop(u, coupled.dense_from_band(band, (1, 2)), h0.expand(2, 3, 10), "tanh")
    assert_close12(h, want)
    # A batch of matrices over one signal.
    single = torch.randn(10, 15, generator=generator, dtype=torch.float64)
    many = filterbank.banded_recurrence(single, band, (1, 2))
    assert many.shape == (3, 10, 15)
    assert_close12(many[1], filterbank.banded_recurrence(single, band[1], (1, 2)))


def test_time_axis_minus_two_is_the_transposed_layout(generator):
    u = torch.randn(4, 10, 25, generator=generator, dtype=torch.float64)
    band = random_band(generator, (), 10, 2, 2, torch.float64)
    h = filterbank.banded_recurrence(u, band, (2, 2))
    assert torch.equal(filterbank.banded_recurrence(u.transpose(-1, -2), band, (2, 2), time_axis=-2),
                       h.transpose(-1, -2))


def test_dense_input_takes_its_band(generator):
    band = random_band(generator, (2,), 8, 1, 3, torch.float64)
    dense = coupled.dense_from_band(band, (1, 3))
    u = torch.randn(2, 8, 12, generator=generator, dtype=torch.float64)
    assert_close12(filterbank.banded_recurrence(u, dense, (1, 3), dense=True),
                   filterbank.banded_recurrence(u, band, (1, 3)))


def test_band_storage_round_trip(generator):
    band = random_band(generator, (3,), 6, 2, 1, torch.float64)
    # Entries whose column is outside the matrix do not survive (they are not part of A).
    columns = torch.arange(6).unsqueeze(-1) + torch.arange(4) - 2
    inside = (columns >= 0) & (columns < 6)
    back = coupled.band_from_dense(coupled.dense_from_band(band, (2, 1)), (2, 1))
    assert torch.equal(back, band * inside)
    dense = coupled.dense_from_band(band, (2, 1))
    assert dense[0, 0, 2] == 0 and dense[0, 3, 1] == band[0, 3, 0] and dense[0, 3, 4] == band[0, 3, 3]


def test_entries_outside_the_matrix_are_not_read(generator):
    band = random_band(generator, (), 6, 2, 2, torch.float64)
    noisy = band.clone()
    noisy[0, 0] = noisy[0, 1] = noisy[-1, -1] = 1e6  # columns -2, -1 and 7
    u = torch.randn(6, 10, generator=generator, dtype=torch.float64)
    assert torch.equal(filterbank.banded_recurrence(u, noisy, (2, 2)), filterbank.banded_recurrence(u, band, (2, 2)))


@pytest.mark.parametrize("kind", ["banded", "sparse"])
def test_chunks_with_state_equal_one_pass(generator, kind):
    u = torch.randn(3, 16, 100, generator=generator, dtype=torch.float64)
    if kind == "banded":
        band = random_band(generator, (), 16, 3, 1, torch.float64)

        def run(chunk, h0):
            return filterbank.banded_recurrence(chunk, band, (3, 1), h0=h0)
    else:
        crow, col = random_pattern(generator, 16, 0.2)
        values = torch.randn(col.shape[0], generator=generator, dtype=torch.float64) * 0.3

        def run(chunk, h0):
            return filterbank.sparse_recurrence(chunk, (crow, col, values), h0=h0)
    whole, last = run(u, torch.zeros(3, 16, dtype=torch.float64))
    state, pieces = torch.zeros(3, 16, dtype=torch.float64), []
    for start, stop in ((0, 1), (1, 38), (38, 38), (38, 100)):
        piece, state = run(u[..., start:stop], state)
        pieces.append(piece)
    assert torch.equal(torch.cat(pieces, -1), whole) and torch.equal(state, last)


def test_empty_time_returns_h0(generator):
    band = random_band(generator, (), 5, 1, 1, torch.float64)
    h0 = torch.randn(2, 5, generator=generator, dtype=torch.float64)
    h, h_last = filterbank.banded_recurrence(torch.zeros(2, 5, 0, dtype=torch.float64), band, (1, 1), h0=h0)
    assert h.shape == (2, 5, 0) and torch.equal(h_last, h0)


def test_near_unit_circle_long_float32(generator):
    """A slowly decaying coupled chain over 20000 steps: float32 judged by the float32 dense loop's error."""
    n_channels, n_time = 6, 20000
    band = torch.zeros(n_channels, 3, dtype=torch.float64)
    band[:, 1] = 0.999
    band[1:, 0] = 0.0005  # each channel feeds the next
    u = torch.randn(n_channels, n_time, generator=generator, dtype=torch.float64) * 0.01
    want = reference.banded_recurrence(u.T.unsqueeze(0), band.unsqueeze(0), torch.zeros(1, dtype=torch.int64),
                                       torch.zeros(1, n_channels, dtype=torch.float64), 1, "identity")
    same = reference.banded_recurrence(u.T.unsqueeze(0).float(), band.unsqueeze(0).float(),
                                       torch.zeros(1, dtype=torch.int64), torch.zeros(1, n_channels), 1, "identity")
    got = filterbank.banded_recurrence(u.float(), band.float(), (1, 1), nonlinearity="identity")
    assert_close_low(got, want[0].T, same[0].T, "near the unit circle")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_low_precision_inputs(generator, dtype):
    u = torch.randn(2, 24, 60, generator=generator, dtype=torch.float64)
    band = random_band(generator, (), 24, 2, 2, torch.float64)
    want = filterbank.banded_recurrence(u, band, (2, 2))
    got = filterbank.banded_recurrence(u.to(dtype), band.to(dtype), (2, 2))
    assert got.dtype == dtype
    # Computed in float32 from the rounded inputs: the float32 dense loop on the same inputs is the yardstick.
    same = dense_loop(u.to(dtype).float(), coupled.dense_from_band(band.to(dtype).float(), (2, 2)),
                      torch.zeros(2, 24), "tanh").to(dtype)
    rounded_inputs = dense_loop(u.to(dtype).double(), coupled.dense_from_band(band.to(dtype).double(), (2, 2)),
                                torch.zeros(2, 24, dtype=torch.float64), "tanh")
    if dtype == torch.float32:
        assert_close_low(got, want, same, str(dtype))
    else:
        assert_close_low(got.float(), rounded_inputs, same.float(), str(dtype))


# --------------------------------------------------------------------------
# Kernels against the reference, forward and backward, directly.


def check_banded_kernels(generator, dtype, nonlinearity, index, n_time, n_channels, lower, upper):
    """The CPU kernels' forward and backward against the reference, rows using the bands ``index``."""
    n_rows = index.shape[0]
    u = torch.randn(n_rows, n_time, n_channels, generator=generator, dtype=torch.float64)
    band = random_band(generator, (int(index.max()) + 1,), n_channels, lower, upper, torch.float64)
    h0 = torch.randn(n_rows, n_channels, generator=generator, dtype=torch.float64)
    grad = torch.randn(n_rows, n_time, n_channels, generator=generator, dtype=torch.float64)
    want = reference.banded_recurrence(u, band, index, h0, lower, nonlinearity)
    want_grads = reference.banded_recurrence_backward(grad, want, band, index, h0, lower, nonlinearity)
    cast = [t.to(dtype) for t in (u, band, h0, grad)]
    got = cpu.banded_recurrence(cast[0], cast[1], index, cast[2], lower, nonlinearity)
    got_grads = cpu.banded_recurrence_backward(cast[3], want.to(dtype), cast[1], index, cast[2], lower, nonlinearity)
    if dtype == torch.float64:
        assert_close12(got, want, "h")
        for name, g, w in zip(("u", "band", "h0"), got_grads, want_grads):
            assert_close12(g, w, f"grad {name}")
    else:
        same = reference.banded_recurrence(cast[0], cast[1], index, cast[2], lower, nonlinearity)
        assert_close_low(got, want, same, "h")
        same_grads = reference.banded_recurrence_backward(cast[3], want.to(dtype), cast[1], index, cast[2], lower,
                                                          nonlinearity)
        for name, g, w, s in zip(("u", "band", "h0"), got_grads, want_grads, same_grads):
            assert_close_low(g, w, s, f"grad {name}")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("nonlinearity", ["identity", "tanh", "relu"])
@pytest.mark.parametrize("n_channels, n_time, lower, upper", SIZES + [(300, 6, 8, 8)])
def test_banded_kernels_match_reference(generator, dtype, nonlinearity, n_channels, n_time, lower, upper):
    lower, upper = min(lower, n_channels - 1), min(upper, n_channels - 1)
    check_banded_kernels(generator, dtype, nonlinearity, torch.tensor([0, 1, 1, 0]), n_time, n_channels, lower,
                         upper)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("nonlinearity", ["identity", "tanh", "relu"])
@pytest.mark.parametrize("n_channels, lower, upper", [(33, 2, 3), (64, 8, 8), (5, 1, 0)])
def test_banded_kernels_four_sequences_per_task(generator, monkeypatch, dtype, nonlinearity, n_channels, lower,
                                                upper):
    """Tasks of four rows: rows of one band step together (and sum their band gradients), mixed rows and the
    short last task go one by one."""
    from filterbank.kernels import _coupled

    monkeypatch.setattr(_coupled, "_sequences_per_task", lambda n_rows: _coupled.SEQUENCES)
    index = torch.tensor([1, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0])  # shared, mixed, shared, the last two
    check_banded_kernels(generator, dtype, nonlinearity, index, 9, n_channels, lower, upper)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("nonlinearity", ["identity", "tanh", "relu"])
@pytest.mark.parametrize("n_channels, density", [(1, 1.0), (13, 0.3), (70, 0.05), (9, 0.0)])
@pytest.mark.parametrize("index", [[1, 0, 1], [0] * 3, [0] * 19], ids=["per-row matrices", "lanes", "lanes, 2 tiles"])
def test_csr_kernels_match_reference(generator, dtype, nonlinearity, n_channels, density, index):
    """Both kernels: one sequence per task (several matrices) and lane tiles of sequences (one matrix)."""
    crow, col = random_pattern(generator, n_channels, density)
    index = torch.tensor(index)
    n_rows = index.shape[0]
    u = torch.randn(n_rows, 17, n_channels, generator=generator, dtype=torch.float64)
    values = torch.randn(int(index.max()) + 1, col.shape[0], generator=generator, dtype=torch.float64) * 0.4
    h0 = torch.randn(n_rows, n_channels, generator=generator, dtype=torch.float64)
    grad = torch.randn(n_rows, 17, n_channels, generator=generator, dtype=torch.float64)
    want = reference.csr_recurrence(u, crow, col, values, index, h0, nonlinearity)
    want_grads = reference.csr_recurrence_backward(grad, want, crow, col, values, index, h0, nonlinearity)
    cast = [t.to(dtype) for t in (u, values, h0, grad)]
    got = cpu.csr_recurrence(cast[0], crow, col, cast[1], index, cast[2], nonlinearity)
    got_grads = cpu.csr_recurrence_backward(cast[3], want.to(dtype), crow, col, cast[1], index, cast[2], nonlinearity)
    if dtype == torch.float64:
        assert_close12(got, want, "h")
        for name, g, w in zip(("u", "values", "h0"), got_grads, want_grads):
            assert_close12(g, w, f"grad {name}")
    else:
        same = reference.csr_recurrence(cast[0], crow, col, cast[1], index, cast[2], nonlinearity)
        assert_close_low(got, want, same, "h")
        same_grads = reference.csr_recurrence_backward(cast[3], want.to(dtype), crow, col, cast[1], index, cast[2],
                                                       nonlinearity)
        for name, g, w, s in zip(("u", "values", "h0"), got_grads, want_grads, same_grads):
            assert_close_low(g, w, s, f"grad {name}")


def test_reference_backward_is_autograd_of_the_dense_loop(generator):
    u = torch.randn(2, 9, 7, generator=generator, dtype=torch.float64, requires_grad=True)
    band = random_band(generator, (1,), 7, 2, 1, torch.float64).requires_grad_()
    h0 = torch.randn(2, 7, generator=generator, dtype=torch.float64, requires_grad=True)
    index = torch.zeros(2, dtype=torch.int64)
    for nonlinearity in ("identity", "tanh", "relu"):
        dense = coupled.dense_from_band(band, (2, 1))
        h = dense_loop(u.transpose(1, 2), dense.expand(2, 7, 7), h0, nonlinearity).transpose(1, 2)
        grad = torch.randn_like(h)
        wanted = torch.autograd.grad(h, (u, band, h0), grad)
        got = reference.banded_recurrence_backward(grad, h.detach(), band.detach(), index, h0.detach(), 2,
                                                   nonlinearity)
        for g, w in zip(got, wanted):
            assert_close12(g, w)


def test_tanh_float32_lanes_are_accurate():
    """The kernels' float32 tanh (a rational fit) within 8 ulp of the exact tanh over its whole range."""
    x = torch.linspace(-12, 12, 200001, dtype=torch.float32)
    u = x.reshape(1, -1, 1).contiguous()
    got = cpu.banded_recurrence(u, torch.zeros(1, 1, 1), torch.zeros(1, dtype=torch.int64), torch.zeros(1, 1), 0,
                                "tanh").flatten()
    exact = torch.tanh(x.double())
    ulp = torch.nextafter(exact.abs().float(), torch.tensor(2.0)) - exact.abs().float()
    assert float(((got.double() - exact).abs() / ulp.double()).max()) <= 8
    assert torch.isnan(cpu.banded_recurrence(torch.full((1, 1, 1), float("nan")), torch.zeros(1, 1, 1),
                                             torch.zeros(1, dtype=torch.int64), torch.zeros(1, 1), 0,
                                             "tanh")).all()


# --------------------------------------------------------------------------
# Gradients, the op layer, torch.compile.


@pytest.mark.parametrize("nonlinearity", ["identity", "tanh", "relu"])
def test_banded_gradcheck(generator, nonlinearity):
    u = torch.randn(2, 6, 8, generator=generator, dtype=torch.float64, requires_grad=True)
    band = random_band(generator, (), 6, 1, 2, torch.float64, radius=1.2).requires_grad_()
    h0 = torch.randn(2, 6, generator=generator, dtype=torch.float64, requires_grad=True)

    def run(u, band, h0):
        h, h_last = filterbank.banded_recurrence(u, band, (1, 2), h0=h0, nonlinearity=nonlinearity)
        return h, h_last * 3  # a gradient through h_last too

    assert torch.autograd.gradcheck(run, (u, band, h0))
    assert torch.autograd.gradgradcheck(run, (u, band, h0))


@pytest.mark.parametrize("nonlinearity", ["identity", "tanh", "relu"])
def test_sparse_gradcheck(generator, nonlinearity):
    crow, col = random_pattern(generator, 6, 0.4)
    values = (torch.randn(2, col.shape[0], generator=generator, dtype=torch.float64) * 0.5).requires_grad_()
    u = torch.randn(2, 6, 8, generator=generator, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(6, generator=generator, dtype=torch.float64, requires_grad=True)

    def run(u, values, h0):
        return filterbank.sparse_recurrence(u, (crow, col, values), h0=h0, nonlinearity=nonlinearity)

    assert torch.autograd.gradcheck(run, (u, values, h0))
    assert torch.autograd.gradgradcheck(run, (u, values, h0))


@pytest.mark.parametrize("with_bias", [True, False])
def test_input_projection_op(generator, with_bias):
    """The RNN layers' input term: ``x W^T + b`` (into a recycled buffer on the CPU), its gradients twice over."""
    x = torch.randn(7, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(3, generator=generator, dtype=torch.float64, requires_grad=True) if with_bias else None
    want = x @ weight.T + (bias if with_bias else 0)
    torch.testing.assert_close(_coupled_ops.input_projection(x, weight, bias), want, rtol=1e-14, atol=0)
    inputs = (x, weight, bias) if with_bias else (x, weight)

    def run(*args):
        return _coupled_ops.input_projection(args[0], args[1], args[2] if with_bias else None)

    assert torch.autograd.gradcheck(run, inputs)
    assert torch.autograd.gradgradcheck(run, inputs)
    # Large enough for the recycled huge-page buffers: two live outputs never share one.
    big = torch.randn(4096, 64, generator=generator)
    first = _coupled_ops.input_projection(big, torch.eye(64)[:60], None)
    second = _coupled_ops.input_projection(2 * big, torch.eye(64)[:60], None)
    torch.testing.assert_close(first, big[:, :60], rtol=0, atol=0)
    torch.testing.assert_close(second, 2 * big[:, :60], rtol=0, atol=0)


def test_gradient_of_a_csr_tensors_values(generator):
    crow, col = random_pattern(generator, 5, 0.5)
    values = torch.randn(col.shape[0], generator=generator, dtype=torch.float64, requires_grad=True)
    u = torch.randn(5, 9, generator=generator, dtype=torch.float64)
    filterbank.sparse_recurrence(u, torch.sparse_csr_tensor(crow, col, values, (5, 5))).sum().backward()
    expected = values.detach().clone().requires_grad_()
    filterbank.sparse_recurrence(u, (crow, col, expected)).sum().backward()
    assert_close12(values.grad, expected.grad)


def test_opcheck(generator):
    u = torch.randn(2, 5, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    band = random_band(generator, (1,), 4, 1, 1, torch.float64).requires_grad_()
    h0 = torch.randn(2, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    index = torch.zeros(2, dtype=torch.int64)
    torch.library.opcheck(torch.ops.filterbank.banded_recurrence.default, (u, band, index, h0, 1, "tanh"))
    crow, col = random_pattern(generator, 4, 0.5)
    values = torch.randn(1, col.shape[0], generator=generator, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(torch.ops.filterbank.csr_recurrence.default, (u, crow, col, values, index, h0, "relu"))
    h = _coupled_ops.banded_recurrence(u.detach(), band.detach(), index, h0.detach(), 1, "tanh")
    torch.library.opcheck(torch.ops.filterbank.banded_recurrence_backward.default,
                          (torch.randn_like(h), h, band.detach(), index, h0.detach(), 1, "tanh"),
                          test_utils=("test_schema", "test_faketensor"))


def test_torch_compile_fullgraph(generator):
    u = torch.randn(2, 8, 30, generator=generator)
    band = random_band(generator, (), 8, 2, 2, torch.float32).requires_grad_()
    crow, col = random_pattern(generator, 8, 0.3)
    values = torch.randn(col.shape[0], generator=generator, requires_grad=True)

    def run(u, band, values):
        h = filterbank.banded_recurrence(u, band, (2, 2))
        return filterbank.sparse_recurrence(h, (crow, col, values), nonlinearity="relu").square().sum()

    compiled = torch.compile(run, fullgraph=True, backend="aot_eager")
    loss = compiled(u, band, values)
    loss.backward()
    eager_band, eager_values = band.detach().clone().requires_grad_(), values.detach().clone().requires_grad_()
    run(u, eager_band, eager_values).backward()
    torch.testing.assert_close(loss, run(u, band.detach(), values.detach()))
    torch.testing.assert_close(band.grad, eager_band.grad)
    torch.testing.assert_close(values.grad, eager_values.grad)


@pytest.mark.parametrize("kind", ["banded", "sparse"])
def test_rnn_layers_compile_fullgraph(kind):
    """The layers' whole path (input term, recurrence) in one graph, forward and gradients as eager."""
    torch.manual_seed(0)
    layer = (BandedRNN(3, 10, bandwidth=2, batch_first=True) if kind == "banded" else
             SparseRNN(3, 10, density=0.3, batch_first=True)).double()
    x = torch.randn(2, 7, 3, dtype=torch.float64)
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    output, h_n = compiled(x)
    (output.square().sum() + h_n.sum()).backward()
    got = {name: parameter.grad.clone() for name, parameter in layer.named_parameters()}
    layer.zero_grad()
    want_output, want_h_n = layer(x)
    (want_output.square().sum() + want_h_n.sum()).backward()
    torch.testing.assert_close(output, want_output, rtol=1e-12, atol=0)
    torch.testing.assert_close(h_n, want_h_n, rtol=1e-12, atol=0)
    for name, parameter in layer.named_parameters():
        torch.testing.assert_close(got[name], parameter.grad, rtol=1e-12, atol=1e-15, msg=name)


# --------------------------------------------------------------------------
# BandedRNN and SparseRNN against torch.nn.RNN.


def _loaded_rnn(module, dtype):
    """A torch.nn.RNN with ``module``'s weights, the hidden-to-hidden ones written into dense matrices."""
    twin = torch.nn.RNN(module.input_size, module.hidden_size, num_layers=module.num_layers,
                        nonlinearity=module.nonlinearity, bias=module.bias, batch_first=module.batch_first,
                        bidirectional=module.bidirectional, dtype=dtype)
    with torch.no_grad():
        for name, parameter in twin.named_parameters():
            if name.startswith("weight_hh"):
                layer = int(name.split("_l")[1].split("_")[0])
                parameter.copy_(module.weight_hh_dense(layer, name.endswith("_reverse")))
            else:
                parameter.copy_(getattr(module, name))
    return twin


def _make(kind, **options):
    if kind == "banded":
        return BandedRNN(6, 20, bandwidth=(3, 1), **options)
    return SparseRNN(6, 20, density=0.2, **options)


@pytest.mark.parametrize("kind", ["banded", "sparse"])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("num_layers, bidirectional, batch_first, bias",
                         [(1, False, False, True), (2, True, False, True), (2, False, True, False),
                          (3, True, True, True)])
def test_rnn_matches_torch_rnn(kind, nonlinearity, num_layers, bidirectional, batch_first, bias):
    torch.manual_seed(0)
    module = _make(kind, nonlinearity=nonlinearity, num_layers=num_layers, bidirectional=bidirectional,
                   batch_first=batch_first, bias=bias, dtype=torch.float64)
    twin = _loaded_rnn(module, torch.float64)
    directions = 2 if bidirectional else 1
    x = torch.randn((4, 11, 6) if batch_first else (11, 4, 6), dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(num_layers * directions, 4, 20, dtype=torch.float64)
    output, h_n = module(x, h0)
    want_output, want_h_n = twin(x, h0)
    assert_close12(output, want_output, "output")
    assert_close12(h_n, want_h_n, "h_n")
    # Gradients: the band (or the non-zeros) gets the dense gradient's entries on the structure.
    grad_output = torch.randn_like(output)
    got = torch.autograd.grad((output * grad_output).sum() + h_n.sum(), [x, module.weight_ih_l0, module.weight_hh_l0])
    want = torch.autograd.grad((want_output * grad_output).sum() + want_h_n.sum(),
                               [x, twin.weight_ih_l0, twin.weight_hh_l0])
    assert_close12(got[0], want[0], "grad input")
    assert_close12(got[1], want[1], "grad weight_ih")
    if kind == "banded":
        assert_close12(got[2], coupled.band_from_dense(want[2] * (module.weight_hh_dense() != 0), (3, 1)),
                       "grad band")
    else:
        rows = torch.repeat_interleave(torch.arange(20), module.crow_l0.diff())
        assert_close12(got[2], want[2][rows, module.col_l0], "grad values")


@pytest.mark.parametrize("kind", ["banded", "sparse"])
def test_rnn_float32_and_unbatched(kind):
    torch.manual_seed(1)
    module = _make(kind)
    twin64 = _loaded_rnn(module, torch.float64)
    twin32 = _loaded_rnn(module, torch.float32)
    x = torch.randn(30, 6)
    output, h_n = module(x)
    assert output.shape == (30, 20) and h_n.shape == (1, 20)
    want, want_h = twin64(x.double())
    same, _ = twin32(x)
    assert_close_low(output, want, same, "float32 output")
    assert_close_low(h_n, want_h, twin32(x)[1], "float32 h_n")


@pytest.mark.parametrize("kind", ["banded", "sparse"])
def test_rnn_stream_and_tbptt(kind):
    torch.manual_seed(2)
    module = _make(kind, num_layers=2, dtype=torch.float64)
    x = torch.randn(40, 3, 6, dtype=torch.float64)
    output, h_n = module(x)
    pieces, state = [], None
    for chunk in x.split(13, dim=0):
        piece, state = module.stream(chunk, state)
        pieces.append(piece)
    assert_close12(torch.cat(pieces), output)
    assert_close12(state["h"], h_n)
    losses, final = tbptt.tbptt(module.stream, x.split(10, dim=0), None, lambda y, i: float(y.square().mean()))
    assert len(losses) == 4
    assert not final["h"].requires_grad
    assert_close12(final["h"], h_n)


def test_banded_rnn_initialisation():
    torch.manual_seed(3)
    module = BandedRNN(8, 256, bandwidth=8)
    band = module.weight_hh_l0.detach()
    assert float(band.abs().max()) <= 1 / math.sqrt(17)
    assert band[0, :8].abs().sum() == 0 and band[-1, -8:].abs().sum() == 0  # outside the matrix: zero
    radius = float(torch.linalg.eigvals(module.weight_hh_dense().detach().double()).abs().max())
    assert 0.3 < radius < 0.9
    sparse = SparseRNN(8, 200, density=0.05)
    assert sparse.weight_hh_l0.shape == (200 * 10,)
    assert float(torch.linalg.eigvals(sparse.weight_hh_dense().detach().double()).abs().max()) < 0.9


def test_rnn_bidirectional_cannot_stream():
    module = BandedRNN(3, 8, 1, bidirectional=True)
    with pytest.raises(ValueError, match="bidirectional BandedRNN cannot stream"):
        module.stream(torch.randn(5, 2, 3))


# --------------------------------------------------------------------------
# Bad input: clear errors before any work.


def test_bad_arguments():
    u = torch.randn(2, 8, 10)
    band = torch.randn(8, 5)
    with pytest.raises(ValueError, match=r"bandwidths must be at most C - 1 = 7"):
        filterbank.banded_recurrence(u, torch.randn(8, 17), (8, 8))
    with pytest.raises(TypeError, match=r"bandwidths must be a pair"):
        filterbank.banded_recurrence(u, band, 2)
    with pytest.raises(ValueError, match=r"bandwidths\[1\] must be an int >= 0"):
        filterbank.banded_recurrence(u, band, (2, -1))
    with pytest.raises(ValueError, match=r"A must have shape \(\.\.\., 8, 5\)"):
        filterbank.banded_recurrence(u, torch.randn(8, 4), (2, 2))
    with pytest.raises(ValueError, match="non-zero outside the band"):
        filterbank.banded_recurrence(u, torch.randn(8, 8), (1, 1), dense=True)
    with pytest.raises(TypeError, match="A has dtype torch.float64 but u has dtype torch.float32"):
        filterbank.banded_recurrence(u, band.double(), (2, 2))
    with pytest.raises(ValueError, match="A is on meta but u is on cpu"):
        filterbank.banded_recurrence(u, band.to("meta"), (2, 2))
    with pytest.raises(ValueError, match="nonlinearity must be one of identity, tanh, relu; got 'sigmoid'"):
        filterbank.banded_recurrence(u, band, (2, 2), nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="time_axis must be -1"):
        filterbank.banded_recurrence(torch.randn(2, 3, 8, 10), band, (2, 2), time_axis=0)
    with pytest.raises(ValueError, match=r"h0 must have shape \(\.\.\., 8\)"):
        filterbank.banded_recurrence(u, band, (2, 2), h0=torch.zeros(2, 7))
    with pytest.raises(ValueError, match="the batch dimensions do not broadcast"):
        filterbank.banded_recurrence(u, torch.randn(3, 8, 5), (2, 2))


def test_bad_csr():
    u = torch.randn(2, 4, 10)
    crow, col, values = torch.tensor([0, 1, 3, 3, 4]), torch.tensor([0, 0, 2, 3]), torch.randn(4)
    filterbank.sparse_recurrence(u, (crow, col, values))  # valid
    with pytest.raises(ValueError, match="must be 4 x 4"):
        filterbank.sparse_recurrence(u, (torch.tensor([0, 1, 4]), col, values))
    with pytest.raises(ValueError, match="sorted and distinct within each row; row 1 has column 0 after 2"):
        filterbank.sparse_recurrence(u, (crow, torch.tensor([0, 2, 0, 3]), values))
    with pytest.raises(ValueError, match="sorted and distinct"):
        filterbank.sparse_recurrence(u, (crow, torch.tensor([0, 2, 2, 3]), values))
    with pytest.raises(ValueError, match=r"col_indices must lie in \[0, 4\)"):
        filterbank.sparse_recurrence(u, (crow, torch.tensor([0, 0, 2, 4]), values))
    with pytest.raises(ValueError, match="crow_indices must rise from 0 to nnz = 4"):
        filterbank.sparse_recurrence(u, (torch.tensor([0, 1, 3, 3, 3]), col, values))
    with pytest.raises(ValueError, match=r"values must have shape \(\.\.\., nnz\) with nnz = 4"):
        filterbank.sparse_recurrence(u, (crow, col, torch.randn(5)))
    with pytest.raises(TypeError, match="col_indices must be a 1-D int64 or int32 tensor; got torch.float32"):
        filterbank.sparse_recurrence(u, (crow, col.float(), values))
    with pytest.raises(TypeError, match="A's values has dtype torch.float64"):
        filterbank.sparse_recurrence(u, (crow, col, values.double()))
    with pytest.raises(TypeError, match="2-D torch.sparse_csr_tensor"):
        filterbank.sparse_recurrence(u, torch.randn(4, 4))
    with pytest.raises(ValueError, match="must be 4 x 4"):
        filterbank.sparse_recurrence(u, torch.eye(5).to_sparse_csr())
    # The op checks the pattern itself too (direct calls bypass the functional API).
    with pytest.raises(ValueError, match="col_indices must lie in"):
        _coupled_ops.csr_recurrence(torch.randn(1, 3, 4), crow, torch.tensor([0, 0, 2, 9]), values[None],
                                    torch.zeros(1, dtype=torch.int64), torch.zeros(1, 4), "tanh")


def test_bad_rnn_arguments():
    with pytest.raises(ValueError, match="either pattern or density"):
        SparseRNN(3, 8)
    with pytest.raises(ValueError, match=r"density must lie in \(0, 1\]"):
        SparseRNN(3, 8, density=0.0)
    with pytest.raises(ValueError, match="pattern must have shape"):
        SparseRNN(3, 8, pattern=torch.ones(7, 7, dtype=torch.bool))
    with pytest.raises(ValueError, match="bandwidths must be at most C - 1 = 7"):
        BandedRNN(3, 8, bandwidth=8)
    module = BandedRNN(3, 8, bandwidth=1)
    with pytest.raises(ValueError, match=r"input must have shape \(L, N, H_in\)"):
        module(torch.randn(5, 2, 4))
    with pytest.raises(ValueError, match=r"hx must have shape \(1, 2, 8\)"):
        module(torch.randn(5, 2, 3), torch.zeros(2, 2, 8))
    with pytest.raises(TypeError, match="input has dtype torch.float64"):
        module(torch.randn(5, 2, 3, dtype=torch.float64))
