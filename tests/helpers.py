"""Shared test helpers: random stable filters, tolerances, devices.

Tolerance table (one place; every comparison in the suite uses it):

* float64 against scipy or the reference: ``max|out - ref| <= 1e-10 * max|ref|``.
* float32: ``max|out - ref64| <= max(4 * e32, 1e-5 * max|ref64|)``, where
  ``e32`` is the error of the same-dtype pure-torch reference against float64
  (low precision is judged by a ratio, as in flash-attention's tests).
* float16/bfloat16 (computed in float32, rounded once at the end): the error of
  rounding the float64 result to that dtype, times 2, plus the float32 bound.
* Gradients in float32: the float32 bound, scaled by the largest gradient.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import torch

TOLERANCE = {
    torch.float64: 1e-10,
    torch.float32: 1e-5,
}
LOW_PRECISION_RATIO = 4.0

DEVICES = [
    pytest.param("cpu"),
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")),
]


def random_poles(rng: np.random.Generator, order: int, max_radius: float = 0.95) -> np.ndarray:
    """Poles of a real stable filter: conjugate pairs plus one real pole if odd."""
    n_pairs = order // 2
    radius = rng.uniform(0.1, max_radius, n_pairs)
    angle = rng.uniform(0.05, np.pi - 0.05, n_pairs)
    pairs = radius * np.exp(1j * angle)
    poles = np.concatenate([pairs, pairs.conj()])
    if order % 2:
        poles = np.append(poles, rng.uniform(-max_radius, max_radius))
    return poles


def random_filter(rng: np.random.Generator, n_b: int, n_a: int, max_radius: float = 0.95):
    """Random stable ``(b, a)`` with ``len(b) == n_b``, ``len(a) == n_a`` and a[0] != 1."""
    a = np.real(np.poly(random_poles(rng, n_a - 1, max_radius))) if n_a > 1 else np.ones(1)
    a = a * rng.uniform(0.5, 2.0) * rng.choice([-1, 1])
    b = rng.standard_normal(n_b)
    return b, a


def random_sos(rng: np.random.Generator, n_sections: int, max_radius: float = 0.95) -> np.ndarray:
    sections = []
    for _ in range(n_sections):
        b, a = random_filter(rng, 3, 3, max_radius)
        sections.append(np.concatenate([b, a]))
    return np.array(sections)


def scale(reference: torch.Tensor) -> float:
    return float(reference.abs().max()) if reference.numel() else 0.0


def assert_close64(out: torch.Tensor, reference: torch.Tensor, what: str = "") -> None:
    """float64 comparison: max abs error within 1e-10 of the reference's scale."""
    out = torch.as_tensor(out).double().cpu()
    reference = torch.as_tensor(reference).double().cpu()
    assert out.shape == reference.shape, f"{what}: shape {tuple(out.shape)} != {tuple(reference.shape)}"
    error = float((out - reference).abs().max()) if out.numel() else 0.0
    assert error <= TOLERANCE[torch.float64] * max(scale(reference), 1e-300), (
        f"{what}: max error {error:.3e} exceeds 1e-10 x scale {scale(reference):.3e}"
    )


def assert_close_low(out: torch.Tensor, reference64: torch.Tensor, same_dtype_reference: torch.Tensor, what=""):
    """Low-precision comparison by ratio to the same-dtype reference's error."""
    out = out.double().cpu()
    reference64 = reference64.double().cpu()
    assert out.shape == reference64.shape, f"{what}: shape {tuple(out.shape)} != {tuple(reference64.shape)}"
    if not out.numel():
        return
    assert torch.isfinite(out).all(), f"{what}: non-finite values"
    error = float((out - reference64).abs().max())
    reference_error = float((same_dtype_reference.double().cpu() - reference64).abs().max())
    bound = max(LOW_PRECISION_RATIO * reference_error, TOLERANCE[torch.float32] * scale(reference64))
    assert error <= bound, f"{what}: error {error:.3e} > bound {bound:.3e} (same-dtype reference error {reference_error:.3e})"


def normalised_sos(sos: np.ndarray) -> np.ndarray:
    """scipy's sosfilt wants a0 == 1 in each section; filterbank divides by it."""
    return np.concatenate([sos[..., :3] / sos[..., 3:4], sos[..., 3:] / sos[..., 3:4]], axis=-1)


class EmulatedKernels:
    """``filterbank.kernels.cuda`` run on CPU threads: the csrc/ kernels compiled as C++ (emulation.h).

    Same functions as the kernel modules, on CPU tensors. The emulated
    extension stands in for the CUDA one only during each call, so a real
    GPU in the same process keeps its own.
    """

    def __init__(self):
        from filterbank.kernels import cuda

        self.cuda = cuda
        self.extension = cuda.build_emulated()

    def _call(self, name, *args):
        saved, self.cuda._extension = self.cuda._extension, self.extension
        try:
            return getattr(self.cuda, name)(*args)
        finally:
            self.cuda._extension = saved

    def iir_cascade(self, *args):
        return self._call("iir_cascade", *args)

    def iir_cascade_backward(self, *args):
        return self._call("iir_cascade_backward", *args)


_emulated_kernels = None


def emulated_kernels() -> EmulatedKernels:
    """The one instance (the build takes a while the first time, then torch's cache has it)."""
    global _emulated_kernels
    if _emulated_kernels is None:
        _emulated_kernels = EmulatedKernels()
    return _emulated_kernels


# --------------------------------------------------------------------------
# Hard filters for the kernels' numerics: poles at the unit circle, low bands
# (16 kHz), as (name, sos (S, 6)).

FS = 16000


def _bandpass(f0, q):
    w0 = 2 * np.pi * f0 / FS
    alpha = np.sin(w0) / (2 * q)
    b = np.array([alpha, 0.0, -alpha])
    a = np.array([1 + alpha, -2 * np.cos(w0), 1 - alpha])
    return np.concatenate([b, a]) / a[0]


def _resonator(radius, angle):
    pole = radius * np.exp(1j * angle)
    a = np.real(np.poly([pole, pole.conj()]))
    return np.concatenate([[1 - radius, 0.0, 0.0], a])


HARD_SECTIONS = (
    [(f"butter2 low {f} Hz", scipy.signal.butter(2, f, fs=FS, output="sos")) for f in (5, 20, 50)]
    + [(f"bandpass {f} Hz Q {q}", _bandpass(f, q)[None]) for f in (40, 120, 300, 480) for q in (4, 8, 20)]
    + [(f"pole |p| = 1 - {1 - r:.0e} at {angle}", _resonator(r, angle)[None])
       for r in (1 - 1e-3, 1 - 1e-4) for angle in (1e-3, 0.02, 1.0)]
    + [("butter4 low 30 Hz (2 sections)", scipy.signal.butter(4, 30, fs=FS, output="sos")),
       ("butter4 high 20 Hz (2 sections)", scipy.signal.butter(4, 20, "high", fs=FS, output="sos")),
       ("butter8 low 40 Hz (4 sections)", scipy.signal.butter(8, 40, fs=FS, output="sos")),
       ("butter2 low 7990 Hz", scipy.signal.butter(2, 7990, fs=FS, output="sos"))]
)


def bank_of(cases, dtype):
    """Coefficients ``b, a`` (P, S, 3) and ``zi``, one channel per case; cascades padded with unit sections."""
    n_sections = max(sos.shape[0] for _, sos in cases)
    unit = np.array([1.0, 0, 0, 1.0, 0, 0])
    sos = np.stack([np.concatenate([s, np.tile(unit, (n_sections - s.shape[0], 1))]) for _, s in cases])
    b = torch.tensor(sos[..., :3], dtype=dtype)
    a = torch.tensor(sos[..., 3:], dtype=dtype)
    return b, a, torch.zeros(len(cases), n_sections, 2, dtype=dtype)


def relative_error(got, want):
    return float((got.double() - want).abs().max() / want.abs().max())


