"""Run the lfilter benchmark (bench/lfilter.py) and plot its rows.

Times filterbank against the memory-write floor and its peers (torchaudio when
it imports, scipy, a Python loop over time, a numba loop) on one workload,
prints the table, saves the JSON to bench/results/, and draws a bar chart of
the median times (log scale) to out/lfilter_speed.png.

    python demos/lfilter_speed.py [--device cpu] [--quick]
    python demos/lfilter_speed.py --from bench/results/lfilter_cpu_<date>.json   # plot a saved run
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_benchmark(arguments: list[str]) -> dict:
    spec = importlib.util.spec_from_file_location("bench_lfilter", ROOT / "bench" / "lfilter.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(ROOT / "bench"))
    spec.loader.exec_module(module)
    return module.main(arguments)


def plot(record: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"floor": "0.6", "forward": "tab:blue", "forward+backward": "tab:orange"}
    rows = sorted(record["rows"].items(), key=lambda item: (item[1]["group"] != "floor", item[1]["median_ms"]))
    names = [name for name, _ in rows]
    times = [row["median_ms"] for _, row in rows]
    figure, axis = plt.subplots(figsize=(9, 0.38 * len(rows) + 1.4))
    axis.barh(range(len(rows)), times, color=[colours.get(row["group"], "tab:green") for _, row in rows])
    for index, (_, row) in enumerate(rows):
        axis.text(row["median_ms"] * 1.08, index, f"{row['median_ms']:.1f} ms", va="center", fontsize=8)
    axis.set_yticks(range(len(rows)), names, fontsize=8)
    axis.invert_yaxis()
    axis.set_xscale("log")
    axis.set_xlim(right=max(times) * 6)
    axis.set_xlabel("median time per call (ms, log scale)")
    workload = record.get("workload", {})
    machine = record.get("machine", {})
    batch, n_time = workload.get("x", ["?", "?"])
    axis.set_title(f"lfilter: {batch} signals x {workload.get('filters', '?')} filters x {n_time} samples, "
                   f"{workload.get('dtype', '')}, {record.get('device', '?')} ({machine.get('cpu', '?')}, "
                   f"{machine.get('cores', '?')} cores)", fontsize=9)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colours.values()]
    axis.legend(handles, list(colours), fontsize=8, loc="upper right")
    figure.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(png, dpi=110)
    print(f"drawn: {png}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="a smaller workload and fewer repeats (a minute, not several)")
    parser.add_argument("--from", dest="saved", type=Path, default=None, help="plot this saved JSON instead of running")
    parser.add_argument("--png", type=Path, default=ROOT / "out" / "lfilter_speed.png")
    args = parser.parse_args(argv)
    if args.saved is not None:
        if not args.saved.is_file():
            parser.error(f"--from {args.saved}: no such file")
        record = json.loads(args.saved.read_text())
    else:
        arguments = ["--device", args.device, "--skip-first-call"]
        if args.quick:
            arguments += ["--batch", "8", "--filters", "64", "--repeat", "3", "--slow-repeat", "1", "--no-save"]
        record = run_benchmark(arguments)
    plot(record, args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
