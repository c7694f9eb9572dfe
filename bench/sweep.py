"""Batch x filters x length sweep: does the time-parallel scan keep the device busy?

For each shape, filterbank's forward (a bank of biquads over a batch of
signals) against the memory floor (on CUDA a device-to-device copy of the
output's size, on the CPU writing the output once), in one run; few channels
and long signals are the cases a one-thread-per-channel kernel cannot fill.
Saves JSON to ``bench/results/sweep_<device>_<date>.json``.

    python bench/sweep.py --device cuda
    python bench/sweep.py                 # CPU, smaller shapes
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, measure, save  # noqa: E402
from lfilter import bandpass_bank  # noqa: E402

import filterbank  # noqa: E402
from filterbank.kernels import _memory  # noqa: E402

# (batch, filters, samples)
SHAPES_CUDA = [(1, 1, 2**20), (1, 1, 2**24), (1, 16, 2**20), (1, 128, 2**20), (8, 64, 16000), (32, 128, 16000),
               (64, 256, 16000)]
SHAPES_CPU = [(1, 1, 2**20), (1, 16, 2**20), (8, 64, 16000), (32, 128, 16000)]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    device = args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {device}: CUDA is not available here")
    shapes = SHAPES_CUDA if device.startswith("cuda") else SHAPES_CPU
    results = []
    print(f"{'batch':>6} {'filters':>8} {'samples':>9} {'y MB':>8} {'forward ms':>11} {'floor ms':>9} {'x floor':>8} "
          f"{'GB/s':>7}")
    for batch, n_filters, n_time in shapes:
        b64, a64 = bandpass_bank(n_filters, 16000.0)
        b = torch.tensor(b64, dtype=torch.float32, device=device)
        a = torch.tensor(a64, dtype=torch.float32, device=device)
        x = torch.randn(batch, 1, n_time, device=device)
        shape = (batch, n_filters, n_time)
        if device.startswith("cuda"):
            source = torch.ones(shape, device=device)
            target = torch.empty_like(source)
            floor = measure(lambda: target.copy_(source), device, args.repeat)
            del source, target
        else:
            mapped = _memory.empty(shape, torch.float32)
            floor = measure(lambda: mapped.fill_(1.0), device, args.repeat)
            del mapped
        forward = measure(lambda: filterbank.lfilter(b, a, x), device, args.repeat)
        output_mb = np.prod(shape) * 4 / 1e6
        row = {"batch": batch, "filters": n_filters, "samples": n_time, "output_mb": output_mb,
               "forward": forward, "floor": floor, "x_floor": forward["median_ms"] / floor["median_ms"],
               "output_gb_per_s": output_mb / forward["median_ms"]}
        results.append(row)
        print(f"{batch:6d} {n_filters:8d} {n_time:9d} {output_mb:8.1f} {forward['median_ms']:11.3f} "
              f"{floor['median_ms']:9.3f} {row['x_floor']:8.2f} {row['output_gb_per_s']:7.1f}")
    record = environment(device)
    record.update({"benchmark": "sweep", "device": device, "kind": "biquad band-pass bank, float32, forward",
                   "floor": "device copy of y" if device.startswith("cuda") else "write y once", "rows": results})
    if not args.no_save:
        print(f"saved {save('sweep', device, record)}")
    return record


if __name__ == "__main__":
    main()
