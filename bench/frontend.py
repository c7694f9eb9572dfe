"""The front-end against bare filtering on the seed workload, in one run.

x (32, 16000) float32, 128 band-pass biquads (learnable frequency and Q),
hop 160: ``filterbank.nn.FrontEnd`` forward+backward (filtering, frame energy,
log) against the bare filtering forward+backward of the same bank, with the
bare filtering receiving a gradient allocated beforehand (as in bench/lfilter.py)
and the front-end a loss that is the sum of its features.
Saves JSON to ``bench/results/frontend_<device>_<date>.json``.

    python bench/frontend.py [--device cuda]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, measure, save  # noqa: E402

import filterbank  # noqa: E402
from filterbank.nn import FrontEnd  # noqa: E402


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    device = args.device
    front_end = FrontEnd(n_filters=128, sample_rate=16000, hop_length=160, compression="log").to(device)
    x = torch.randn(32, 16000, device=device, requires_grad=True)
    bank = front_end.filterbank

    grad_y = torch.randn(32, 128, 16000, device=device)

    def bare():
        # The gradient a loss on the bands would send (allocated once, as in bench/lfilter.py).
        y = filterbank.sosfilt(bank.sos(), x.unsqueeze(-2))
        y.backward(grad_y)

    def features():
        front_end(x).sum().backward()

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
    }
    ratio_forward = rows["front-end forward"]["median_ms"] / rows["bare filtering forward"]["median_ms"]
    ratio = rows["front-end forward+backward"]["median_ms"] / rows["bare filtering forward+backward"]["median_ms"]
    record = environment(device)
    record.update({"benchmark": "frontend", "device": device,
                   "workload": {"x": [32, 16000], "filters": 128, "hop_length": 160, "compression": "log"},
                   "rows": rows, "front_end_over_bare": {"forward": ratio_forward, "forward+backward": ratio}})
    print(f"{'':34} {'median ms':>10} {'min ms':>9}")
    for name, row in rows.items():
        print(f"{name:34} {row['median_ms']:10.1f} {row['min_ms']:9.1f}")
    print(f"front-end / bare filtering: forward {ratio_forward:.2f}x, forward+backward {ratio:.2f}x")
    if not args.no_save:
        print(f"saved {save('frontend', device, record)}")
    return record


if __name__ == "__main__":
    main()
