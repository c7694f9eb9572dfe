"""Streaming (the state protocol) and truncated backpropagation."""

from __future__ import annotations

import io

import pytest
import torch

import filterbank
from filterbank import nn
from filterbank.kernels import reference
from filterbank.streaming import State
from filterbank.tbptt import chunks, tbptt


def modules(dtype):
    return {
        "biquad": nn.BiquadFilterbank(6, 16000, n_sections=2, dtype=dtype),
        "gammatone": nn.GammatoneFilterbank(5, 16000, dtype=dtype),
        "iir": nn.IIRFilterbank(4, 16000, n_sections=2, dtype=dtype),
        **{f"front-end-{c}": nn.FrontEnd(n_filters=6, sample_rate=16000, hop_length=160, compression=c, dtype=dtype)
           for c in ("log", "power", "pcen", None)},
        "front-end-abs-box": nn.FrontEnd(n_filters=4, sample_rate=8000, hop_length=80, energy="abs", window="box",
                                         dtype=dtype),
    }


def stream_all(module, x, sizes):
    outputs, state, position = [], None, 0
    for size in sizes:
        out, state = module.stream(x[..., position : position + size], state)
        outputs.append(out)
        position += size
    if isinstance(module, nn.FrontEnd):
        outputs.append(module.finish(state))
    return torch.cat(outputs, dim=-1), state


def random_sizes(rng, total):
    sizes = []
    while sum(sizes) < total:
        sizes.append(int(rng.choice([1, 2, 7, 80, 159, 160, 161, 333, 1000])))
    sizes[-1] -= sum(sizes) - total
    return sizes


@pytest.mark.parametrize("name", list(modules(torch.float64)))
@pytest.mark.parametrize("shape", [(3000,), (2, 3000), (2, 2, 3000)])
def test_streamed_equals_whole_float64(rng, name, shape):
    module = modules(torch.float64)[name]
    x = torch.tensor(rng.standard_normal(shape))
    with torch.no_grad():
        got, _ = stream_all(module, x, random_sizes(rng, shape[-1]))
        whole = module(x)
    assert got.shape == whole.shape
    error = float((got - whole).abs().max() / whole.abs().max())
    assert error <= 1e-12, f"streamed differs from whole by {error:.2e} (relative)"


@pytest.mark.parametrize("name", ["biquad", "front-end-log", "front-end-pcen"])
def test_streamed_equals_whole_float32(rng, name):
    # float32: chunk boundaries change the order of a few roundings; within
    # 1e-4 of the output's scale (log features turn the energies' relative
    # rounding into absolute error; documented in the README).
    module = modules(torch.float32)[name]
    x = torch.tensor(rng.standard_normal((2, 8000)), dtype=torch.float32)
    with torch.no_grad():
        got, _ = stream_all(module, x, random_sizes(rng, 8000))
        whole = module(x)
    assert float((got - whole).abs().max()) <= 1e-4 * float(whole.abs().max())


def test_front_end_in_10_ms_blocks(rng):
    front_end = nn.FrontEnd(n_filters=8, sample_rate=16000, hop_length=160, dtype=torch.float64)
    x = torch.tensor(rng.standard_normal(16000 + 37))
    got, state = stream_all(front_end, x, [160] * 100 + [37])
    torch.testing.assert_close(got, front_end(x), rtol=0, atol=1e-12)
    assert state["samples"] == 16037 and state["frames"] == 100


@pytest.mark.parametrize("compression, energy", [("log", "square"), ("power", "abs"), (None, "square")])
@pytest.mark.parametrize("shape", [(4000,), (3, 4000)])
def test_one_call_step_equals_the_general_path(rng, monkeypatch, compression, energy, shape):
    # In inference on the CPU a step is one kernel call (features.stream_band_energy);
    # it gives the general path's features and states, and each takes the other's state.
    bank = nn.GammatoneFilterbank(6, 16000, dtype=torch.float64)  # 4 sections per filter
    front_end = nn.FrontEnd(sample_rate=16000, hop_length=160, filterbank=bank, compression=compression,
                            energy=energy, dtype=torch.float64)
    x = torch.tensor(rng.standard_normal(shape))
    sizes = random_sizes(rng, shape[-1])
    with torch.no_grad():
        fast, fast_state = stream_all(front_end, x, sizes)
        with monkeypatch.context() as patch:
            patch.setattr(filterbank.features, "streams_in_one_call", lambda sos, x: False)
            general, general_state = stream_all(front_end, x, sizes)
        # One path's state into the other and back.
        out_a, state_a = front_end.stream(x[..., :1000], None)
        with monkeypatch.context() as patch:
            patch.setattr(filterbank.features, "streams_in_one_call", lambda sos, x: False)
            out_b, state_b = front_end.stream(x[..., 1000:2500], state_a)
        out_c, state_c = front_end.stream(x[..., 2500:], state_b)
        mixed = torch.cat([out_a, out_b, out_c, front_end.finish(state_c)], dim=-1)
    torch.testing.assert_close(fast, general, rtol=0, atol=1e-12 * float(general.abs().max()))
    torch.testing.assert_close(mixed, general, rtol=0, atol=1e-12 * float(general.abs().max()))
    assert fast_state.keys() == general_state.keys()
    for key in ("samples", "frames"):
        assert fast_state[key] == general_state[key]
    torch.testing.assert_close(fast_state["bands"], general_state["bands"], rtol=0, atol=1e-12)
    torch.testing.assert_close(fast_state["filterbank"]["zi"], general_state["filterbank"]["zi"], rtol=0, atol=1e-12)


def test_a_changed_state_is_checked_again(rng):
    # The one-call step trusts only the state it returned, entries untouched.
    front_end = nn.FrontEnd(n_filters=4, sample_rate=16000, hop_length=160, dtype=torch.float64)
    x = torch.tensor(rng.standard_normal(800))
    with torch.no_grad():
        _, state = front_end.stream(x[:400])
        state["bands"] = state["bands"][..., :3]
        with pytest.raises(ValueError, match=r"state\['bands'\] has shape \(4, 3\)"):
            front_end.stream(x[400:], state)
        _, state = front_end.stream(x[:400])
        front_end.float()  # the float64 state is checked again, and refused
        with pytest.raises((TypeError, ValueError), match="dtype"):
            front_end.stream(x[400:].float(), state)
        front_end.double()
        first, state = front_end.stream(x[:400])
        moved = state.clone()  # a new State: checked, and valid
        second, _ = front_end.stream(x[400:], moved)
        whole, _ = front_end.stream(x)
    torch.testing.assert_close(torch.cat([first, second], -1), whole, rtol=0, atol=1e-12)


def test_state_moves_detaches_and_saves(rng):
    front_end = nn.FrontEnd(n_filters=4, sample_rate=8000, hop_length=80, compression="pcen")
    x = torch.randn(2, 2000)
    first, state = front_end.stream(x[:, :1100])
    assert isinstance(state, State) and isinstance(state["filterbank"], State)
    assert state["bands"].requires_grad and not state.detach()["bands"].requires_grad
    assert state.to(torch.float64)["filterbank"]["zi"].dtype == torch.float64
    buffer = io.BytesIO()
    torch.save(state.detach(), buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    second, _ = front_end.stream(x[:, 1100:], loaded)
    again, _ = front_end.stream(x[:, 1100:], state)
    torch.testing.assert_close(second, again, rtol=0, atol=0)
    assert "State(" in repr(state)


@pytest.mark.parametrize("make_state, error, message", [
    (lambda: nn.BiquadFilterbank(5, 16000).stream(torch.randn(100))[1], ValueError,
     r"BiquadFilterbank state\['zi'\] has shape \(5, 1, 2\) but this module and input need \(6, 1, 2\)"),
    (lambda: nn.BiquadFilterbank(6, 16000).stream(torch.randn(3, 100))[1], ValueError,
     r"has shape \(3, 6, 1, 2\) but this module and input need \(6, 1, 2\)"),
    (lambda: nn.BiquadFilterbank(6, 16000).stream(torch.randn(100))[1].to(torch.float64), TypeError,
     r"state\['zi'\] has dtype torch.float64 but the module computes in torch.float32; convert it"),
    (lambda: nn.BiquadFilterbank(6, 16000).stream(torch.randn(100))[1].to("meta"), ValueError,
     r"state\['zi'\] is on meta but the input is on cpu"),
    (lambda: {"zi": torch.zeros(6, 1, 2)}, TypeError, r"state must be a filterbank.streaming.State .* got dict"),
    (lambda: nn.FrontEnd(n_filters=6).stream(torch.randn(500))[1], ValueError,
     r"BiquadFilterbank state has entries \['bands', 'filterbank', 'frames', 'origin', 'pcen', 'samples'\] but this "
     r"module needs \['zi'\]"),
])
def test_mismatched_states_are_named(make_state, error, message):
    bank = nn.BiquadFilterbank(6, 16000)
    state = make_state()
    with pytest.raises(error, match=message):
        bank.stream(torch.randn(100), state)


def test_front_end_state_from_another_front_end():
    state = nn.FrontEnd(n_filters=6, hop_length=160).stream(torch.randn(1000))[1]
    with pytest.raises(ValueError, match=r"FrontEnd state comes from a FrontEnd built otherwise: hop_length=160 "
                                         r"\(this one: 100\)"):
        nn.FrontEnd(n_filters=6, hop_length=100).stream(torch.randn(1000), state)


def test_tbptt_gradient_is_the_gradient_with_the_state_held_constant(rng):
    # The chunk's gradient for b and a equals that of the pure-torch
    # reference run from the same (constant) incoming state.
    b = torch.tensor([0.3, -0.1, 0.2], dtype=torch.float64, requires_grad=True)
    a = torch.tensor([1.0, -1.2, 0.5], dtype=torch.float64, requires_grad=True)
    x = torch.tensor(rng.standard_normal(900))
    weights = torch.tensor(rng.standard_normal(300))
    gradients = []

    def step(y, index):
        (weights[: y.shape[-1]] * y).sum().backward()
        gradients.append((b.grad.clone(), a.grad.clone()))
        b.grad = a.grad = None

    def stream(chunk, zi):
        return filterbank.lfilter(b, a, chunk, zi=torch.zeros(2, dtype=chunk.dtype) if zi is None else zi)

    _, final = tbptt(stream, x, 300, step)
    with torch.no_grad():
        _, state = filterbank.lfilter(b, a, x[:600], zi=torch.zeros(2, dtype=x.dtype))
    b_ref, a_ref = b.detach().requires_grad_(), a.detach().requires_grad_()
    y_ref, _ = reference.iir_cascade(x[None, 600:], torch.tensor([0]), b_ref[None, None], a_ref[None, None],
                                     state[None, None])
    (weights * y_ref[0]).sum().backward()
    torch.testing.assert_close(gradients[2][0], b_ref.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(gradients[2][1], a_ref.grad, rtol=1e-10, atol=1e-12)
    assert not final.requires_grad


def test_tbptt_reaching_further_back(rng):
    # With k2 = 2 k1 the gradient of chunk j's loss is that of running chunks
    # j-1 and j from the state detached before j-1.
    bank = nn.BiquadFilterbank(3, 8000, dtype=torch.float64)
    x = torch.tensor(rng.standard_normal(1200))
    seen = []

    def step(y, index):
        y.square().mean().backward()
        seen.append(bank.raw_frequency.grad.clone())
        bank.zero_grad()

    tbptt(bank.stream, x, 300, step, backprop_samples=600)
    with torch.no_grad():
        _, state = bank.stream(x[:300])
    _, running = bank.stream(x[300:600], state)
    y, _ = bank.stream(x[600:900], running)
    y.square().mean().backward()
    torch.testing.assert_close(seen[2], bank.raw_frequency.grad, rtol=1e-10, atol=1e-14)
    assert not torch.allclose(seen[2], torch.zeros_like(seen[2]))


def test_tbptt_takes_an_iterable_and_returns_the_state(rng):
    front_end = nn.FrontEnd(n_filters=4, sample_rate=8000, hop_length=80, dtype=torch.float64)
    x = torch.tensor(rng.standard_normal((2, 1000)))
    frames, state = tbptt(front_end.stream, (piece for piece in chunks(x, 250)), None,
                          lambda out, index: out.detach())
    got = torch.cat(frames + [front_end.finish(state)], -1)
    torch.testing.assert_close(got, front_end(x), rtol=0, atol=1e-12)


@pytest.mark.parametrize("call, message", [
    (lambda: list(chunks(torch.ones(10), 0)), r"chunk_size must be an int >= 1; got 0"),
    (lambda: tbptt(lambda c, s: (c, s), torch.ones(10), 4, lambda o, i: None, backprop_samples=6),
     r"backprop_samples must be a multiple of chunk_size \(4\) and at least it; got 6"),
    (lambda: tbptt(lambda c, s: (c, s), torch.ones(10), None, lambda o, i: None),
     r"chunk_size is needed to cut a tensor signal into chunks"),
])
def test_tbptt_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_a_front_end_state_from_another_compression_is_refused():
    bank = nn.BiquadFilterbank(6, 16000)
    log_state = nn.FrontEnd(filterbank=bank, compression="log").stream(torch.randn(2000))[1]
    pcen_state = nn.FrontEnd(filterbank=bank, compression="pcen").stream(torch.randn(2000))[1]
    with pytest.raises(ValueError, match=r"compression='log' \(this one: 'pcen'\)"):
        nn.FrontEnd(filterbank=bank, compression="pcen").stream(torch.randn(100), log_state)
    with pytest.raises(ValueError, match=r"compression='pcen' \(this one: 'log'\)"):
        nn.FrontEnd(filterbank=bank, compression="log").finish(pcen_state)


def test_finish_without_a_state_says_what_it_needs():
    with pytest.raises(TypeError, match=r"FrontEnd.finish needs the state that stream returned; got None"):
        nn.FrontEnd(n_filters=4).finish(None)


def test_states_load_with_torchs_default_weights_only(tmp_path):
    front_end = nn.FrontEnd(n_filters=4, sample_rate=8000, hop_length=80, compression="pcen")
    x = torch.randn(1600)
    first, state = front_end.stream(x[:700])
    torch.save(state, tmp_path / "state.pt")
    loaded = torch.load(tmp_path / "state.pt")          # weights_only=True, torch's default
    assert isinstance(loaded, State) and isinstance(loaded["filterbank"], State)
    rest, _ = front_end.stream(x[700:], loaded)
    again, _ = front_end.stream(x[700:], state)
    torch.testing.assert_close(rest, again, rtol=0, atol=0)


def test_tbptt_refuses_a_state_that_is_not_one():
    with pytest.raises(TypeError, match=r"state must be None, a filterbank.streaming.State or a tensor \(a zf\); got list"):
        tbptt(lambda c, s: (c, s), torch.ones(10), 5, lambda o, i: None, state=[0.0])
