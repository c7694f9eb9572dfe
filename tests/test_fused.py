"""The fused filter-and-frame-energy kernel (kernels/_fused.py) against the reference, and FrontEnd's use of it."""

from __future__ import annotations

import pytest
import torch

from filterbank import _ops, features, nn
from filterbank.features import smoothing_window
from filterbank.functional import sosfilt
from filterbank.kernels import cpu, reference
from helpers import HARD_SECTIONS, bank_of
from test_kernels import make_case


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-13), (torch.float32, 2e-6)])
@pytest.mark.parametrize("n_rows, n_channels, n_sections, n_time, hop, pattern", [
    (1, 64, 1, 4000, 160, "shared"),     # a bank over one signal: shared-input tiles
    (3, 70, 2, 1111, 80, "mixed"),       # partial tiles, cascades, a length off the hop grid
    (5, 5, 1, 333, 64, "distinct"),
    (2, 9, 3, 50, 160, "mixed"),         # shorter than a hop
    (2, 4, 1, 129, 1, "shared"),         # hop 1
])
@pytest.mark.parametrize("square", [True, False])
def test_kernel_matches_the_unfused_kernels(rng, dtype, tolerance, n_rows, n_channels, n_sections, n_time, hop,
                                            pattern, square):
    x, x_index, b, a, zi = make_case(rng, n_rows, n_channels, n_sections, 2, n_time, pattern, dtype=dtype)
    zi = zi * 0.5
    window = smoothing_window(hop, dtype=dtype)
    n_frames = 1 + n_time // hop
    limits = torch.tensor(rng.integers(0, n_time + 1, n_channels))
    limits[0] = n_time
    arguments = (x, x_index, b, a, zi, window, hop, window.shape[0] // 2, n_frames, square, limits)
    got = cpu.iir_cascade_frame_energy(*arguments)
    expected = reference.iir_cascade_frame_energy(*arguments)
    assert got.shape == expected.shape == (n_channels, n_frames) and got.dtype == dtype
    assert (got - expected).abs().max() <= tolerance * expected.abs().max()


def test_kernel_edges(rng):
    x, x_index, b, a, zi = make_case(rng, 2, 3, 1, 2, 0, "mixed")
    window = smoothing_window(4, dtype=torch.float64)
    energy = cpu.iir_cascade_frame_energy(x, x_index, b, a, zi, window, 4, 4, 1, True, torch.zeros(3, dtype=torch.long))
    assert energy.shape == (3, 1) and (energy == 0).all()
    x, x_index, b, a, zi = make_case(rng, 2, 3, 1, 2, 40, "mixed")
    with pytest.raises(ValueError, match=r"limits must have shape \(3,\) \(one per channel\); got \(2,\)"):
        _ops.iir_cascade_frame_energy(x, x_index, b, a, zi, window, 4, 4, 11, True, torch.zeros(2, dtype=torch.long))


def _banks():
    return [nn.BiquadFilterbank(24, 16000, dtype=torch.float64),
            nn.GammatoneFilterbank(10, 16000, dtype=torch.float64),
            nn.IIRFilterbank(12, 16000, n_sections=3, dtype=torch.float64)]


@pytest.mark.parametrize("bank", _banks(), ids=["biquad", "gammatone", "iir"])
@pytest.mark.parametrize("compression, energy", [("log", "square"), ("pcen", "abs"), (None, "square")])
@pytest.mark.parametrize("shape", [(900,), (3, 900), (2, 2, 901)])
def test_front_end_inference_uses_the_fused_kernel_with_the_same_features(monkeypatch, bank, compression, energy,
                                                                         shape):
    front_end = nn.FrontEnd(sample_rate=16000, hop_length=80, filterbank=bank, compression=compression,
                            energy=energy, dtype=torch.float64)
    x = torch.randn(shape, dtype=torch.float64)
    trained = front_end(x)                          # parameters need gradients: the unfused path
    calls = []
    original = cpu.iir_cascade_frame_energy
    monkeypatch.setattr(cpu, "iir_cascade_frame_energy", lambda *a: calls.append(1) or original(*a))
    with torch.no_grad():
        inferred = front_end(x)
        if len(shape) > 1:
            lengths = torch.tensor([shape[-1] - 7 * i for i in range(shape[0])])
            padded = front_end(x, lengths)
    assert calls == [1] * (1 if len(shape) == 1 else 2)
    torch.testing.assert_close(inferred, trained.detach(), rtol=1e-10, atol=1e-12)
    if len(shape) > 1:
        with torch.enable_grad():
            expected = front_end(x, lengths).detach()
        torch.testing.assert_close(padded, expected, rtol=1e-10, atol=1e-12)


def test_fused_inference_kernel_is_left_when_a_gradient_or_a_trace_needs_the_ops(monkeypatch):
    front_end = nn.FrontEnd(n_filters=8, sample_rate=8000, hop_length=40)
    x = torch.randn(2, 400)
    expected = front_end(x).detach()
    monkeypatch.setattr(cpu, "iir_cascade_frame_energy", lambda *a: pytest.fail("the inference kernel ran"))
    trained = []
    original = cpu.band_energy_backward
    monkeypatch.setattr(cpu, "band_energy_backward", lambda *a: trained.append(1) or original(*a))
    front_end(x).sum().backward()                                  # learnable filters: the training op
    assert front_end.filterbank.raw_frequency.grad is not None and trained == [1]
    compiled = torch.compile(front_end, fullgraph=True, backend="eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), expected)          # traced: the custom ops, not the fused kernel


# --------------------------------------------------------------------------
# Training: filterbank::band_energy and its backward.


def _training_case(rng, dtype, n_rows, n_channels, n_sections, order, n_time, hop, pattern):
    x, x_index, b, a, zi = make_case(rng, n_rows, n_channels, n_sections, order, n_time, pattern, dtype=dtype)
    window = smoothing_window(hop, dtype=dtype)
    limits = torch.tensor(rng.integers(0, n_time + 1, n_channels))
    if n_channels:
        limits[0] = n_time
    return x, x_index, b, a, zi * 0.5, window, limits


def _relative(got, want):
    scale = want.abs().max()
    return float((got - want).abs().max() / scale) if scale > 0 else float((got - want).abs().max())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("n_rows, n_channels, n_sections, order, n_time, hop, pattern", [
    (1, 64, 1, 2, 3000, 160, "shared"),   # a bank over one signal: shared-input tiles
    (3, 70, 2, 2, 1111, 80, "mixed"),     # partial tiles, cascades, a length off the hop and block grids
    (5, 5, 1, 2, 333, 64, "distinct"),
    (2, 9, 3, 2, 50, 160, "mixed"),       # shorter than a hop and a block
    (2, 4, 1, 2, 129, 1, "shared"),       # hop 1
    (2, 6, 2, 1, 700, 50, "mixed"),       # first order
    (2, 6, 1, 4, 700, 50, "distinct"),    # fourth order
])
@pytest.mark.parametrize("square", [True, False])
@pytest.mark.parametrize("blocks_apart", [1, 3])
def test_training_kernels_match_the_reference(rng, dtype, n_rows, n_channels, n_sections, order, n_time, hop, pattern,
                                              square, blocks_apart):
    x, x_index, b, a, zi, window, limits = _training_case(rng, dtype, n_rows, n_channels, n_sections, order, n_time,
                                                          hop, pattern)
    n_frames, offset = 1 + n_time // hop, window.shape[0] // 2
    spacing = blocks_apart * cpu.checkpoint_block(order)
    forward = (x, x_index, b, a, zi, window, hop, offset, n_frames, square, limits, spacing)
    energy, checkpoints = cpu.band_energy(*forward)
    want_energy, want_checkpoints = reference.band_energy(*forward)
    assert checkpoints.shape == want_checkpoints.shape == (-(-n_time // spacing), n_sections, order, n_channels)
    tolerance = 1e-12 if dtype == torch.float64 else 2e-5
    assert _relative(energy, want_energy) <= tolerance
    assert _relative(checkpoints, want_checkpoints) <= tolerance
    grad = torch.randn(energy.shape, dtype=dtype)
    backward = (grad, x, x_index, b, a, zi, checkpoints, window, hop, offset, square, limits, spacing)
    for want_grad_x in (True, False):
        got = cpu.band_energy_backward(*backward, want_grad_x)
        want = reference.band_energy_backward(*backward, want_grad_x)
        for name, g, w in zip(("x", "b", "a", "zi"), got, want):
            assert g.shape == w.shape and g.dtype == dtype
            if g.numel():
                assert _relative(g, w) <= (1e-11 if dtype == torch.float64 else 2e-4), name
        assert got[0].shape == (x.shape if want_grad_x else (0,))
    # Without checkpoints the backward runs the forward over the whole signal first: the same gradients.
    again = cpu.band_energy_backward(grad, x, x_index, b, a, zi, checkpoints[:0], window, hop, offset, square,
                                     limits, spacing, True)
    for g, w in zip(again, cpu.band_energy_backward(*backward, True)):
        assert _relative(g, w) <= tolerance


@pytest.mark.parametrize("name, sections", [HARD_SECTIONS[i] for i in (0, 3, 12, 16, 18)])
def test_training_kernels_on_hard_filters(name, sections):
    # Poles near the unit circle and low bands, over a long signal: float64
    # against the reference composition built from the sequential kernels.
    n_time, hop = 40000, 80
    b, a, zi = bank_of([(name, sections)], torch.float64)
    x = torch.randn(1, n_time, dtype=torch.float64)
    x_index = torch.zeros(1, dtype=torch.long)
    window = smoothing_window(hop, dtype=torch.float64)
    limits = torch.tensor([n_time - 333])
    arguments = (window, hop, hop, 1 + n_time // hop, True, limits)
    spacing = 2 * cpu.checkpoint_block(2)
    energy, checkpoints = cpu.band_energy(x, x_index, b, a, zi, *arguments, spacing)
    leaves = [t.clone().requires_grad_() for t in (x, b, a)]
    y, _ = _ops.iir_cascade(leaves[0], x_index, leaves[1], leaves[2], zi)
    want = features_frame_energy(y * (torch.arange(n_time) < limits[0]), window, hop)
    assert _relative(energy, want.detach()) <= 1e-10
    grad = torch.randn(energy.shape, dtype=torch.float64)
    grads = cpu.band_energy_backward(grad, x, x_index, b, a, zi, checkpoints, window, hop, hop, True, limits,
                                     spacing, True)
    wanted = torch.autograd.grad(want, leaves, grad)
    for got_grad, want_grad in zip(grads, wanted):
        assert _relative(got_grad, want_grad) <= 1e-10, name


def features_frame_energy(bands, window, hop):
    return _ops.frame_energy(bands, window, hop, window.shape[0] // 2, 1 + bands.shape[-1] // hop, True)


def test_training_ops_gradcheck_and_opcheck(rng):
    x, x_index, b, a, zi, window, limits = _training_case(rng, torch.float64, 2, 5, 2, 2, 300, 40, "mixed")
    block = 2 * cpu.checkpoint_block(2)

    def energies(x, b, a, zi):
        return _ops.band_energy(x, x_index, b, a, zi, window, 40, 40, 8, True, limits, block)[0]

    leaves = [t.clone().requires_grad_() for t in (x, b, a, zi)]
    assert torch.autograd.gradcheck(energies, leaves)
    assert torch.autograd.gradgradcheck(energies, leaves)
    torch.library.opcheck(torch.ops.filterbank.band_energy.default,
                          (x, x_index, b, a, zi, window, 40, 40, 8, True, limits, block))
    energy, checkpoints = _ops.band_energy(x, x_index, b, a, zi, window, 40, 40, 8, True, limits, block)
    torch.library.opcheck(torch.ops.filterbank.band_energy_backward.default,
                          (torch.ones_like(energy), x, x_index, b, a, zi, checkpoints, window, 40, 40, True, limits,
                           block, True))


def test_training_op_refuses_a_learnable_window(rng):
    x, x_index, b, a, zi, window, limits = _training_case(rng, torch.float64, 1, 2, 1, 2, 100, 20, "shared")
    window = window.clone().requires_grad_()
    energy = _ops.band_energy(x, x_index, b.requires_grad_(), a, zi, window, 20, 20, 6, True, limits, 128)[0]
    with pytest.raises(RuntimeError, match="no gradient for the window"):
        energy.sum().backward()
    # features.band_energy composes iir_cascade and frame_energy instead.
    sos = torch.cat([b, a], -1).detach().requires_grad_()
    energies = features.band_energy(sos, x[0], 20, window=window)
    energies.sum().backward()
    assert window.grad is not None and sos.grad is not None


@pytest.mark.parametrize("bank", _banks(), ids=["biquad", "gammatone", "iir"])
@pytest.mark.parametrize("compression, energy", [("log", "square"), ("pcen", "abs")])
@pytest.mark.parametrize("shape, padded", [((900,), False), ((3, 900), True), ((2, 2, 901), True)])
def test_front_end_training_matches_the_unfused_composition(bank, compression, energy, shape, padded):
    front_end = nn.FrontEnd(sample_rate=16000, hop_length=80, filterbank=bank, compression=compression,
                            energy=energy, dtype=torch.float64)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([shape[-1] - 7 * i for i in range(shape[0])]) if padded else None
    parameters = [p for p in front_end.parameters() if p.requires_grad]

    def unfused():
        bands = sosfilt(front_end.filterbank.sos(), x.unsqueeze(-2))
        if lengths is not None:
            bands = features.zero_after(bands, lengths)
        frames = features.frame_energy(bands, 80, energy=energy, window=front_end.window)
        result = front_end._compress(frames, None)[0]
        return result if lengths is None else features.zero_after(result, 1 + lengths // 80)

    expected = unfused()
    out = front_end(x, lengths)
    weights = torch.randn_like(out)
    got = torch.autograd.grad((out * weights).sum(), parameters + [x])
    want = torch.autograd.grad((expected * weights).sum(), parameters + [x])
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-12)
    for g, w in zip(got, want):
        assert _relative(g, w) <= 1e-10


def test_front_end_training_saves_no_band_signals():
    # What autograd keeps for the backward: the input, energies and small
    # states, never a (batch, n_filters, time) tensor.
    front_end = nn.FrontEnd(n_filters=40, sample_rate=8000, hop_length=80, compression="log")
    x = torch.randn(8, 8000)
    saved = []

    def pack(tensor):
        saved.append(tensor.numel() * tensor.element_size())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = front_end(x)
    out.sum().backward()
    bands_bytes = 8 * 40 * 8000 * 4
    assert max(saved) < bands_bytes / 10
    assert sum(saved) <= 3 * (x.numel() + out.numel()) * 4


@pytest.mark.parametrize("order", [1, 3, 4])
def test_kernel_other_orders(rng, order):
    x, x_index, b, a, zi = make_case(rng, 2, 20, 2, order, 700, "mixed")
    window = smoothing_window(50, dtype=torch.float64)
    limits = torch.tensor(rng.integers(0, 701, 20))
    arguments = (x, x_index, b, a, zi, window, 50, 50, 15, True, limits)
    expected = reference.iir_cascade_frame_energy(*arguments)
    assert (cpu.iir_cascade_frame_energy(*arguments) - expected).abs().max() <= 1e-13 * expected.abs().max()


@pytest.mark.parametrize("shape", [(2, 0), (0, 100), (0, 2, 100), (2, 3, 0)])
def test_front_end_inference_on_empty_inputs(shape):
    front_end = nn.FrontEnd(n_filters=4, sample_rate=8000, hop_length=40)
    x = torch.zeros(shape)
    expected = front_end(x).detach()                 # the unfused path
    with torch.no_grad():
        got = front_end(x)
    assert got.shape == expected.shape == shape[:-1] + (4, 1 + shape[-1] // 40)
    torch.testing.assert_close(got, expected)
    if shape[0] == 0:
        with torch.no_grad():
            assert front_end(x, torch.zeros(0, dtype=torch.long)).shape == expected.shape
