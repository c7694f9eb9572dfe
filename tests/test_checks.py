"""The validation module (filterbank/_checks.py): one rule per check, TypeError for types, ValueError for values.

Every public function's own error cases are tested beside it; these pin the
rules themselves, including what the public messages are built from.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from filterbank import _checks


@pytest.mark.parametrize("call, error, message", [
    (lambda: _checks.integer("n", 2.0, 1), TypeError, r"n must be an int >= 1; got float"),
    (lambda: _checks.integer("n", True, 1), TypeError, r"n must be an int >= 1; got bool"),
    (lambda: _checks.integer("n", 0, 1), ValueError, r"n must be an int >= 1; got 0"),
    (lambda: _checks.integer("padlen", -1, 0, optional=True), ValueError, r"padlen must be None or an int >= 0; got -1"),
    (lambda: _checks.number("floor", "1", 0.0), TypeError, r"floor must be a number; got str"),
    (lambda: _checks.number("floor", math.nan, 0.0), ValueError, r"floor must be > 0; got nan"),
    (lambda: _checks.number("p", 1.5, 0.0, 1.0, closed=(False, True)), ValueError, r"p must lie in \(0, 1\]; got 1.5"),
    (lambda: _checks.number("f", math.inf), ValueError, r"f must be finite; got inf"),
    (lambda: _checks.sample_rate(torch.tensor(8000.0)), TypeError, r"sample_rate must be a positive number of Hz"),
    (lambda: _checks.sample_rate(-1), ValueError, r"sample_rate must be a positive number of Hz; got -1"),
    (lambda: _checks.choice("kind", "comb", ("a", "b", None)), ValueError, r"kind must be one of a, b or None; got 'comb'"),
    (lambda: _checks.choice("kind", ["a"], ("a", "b")), ValueError, r"kind must be one of a, b; got \['a'\]"),
    (lambda: _checks.names("learn", "q", ("q",)), TypeError, r"learn must be an iterable of names out of q"),
    (lambda: _checks.names("learn", ("q", "z"), ("q",)), ValueError, r"learn takes q; got \['z'\]"),
    (lambda: _checks.boolean("whole", 1), TypeError, r"whole must be a bool; got int"),
    (lambda: _checks.axis(1.0, 2), TypeError, r"axis must be an int; got float"),
    (lambda: _checks.axis(2, 2), ValueError, r"axis must be in \[-2, 1\] for x with 2 dimensions; got 2"),
    (lambda: _checks.tensor("x", [1.0]), TypeError, r"x must be a torch.Tensor; got list$"),
    (lambda: _checks.tensor("b", [1.0], torch.ones(1)), TypeError, r"convert it with torch.as_tensor\(b, dtype=x.dtype\)"),
    (lambda: _checks.tensor("x", torch.ones(2, dtype=torch.int32)), TypeError, r"real floating-point .* got torch.int32"),
    (lambda: _checks.tensor("y", torch.ones(2), torch.ones(2, dtype=torch.float64), "b"), TypeError,
     r"y has dtype torch.float32 but b has dtype torch.float64"),
    (lambda: _checks.tensor("y", torch.ones(2, device="meta"), torch.ones(2), "b"), ValueError,
     r"y is on meta but b is on cpu"),
    (lambda: _checks.floats({"f": torch.ones(2, dtype=torch.int64)}), TypeError,
     r"f must be a floating-point tensor or a number; got torch.int64"),
    (lambda: _checks.broadcast_to({"b": (3,), "a": (4,)}), ValueError, r"shapes do not broadcast: b \(3,\), a \(4,\)"),
    (lambda: _checks.nonzero("a", torch.tensor([[1.0, 2.0], [0.0, 1.0]]), 0), ValueError,
     r"a\[\.\.\., 0\] must be non-zero; got 0 at a\[1, 0\]$"),
    (lambda: _checks.nonzero("a", torch.zeros(2, 3, 3), 0, ("channel", "section")), ValueError,
     r"got 0 at a\[0, 0, 0\] \(channel 0, section 0\)"),
    (lambda: _checks.inside("f", torch.tensor([0.0, 10.0]), 0.0, 5.0, "Hz", "sample_rate / 2"), ValueError,
     r"f must lie in \(0, 5\) Hz \(sample_rate / 2\); got values in \[0, 10\]"),
    (lambda: _checks.sos(torch.ones(3, 0, 6)), ValueError, r"with n_sections >= 1; got \(3, 0, 6\)"),
    (lambda: _checks.coefficients("a", torch.tensor(1.0)), ValueError, r"a must have at least one coefficient"),
])
def test_rules(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_values_pass_through():
    assert _checks.integer("n", np.int64(3), 1) == 3 and type(_checks.integer("n", np.int64(3), 1)) is int
    assert _checks.number("floor", np.float32(0.5), 0.0) == 0.5
    assert _checks.axis(-1, 3) == 2
    assert _checks.broadcast_to({"a": (3, 1), "b": (4,)}) == (3, 4)
    tensors = _checks.floats({"f": 100.0, "q": torch.ones(3, dtype=torch.float64)})
    assert all(t.dtype == torch.float64 for t in tensors)


def test_value_checks_step_aside_while_compiling():
    def checked(a):
        _checks.nonzero("a", a, 0)
        _checks.positive("a", a)
        return a * 2

    compiled = torch.compile(checked, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(torch.ones(3)), torch.full((3,), 2.0))
