"""Shared pieces of the benchmarks: timing, peak memory, machine description, JSON.

Every benchmark prints one table measured in one run and saves the same
figures as JSON under ``bench/results/`` with the machine, library versions
and git commit, so that ``bench/report.py`` can rebuild ``BENCH.md``.
"""

from __future__ import annotations

import datetime
import importlib
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Callable, Optional

import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


# Timing is the package's own (what `filterbank bench` uses), so that both measure alike.
from filterbank.cli.bench import cpu_model, measure  # noqa: E402, F401 (measure: re-exported for the benchmarks)


def _status_kib(field: str) -> Optional[int]:
    """A memory figure of this process from /proc/self/status (``VmRSS``, ``VmHWM``), in KiB."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def peak_memory_bytes(function: Callable[[], object], device: str) -> Optional[int]:
    """Peak memory ``function()`` needs beyond what is held before it runs.

    CPU: growth of the peak resident set (Linux: VmHWM, reset through
    /proc/self/clear_refs). CUDA: ``torch.cuda.max_memory_allocated``.
    None where neither is available.
    """
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        function()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
    except OSError:
        return None
    before = _status_kib("VmRSS")
    function()
    peak = _status_kib("VmHWM")
    if before is None or peak is None:
        return None
    return (peak - before) * 1024


def _memory_gib() -> Optional[float]:
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        return None
    return None


def _git(*args: str) -> Optional[str]:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _version(module: str) -> Optional[str]:
    try:
        return importlib.import_module(module).__version__
    except Exception:  # not installed, or fails to load beside this torch
        return None


def environment(device: str) -> dict:
    """Machine, versions and commit, for the JSON and the table header."""
    machine = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "system": f"{platform.system()} {platform.release()}",
        "torch_threads": torch.get_num_threads(),
    }
    if device.startswith("cuda"):
        machine["gpu"] = torch.cuda.get_device_name(device)
    try:
        import numba

        machine["numba_threads"] = numba.get_num_threads()
    except ImportError:
        pass
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "versions": {
            "python": platform.python_version(),
            **{name: _version(name) for name in ("filterbank", "torch", "numpy", "numba", "scipy", "torchaudio")},
            "cuda": torch.version.cuda if device.startswith("cuda") else None,
        },
        "commit": _git("rev-parse", "HEAD"),
        "dirty": bool(status) if status is not None else None,
    }


def save(topic: str, device: str, record: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = record["date"].replace(":", "").replace("-", "")[:15]
    path = RESULTS / f"{topic}_{device.split(':')[0]}_{stamp}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path
