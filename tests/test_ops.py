"""The op layer: registration (opcheck), gradients (gradcheck, gradgradcheck),
the fused backward against the composed one, and torch.compile."""

from __future__ import annotations

import pytest
import torch

import filterbank
from filterbank import _ops
from test_kernels import make_case


def _requiring_grad(case):
    x, x_index, b, a, zi = case
    return (x.clone().requires_grad_(), x_index, b.clone().requires_grad_(),
            a.clone().requires_grad_(), zi.clone().requires_grad_())


@pytest.mark.parametrize("pattern, sections, order, n_time", [
    ("shared", 1, 2, 9), ("distinct", 2, 2, 5), ("mixed", 1, 3, 6), ("shared", 1, 4, 2),
])
def test_opcheck(rng, pattern, sections, order, n_time):
    case = _requiring_grad(make_case(rng, 3, 5, sections, order, n_time, pattern))
    torch.library.opcheck(torch.ops.filterbank.iir_cascade.default, case)
    x, x_index, b, a, zi = (t.detach() for t in case)
    grad_y = torch.randn(5, n_time, dtype=x.dtype)
    grad_zf = torch.randn(zi.shape, dtype=x.dtype)
    torch.library.opcheck(torch.ops.filterbank.iir_cascade_backward.default, (grad_y, grad_zf, x, x_index, b, a, zi))


@pytest.mark.parametrize("pattern, sections, order, n_time", [
    ("shared", 1, 2, 11), ("distinct", 2, 2, 7), ("mixed", 1, 1, 6), ("shared", 1, 5, 3),
    ("mixed", 3, 2, 2), ("shared", 1, 0, 4),
])
def test_gradcheck_and_gradgradcheck(rng, pattern, sections, order, n_time):
    x, x_index, b, a, zi = _requiring_grad(make_case(rng, 2, 4, sections, order, n_time, pattern))
    if order == 0:
        # An order-0 filter has no state: zi is empty and only passes through.
        def op(x, b, a):
            return _ops.iir_cascade(x, x_index, b, a, zi.detach())

        inputs = (x, b, a)
    else:
        def op(x, b, a, zi):
            return _ops.iir_cascade(x, x_index, b, a, zi)

        inputs = (x, b, a, zi)
    assert torch.autograd.gradcheck(op, inputs)
    assert torch.autograd.gradgradcheck(op, inputs)


@pytest.mark.parametrize("pattern, sections, order, n_time", [
    ("shared", 1, 2, 300), ("distinct", 2, 2, 130), ("mixed", 1, 4, 77), ("shared", 3, 2, 1),
])
def test_fused_backward_equals_composed(rng, pattern, sections, order, n_time):
    x, x_index, b, a, zi = make_case(rng, 3, 40, sections, order, n_time, pattern)
    grad_y = torch.randn(40, n_time, dtype=x.dtype)
    grad_zf = torch.randn(zi.shape, dtype=x.dtype)
    fused = _ops.iir_cascade_backward(grad_y, grad_zf, x, x_index, b, a, zi)
    composed = _ops._backward_composite(grad_y, grad_zf, x, x_index, b, a, zi)
    for got, want in zip(fused, composed):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_op_rejects_zero_a0():
    x = torch.randn(1, 10)
    a = torch.tensor([[[1.0, 0.1]], [[0.0, 0.2]]])
    with pytest.raises(ValueError, match=r"a\[\.\.\., 0\] must be non-zero; got 0 at a\[1, 0, 0\] \(channel 1, section 0\)"):
        _ops.iir_cascade(x, torch.tensor([0, 0]), torch.ones(2, 1, 2), a, torch.zeros(2, 1, 1))


def _compile_check(function, *inputs):
    eager_inputs = [t.clone().requires_grad_(t.is_floating_point()) for t in inputs]
    compiled_inputs = [t.clone().requires_grad_(t.is_floating_point()) for t in inputs]
    eager = function(*eager_inputs)
    compiled = torch.compile(function, fullgraph=True, backend="aot_eager")(*compiled_inputs)
    torch.testing.assert_close(compiled, eager)
    eager.square().sum().backward()
    compiled.square().sum().backward()
    for got, want in zip(compiled_inputs, eager_inputs):
        if want.grad is not None:
            torch.testing.assert_close(got.grad, want.grad)


def test_torch_compile_fullgraph_lfilter():
    torch._dynamo.reset()
    x = torch.randn(2, 1, 500)
    b = torch.randn(6, 3)
    a = torch.tensor([1.0, -1.2, 0.5]).repeat(6, 1)
    _compile_check(lambda b, a, x: filterbank.lfilter(b, a, x), b, a, x)


def test_torch_compile_fullgraph_sosfilt_with_state():
    torch._dynamo.reset()
    x = torch.randn(3, 400)
    sos = torch.tensor([[0.2, 0.1, 0.3, 1.0, -0.5, 0.2], [1.0, -0.3, 0.1, 2.0, 0.4, 0.3]])
    zi = torch.randn(3, 2, 2)

    def run(sos, x, zi):
        y, zf = filterbank.sosfilt(sos, x, zi=zi)
        return y + zf.sum()

    _compile_check(run, sos, x, zi)


def test_torch_compile_inductor():
    # The default backend too (inductor compiles the glue around the op).
    torch._dynamo.reset()
    x = torch.randn(2, 1, 300)
    b = torch.randn(4, 3)
    a = torch.tensor([1.0, -1.1, 0.4]).repeat(4, 1)
    compiled = torch.compile(lambda b, a, x: filterbank.lfilter(b, a, x) * 2, fullgraph=True)
    torch.testing.assert_close(compiled(b, a, x), filterbank.lfilter(b, a, x) * 2)


def test_eager_inference_skips_the_dispatcher_with_the_same_results(rng):
    # call_iir_cascade runs the kernel directly in plain no-grad eager code
    # (no torch._dynamo import at start-up) and the custom op otherwise.
    x, x_index, b, a, zi = make_case(rng, 3, 5, 2, 2, 300, "mixed")
    with torch.no_grad():
        direct = _ops.call_iir_cascade(x, x_index, b, a, zi)
        through_op = _ops.iir_cascade(x, x_index, b, a, zi)
    for got, expected in zip(direct, through_op):
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert _ops.plain_inference(x, b) and not _ops.plain_inference(x, b.clone().requires_grad_(True))
    with torch.no_grad():
        assert _ops.plain_inference(x, b)
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode() as mode:
        fake = mode.from_tensor(x)
        assert not _ops.plain_inference(fake)


def test_no_grad_front_end_does_not_import_dynamo():
    import subprocess
    import sys

    code = ("import sys, torch, filterbank\n"
            "before = 'torch._dynamo' in sys.modules\n"
            "with torch.no_grad():\n"
            "    filterbank.nn.FrontEnd(n_filters=8, sample_rate=16000)(torch.randn(2, 1600))\n"
            "print(before, 'torch._dynamo' in sys.modules)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before, after = run.stdout.split()
    assert before == "True" or after == "False", run.stdout
