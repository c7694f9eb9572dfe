"""The op layer: ``torch.library`` custom ops behind every filter in filterbank.

One op does all the filtering: ``filterbank::iir_cascade`` runs a cascade of
IIR sections per channel (``lfilter`` is one section of any order, ``sosfilt``
several second-order ones). Its backward is a second op,
``filterbank::iir_cascade_backward``, which runs the reverse-time recursion
(docs/design.md, "The backward"). ``filterbank::frame_energy`` and its
backward take the front-end's windowed band energies once per hop. All have
fake implementations, so ``torch.compile`` traces through them without graph
breaks. When a graph of the backward is asked for (``create_graph=True``),
the backward is instead composed from the forward op itself, time-reversed,
so derivatives of any order work.

:func:`iir_cascade_frame_energy` is the inference-only path that filters and
takes frame energies in one pass; it has no autograd, and the layers above
call it only when :func:`plain_inference` holds. ``filterbank::band_energy``
does the same for training: its forward also saves the filters' states every
few hundred samples, and its backward (``filterbank::band_energy_backward``)
recomputes the band signals block by block from them, so the (P, time) band signals are never
stored (docs/design.md, "The fused front-end").

Kernels are chosen by :func:`_backend`, the one place that decides: the numba
kernels on the CPU, the CUDA kernels (``csrc/``, built on first use) on CUDA
devices, and the pure-torch reference elsewhere or where those cannot run
(slow but correct, with a warning once).

Shapes (``P`` channels, ``G`` distinct input rows, ``S`` sections, order ``K``):

    x: (G, time)   x_index: (P,) int64   b, a: (P, S, K + 1)   zi: (P, S, K)
    y: (P, time)   zf: (P, S, K)
"""

from __future__ import annotations

import warnings
from types import ModuleType
from typing import Optional

import torch
from torch import Tensor

from . import _checks
from .kernels import adjoint as _adjoint
from .kernels import cpu as _cpu
from .kernels import cuda as _cuda
from .kernels import reference as _reference

__all__ = ["iir_cascade", "iir_cascade_backward", "frame_energy", "frame_energy_backward", "call_iir_cascade",
           "call_frame_energy", "iir_cascade_frame_energy", "band_energy", "band_energy_backward", "call_band_energy",
           "fuses_band_energy", "stream_band_energy", "plain_inference"]

_warned: set[str] = set()

# Operations whose reference loops over time in Python: slow enough to warn about.
_SEQUENTIAL = ("iir_cascade", "iir_cascade_backward", "band_energy", "band_energy_backward", "banded_recurrence",
               "banded_recurrence_backward", "csr_recurrence", "csr_recurrence_backward")


def _backend(op: str, device: torch.device, order: int = 0, window: Optional[tuple[int, int, int]] = None
             ) -> ModuleType:
    """The kernel module that runs ``op`` on ``device``.

    Args:
        op: the operation's name, the same in every kernel module.
        device: where its tensors are.
        order: the sections' order (the CUDA kernels take up to ``MAX_ORDER``).
        window: ``(length, hop, offset)`` of a frame-energy window (the CPU
            kernels take windows touching at most three hops).
    """
    if device.type == "cpu":
        if (window is None or _cpu.fits_window(*window)) and _cpu.supports(op, order):
            return _cpu
    elif device.type == "cuda" and hasattr(_cuda, op) and _cuda.supports(order) and _cuda.available():
        return _cuda
    # What remains is vectorised torch, except the cascade's time loop.
    if op in _SEQUENTIAL:
        _fallback_warning(device, order, op)
    return _reference


def _fallback_warning(device: torch.device, order: int, op: str) -> None:
    if device.type == "cuda" and not hasattr(_cuda, op):
        reason = f"filterbank has no CUDA kernel for {op}"
    elif device.type == "cuda" and not _cuda.supports(order):
        reason = f"the CUDA kernels take orders up to {_cuda.MAX_ORDER} and this filter has order {order} " \
                 "(split it into second-order sections and use sosfilt)"
    elif device.type == "cuda":
        reason = "the CUDA kernels are not available (see the warning about their build)"
    else:
        reason = f"filterbank has no kernel for {device.type} tensors"
    if reason not in _warned:
        _warned.add(reason)
        warnings.warn(
            f"{reason}; using the pure-torch reference implementation (correct, but it loops over time in "
            "Python and is slow).",
            RuntimeWarning,
            stacklevel=4,
        )


def _iir_cascade(x: Tensor, x_index: Tensor, b: Tensor, a: Tensor, zi: Tensor) -> tuple[Tensor, Tensor]:
    """Filter each channel ``p`` of ``x[x_index[p]]`` through its cascade of sections.

    Args:
        x: (G, time), float16/bfloat16/float32/float64.
        x_index: (P,) int64, the row of ``x`` each channel reads.
        b, a: (P, S, K + 1), raw coefficients (divided by ``a[..., 0]`` by the kernels).
        zi: (P, S, K), initial state per section (scipy's TDF-II state).

    Returns:
        ``(y, zf)``: y (P, time) and zf (P, S, K), dtype of ``x``.
    """
    # The functional API checks a0 with the caller's indices; this is the
    # backstop for direct op calls and for code under torch.compile. The
    # CUDA kernels report a zero themselves, without a host sync.
    backend = _backend("iir_cascade", x.device, b.shape[-1] - 1)
    _checks.nonzero("a", a, 0, ("channel", "section"), kernel_reports=backend is _cuda)
    return backend.iir_cascade(x, x_index, b, a, zi)


iir_cascade = torch.library.custom_op("filterbank::iir_cascade", _iir_cascade, mutates_args=())


@iir_cascade.register_fake
def _(x, x_index, b, a, zi):
    return x.new_empty((b.shape[0], x.shape[-1])), x.new_empty(zi.shape)


@torch.library.custom_op("filterbank::iir_cascade_backward", mutates_args=())
def iir_cascade_backward(
    grad_y: Tensor, grad_zf: Tensor, x: Tensor, x_index: Tensor, b: Tensor, a: Tensor, zi: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gradients of :func:`iir_cascade` for ``x, b, a, zi`` given those of ``y, zf``."""
    backend = _backend("iir_cascade_backward", x.device, b.shape[-1] - 1)
    return backend.iir_cascade_backward(grad_y, grad_zf, x, x_index, b, a, zi)


@iir_cascade_backward.register_fake
def _(grad_y, grad_zf, x, x_index, b, a, zi):
    return x.new_empty(x.shape), b.new_empty(b.shape), a.new_empty(a.shape), zi.new_empty(zi.shape)


def _setup_context(ctx, inputs, output):
    x, x_index, b, a, zi = inputs
    ctx.save_for_backward(x, x_index, b, a, zi)


def _backward(ctx, grad_y, grad_zf):
    x, x_index, b, a, zi = ctx.saved_tensors
    if grad_y is None:
        grad_y = x.new_zeros((b.shape[0], x.shape[-1]))
    if grad_zf is None:
        grad_zf = zi.new_zeros(zi.shape)
    if torch.is_grad_enabled():
        grads = _backward_composite(grad_y, grad_zf, x, x_index, b, a, zi)
    else:
        grads = iir_cascade_backward(grad_y, grad_zf, x, x_index, b, a, zi)
    grad_x, grad_b, grad_a, grad_zi = grads
    needs = ctx.needs_input_grad
    return (
        grad_x if needs[0] else None,
        None,
        grad_b if needs[2] else None,
        grad_a if needs[3] else None,
        grad_zi if needs[4] else None,
    )


iir_cascade.register_autograd(_backward, setup_context=_setup_context)


def _backward_composite(grad_y, grad_zf, x, x_index, b, a, zi):
    """The same gradients as ``iir_cascade_backward``, built from differentiable ops."""
    return _adjoint.backward(iir_cascade, grad_y, grad_zf, x, x_index, b, a, zi)


# --------------------------------------------------------------------------
# Frame energies (the front-end's smoothing and decimation).


def _frame_energy(y: Tensor, window: Tensor, hop: int, offset: int, n_frames: int, square: bool) -> Tensor:
    """``E[p, f] = sum_i window[i] e(y[p, f hop - offset + i])``; y: (P, T) -> (P, n_frames)."""
    backend = _backend("frame_energy", y.device, window=(window.shape[0], hop, offset))
    return backend.frame_energy(y, window, hop, offset, n_frames, square)


frame_energy = torch.library.custom_op("filterbank::frame_energy", _frame_energy, mutates_args=())


@frame_energy.register_fake
def _(y, window, hop, offset, n_frames, square):
    return y.new_empty((y.shape[0], n_frames))


@torch.library.custom_op("filterbank::frame_energy_backward", mutates_args=())
def frame_energy_backward(grad: Tensor, y: Tensor, window: Tensor, hop: int, offset: int, square: bool) -> Tensor:
    """The gradient of :func:`frame_energy` for ``y``."""
    backend = _backend("frame_energy_backward", y.device, window=(window.shape[0], hop, offset))
    return backend.frame_energy_backward(grad, y, window, hop, offset, square)


@frame_energy_backward.register_fake
def _(grad, y, window, hop, offset, square):
    return y.new_empty(y.shape)


def _frame_setup_context(ctx, inputs, output):
    y, window, hop, offset, n_frames, square = inputs
    ctx.save_for_backward(y, window)
    ctx.options = (hop, offset, n_frames, square)


def _frame_backward(ctx, grad):
    y, window = ctx.saved_tensors
    hop, offset, n_frames, square = ctx.options
    needs_y, needs_window = ctx.needs_input_grad[:2]
    if torch.is_grad_enabled() or needs_window:
        # Differentiable (double backward) or a learnable window: autograd
        # through the pure-torch reference.
        inputs = [t for t, needed in ((y, needs_y), (window, needs_window)) if needed]
        with torch.enable_grad():
            energy = _reference.frame_energy(y, window, hop, offset, n_frames, square)
            grads = iter(torch.autograd.grad(energy, inputs, grad, create_graph=torch.is_grad_enabled()))
        return (next(grads) if needs_y else None), (next(grads) if needs_window else None), None, None, None, None
    return frame_energy_backward(grad, y, window, hop, offset, square), None, None, None, None, None


frame_energy.register_autograd(_frame_backward, setup_context=_frame_setup_context)


# --------------------------------------------------------------------------
# Eager inference.


def _modes_active() -> bool:
    """Whether a dispatch or torch-function mode is on (fake tensors, tracers, FLOP counters ...).

    These are private torch functions (present in 2.11 to 2.13); without
    them, assume a mode could be on and keep to the dispatcher.
    """
    dispatch_depth = getattr(torch._C, "_len_torch_dispatch_stack", None)
    function_modes = getattr(torch._C, "_is_torch_function_mode_enabled", None)
    if dispatch_depth is None or function_modes is None:
        return True
    return bool(dispatch_depth()) or bool(function_modes())


def plain_inference(*tensors: Tensor) -> bool:
    """True when no autograd, tracing or dispatch mode needs to see an op on ``tensors``.

    Then the op's implementation is called directly: the dispatcher's
    custom-op path costs little per call, but its first call imports
    ``torch._dynamo`` (about 1.5 s), which a feature-extraction process
    starting up should not pay.
    """
    if torch.compiler.is_compiling() or _modes_active():
        return False
    grad = torch.is_grad_enabled()
    # Meta tensors go through the dispatcher too, to the fake implementations.
    return all(type(t) is Tensor and t.device.type != "meta" and not (grad and t.requires_grad) for t in tensors)


def call_iir_cascade(x: Tensor, x_index: Tensor, b: Tensor, a: Tensor, zi: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`iir_cascade`, called directly in plain eager inference (same results)."""
    if plain_inference(x, x_index, b, a, zi):
        return _iir_cascade(x, x_index, b, a, zi)
    return iir_cascade(x, x_index, b, a, zi)


def call_frame_energy(y: Tensor, window: Tensor, hop: int, offset: int, n_frames: int, square: bool) -> Tensor:
    """:func:`frame_energy`, called directly in plain eager inference (same results)."""
    if plain_inference(y, window):
        return _frame_energy(y, window, hop, offset, n_frames, square)
    return frame_energy(y, window, hop, offset, n_frames, square)


def iir_cascade_frame_energy(
    x: Tensor, x_index: Tensor, b: Tensor, a: Tensor, zi: Tensor, window: Tensor, hop: int, offset: int,
    n_frames: int, square: bool, limits: Tensor,
) -> Tensor:
    """Frame energies of the filtered channels in one pass, without autograd: (P, n_frames).

    ``frame_energy(iir_cascade(x, x_index, b, a, zi)[0] * (t < limits), ...)``
    with the band signals never stored where a kernel does both (the CPU);
    elsewhere composed from the two ops' kernels.

    Args:
        x, x_index, b, a, zi: as for :func:`iir_cascade`.
        window, hop, offset, n_frames, square: as for :func:`frame_energy`.
        limits: (P,) int64: samples of channel ``p`` at or past
            ``limits[p]`` count as zero (a zero-padded batch).
    """
    _checks.shape("limits", limits, (b.shape[0],), "one per channel")
    backend = _backend("iir_cascade_frame_energy", x.device, b.shape[-1] - 1, (window.shape[0], hop, offset))
    _checks.nonzero("a", a, 0, ("channel", "section"), kernel_reports=x.device.type == "cuda")
    if backend is not _reference:
        return backend.iir_cascade_frame_energy(x, x_index, b, a, zi, window, hop, offset, n_frames, square, limits)
    # No kernel does both here: the two ops' own kernels, one after the other.
    y, _ = _iir_cascade(x, x_index, b, a, zi)
    keep = torch.arange(y.shape[-1], device=y.device) < limits.unsqueeze(-1)
    return _frame_energy(y * keep, window, hop, offset, n_frames, square)


# --------------------------------------------------------------------------
# Band energies for training: filtering and frame energies fused, with a
# backward that recomputes the band signals block by block.


def _band_energy(x: Tensor, x_index: Tensor, b: Tensor, a: Tensor, zi: Tensor, window: Tensor, hop: int,
                 offset: int, n_frames: int, square: bool, limits: Tensor, spacing: int) -> tuple[Tensor, Tensor]:
    """``(energy, checkpoints)``: the energies of :func:`iir_cascade_frame_energy` and, every ``spacing`` samples,
    each section's output history (ceil(time / spacing), S, K, P), from which the backward recomputes the bands."""
    _checks.nonzero("a", a, 0, ("channel", "section"))
    backend = _backend("band_energy", x.device, b.shape[-1] - 1, (window.shape[0], hop, offset))
    return backend.band_energy(x, x_index, b, a, zi, window, hop, offset, n_frames, square, limits, spacing)


band_energy = torch.library.custom_op("filterbank::band_energy", _band_energy, mutates_args=())


@band_energy.register_fake
def _(x, x_index, b, a, zi, window, hop, offset, n_frames, square, limits, spacing):
    n_saved = -(-x.shape[-1] // spacing) if spacing else 0
    return x.new_empty((b.shape[0], n_frames)), x.new_empty((n_saved,) + tuple(zi.shape[1:]) + (b.shape[0],))


@torch.library.custom_op("filterbank::band_energy_backward", mutates_args=())
def band_energy_backward(grad: Tensor, x: Tensor, x_index: Tensor, b: Tensor, a: Tensor, zi: Tensor,
                         checkpoints: Tensor, window: Tensor, hop: int, offset: int, square: bool, limits: Tensor,
                         spacing: int, want_grad_x: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gradients of :func:`band_energy`'s energies for ``x, b, a, zi`` (``grad_x`` empty unless ``want_grad_x``)."""
    backend = _backend("band_energy_backward", x.device, b.shape[-1] - 1, (window.shape[0], hop, offset))
    return backend.band_energy_backward(grad, x, x_index, b, a, zi, checkpoints, window, hop, offset, square, limits,
                                        spacing, want_grad_x)


@band_energy_backward.register_fake
def _(grad, x, x_index, b, a, zi, checkpoints, window, hop, offset, square, limits, spacing, want_grad_x):
    grad_x = x.new_empty(x.shape if want_grad_x else (0,))
    return grad_x, b.new_empty(b.shape), a.new_empty(a.shape), zi.new_empty(zi.shape)


def _band_setup_context(ctx, inputs, output):
    x, x_index, b, a, zi, window, hop, offset, n_frames, square, limits, spacing = inputs
    ctx.save_for_backward(x, x_index, b, a, zi, output[1], window, limits)
    ctx.options = (hop, offset, n_frames, square, spacing)
    ctx.mark_non_differentiable(output[1])


def _band_backward(ctx, grad, _grad_checkpoints):
    x, x_index, b, a, zi, checkpoints, window, limits = ctx.saved_tensors
    hop, offset, n_frames, square, spacing = ctx.options
    needs = ctx.needs_input_grad
    if needs[5]:
        raise RuntimeError("filterbank::band_energy takes no gradient for the window; compose iir_cascade and "
                           "frame_energy for a learnable window")
    if torch.is_grad_enabled():
        # A graph of the backward (double backward): through the two ops' composition.
        wanted = [need for need in (needs[0],) + needs[2:5]]
        with torch.enable_grad():
            y, _ = iir_cascade(x, x_index, b, a, zi)
            keep = torch.arange(y.shape[-1], device=y.device) < limits.unsqueeze(-1)
            energy = frame_energy(y * keep, window, hop, offset, n_frames, square)
            inputs = [t for t, need in zip((x, b, a, zi), wanted) if need]
            found = iter(torch.autograd.grad(energy, inputs, grad, create_graph=True))
        grads = [next(found) if need else None for need in wanted]
    else:
        grads = band_energy_backward(grad.contiguous(), x, x_index, b, a, zi, checkpoints, window, hop, offset,
                                     square, limits, spacing, needs[0])
    grad_x, grad_b, grad_a, grad_zi = grads
    return (grad_x if needs[0] else None, None, grad_b if needs[2] else None, grad_a if needs[3] else None,
            grad_zi if needs[4] else None, None, None, None, None, None, None, None)


band_energy.register_autograd(_band_backward, setup_context=_band_setup_context)


def fuses_band_energy(device: torch.device, order: int, window: Tensor, hop: int, offset: int) -> bool:
    """Whether :func:`call_band_energy` runs fused kernels here: the CPU, a window they take, not learnable."""
    return (device.type == "cpu" and _cpu.fits_window(window.shape[0], hop, offset)
            and _cpu.supports("band_energy", order) and not window.requires_grad)


def call_band_energy(x: Tensor, x_index: Tensor, b: Tensor, a: Tensor, zi: Tensor, window: Tensor, hop: int,
                     offset: int, n_frames: int, square: bool, limits: Tensor) -> Tensor:
    """Frame energies of the filtered channels (P, n_frames), where :func:`fuses_band_energy` holds.

    In plain inference :func:`iir_cascade_frame_energy`; otherwise the
    differentiable :func:`band_energy`, whose memory is that of the input,
    the energies and a few states every few hundred samples, never that
    of the band signals.
    """
    if plain_inference(x, x_index, b, a, zi, window):
        return iir_cascade_frame_energy(x, x_index, b, a, zi, window, hop, offset, n_frames, square, limits)
    return band_energy(x, x_index, b, a, zi, window, hop, offset, n_frames, square, limits,
                       checkpoint_spacing(x.shape[0], b.shape[0], b.shape[1], b.shape[-1] - 1))[0]


def checkpoint_spacing(n_rows: int, n_channels: int, n_sections: int, order: int) -> int:
    """Samples between :func:`band_energy`'s checkpoints: a multiple of the CPU kernels' block that keeps them at
    most half the input's size (each saves ``n_sections * order`` values per channel; the backward then
    recomputes each stretch between two once, forwards, before going back over it)."""
    block = _cpu.checkpoint_block(order)
    per_sample = 2 * n_channels * n_sections * order / max(n_rows, 1)  # checkpoint values per input sample, x2
    return block * max(1, -(-int(per_sample) // block))


def stream_band_energy(x: Tensor, sos: Tensor, zi: Tensor, history: Tensor, window: Tensor, hop: int,
                       n_frames: int, square: bool, compression: Optional[str], floor: float, power: float,
                       ) -> tuple[Tensor, Tensor, Tensor]:
    """One streaming step of a front-end, without autograd: ``(features, zf, bands)``.

    Shapes in ``filterbank.kernels.reference``. The CPU kernel does it in one
    call (and reports a zero ``a[..., 0]`` itself); elsewhere the reference's
    composition runs on the two ops' own kernels.
    """
    backend = _backend("stream_band_energy", x.device, sos.shape[-1] // 2 - 1, (window.shape[0], hop, 0))
    if backend is _reference:
        return _reference.stream_band_energy(x, sos, zi, history, window, hop, n_frames, square, compression, floor,
                                             power, cascade=_iir_cascade, frames=_frame_energy)
    return backend.stream_band_energy(x, sos, zi, history, window, hop, n_frames, square, compression, floor, power)
