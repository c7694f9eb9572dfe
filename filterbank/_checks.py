"""Argument checks for every layer of filterbank: each rule once, one message style.

A check raises ``TypeError`` when a value has the wrong type and
``ValueError`` when it has the right type but a wrong value, and its message
names the argument as the caller passed it, says what was expected and what
came: ``a[..., 0] must be non-zero; got 0 at a[1, 0]``. Checks run at the
door of each public function, before any work.

Checks that read tensor values (non-zero leading coefficients, frequencies
inside (0, Nyquist)) synchronise with the device and cannot be traced, so
they step aside while ``torch.compile`` traces and for tensors without
values (meta and fake tensors, for shape propagation): :func:`checking_values`.
The op layer checks ``a0`` again when the op runs on real data.
"""

from __future__ import annotations

import math
import numbers
from typing import Iterable, Mapping, Optional, Sequence

import torch
from torch import Tensor
from torch._subclasses.fake_tensor import is_fake

from ._shapes import broadcast_shapes

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_FLOAT_NAMES = "float16, bfloat16, float32 or float64"


def shape_only(tensor: Tensor) -> bool:
    """Whether ``tensor`` has shapes but no values: a meta tensor or a fake one (``FakeTensorMode``)."""
    return tensor.device.type == "meta" or is_fake(tensor)


def checking_values(*tensors: Tensor) -> bool:
    """Whether checks that read the values of ``tensors`` run: not while ``torch.compile`` traces, nor on
    tensors that have no values (:func:`shape_only`)."""
    return not torch.compiler.is_compiling() and not any(shape_only(t) for t in tensors)


def _range(x: Tensor) -> str:
    return f"[{float(x.min()):g}, {float(x.max()):g}]" if x.numel() else "[]"


def _listing(options: Iterable) -> str:
    names = [str(option) for option in options if option is not None]
    return ", ".join(names) + (" or None" if None in options else "")


# --------------------------------------------------------------------------
# Python values.


def integer(name: str, value, minimum: Optional[int] = None, *, optional: bool = False) -> Optional[int]:
    """A Python int (not a bool), at least ``minimum``; None too when ``optional``."""
    if optional and value is None:
        return None
    what = ("None or " if optional else "") + "an int" + ("" if minimum is None else f" >= {minimum}")
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be {what}; got {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be {what}; got {value!r}")
    return int(value)


def boolean(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool; got {type(value).__name__}")
    return value


def number(name: str, value, low: Optional[float] = None, high: Optional[float] = None, *,
           closed: tuple[bool, bool] = (False, False), unit: str = "") -> float:
    """A finite real Python number inside the interval from ``low`` to ``high`` (open ends unless ``closed``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number; got {type(value).__name__}")
    value = float(value)
    inside = math.isfinite(value)
    if low is not None:
        inside = inside and (value >= low if closed[0] else value > low)
    if high is not None:
        inside = inside and (value <= high if closed[1] else value < high)
    if not inside:
        unit = f" {unit.strip()}" if unit else ""
        if low is not None and high is not None:
            interval = f"{'[' if closed[0] else '('}{low:g}, {high:g}{']' if closed[1] else ')'}"
            raise ValueError(f"{name} must lie in {interval}{unit}; got {value!r}")
        if low is not None:
            raise ValueError(f"{name} must be {'>=' if closed[0] else '>'} {low:g}{unit}; got {value!r}")
        if high is not None:
            raise ValueError(f"{name} must be {'<=' if closed[1] else '<'} {high:g}{unit}; got {value!r}")
        raise ValueError(f"{name} must be finite; got {value!r}")
    return value


def sample_rate(value, name: str = "sample_rate") -> float:
    """A positive, finite number of Hz (an int or a float; a tensor is refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive number of Hz (an int or a float); got {type(value).__name__}")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive number of Hz; got {value!r}")
    return float(value)


def choice(name: str, value, options: Sequence):
    """``value`` is one of ``options`` (which may include None)."""
    try:
        known = value in options
    except TypeError:  # unhashable
        known = False
    if not known:
        raise ValueError(f"{name} must be one of {_listing(options)}; got {value!r}")
    return value


def names(name: str, value, options: Sequence[str]) -> frozenset:
    """An iterable of names, each one of ``options`` (e.g. which parameters a module learns)."""
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise TypeError(f"{name} must be an iterable of names out of {_listing(options)}; got {value!r}")
    chosen = frozenset(value)
    unknown = sorted(str(item) for item in chosen - set(options))
    if unknown:
        raise ValueError(f"{name} takes {_listing(options)}; got {unknown}")
    return chosen


def floating_dtype(name: str, value) -> torch.dtype:
    if not isinstance(value, torch.dtype) or not value.is_floating_point:
        raise TypeError(f"{name} must be a floating torch.dtype; got {value!r}")
    return value


def axis(value, ndim: int, name: str = "axis") -> int:
    """An axis of a tensor with ``ndim`` dimensions, as a non-negative index."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int; got {type(value).__name__}")
    if not -ndim <= value < ndim:
        raise ValueError(f"{name} must be in [{-ndim}, {ndim - 1}] for x with {ndim} dimensions; got {value}")
    return int(value) % ndim


def frequency_range(f_min: float, f_max: float, nyquist: float) -> None:
    """``0 < f_min < f_max < nyquist`` for a bank's frequency range (numbers, already checked)."""
    if not 0 < f_min < f_max < nyquist:
        raise ValueError(f"need 0 < f_min < f_max < sample_rate / 2 = {nyquist:g} Hz; got f_min={f_min:g}, "
                         f"f_max={f_max:g}")


# --------------------------------------------------------------------------
# Tensors.


def tensor(name: str, value, like: Optional[Tensor] = None, like_name: str = "x") -> Tensor:
    """A real floating-point tensor; with ``like``, of its dtype and on its device."""
    if not isinstance(value, Tensor):
        hint = f" (convert it with torch.as_tensor({name}, dtype={like_name}.dtype))" if like is not None else ""
        raise TypeError(f"{name} must be a torch.Tensor; got {type(value).__name__}{hint}")
    if value.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be a real floating-point tensor ({_FLOAT_NAMES}); got {value.dtype}")
    if like is not None:
        same_as(name, value, like, like_name)
    return value


def same_as(name: str, value: Tensor, like: Tensor, like_name: str) -> None:
    """``value`` has ``like``'s dtype (else TypeError) and device (else ValueError)."""
    if value.dtype != like.dtype:
        raise TypeError(f"{name} has dtype {value.dtype} but {like_name} has dtype {like.dtype}; convert one of "
                        "them explicitly (filterbank casts nothing silently)")
    if value.device != like.device:
        raise ValueError(f"{name} is on {value.device} but {like_name} is on {like.device}; move them to one device")


def floats(arguments: Mapping[str, object], dtype: Optional[torch.dtype] = None,
           broadcast: bool = True) -> list[Tensor]:
    """Tensors for ``{name: value}`` (floating-point tensors or Python numbers) of one dtype and device.

    Numbers take the dtype and device of the tensor arguments, or ``dtype``
    (float32 by default) when there are none; tensors of different dtypes or
    devices are refused, not cast. ``broadcast=False`` leaves the shapes to
    the caller.
    """
    reference: Optional[tuple[str, Tensor]] = None
    for name, value in arguments.items():
        if isinstance(value, Tensor):
            if not value.is_floating_point():
                raise TypeError(f"{name} must be a floating-point tensor or a number; got {value.dtype}")
            if reference is None:
                reference = (name, value)
            else:
                same_as(name, value, reference[1], reference[0])
        elif isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be a floating-point tensor or a number; got {type(value).__name__}")
    if reference is not None and dtype is not None and reference[1].dtype != dtype:
        raise TypeError(f"{reference[0]} is {reference[1].dtype} but dtype is {dtype}; pass dtype={reference[1].dtype} "
                        f"or tensors of dtype {dtype}")
    dtype = reference[1].dtype if reference is not None else (dtype or torch.float32)
    device = reference[1].device if reference is not None else None
    tensors = [value if isinstance(value, Tensor) else torch.tensor(float(value), dtype=dtype, device=device)
               for value in arguments.values()]
    if broadcast:
        broadcast_to({name: t.shape for name, t in zip(arguments, tensors)})
    return tensors


def broadcast_to(shapes: Mapping[str, Sequence[int]], what: str = "shapes", note: str = "") -> torch.Size:
    """The shape ``shapes`` broadcast to, or ValueError listing them: ``{what} do not broadcast: b (3,), a (4,)``."""
    try:
        return broadcast_shapes(*shapes.values())
    except RuntimeError:
        listed = ", ".join(f"{name} {tuple(shape)}" for name, shape in shapes.items())
        raise ValueError(f"{what} do not broadcast: {listed}{note}") from None


def shape(name: str, value: Tensor, expected: Sequence[int], meaning: str = "") -> None:
    if tuple(value.shape) != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)}{meaning and ' (' + meaning + ')'}; got "
                         f"{tuple(value.shape)}")


def coefficients(name: str, value, like: Optional[Tensor] = None, like_name: str = "x") -> Tensor:
    """A coefficient tensor ``(..., n)`` with ``n >= 1``."""
    tensor(name, value, like, like_name)
    if value.ndim == 0 or value.shape[-1] == 0:
        raise ValueError(f"{name} must have at least one coefficient in its last dimension; got shape "
                         f"{tuple(value.shape)}")
    return value


def sos(value, name: str = "sos", like: Optional[Tensor] = None, like_name: str = "x") -> Tensor:
    """Second-order sections ``(..., n_sections, 6)`` with ``n_sections >= 1``."""
    tensor(name, value, like, like_name)
    if value.ndim < 2 or value.shape[-1] != 6 or value.shape[-2] == 0:
        raise ValueError(f"{name} must have shape (..., n_sections, 6) with n_sections >= 1; got "
                         f"{tuple(value.shape)}")
    return value


def nonzero(name: str, values: Tensor, column: int, axes: Sequence[str] = (), kernel_reports: bool = False) -> None:
    """``values[..., column] != 0`` (a leading denominator coefficient), naming the first zero.

    ``axes`` names the leading dimensions for the message (``("channel", "section")``).
    ``kernel_reports``: the values are bound for the CUDA kernels, which
    report a zero themselves (``filterbank.kernels.cuda.raise_reported``);
    CUDA tensors are then not checked here, since reading the answer back
    would wait for the device on every call.
    """
    if not checking_values(values) or (kernel_reports and values.device.type == "cuda"):
        return
    zero = values[..., column] == 0
    if bool(zero.any()):
        first = [int(i) for i in zero.nonzero()[0]]
        where = ", ".join(str(i) for i in first + [column])
        meaning = " (" + ", ".join(f"{axis} {i}" for axis, i in zip(axes, first)) + ")" if axes else ""
        raise ValueError(f"{name}[..., {column}] must be non-zero; got 0 at {name}[{where}]{meaning}")


def positive(name: str, values: Tensor) -> None:
    """Every value > 0 and finite."""
    if checking_values(values):
        if bool((~(values > 0)).any()):
            raise ValueError(f"{name} must be > 0; got a minimum of {float(values.min()):g}")
        if bool(torch.isinf(values).any()):
            raise ValueError(f"{name} must be finite; got values in {_range(values)}")


def finite(name: str, values: Tensor) -> None:
    if checking_values(values) and bool((~torch.isfinite(values)).any()):
        raise ValueError(f"{name} must be finite; got values in {_range(values)}")


def inside(name: str, values: Tensor, low: float, high: float, unit: str, note: str = "") -> None:
    """Every value in the open interval ``(low, high)`` (NaN fails)."""
    if checking_values(values) and bool((~((values > low) & (values < high))).any()):
        raise ValueError(f"{name} must lie in ({low:g}, {high:g}) {unit}{note and ' (' + note + ')'}; got values in "
                         f"{_range(values)}")


def from_up_to(name: str, values: Tensor, low: float, high: float, unit: str) -> None:
    """Every value in ``[low, high)`` (``high`` may be inf, which then excludes inf)."""
    if checking_values(values) and bool((~((values >= low) & (values < high))).any()):
        raise ValueError(f"{name} must lie in [{low:g}, {high:g}) {unit}; got values in {_range(values)}")


def below(low_name: str, low: Tensor, high_name: str, high: Tensor) -> None:
    """Every ``low < high``."""
    if checking_values(low, high) and bool((~(low < high)).any()):
        raise ValueError(f"{low_name} must be < {high_name}; got {low_name} in {_range(low)} and {high_name} in "
                         f"{_range(high)}")


def lengths(value, x: Tensor) -> Tensor:
    """(batch,) int64 lengths of a zero-padded batch ``x`` (batch, ..., time), on ``x``'s device."""
    if x.ndim < 2:
        raise ValueError(f"lengths needs a batch: x must have shape (batch, time) or (batch, channels, time); "
                         f"got {tuple(x.shape)}")
    values = torch.as_tensor(value)
    if values.dtype.is_floating_point or values.dtype.is_complex or values.dtype == torch.bool \
            or values.shape != (x.shape[0],):
        raise ValueError(f"lengths must be {x.shape[0]} integers (one per signal of the batch); got "
                         f"{values.dtype} of shape {tuple(values.shape)}")
    if values.numel() and (bool((values < 0).any()) or bool((values > x.shape[-1]).any())):
        raise ValueError(f"lengths must be in [0, {x.shape[-1]}] (the padded length); got "
                         f"{values.min().item()} to {values.max().item()}")
    return values.to(device=x.device, dtype=torch.int64)


def signal(name: str, x) -> Tensor:
    """A real floating-point tensor with a time axis (at least one dimension)."""
    tensor(name, x)
    if x.ndim == 0:
        raise ValueError(f"{name} must have at least one dimension (time); got a 0-d tensor")
    return x


def module_input(x) -> Tensor:
    """A module's input: ``(time)``, ``(batch, time)`` or ``(batch, channels, time)``."""
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor; got {type(x).__name__}")
    if x.ndim not in (1, 2, 3):
        raise ValueError(f"x must have shape (time), (batch, time) or (batch, channels, time); got {tuple(x.shape)}")
    return x


# --------------------------------------------------------------------------
# Coupled recurrences (filterbank.coupled).


def bandwidths(value, n_channels: int) -> tuple[int, int]:
    """``(lower, upper)``: two ints in [0, n_channels - 1] (a band that fits a C x C matrix)."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"bandwidths must be a pair (lower, upper) of ints; got {value!r}")
    lower, upper = (integer(f"bandwidths[{k}]", v, 0) for k, v in enumerate(value))
    if max(lower, upper) >= max(n_channels, 1):
        raise ValueError(f"bandwidths must be at most C - 1 = {n_channels - 1} for {n_channels} channels; got "
                         f"(lower, upper) = ({lower}, {upper})")
    return lower, upper


def zero_outside_band(name: str, dense: Tensor, lower: int, upper: int) -> None:
    """Every entry of the matrices ``dense`` (..., C, C) outside the band ``(lower, upper)`` is zero."""
    if not checking_values(dense) or dense.numel() == 0:
        return
    rows = torch.arange(dense.shape[-1], device=dense.device)
    offset = rows.unsqueeze(0) - rows.unsqueeze(1)  # column - row
    outside = (offset > upper) | (offset < -lower)
    found = (dense != 0) & outside
    if bool(found.any()):
        where = [int(i) for i in found.nonzero()[0]]
        raise ValueError(f"{name} has a non-zero outside the band (lower {lower}, upper {upper}) at "
                         f"{name}[{', '.join(map(str, where))}]; pass wider bandwidths (nothing is dropped "
                         "silently)")


def csr_pattern(crow: Tensor, col: Tensor, n_channels: int, name: str = "A") -> None:
    """A square CSR pattern: ``crow`` (C + 1,) from 0 to nnz, non-decreasing; ``col`` (nnz,) in [0, C),
    strictly increasing within each row (sorted, no duplicates). int64 or int32 tensors."""
    for part, indices in (("crow_indices", crow), ("col_indices", col)):
        if not isinstance(indices, Tensor) or indices.dtype not in (torch.int32, torch.int64) or indices.ndim != 1:
            got = f"{indices.dtype} of shape {tuple(indices.shape)}" if isinstance(indices, Tensor) else \
                type(indices).__name__
            raise TypeError(f"{name}'s {part} must be a 1-D int64 or int32 tensor; got {got}")
    if crow.shape[0] != n_channels + 1:
        raise ValueError(f"{name} must be {n_channels} x {n_channels} (the channels of u): crow_indices must have "
                         f"{n_channels + 1} entries; got {crow.shape[0]}")
    if not checking_values(crow, col):
        return
    if int(crow[0]) != 0 or int(crow[-1]) != col.shape[0] or bool((crow.diff() < 0).any()):
        raise ValueError(f"{name}'s crow_indices must rise from 0 to nnz = {col.shape[0]}; got "
                         f"{crow[0].item()} to {crow[-1].item()}" + (", decreasing" if bool((crow.diff() < 0).any())
                                                                     else ""))
    if col.numel() and (int(col.min()) < 0 or int(col.max()) >= n_channels):
        raise ValueError(f"{name}'s col_indices must lie in [0, {n_channels}); got {col.min().item()} to "
                         f"{col.max().item()}")
    rows = torch.repeat_interleave(torch.arange(n_channels, device=col.device), crow.diff().to(torch.int64))
    unsorted = (col[1:] <= col[:-1]) & (rows[1:] == rows[:-1])
    if bool(unsorted.any()):
        k = int(unsorted.nonzero()[0]) + 1
        raise ValueError(f"{name}'s col_indices must be sorted and distinct within each row; row {int(rows[k])} "
                         f"has column {int(col[k])} after {int(col[k - 1])} (sort them, e.g. with "
                         "torch.Tensor.to_sparse_csr on a coalesced tensor)")


# --------------------------------------------------------------------------
# Streaming states (filterbank.streaming.State).


def state(owner: str, value, keys: Sequence[str]):
    """A ``State`` with exactly the entries ``keys`` (what ``owner``'s ``stream`` returns)."""
    from .streaming import State

    if not isinstance(value, State):
        raise TypeError(f"{owner} state must be a filterbank.streaming.State (from an earlier call of stream) or "
                        f"None; got {type(value).__name__}")
    if set(value) != set(keys):
        raise ValueError(f"{owner} state has entries {sorted(value)} but this module needs {sorted(keys)} "
                         "(a state from another kind of module?)")
    return value


def state_origin(owner: str, value, expected: Mapping[str, object]) -> None:
    """A state's record of the module that made it (``state["origin"]``) against this module's."""
    found = value if isinstance(value, Mapping) else {}
    differ = [f"{key}={found.get(key)!r} (this one: {wanted!r})" for key, wanted in expected.items()
              if found.get(key) != wanted]
    if differ:
        raise ValueError(f"{owner} state comes from a {owner} built otherwise: {', '.join(differ)}; a state carries "
                         "over only to a module built alike")


def state_entry(owner: str, name: str, value, expected_shape: Optional[Sequence[int]], dtype: torch.dtype,
                device: torch.device) -> Tensor:
    """The entry ``name`` of ``owner``'s state, against the tensor the module would make."""
    if not isinstance(value, Tensor):
        raise TypeError(f"{owner} state[{name!r}] must be a tensor; got {type(value).__name__}")
    if expected_shape is not None and tuple(value.shape) != tuple(expected_shape):
        raise ValueError(f"{owner} state[{name!r}] has shape {tuple(value.shape)} but this module and input need "
                         f"{tuple(expected_shape)} (a state from another filter count, batch shape or module?)")
    if value.dtype != dtype:
        raise TypeError(f"{owner} state[{name!r}] has dtype {value.dtype} but the module computes in {dtype}; "
                        "convert it with state.to(dtype)")
    if value.device != device:
        raise ValueError(f"{owner} state[{name!r}] is on {value.device} but the input is on {device}; "
                         "move it with state.to(device)")
    return value
