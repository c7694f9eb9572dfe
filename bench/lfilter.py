"""The seed workload: x (32, 16000) float32 through a bank of 128 biquads -> y (32, 128, 16000).

Prints one table measured in one run: filterbank forward and forward+backward,
the memory floor (writing y once), a naive per-channel numba loop, scipy's
lfilter looped over the filters and torchaudio's lfilter (when importable),
each as a ratio to the floor and to filterbank, with its error against scipy
in float64; then the peak memory of forward+backward and the cost of the
first call in a fresh process (numba's compile, paid once per machine).
Saves the figures to ``bench/results/lfilter_<device>_<date>.json``.

    python bench/lfilter.py                  # CPU, the seed workload
    python bench/lfilter.py --device cuda    # the same on a GPU

Forward+backward is ``y = lfilter(...); y.backward(grad_y)`` with ``grad_y``
allocated beforehand, for filterbank and torchaudio alike, so that the rows
compare the filters and not the loss. torchaudio runs with ``clamp=False``
(its default clamps y to [-1, 1], which is a different function) and
``batching=True`` on the input expanded over the filters.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, measure, peak_memory_bytes, save  # noqa: E402

import filterbank  # noqa: E402
from filterbank.cli.bench import seed_bank  # noqa: E402
from filterbank.kernels import _memory  # noqa: E402


def bandpass_bank(n_filters: int, sample_rate: float) -> tuple[np.ndarray, np.ndarray]:
    """The seed workload's bank (``filterbank bench``'s): ``b, a`` (n_filters, 3) float64 numpy arrays."""
    b, a = seed_bank(n_filters, sample_rate)
    return b.numpy(), a.numpy()


def naive_numba_bank():
    """A plain numba loop: one thread per channel, one sample at a time (a peer)."""
    import numba

    @numba.njit(parallel=True, cache=True, fastmath={"contract"})
    def run(x, b, a, y):
        n_signals, n_time = x.shape
        n_filters = b.shape[0]
        for p in numba.prange(n_signals * n_filters):
            i, f = p // n_filters, p % n_filters
            b0, b1, b2, a1, a2 = b[f, 0], b[f, 1], b[f, 2], a[f, 1], a[f, 2]
            x1 = x2 = y1 = y2 = x.dtype.type(0)
            for t in range(n_time):
                x0 = x[i, t]
                y0 = b0 * x0 + b1 * x1 + b2 * x2 - a1 * y1 - a2 * y2
                y[i, f, t] = y0
                x2, x1, y2, y1 = x1, x0, y1, y0
        return y

    return run


@contextlib.contextmanager
def output_cache_off():
    """Turn off the recycling of freed CPU outputs (``FILTERBANK_CPU_CACHE_MB=0``) for a while."""
    limit = _memory._CACHE_LIMIT
    _memory._CACHE_LIMIT = 0
    _memory.empty_cache()
    try:
        yield
    finally:
        _memory._CACHE_LIMIT = limit


def relative_error(got: torch.Tensor, reference: np.ndarray) -> float:
    got = got.detach().double().cpu().numpy()
    return float(np.abs(got - reference).max() / np.abs(reference).max())


def first_call_seconds(cold: bool) -> dict:
    """Import and first forward and backward in a fresh process (CPU, float32)."""
    code = (
        "import time; t0 = time.perf_counter(); import torch, filterbank; t1 = time.perf_counter();"
        "x = torch.randn(2, 1, 1000, requires_grad=True); b = torch.tensor([[0.1, 0.0, -0.1]] * 4);"
        "a = torch.tensor([[1.0, -1.8, 0.9]] * 4); y = filterbank.lfilter(b, a, x); t2 = time.perf_counter();"
        "y.sum().backward(); t3 = time.perf_counter();"
        "print(t1 - t0, t2 - t1, t3 - t2)"
    )
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as cache:
        if cold:
            env["NUMBA_CACHE_DIR"] = cache
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    import_s, forward_s, backward_s = (float(v) for v in out.stdout.split())
    return {"import_s": import_s, "first_forward_s": forward_s, "first_backward_s": backward_s}


def dynamo_import_seconds() -> float:
    """``import torch._dynamo`` in a fresh process after ``import torch``: torch does it on the first call of any
    ``torch.library`` custom op, so it is part of the first forward whatever the kernels cost."""
    code = "import torch, time; t0 = time.perf_counter(); import torch._dynamo; print(time.perf_counter() - t0)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:index] (default cpu)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--filters", type=int, default=128)
    parser.add_argument("--time", type=int, default=16000, help="samples per signal")
    parser.add_argument("--repeat", type=int, default=10, help="timed runs of the fast rows")
    parser.add_argument("--slow-repeat", type=int, default=3, help="timed runs of the slow peers")
    parser.add_argument("--skip-first-call", action="store_true", help="do not time a fresh process's first call")
    parser.add_argument("--no-save", action="store_true", help="print only; write no JSON")
    args = parser.parse_args(argv)
    device = args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {device}: CUDA is not available here")

    sample_rate = 16000.0
    dtype = torch.float32
    b64, a64 = bandpass_bank(args.filters, sample_rate)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, args.time, generator=generator, dtype=dtype).to(device)
    b = torch.tensor(b64, dtype=dtype, device=device)
    a = torch.tensor(a64, dtype=dtype, device=device)
    shape = (args.batch, args.filters, args.time)
    output_bytes = int(np.prod(shape)) * 4
    grad_y = torch.randn(shape, generator=generator, dtype=dtype).to(device)

    # float64 truth for the first two signals, every filter (scipy).
    import scipy.signal

    x_np = x.cpu().numpy()
    n_check = min(2, args.batch)
    truth = np.stack([
        np.stack([scipy.signal.lfilter(b64[f], a64[f], x_np[i].astype(np.float64)) for f in range(args.filters)])
        for i in range(n_check)
    ])

    rows: dict[str, dict] = {}

    def row(name, function, repeat, error_of=None, group="forward"):
        result = measure(function, device, repeat)
        result["group"] = group
        if error_of is not None:
            result["max_relative_error"] = relative_error(error_of(), truth)
        rows[name] = result
        print(f"  measured {name}: {result['median_ms']:.2f} ms", file=sys.stderr)

    # Memory floors: writing y once.
    if device == "cpu":
        mapped = _memory.empty(shape, dtype).fill_(0)
        row("write y once (memory floor)", lambda: mapped.fill_(1.0), args.repeat, group="floor")
        del mapped
        with output_cache_off():
            row("allocate + write y, fresh 2 MiB pages", lambda: _memory.empty(shape, dtype).fill_(1.0), args.repeat,
                group="floor")
        row("allocate + write y, torch.empty (4 KiB pages)", lambda: torch.empty(shape, dtype=dtype).fill_(1.0),
            args.repeat, group="floor")
    else:
        source = torch.ones(shape, dtype=dtype, device=device)
        target = torch.empty_like(source)
        row("device copy of y (memory floor)", lambda: target.copy_(source), args.repeat, group="floor")
        del source, target

    # filterbank.
    bank_input = x.unsqueeze(-2)
    forward = lambda: filterbank.lfilter(b, a, bank_input)  # noqa: E731
    row("filterbank forward", forward, args.repeat, error_of=lambda: forward()[:n_check])
    if device == "cpu":
        # The same with freed outputs unmapped rather than recycled: each
        # call writes into fresh pages, as the first call of a loop does.
        with output_cache_off():
            row("filterbank forward, output cache off", forward, args.repeat)
    # The drop-in for torchaudio, called as torchaudio is (waveform, a, b).
    import filterbank.compat.torchaudio as compat

    row("filterbank.compat.torchaudio.lfilter", lambda: compat.lfilter(x, a, b, clamp=False, batching=False),
        args.repeat, error_of=lambda: compat.lfilter(x, a, b, clamp=False, batching=False)[:n_check])
    leaves = [t.clone().requires_grad_() for t in (x, b, a)]

    def forward_backward():
        y = filterbank.lfilter(leaves[1], leaves[2], leaves[0].unsqueeze(-2))
        y.backward(grad_y)
        return y

    row("filterbank forward+backward", forward_backward, args.repeat, group="forward+backward")

    # Peak memory from a cold start: no recycled buffer already resident.
    _memory.empty_cache()
    peak = {"filterbank forward+backward": peak_memory_bytes(forward_backward, device)}

    # Peers.
    if device == "cpu":
        naive = naive_numba_bank()
        b_np, a_np = b.numpy(), a.numpy()
        naive_forward = lambda: torch.from_numpy(  # noqa: E731
            naive(x_np, b_np, a_np, _memory.empty(shape, dtype).numpy()))
        row("naive numba loop, one thread per channel", naive_forward, args.repeat,
            error_of=lambda: naive_forward()[:n_check])

        def scipy_forward():
            return [scipy.signal.lfilter(b_np[f], a_np[f], x_np, axis=-1) for f in range(args.filters)]

        row(f"scipy.signal.lfilter looped over {args.filters} filters", scipy_forward, args.slow_repeat,
            error_of=lambda: torch.from_numpy(np.stack(scipy_forward(), 1)[:n_check]))

    try:
        import torchaudio.functional as torchaudio_functional
    except Exception as error:  # absent, or built for another torch
        print(f"  torchaudio not importable here ({type(error).__name__}); its rows are skipped", file=sys.stderr)
        torchaudio_functional = None
    if torchaudio_functional is not None:
        def torchaudio_forward():
            return torchaudio_functional.lfilter(bank_input.expand(shape), a, b, clamp=False, batching=True)

        row("torchaudio lfilter", torchaudio_forward, args.slow_repeat,
            error_of=lambda: torchaudio_forward()[:n_check])

        def torchaudio_forward_backward():
            y = torchaudio_functional.lfilter(leaves[0].unsqueeze(-2).expand(shape), leaves[2], leaves[1],
                                              clamp=False, batching=True)
            y.backward(grad_y)
            return y

        row("torchaudio lfilter forward+backward", torchaudio_forward_backward, args.slow_repeat,
            group="forward+backward")
        peak["torchaudio lfilter forward+backward"] = peak_memory_bytes(torchaudio_forward_backward, device)

    # Ratios, all from this run.
    floor_name = next(name for name, r in rows.items() if r["group"] == "floor")
    floor = rows[floor_name]["median_ms"]
    own = {"forward": rows["filterbank forward"]["median_ms"],
           "forward+backward": rows["filterbank forward+backward"]["median_ms"]}
    for name, r in rows.items():
        r["x_floor"] = r["median_ms"] / floor
        if r["group"] in own:
            r["x_filterbank"] = r["median_ms"] / own[r["group"]]

    first_call = None
    if not args.skip_first_call:
        print("  timing first calls in fresh processes (cold cache compiles)...", file=sys.stderr)
        first_call = {"warm_cache": first_call_seconds(cold=False), "cold_cache": first_call_seconds(cold=True),
                      "torch_dynamo_import_s": dynamo_import_seconds()}

    record = environment(device)
    record.update({
        "benchmark": "lfilter",
        "device": device,
        "workload": {"x": [args.batch, args.time], "filters": args.filters, "kind": "biquad band-pass (RBJ, Q=4)",
                     "y": list(shape), "dtype": "float32", "output_bytes": output_bytes},
        "floor": floor_name,
        "rows": rows,
        "peak_memory_over_output": {k: (None if v is None else v / output_bytes) for k, v in peak.items()},
        "first_call": first_call,
    })
    print_table(record)
    if not args.no_save:
        print(f"saved {save('lfilter', device, record)}")
    return record


def print_table(record: dict) -> None:
    machine = record["machine"]
    versions = record["versions"]
    where = machine.get("gpu") or f"{machine['cpu']}, {machine['cores']} cores"
    w = record["workload"]
    print(f"\nlfilter: x {tuple(w['x'])} float32 through {w['filters']} biquads -> y {tuple(w['y'])} "
          f"({w['output_bytes'] / 1e6:.0f} MB) on {where}")
    print(f"torch {versions['torch']}, numba {versions['numba']}, scipy {versions['scipy']}, "
          f"torchaudio {versions['torchaudio']}; commit {(record['commit'] or '?')[:10]}"
          f"{' (dirty)' if record['dirty'] else ''}")
    header = f"{'':46} {'median ms':>10} {'min ms':>9} {'x floor':>8} {'x filterbank':>13} {'max rel err':>12}"
    print(header)
    print("-" * len(header))
    for name, r in record["rows"].items():
        ratio = f"{r['x_filterbank']:.1f}" if "x_filterbank" in r else ""
        error = f"{r['max_relative_error']:.1e}" if "max_relative_error" in r else ""
        print(f"{name:46} {r['median_ms']:10.2f} {r['min_ms']:9.2f} {r['x_floor']:8.2f} {ratio:>13} {error:>12}")
    print(f"(x floor: median over the median of '{record['floor']}'; x filterbank: this row over filterbank's "
          "row of the same kind; errors against scipy in float64)")
    for name, ratio in record["peak_memory_over_output"].items():
        if ratio is not None:
            print(f"peak memory of {name}: {ratio:.2f} x the output's size")
    if record["first_call"]:
        for cache in ("warm_cache", "cold_cache"):
            t = record["first_call"][cache]
            print(f"first call in a fresh process, {cache.replace('_', ' ')}: import {t['import_s']:.2f} s, "
                  f"forward {t['first_forward_s']:.2f} s, backward {t['first_backward_s']:.2f} s")
        if "torch_dynamo_import_s" in record["first_call"]:
            print(f"(each first forward includes torch importing torch._dynamo, "
                  f"{record['first_call']['torch_dynamo_import_s']:.2f} s here, as the first call of any custom op does)")


if __name__ == "__main__":
    main()
