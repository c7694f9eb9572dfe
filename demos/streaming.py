"""Streaming: a bundled recording in 10 ms blocks, then TBPTT training on a long stream.

Part 1 feeds data/speech/en_scottish.flac to a 64-filter front-end 10 ms at a
time, as a real-time system would, prints the real-time factor and checks
that the streamed features equal the offline ones.

Part 2 trains a learnable band-pass bank to match a target bank's band
energies over a minute of noise, with truncated backpropagation through
time (filterbank.tbptt) in chunks of 0.25 s, and prints how far the learned
centre frequencies moved toward the target's.

    python demos/streaming.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import soundfile
import torch

from filterbank import features
from filterbank.nn import BiquadFilterbank, FrontEnd
from filterbank.tbptt import tbptt

ROOT = Path(__file__).resolve().parent.parent


def stream_a_file(path: Path) -> bool:
    audio, sample_rate = soundfile.read(path, dtype="float32")
    x = torch.from_numpy(audio)
    front_end = FrontEnd(n_filters=64, sample_rate=sample_rate, hop_length=sample_rate // 100)
    block = sample_rate // 100
    with torch.no_grad():
        offline = front_end(x)
        front_end.stream(x[:block])  # warm-up (numba loads its cache once)
        pieces, state = [], None
        start = time.perf_counter()
        for first in range(0, x.shape[-1], block):
            frames, state = front_end.stream(x[first : first + block], state)
            pieces.append(frames)
        pieces.append(front_end.finish(state))
        elapsed = time.perf_counter() - start
    streamed = torch.cat(pieces, -1)
    error = float((streamed - offline).abs().max())
    seconds = x.shape[-1] / sample_rate
    print(f"{path.name}: {seconds:.2f} s in {len(pieces) - 1} blocks of 10 ms: {elapsed * 1e3:.0f} ms, "
          f"{seconds / elapsed:.0f} x real time; features {tuple(streamed.shape)}, "
          f"max |streamed - offline| = {error:.1e}")
    return error <= 1e-4 * float(offline.abs().max())


def train_with_tbptt(seconds: float = 60.0, sample_rate: int = 8000) -> None:
    torch.manual_seed(0)
    target = BiquadFilterbank(8, sample_rate, f_min=200, f_max=3000, q=5.0, learn=())
    learner = BiquadFilterbank(8, sample_rate, f_min=300, f_max=2400, q=5.0, learn=("frequency",))
    optimiser = torch.optim.Adam(learner.parameters(), lr=0.02)
    noise = torch.randn(2, int(seconds * sample_rate))
    hop = sample_rate // 100
    states = {"target": None}

    def stream(chunk, state):
        with torch.no_grad():
            wanted, states["target"] = target.stream(chunk, states["target"])
        got, state = learner.stream(chunk, state)
        return (got, wanted), state

    def step(outputs, index):
        got, wanted = outputs
        loss = (torch.log(features.frame_energy(got, hop) + 1e-6)
                - torch.log(features.frame_energy(wanted, hop) + 1e-6)).square().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        return loss.item()

    before = (learner.centre_hz / target.centre_hz).log2().abs().max().item()
    losses, _ = tbptt(stream, noise, sample_rate // 4, step)
    after = (learner.centre_hz / target.centre_hz).log2().abs().max().item()
    print(f"TBPTT over {seconds:.0f} s in {len(losses)} chunks of 0.25 s: loss {losses[0]:.3f} -> {losses[-1]:.4f}; "
          f"largest centre-frequency error {before:.3f} -> {after:.4f} octaves")


def main() -> int:
    ok = stream_a_file(ROOT / "data" / "speech" / "en_scottish.flac")
    train_with_tbptt()
    if not ok:
        print("streamed features differ from the offline ones", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
