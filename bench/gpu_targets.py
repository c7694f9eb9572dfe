"""The GPU targets, read off the newest CUDA benchmark JSON in bench/results/.

After ``bench/lfilter.py --device cuda`` and ``bench/sweep.py --device cuda``
(``scripts/gpu_check.sh`` runs both, then this), prints each target with the
measured ratio and whether it is met:

* seed workload forward <= 1.5x a device copy of y, forward+backward <= 3x;
* >= 100x torchaudio's lfilter on the same GPU, forward and forward+backward;
* 1 x 1 x 2^24 forward <= 3x the device copy of y;
* BandedRNN (hidden 1024, bandwidth 8) forward+backward >= 10x faster than
  cuDNN's dense RNN (``bench/coupled.py --device cuda``), when its JSON is there.

Exits 0 whatever the verdicts (they are measurements, not failures of the
script); exits 1 if a JSON is missing.

    python bench/gpu_targets.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def newest(topic: str) -> dict | None:
    files = sorted(RESULTS.glob(f"{topic}_cuda_*.json"))
    return json.loads(files[-1].read_text()) if files else None


def main() -> int:
    lfilter, sweep = newest("lfilter"), newest("sweep")
    if lfilter is None or sweep is None:
        print("missing bench/results/lfilter_cuda_*.json or sweep_cuda_*.json: run the benchmarks first")
        return 1
    rows = lfilter["rows"]
    checks = [
        ("seed forward / device copy of y", rows["filterbank forward"]["x_floor"], "<=", 1.5),
        ("seed forward+backward / device copy of y", rows["filterbank forward+backward"]["x_floor"], "<=", 3.0),
    ]
    if "torchaudio lfilter" in rows:
        checks.append(("torchaudio forward / filterbank forward", rows["torchaudio lfilter"]["x_filterbank"], ">=",
                       100.0))
        checks.append(("torchaudio forward+backward / filterbank's",
                       rows["torchaudio lfilter forward+backward"]["x_filterbank"], ">=", 100.0))
    long_rows = [r for r in sweep["rows"] if (r["batch"], r["filters"], r["samples"]) == (1, 1, 1 << 24)]
    if long_rows:
        checks.append(("1 x 1 x 2^24 forward / device copy of y", long_rows[0]["x_floor"], "<=", 3.0))
    coupled = newest("coupled")
    if coupled is not None:
        banded = coupled["workloads"]["banded"]["rows"]
        checks.append(("cuDNN RNN forward+backward / BandedRNN's",
                       banded["torch.nn.RNN (dense)"]["forward+backward"]["x_filterbank"], ">=", 10.0))
    gpu = lfilter["machine"].get("gpu", "?")
    print(f"GPU targets on {gpu} (commit {(lfilter.get('commit') or '?')[:10]}):")
    for name, value, relation, bound in checks:
        met = value <= bound if relation == "<=" else value >= bound
        print(f"  {'met ' if met else 'MISSED'} {name}: {value:.2f} (target {relation} {bound:g})")
    for name in ("filterbank forward", "filterbank forward+backward"):
        error = rows[name].get("max_relative_error")
        if error is not None:
            print(f"  {name}: max relative error against scipy float64 {error:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
