"""Streaming and TBPTT: real-time factor in small blocks, and memory bounded by the chunk.

Part 1 (one CPU core): a 64-filter front-end (band-pass biquads, hop 160,
log) streamed over 60 s of audio in blocks of 10 ms and of 100 ms, against the
same signal in one call; real-time factor = audio seconds / compute seconds.

Part 2: TBPTT training of a 64-filter front-end (learnable frequencies and Q)
to match a target front-end's features, over 1, 5 and 10 minutes of audio in
chunks of 1 s, each length in a fresh process; the audio is generated chunk
by chunk, so nothing of the signal's length is kept. Reports each run's peak
resident memory.

Saves JSON to ``bench/results/streaming_cpu_<date>.json``.

    python bench/streaming.py [--minutes 1 5 10]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, save  # noqa: E402

SAMPLE_RATE = 16000


def real_time_factors(seconds: float = 60.0) -> dict:
    import numba
    import torch

    from filterbank.nn import FrontEnd

    torch.set_num_threads(1)
    numba.set_num_threads(1)
    front_end = FrontEnd(n_filters=64, sample_rate=SAMPLE_RATE, hop_length=160)
    x = torch.randn(int(seconds * SAMPLE_RATE))
    results = {}
    with torch.no_grad():
        # Warm-up of both paths, so that no kernel's compile or cache load is timed.
        front_end(x[:16000])
        front_end.finish(front_end.stream(x[:160], None)[1])
        for block_ms in (10, 100):
            block = SAMPLE_RATE * block_ms // 1000
            state = None
            start = time.perf_counter()
            for first in range(0, x.shape[-1], block):
                _, state = front_end.stream(x[first : first + block], state)
            front_end.finish(state)
            elapsed = time.perf_counter() - start
            results[f"blocks of {block_ms} ms"] = {"seconds": elapsed, "real_time_factor": seconds / elapsed}
        start = time.perf_counter()
        front_end(x)
        elapsed = time.perf_counter() - start
        results["whole signal, one call"] = {"seconds": elapsed, "real_time_factor": seconds / elapsed}
    return results


def train(minutes: float) -> dict:
    """TBPTT over `minutes` of generated audio; run in a fresh process by main()."""
    import resource

    import torch

    from filterbank.nn import BiquadFilterbank, FrontEnd
    from filterbank.tbptt import tbptt

    torch.manual_seed(0)
    target = FrontEnd(sample_rate=SAMPLE_RATE, hop_length=160,
                      filterbank=BiquadFilterbank(64, SAMPLE_RATE, f_min=60, f_max=7000, learn=()))
    learner = FrontEnd(sample_rate=SAMPLE_RATE, hop_length=160,
                       filterbank=BiquadFilterbank(64, SAMPLE_RATE, f_min=80, f_max=6500))
    optimiser = torch.optim.Adam(learner.parameters(), lr=1e-2)
    n_chunks = int(minutes * 60)

    def audio():
        generator = torch.Generator().manual_seed(1)
        for _ in range(n_chunks):
            yield torch.randn(4, SAMPLE_RATE, generator=generator)  # a batch of 4 streams, 1 s each

    target_state = [None]

    def stream(chunk, state):
        with torch.no_grad():
            wanted, target_state[0] = target.stream(chunk, target_state[0])
        got, state = learner.stream(chunk, state)
        return (got, wanted), state

    def step(outputs, index):
        got, wanted = outputs
        loss = (got - wanted).square().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        return loss.item()

    start = time.perf_counter()
    losses, _ = tbptt(stream, audio(), None, step)
    elapsed = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"minutes": minutes, "chunks": n_chunks, "seconds": elapsed, "peak_rss_mb": peak_kib / 1024,
            "first_loss": losses[0], "last_loss": losses[-1]}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 5, 10])
    parser.add_argument("--train-one", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    if args.train_one is not None:
        print(json.dumps(train(args.train_one)))
        return {}
    factors = real_time_factors()
    print("64-filter front-end, one core:")
    for name, row in factors.items():
        print(f"  {name:24} {row['seconds']:7.2f} s for 60 s of audio: {row['real_time_factor']:7.1f} x real time")
    runs = []
    for minutes in args.minutes:
        out = subprocess.run([sys.executable, __file__, "--train-one", str(minutes)], capture_output=True, text=True,
                             check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        run = runs[-1]
        print(f"TBPTT over {minutes:g} min (batch of 4, 1 s chunks): peak RSS {run['peak_rss_mb']:.0f} MB, "
              f"{run['seconds']:.0f} s, loss {run['first_loss']:.3f} -> {run['last_loss']:.3f}")
    growth = runs[-1]["peak_rss_mb"] / runs[0]["peak_rss_mb"] - 1 if len(runs) > 1 else None
    if growth is not None:
        print(f"peak memory growth from {args.minutes[0]:g} to {args.minutes[-1]:g} min: {100 * growth:.1f}%")
    record = environment("cpu")
    record.update({"benchmark": "streaming", "device": "cpu", "real_time": factors, "tbptt": runs,
                   "peak_growth": growth})
    if not args.no_save:
        print(f"saved {save('streaming', 'cpu', record)}")
    return record


if __name__ == "__main__":
    main()
