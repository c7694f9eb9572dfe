"""``filterbank bench``: how fast ``lfilter`` runs here, against the memory floor and the peers installed beside it.

The seed workload by default: x (32, 16000) float32 through 128 band-pass
biquads -> y (32, 128, 16000). One table, measured in one run: filterbank's
forward and forward+backward, writing y once (the memory floor), and
scipy's ``lfilter`` looped over the filters and torchaudio's ``lfilter``
where they import; each row as a ratio to the floor and to filterbank, the
forward's error against scipy in float64. ``--json`` saves the figures.
The repository's ``bench/lfilter.py`` measures more (peak memory, first
calls, a naive numba loop) and keeps its results.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Optional

from ._options import check_device, positive_int

__all__ = ["add_parser", "measure", "seed_bank", "cpu_model"]


def add_parser(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser("bench", help="time lfilter here against the memory floor and the installed peers",
                                 description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:index] (default cpu)")
    parser.add_argument("--batch", type=positive_int, default=32, help="signals (default 32)")
    parser.add_argument("--filters", type=positive_int, default=128, help="biquads (default 128)")
    parser.add_argument("--time", type=positive_int, default=16000, help="samples per signal (default 16000)")
    parser.add_argument("--repeat", type=positive_int, default=10, help="timed runs of the fast rows (default 10)")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    parser.add_argument("--no-save", action="store_true", help=argparse.SUPPRESS)  # the default now: kept for scripts
    parser.set_defaults(check=check_device, run=run)
    return parser


def measure(function: Callable[[], object], device: str, repeat: int, warmup: int = 1) -> dict:
    """Wall time of ``function()`` in ms: median and min over ``repeat`` runs after ``warmup``."""
    import torch

    def synchronise():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    for _ in range(warmup):
        function()
    synchronise()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        synchronise()
        times.append((time.perf_counter() - start) * 1e3)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "runs": repeat}


def seed_bank(n_filters: int, sample_rate: float, q: float = 4.0):
    """RBJ band-pass biquads (0 dB peak), centres log-spaced 50 Hz..0.47 fs: ``b, a`` (n_filters, 3) float64."""
    import math

    import torch

    from ..design import bandpass_biquad

    centres = torch.logspace(math.log10(50.0), math.log10(0.47 * sample_rate), n_filters, dtype=torch.float64)
    return bandpass_biquad(centres, q, sample_rate)


def cpu_model() -> str:
    """The CPU's name (Linux: /proc/cpuinfo), else what the platform says."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _peer(module: str):
    try:
        return __import__(module, fromlist=["_"])
    except Exception:  # absent, or built for another torch
        return None


def run(args) -> int:
    import numpy as np
    import torch

    import filterbank

    device, shape = args.device, (args.batch, args.filters, args.time)
    b64, a64 = seed_bank(args.filters, 16000.0)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, args.time, generator=generator).to(device)
    b, a = b64.float().to(device), a64.float().to(device)
    grad_y = torch.randn(shape, generator=generator).to(device)
    scipy_signal = _peer("scipy.signal")
    torchaudio_functional = _peer("torchaudio.functional")
    rows: dict[str, dict] = {}

    def row(name: str, function: Callable, repeat: int, group: str) -> None:
        rows[name] = {**measure(function, device, repeat), "group": group}
        print(f"  measured {name}: {rows[name]['median_ms']:.2f} ms", file=sys.stderr)

    def floor():
        target = torch.empty(shape, device=device)   # freed when the row is measured
        row("write y once (memory floor)", lambda: target.fill_(1.0), args.repeat, "floor")

    floor()
    forward = lambda: filterbank.lfilter(b, a, x.unsqueeze(-2))  # noqa: E731
    row("filterbank forward", forward, args.repeat, "forward")
    leaves = [t.clone().requires_grad_() for t in (x, b, a)]

    def forward_backward():
        filterbank.lfilter(leaves[1], leaves[2], leaves[0].unsqueeze(-2)).backward(grad_y)

    row("filterbank forward+backward", forward_backward, args.repeat, "forward+backward")
    error: Optional[float] = None
    if scipy_signal is not None:
        x_np, b_np, a_np = x.cpu().numpy(), b.cpu().numpy(), a.cpu().numpy()
        truth = np.stack([scipy_signal.lfilter(b64[f].numpy(), a64[f].numpy(), x_np[0].astype(np.float64))
                          for f in range(args.filters)])
        error = float(np.abs(forward()[0].double().cpu().numpy() - truth).max() / np.abs(truth).max())
        if device == "cpu":
            row(f"scipy.signal.lfilter looped over {args.filters} filters",
                lambda: [scipy_signal.lfilter(b_np[f], a_np[f], x_np, axis=-1) for f in range(args.filters)],
                max(1, args.repeat // 4), "forward")
    if torchaudio_functional is not None:
        row("torchaudio lfilter", lambda: torchaudio_functional.lfilter(x.unsqueeze(-2).expand(shape), a, b,
                                                                        clamp=False, batching=True),
            max(1, args.repeat // 4), "forward")
    floor = rows["write y once (memory floor)"]["median_ms"]
    own = {group: rows[f"filterbank {group}"]["median_ms"] for group in ("forward", "forward+backward")}
    for entry in rows.values():
        entry["x_floor"] = entry["median_ms"] / floor
        if entry["group"] in own:
            entry["x_filterbank"] = entry["median_ms"] / own[entry["group"]]
    where = torch.cuda.get_device_name(device) if device.startswith("cuda") else f"{cpu_model()}, {os.cpu_count()} cores"
    print(f"\nlfilter: x ({args.batch}, {args.time}) float32 through {args.filters} biquads -> y {shape} on {where}; "
          f"filterbank {filterbank.__version__}, torch {torch.__version__}")
    print(f"{'':44} {'median ms':>10} {'x floor':>8} {'x filterbank':>13}")
    for name, entry in rows.items():
        ratio = f"{entry['x_filterbank']:.1f}" if "x_filterbank" in entry else ""
        print(f"{name:44} {entry['median_ms']:10.2f} {entry['x_floor']:8.2f} {ratio:>13}")
    if error is not None:
        print(f"filterbank forward, max relative error against scipy in float64: {error:.1e}")
    if scipy_signal is None or torchaudio_functional is None:
        missing = [name for name, peer in (("scipy", scipy_signal), ("torchaudio", torchaudio_functional)) if not peer]
        print(f"({' and '.join(missing)} not importable here: no row)")
    if args.json:
        record = {"device": device, "shape": list(shape), "rows": rows, "max_relative_error_vs_scipy": error,
                  "versions": {"filterbank": filterbank.__version__, "torch": torch.__version__}}
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
        print(f"saved {args.json}")
    return 0
