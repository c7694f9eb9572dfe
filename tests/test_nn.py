"""Learnable filterbanks and the front-end (filterbank.nn)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import filterbank
from filterbank import design, features, nn

KINDS = ["bandpass", "bandpass_skirt", "lowpass", "highpass", "notch", "allpass", "peaking", "lowshelf", "highshelf"]


def all_banks():
    return {
        **{f"biquad-{kind}": nn.BiquadFilterbank(6, 16000, kind=kind,
                                                  learn=("frequency", "q", "gain") if kind in ("peaking", "lowshelf",
                                                                                              "highshelf") else
                                                  ("frequency", "q"), gain_db=6.0) for kind in KINDS},
        "biquad-cascade": nn.BiquadFilterbank(5, 8000, n_sections=3, scale="erb"),
        "gammatone": nn.GammatoneFilterbank(5, 16000),
        "iir": nn.IIRFilterbank(4, 16000, n_sections=3),
    }


@pytest.mark.parametrize("name", list(all_banks()))
@pytest.mark.parametrize("shape", [(300,), (2, 300), (2, 3, 300)])
def test_filterbank_shapes(name, shape):
    bank = all_banks()[name]
    y = bank(torch.randn(shape))
    assert y.shape == shape[:-1] + (bank.n_filters, 300)
    assert torch.isfinite(y).all()
    frequencies, magnitude = bank.responses(256)
    assert frequencies.shape == (256,) and magnitude.shape == (bank.n_filters, 256)


@pytest.mark.parametrize("name", list(all_banks()))
def test_stable_after_wild_parameter_updates(name):
    bank = all_banks()[name]
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in bank.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 1e3)
    sos = bank.sos().detach().double()
    for a in sos[..., 3:].reshape(-1, 3).numpy():
        assert np.all(np.abs(np.roots(a)) < 1), f"unstable section {a}"
    assert torch.isfinite(bank(torch.randn(2, 2000))).all()
    if hasattr(bank, "centre_hz"):
        assert bool(((bank.centre_hz > 0) & (bank.centre_hz < bank.sample_rate / 2)).all())


@pytest.mark.parametrize("bank", [nn.BiquadFilterbank(24, 16000, scale="mel"), nn.GammatoneFilterbank(24, 16000)],
                         ids=["biquad", "gammatone"])
def test_a_sine_lights_the_nearest_channel(bank):
    centres = bank.centre_hz.detach()
    t = torch.arange(16000) / 16000
    for index in (3, 10, 20):
        tone = torch.sin(2 * math.pi * float(centres[index]) * 1.01 * t)
        energy = bank(tone)[:, 4000:].square().mean(-1)
        nearest = int((centres - float(centres[index]) * 1.01).abs().argmin())
        assert int(energy.argmax()) == nearest


def test_bandpass_bank_has_unit_gain_at_its_centres():
    bank = nn.BiquadFilterbank(8, 16000)
    _, response = design.sosfreqz(bank.sos().detach().double(), sample_rate=16000.0,
                                  frequencies=bank.centre_hz.detach().double()[:, None])
    torch.testing.assert_close(response.abs().squeeze(-1), torch.ones(8, dtype=torch.float64), rtol=1e-5, atol=0)


def test_iir_bank_starts_at_unit_gain_at_its_centres():
    bank = nn.IIRFilterbank(6, 16000, n_sections=2)
    centres = design.centre_frequencies(6, 30.0, 0.95 * 8000, scale="mel", dtype=torch.float64)
    _, response = design.sosfreqz(bank.sos().detach().double(), sample_rate=16000.0, frequencies=centres[:, None])
    torch.testing.assert_close(response.abs().squeeze(-1), torch.ones(6, dtype=torch.float64), rtol=1e-4, atol=0)


def test_system_identification_recovers_centre_frequencies():
    # A learner bank, started off by a quarter octave, fits the band
    # energies of a target bank on white noise: 200 Adam steps suffice.
    torch.manual_seed(0)
    target = nn.BiquadFilterbank(4, 8000, f_min=300, f_max=2500, q=4.0, learn=())
    learner = nn.BiquadFilterbank(4, 8000, f_min=300 * 2**0.25, f_max=2500 * 2**-0.25, q=4.0, learn=("frequency",))
    noise = torch.randn(4, 4000)
    with torch.no_grad():
        wanted = features.frame_energy(target(noise), 80)
    optimiser = torch.optim.Adam(learner.parameters(), lr=0.05)
    for _ in range(200):
        optimiser.zero_grad()
        got = features.frame_energy(learner(noise), 80)
        loss = (torch.log(got + 1e-6) - torch.log(wanted + 1e-6)).square().mean()
        loss.backward()
        optimiser.step()
    error_octaves = torch.log2(learner.centre_hz / target.centre_hz).abs().max()
    assert float(error_octaves) < 0.02, f"centres off by {float(error_octaves):.3f} octaves: {learner.centre_hz}"


@pytest.mark.parametrize("compression", ["log", "power", "pcen", None])
@pytest.mark.parametrize("shape", [(1601,), (2, 1600), (2, 2, 1600)])
def test_front_end_shapes_like_mel_spectrogram(compression, shape):
    front_end = nn.FrontEnd(n_filters=16, sample_rate=16000, hop_length=160, compression=compression)
    out = front_end(torch.randn(shape))
    assert out.shape == shape[:-1] + (16, 1 + shape[-1] // 160)
    assert torch.isfinite(out).all()


def test_front_end_is_the_composition_of_its_parts():
    front_end = nn.FrontEnd(n_filters=8, sample_rate=8000, hop_length=80, compression="log")
    x = torch.randn(3, 2000)
    bands = filterbank.sosfilt(front_end.filterbank.sos(), x.unsqueeze(-2))
    expected = torch.log(features.frame_energy(bands, 80) + 1e-6)
    torch.testing.assert_close(front_end(x), expected)


def test_front_end_learns_every_parameter():
    front_end = nn.FrontEnd(n_filters=8, sample_rate=8000, hop_length=80, compression="pcen")
    front_end(torch.randn(2, 2000)).square().mean().backward()
    for name, parameter in front_end.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_modules_move_between_dtypes():
    front_end = nn.FrontEnd(n_filters=6, sample_rate=8000, hop_length=80, compression="pcen").double()
    out = front_end(torch.randn(2, 800, dtype=torch.float64))
    assert out.dtype == torch.float64
    with pytest.raises(TypeError, match=r"has dtype torch.float64 but x has dtype torch.float32"):
        front_end(torch.randn(2, 800))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_modules_move_to_cuda():
    front_end = nn.FrontEnd(n_filters=6, sample_rate=8000, hop_length=80)
    x = torch.randn(2, 800)
    expected = front_end(x)
    torch.testing.assert_close(front_end.cuda()(x.cuda()).cpu(), expected, rtol=1e-4, atol=1e-4)


def test_modules_compile_without_graph_breaks():
    torch._dynamo.reset()
    front_end = nn.FrontEnd(n_filters=6, sample_rate=8000, hop_length=80, compression="pcen")
    x = torch.randn(2, 800)
    compiled = torch.compile(front_end, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x), front_end(x))
    compiled(x).sum().backward()
    assert front_end.filterbank.raw_frequency.grad is not None


@pytest.mark.parametrize("make, error, message", [
    (lambda: nn.BiquadFilterbank(4, 16000, kind="comb"), ValueError, r"kind must be one of .* got 'comb'"),
    (lambda: nn.BiquadFilterbank(4, 16000, learn=("gain",)), ValueError, r"kind 'bandpass' has no gain to learn"),
    (lambda: nn.BiquadFilterbank(4, 16000, learn=("width",)), ValueError, r"learn takes .* got \['width'\]"),
    (lambda: nn.BiquadFilterbank(0, 16000), ValueError, r"n_filters must be an int >= 1; got 0"),
    (lambda: nn.BiquadFilterbank(4, -1), ValueError, r"sample_rate must be a positive number of Hz; got -1"),
    (lambda: nn.BiquadFilterbank(4, 16000, f_min=5000, f_max=4000), ValueError,
     r"need 0 < f_min < f_max < sample_rate / 2 = 8000 Hz; got f_min=5000, f_max=4000"),
    (lambda: nn.BiquadFilterbank(4, 16000, q=0.0), ValueError, r"q must lie in \(0.05, 50\) \(q_max\); got values in \[0, 0\]"),
    (lambda: nn.BiquadFilterbank(4, 16000, kind="peaking", gain_db=60.0), ValueError, r"gain_db must lie in"),
    (lambda: nn.IIRFilterbank(4, 16000, max_radius=1.0), ValueError, r"max_radius must lie in \(0, 1\); got 1.0"),
    (lambda: nn.FrontEnd(compression="mu-law"), ValueError, r"compression must be .* got 'mu-law'"),
    (lambda: nn.FrontEnd(hop_length=0), ValueError, r"hop_length must be an int >= 1; got 0"),
    (lambda: nn.FrontEnd(sample_rate=8000, filterbank=nn.BiquadFilterbank(4, 16000)), ValueError,
     r"the filterbank's sample_rate \(16000\) differs from the front-end's \(8000\)"),
    (lambda: nn.BiquadFilterbank(4, 16000)(torch.ones(1, 2, 3, 4)), ValueError,
     r"x must have shape \(time\), \(batch, time\) or \(batch, channels, time\); got \(1, 2, 3, 4\)"),
    (lambda: nn.BiquadFilterbank(4, 16000)([0.0, 1.0]), TypeError, r"x must be a torch.Tensor; got list"),
])
def test_errors(make, error, message):
    with pytest.raises(error, match=message):
        make()


@pytest.mark.parametrize("make, learnt, frozen", [
    (lambda: nn.BiquadFilterbank(4, 16000, kind="peaking", learn=("gain",)), {"raw_gain"}, {"raw_frequency", "raw_q"}),
    (lambda: nn.GammatoneFilterbank(4, 16000, learn=()), set(), {"raw_frequency"}),
    (lambda: nn.IIRFilterbank(4, 16000, learn=("zeros", "gain")), {"raw_numerator", "raw_gain"}, {"raw_radius", "raw_angle"}),
    (lambda: nn.IIRFilterbank(4, 16000), {"raw_radius", "raw_angle", "raw_numerator", "raw_gain"}, set()),
    (lambda: nn.FrontEnd(n_filters=4, compression="pcen", learn=("alpha",), filterbank=nn.BiquadFilterbank(4, 16000,
                                                                                                           learn=())),
     {"raw_alpha"}, {"raw_smooth", "raw_delta", "raw_root"}),
    (lambda: nn.FrontEnd(n_filters=4, compression="pcen"),
     {"raw_smooth", "raw_alpha", "raw_delta", "raw_root", "filterbank.raw_frequency", "filterbank.raw_q"}, set()),
])
def test_learn_chooses_the_parameters_of_every_module(make, learnt, frozen):
    module = make()
    assert {name for name, _ in module.named_parameters()} == learnt
    assert frozen <= {name for name, _ in module.named_buffers()}


@pytest.mark.parametrize("make, message", [
    (lambda: nn.IIRFilterbank(4, 16000, learn=("radius",)), r"learn takes poles, zeros, gain; got \['radius'\]"),
    (lambda: nn.FrontEnd(compression="log", learn=("alpha",)), r"compression 'log' has nothing to learn"),
    (lambda: nn.GammatoneFilterbank(4, 16000, learn="frequency"), r"learn must be an iterable of names"),
])
def test_learn_rejects_what_a_module_does_not_have(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


def test_old_learn_keywords_still_work_with_a_warning():
    with pytest.warns(DeprecationWarning, match=r"learn_frequency=\.\.\.\) is deprecated.*learn=\('frequency',\)"):
        bank = nn.GammatoneFilterbank(4, 16000, learn_frequency=False)
    assert not list(bank.parameters())
    with pytest.warns(DeprecationWarning, match=r"FrontEnd\(learn_pcen=\.\.\.\) is deprecated"):
        front_end = nn.FrontEnd(n_filters=4, compression="pcen", learn_pcen=False)
    assert {name for name, _ in front_end.named_parameters()} == {"filterbank.raw_frequency", "filterbank.raw_q"}


def test_plot_responses_draws_every_filter(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from filterbank.plotting import plot_responses

    bank = nn.GammatoneFilterbank(7, 16000)
    ax = plot_responses(bank, n_frequencies=256)
    assert len(ax.lines) == 7
    ax.figure.savefig(tmp_path / "responses.png")
    assert (tmp_path / "responses.png").stat().st_size > 0


@pytest.mark.parametrize("compression", ["log", "pcen", None])
@pytest.mark.parametrize("channels", [(), (2,)])
def test_front_end_on_a_padded_batch_equals_each_signal_alone(compression, channels):
    torch.manual_seed(0)
    front_end = nn.FrontEnd(n_filters=12, sample_rate=16000, hop_length=80, compression=compression)
    lengths = [4000, 3219, 81, 0]
    signals = [torch.randn(channels + (n,)) for n in lengths]
    batch = torch.zeros((len(lengths),) + channels + (4000,))
    for index, signal in enumerate(signals):
        batch[index, ..., : signal.shape[-1]] = signal
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            out = front_end(batch, torch.tensor(lengths))
        assert out.shape == (4,) + channels + (12, 51)
        for index, signal in enumerate(signals):
            alone = front_end(signal).detach()
            n_frames = alone.shape[-1]
            assert n_frames == 1 + lengths[index] // 80
            torch.testing.assert_close(out[index, ..., :n_frames].detach(), alone, rtol=1e-4, atol=1e-5)
            assert (out[index, ..., n_frames:] == 0).all()
    # gradients reach the filters only through the real samples
    out = front_end(batch.requires_grad_(True), lengths)
    out.sum().backward()
    assert batch.grad[3].abs().max() == 0 and batch.grad[2, ..., 81:].abs().max() == 0


@pytest.mark.parametrize("lengths, message", [
    ([10, 10], r"lengths must be 3 integers \(one per signal of the batch\); got torch.int64 of shape \(2,\)"),
    ([1.0, 2.0, 3.0], "lengths must be 3 integers"),
    ([10, -1, 3], r"lengths must be in \[0, 400\] \(the padded length\); got -1 to 10"),
    ([10, 401, 3], r"lengths must be in \[0, 400\]"),
])
def test_front_end_lengths_errors(lengths, message):
    front_end = nn.FrontEnd(n_filters=4, sample_rate=16000, hop_length=80)
    with pytest.raises(ValueError, match=message):
        front_end(torch.zeros(3, 400), lengths)
    with pytest.raises(ValueError, match=r"lengths needs a batch"):
        front_end(torch.zeros(400), [400])


def _wild_modules():
    return {**all_banks(),
            "front-end-pcen": nn.FrontEnd(n_filters=6, sample_rate=16000, hop_length=80, compression="pcen"),
            "front-end-iir": nn.FrontEnd(sample_rate=16000, hop_length=80, compression="power",
                                         filterbank=nn.IIRFilterbank(5, 16000, n_sections=4))}


@pytest.mark.parametrize("name", list(_wild_modules()))
@pytest.mark.parametrize("direction", [1.0, -1.0])
def test_stable_whatever_the_optimiser_does(name, direction):
    # SGD at lr = 10 pushing the output's energy up (or down): every parameter
    # and every output stays finite, and every filter stays stable.
    torch.manual_seed(1)
    module = _wild_modules()[name]
    optimiser = torch.optim.SGD(module.parameters(), lr=10.0)
    x = torch.randn(2, 1600)
    for step in range(25):
        optimiser.zero_grad()
        out = module(x)
        assert torch.isfinite(out).all(), f"step {step}: non-finite output"
        loss = -direction * out.square().mean() if out.min() < 0 else -direction * out.mean()
        loss.backward()
        optimiser.step()
        for parameter_name, parameter in module.named_parameters():
            assert torch.isfinite(parameter).all(), f"step {step}: {parameter_name} is not finite"
    bank = module.filterbank if isinstance(module, nn.FrontEnd) else module
    for a in bank.sos().detach().double()[..., 3:].reshape(-1, 3).numpy():
        assert np.all(np.abs(np.roots(a)) < 1), f"unstable section {a}"


@pytest.mark.parametrize("make, error, message", [
    (lambda: nn.BiquadFilterbank(8, 16000, q=torch.ones(3)), ValueError,
     r"q must be a number or have shape \(8,\) \(one per filter\); got shape \(3,\)"),
    (lambda: nn.BiquadFilterbank(8, 16000, kind="peaking", gain_db=[1.0, 2.0]), TypeError,
     r"gain_db must be a number or a tensor of shape \(8,\); got list"),
    (lambda: nn.FrontEnd(filterbank=nn.BiquadFilterbank(4, 16000), dtype=torch.float64), TypeError,
     r"the filterbank computes in torch.float32 but dtype is torch.float64"),
    (lambda: nn.IIRFilterbank(8, 16000, n_sections=4, max_gain_db=40.0), ValueError,
     r"the initial gains reach \d+ dB, beyond max_gain_db \(40\)"),
    (lambda: nn.BiquadFilterbank(4, 16000, f_min=float("nan")), ValueError, r"f_min must be finite; got nan"),
])
def test_errors_before_a_module_is_built(make, error, message):
    with pytest.raises(error, match=message):
        make()
