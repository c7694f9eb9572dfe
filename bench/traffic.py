"""Global-memory traffic of the CUDA kernels, counted by running their source on CPU threads.

No GPU needed: ``filterbank.kernels.cuda.build_emulated()`` compiles
``csrc/iir_scan.cu`` against ``csrc/emulation.h``, which counts every global
load and store. For filterbank-shaped workloads (channels sharing input rows)
and batches (each channel its own row), prints the bytes the forward and
the forward+backward move as multiples of the output's size ``|y|`` (the
floor is ``|y| + |distinct x rows|`` for the forward), with the launches.
This is the traffic model the GPU timings will be judged by; timing itself
needs a GPU (``bench/lfilter.py --device cuda``). Saves JSON to
``bench/results/traffic_emulated_<date>.json``.

    python bench/traffic.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, save  # noqa: E402
from lfilter import bandpass_bank  # noqa: E402

from filterbank.kernels import cuda  # noqa: E402

# (rows, channels per row, sections, samples): a front-end bank, a cascade bank, a batch, one long signal.
WORKLOADS = [(2, 128, 1, 16000), (2, 32, 4, 16000), (16, 1, 1, 16000), (1, 1, 1, 1 << 18)]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    extension = cuda.build_emulated()
    saved, cuda._extension = cuda._extension, extension
    rows = []
    print(f"{'rows':>5} {'ch/row':>7} {'sections':>8} {'samples':>8} {'|y| MB':>7} {'fwd / floor':>12} "
          f"{'fwd |y|':>8} {'fwd+bwd |y|':>12} {'launches':>9}")
    try:
        for n_rows, per_row, n_sections, n_time in WORKLOADS:
            n_channels = n_rows * per_row
            b64, a64 = bandpass_bank(n_channels, 16000.0)
            b = torch.tensor(b64, dtype=torch.float32)[:, None].repeat(1, n_sections, 1)
            a = torch.tensor(a64, dtype=torch.float32)[:, None].repeat(1, n_sections, 1)
            x = torch.randn(n_rows, n_time)
            x_index = torch.arange(n_rows).repeat_interleave(per_row)
            zi = torch.zeros(n_channels, n_sections, 2)
            y_bytes, x_bytes = n_channels * n_time * 4, n_rows * n_time * 4
            extension.reset_traffic()
            cuda.iir_cascade(x, x_index, b, a, zi)
            read, written, launches = extension.traffic()
            extension.reset_traffic()
            cuda.iir_cascade_backward(torch.randn(n_channels, n_time), zi, x, x_index, b, a, zi)
            back_read, back_written, back_launches = extension.traffic()
            splits = -(-per_row // extension.channels_per_block)
            summing = (splits + 1) * x_bytes if splits > 1 else 0  # torch sums the slices' input gradients
            row = {"rows": n_rows, "channels_per_row": per_row, "sections": n_sections, "samples": n_time,
                   "output_bytes": y_bytes, "input_bytes": x_bytes,
                   "forward": {"read": read, "written": written, "launches": launches},
                   "backward": {"read": back_read, "written": back_written, "launches": back_launches,
                                "slice_sum_bytes": summing},
                   "forward_over_floor": (read + written) / (y_bytes + x_bytes),
                   "forward_over_y": (read + written) / y_bytes,
                   "forward_backward_over_y": (read + written + back_read + back_written + summing) / y_bytes}
            rows.append(row)
            print(f"{n_rows:5d} {per_row:7d} {n_sections:8d} {n_time:8d} {y_bytes / 1e6:7.1f} "
                  f"{row['forward_over_floor']:12.3f} {row['forward_over_y']:8.3f} "
                  f"{row['forward_backward_over_y']:12.3f} {launches:4d} + {back_launches}")
    finally:
        cuda._extension = saved
    record = environment("cpu")
    record.update({"benchmark": "traffic", "device": "emulated",
                   "kind": "biquad band-pass bank, float32; bytes counted by csrc/emulation.h", "rows": rows})
    if not args.no_save:
        print(f"saved {save('traffic', 'emulated', record)}")
    return record


if __name__ == "__main__":
    main()
