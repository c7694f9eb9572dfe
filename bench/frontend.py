"""The front-end against bare filtering on the seed workload, in one run.

x (32, 16000) float32, 128 band-pass biquads (learnable frequency and Q),
hop 160: ``filterbank.nn.FrontEnd`` forward+backward (filtering, frame energy,
log) against the bare filtering forward+backward of the same bank, with the
bare filtering receiving a gradient allocated beforehand (as in bench/lfilter.py)
and the front-end a loss that is the sum of its features. Both are timed
with ``x`` needing a gradient and, as in front-end training, without; the
peak memory of a training step is set against the input plus the features.
Saves JSON to ``bench/results/frontend_<device>_<date>.json``.

    python bench/frontend.py [--device cuda]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, measure, peak_memory_bytes, save  # noqa: E402

import filterbank  # noqa: E402
from filterbank.nn import FrontEnd  # noqa: E402


def _training_step(name: str, device: str):
    """(step, warm-up): a training step of the workload, and one on a short batch (compiles, allocates little)."""
    front_end = FrontEnd(n_filters=128, sample_rate=16000, hop_length=160, compression="log").to(device)
    bank = front_end.filterbank
    data, short = torch.randn(32, 16000, device=device), torch.randn(2, 400, device=device)
    if name == "front-end":
        return (lambda: front_end(data).sum().backward()), (lambda: front_end(short).sum().backward())
    grad_y = torch.randn(32, 128, 16000, device=device)

    def step(x, grad):
        filterbank.sosfilt(bank.sos(), x.unsqueeze(-2)).backward(grad)

    return (lambda: step(data, grad_y)), (lambda: step(short, torch.ones(2, 128, 400, device=device)))


def _peak_in_fresh_process(name: str, device: str):
    """Peak memory of one training step in a new process (this one's allocator already holds large buffers)."""
    done = subprocess.run([sys.executable, __file__, "--peak-of", name, "--device", device], capture_output=True,
                          text=True, check=True)
    value = done.stdout.strip().splitlines()[-1]
    return None if value == "None" else int(value)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--no-save", action="store_true")
    parser.add_argument("--peak-of", choices=("front-end", "bare filtering"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    device = args.device
    if args.peak_of:
        step, warm_up = _training_step(args.peak_of, device)
        warm_up()
        print(peak_memory_bytes(step, device))
        return {}
    front_end = FrontEnd(n_filters=128, sample_rate=16000, hop_length=160, compression="log").to(device)
    x = torch.randn(32, 16000, device=device, requires_grad=True)
    data = x.detach()                       # a training batch: no gradient for the waveform
    bank = front_end.filterbank

    grad_y = torch.randn(32, 128, 16000, device=device)

    def bare():
        # The gradient a loss on the bands would send (allocated once, as in bench/lfilter.py).
        y = filterbank.sosfilt(bank.sos(), x.unsqueeze(-2))
        y.backward(grad_y)

    def features():
        front_end(x).sum().backward()

    def bare_training():
        filterbank.sosfilt(bank.sos(), data.unsqueeze(-2)).backward(grad_y)

    def features_training():
        front_end(data).sum().backward()

    def features_forward():
        with torch.no_grad():
            front_end(x)

    def bare_forward():
        with torch.no_grad():
            filterbank.sosfilt(bank.sos(), x.unsqueeze(-2))

    rows = {
        "bare filtering forward": measure(bare_forward, device, args.repeat),
        "front-end forward": measure(features_forward, device, args.repeat),
        "bare filtering forward+backward": measure(bare, device, args.repeat),
        "front-end forward+backward": measure(features, device, args.repeat),
        "bare filtering forward+backward, x without gradient": measure(bare_training, device, args.repeat),
        "front-end forward+backward, x without gradient": measure(features_training, device, args.repeat),
    }
    ratio_forward = rows["front-end forward"]["median_ms"] / rows["bare filtering forward"]["median_ms"]
    ratio = rows["front-end forward+backward"]["median_ms"] / rows["bare filtering forward+backward"]["median_ms"]
    ratio_training = (rows["front-end forward+backward, x without gradient"]["median_ms"]
                      / rows["bare filtering forward+backward, x without gradient"]["median_ms"])
    n_features = data.shape[0] * front_end.n_filters * (1 + data.shape[-1] // front_end.hop_length)
    sizes = {"input_bytes": data.numel() * 4, "features_bytes": n_features * 4,
             "bands_bytes": data.shape[0] * front_end.n_filters * data.shape[-1] * 4}
    peak = {name: _peak_in_fresh_process(name, device) for name in ("front-end", "bare filtering")}
    record = environment(device)
    record.update({"benchmark": "frontend", "device": device,
                   "workload": {"x": [32, 16000], "filters": 128, "hop_length": 160, "compression": "log"},
                   "rows": rows, "front_end_over_bare": {"forward": ratio_forward, "forward+backward": ratio,
                                                         "forward+backward, x without gradient": ratio_training},
                   "sizes": sizes, "peak_memory_bytes": peak})
    print(f"{'':52} {'median ms':>10} {'min ms':>9}")
    for name, row in rows.items():
        print(f"{name:52} {row['median_ms']:10.1f} {row['min_ms']:9.1f}")
    print(f"front-end / bare filtering: forward {ratio_forward:.2f}x, forward+backward {ratio:.2f}x, "
          f"forward+backward with x without gradient {ratio_training:.2f}x")
    floor = sizes["input_bytes"] + sizes["features_bytes"]
    for name, value in peak.items():
        if value is not None:
            print(f"peak memory of a {name} training step: {value / 2**20:.1f} MiB = {value / floor:.2f}x "
                  f"(input + features), {value / sizes['bands_bytes']:.3f}x the band signals")
    if not args.no_save:
        print(f"saved {save('frontend', device, record)}")
    return record


if __name__ == "__main__":
    main()
