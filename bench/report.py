"""Rebuild BENCH.md (and the README's benchmark section) from bench/results/*.json.

For each benchmark and device the newest result is shown; older ones stay in
bench/results/ as the record.

    python bench/report.py
"""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def newest_results() -> list[dict]:
    newest: dict[tuple[str, str], dict] = {}
    for path in sorted(RESULTS.glob("*.json")):
        record = json.loads(path.read_text())
        record["_file"] = path.name
        key = (record["benchmark"], record["device"].split(":")[0], record.get("files", 0))
        if key not in newest or record["date"] > newest[key]["date"]:
            newest[key] = record
    return [newest[key] for key in sorted(newest)]


def _where(record: dict, memory: bool = False) -> str:
    """The machine: its GPU, or its CPU and cores (and memory)."""
    machine = record["machine"]
    return machine.get("gpu") or (f"{machine['cpu']}, {machine['cores']} cores"
                                  + (f", {machine['memory_gib']} GiB" if memory else ""))


def _provenance(record: dict) -> str:
    """Commit (and whether the tree had uncommitted changes), date and result file."""
    return (f"commit `{(record['commit'] or '?')[:10]}`{' (uncommitted changes)' if record['dirty'] else ''}, "
            f"{record['date'][:10]}, `{record['_file']}`")


def lfilter_table(record: dict) -> str:
    versions, workload = record["versions"], record["workload"]
    lines = [
        f"### lfilter, {record['device']}: {_where(record, memory=True)}",
        "",
        f"x {tuple(workload['x'])} float32 through {workload['filters']} biquads -> y {tuple(workload['y'])} "
        f"({workload['output_bytes'] / 1e6:.0f} MB). torch {versions['torch']}, numba {versions['numba']}, "
        f"scipy {versions['scipy']}, torchaudio {versions['torchaudio']}; {_provenance(record)}.",
        "",
        "| | median ms | min ms | × floor | × filterbank | max rel. error vs scipy (float64) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in record["rows"].items():
        ratio = f"{row['x_filterbank']:.1f}" if "x_filterbank" in row else ""
        error = f"{row['max_relative_error']:.1e}" if "max_relative_error" in row else ""
        lines.append(f"| {name} | {row['median_ms']:.1f} | {row['min_ms']:.1f} | {row['x_floor']:.2f} | {ratio} | {error} |")
    lines.append("")
    lines.append(f"× floor: over the median of *{record['floor']}*; × filterbank: this row over filterbank's row "
                 "of the same kind (forward or forward+backward).")
    for name, ratio in record["peak_memory_over_output"].items():
        if ratio is not None:
            lines.append(f"Peak memory of {name}: {ratio:.2f} × the output's size.")
    if record.get("first_call"):
        for cache in ("warm_cache", "cold_cache"):
            t = record["first_call"][cache]
            lines.append(f"First call in a fresh process, {cache.replace('_', ' ')}: import {t['import_s']:.1f} s, "
                         f"forward {t['first_forward_s']:.1f} s, backward {t['first_backward_s']:.1f} s.")
        if "torch_dynamo_import_s" in record["first_call"]:
            lines.append(f"Each first forward includes torch importing `torch._dynamo` "
                         f"({record['first_call']['torch_dynamo_import_s']:.1f} s), as the first call of any "
                         "custom op does.")
    return "\n".join(lines) + "\n"


def sweep_table(record: dict) -> str:
    lines = [
        f"### Sweep, {record['device']}: {_where(record)}",
        "",
        f"{record['kind']}; floor: {record['floor']}. torch {record['versions']['torch']}; {_provenance(record)}.",
        "",
        "| batch | filters | samples | y MB | forward ms | floor ms | × floor | GB/s written |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in record["rows"]:
        lines.append(f"| {row['batch']} | {row['filters']} | {row['samples']} | {row['output_mb']:.1f} | "
                     f"{row['forward']['median_ms']:.3f} | {row['floor']['median_ms']:.3f} | {row['x_floor']:.2f} | "
                     f"{row['output_gb_per_s']:.1f} |")
    return "\n".join(lines) + "\n"


def frontend_table(record: dict) -> str:
    versions, workload = record["versions"], record["workload"]
    lines = [
        f"### Front-end, {record['device']}: {_where(record)}",
        "",
        f"x {tuple(workload['x'])}, {workload['filters']} band-pass biquads, hop {workload['hop_length']}, "
        f"{workload['compression']} compression. torch {versions['torch']}; {_provenance(record)}.",
        "",
        "| | median ms | min ms |",
        "|---|---:|---:|",
    ]
    for name, row in record["rows"].items():
        lines.append(f"| {name} | {row['median_ms']:.1f} | {row['min_ms']:.1f} |")
    ratio = record["front_end_over_bare"]
    lines.append("")
    lines.append(f"Front-end over bare filtering: forward {ratio['forward']:.2f}x, "
                 f"forward+backward {ratio['forward+backward']:.2f}x.")
    return "\n".join(lines) + "\n"


def extract_table(record: dict) -> str:
    lines = [
        f"### filterbank extract, {record['device']}: {_where(record)}",
        "",
        f"{record['files']} one-second 16 kHz FLAC files -> {record['n_filters']}-band log features (.npy) and a "
        f"manifest; reading and writing included. torch {record['versions']['torch']}; {_provenance(record)}.",
        "",
        "| run | workers | batch | seconds | × real time |",
        "|---|---:|---:|---:|---:|",
    ]
    for run in record["runs"]:
        kind = "warmed-up process" if run["steady_state"] else "fresh process"
        lines.append(f"| {kind} | {run['workers']} | {run['batch_size']} | {run['seconds']:.2f} | "
                     f"{run['real_time_factor']:.0f} |")
    if "startup_s" in record:
        lines += ["", f"A fresh process spends {record['startup_s']:.2f} s before any file (Python, torch and "
                      "filterbank imported: `python -m filterbank extract --help`)."]
    return "\n".join(lines) + "\n"


def coupled_table(record: dict) -> str:
    workload = record["workload"]
    lines = [
        f"### Coupled recurrences, {record['device']}: {_where(record)}",
        "",
        f"float32, tanh, batch {workload['batch']}, {workload['steps']} steps, input size {workload['input_size']}; "
        f"banded: hidden {workload['banded']['hidden']}, bandwidth {workload['banded']['bandwidth']}; sparse: hidden "
        f"{workload['sparse']['hidden']}, density {workload['sparse']['density']:g}; cascade: "
        f"{workload['cascade']['stages']} stages over x {tuple(workload['cascade']['x'])}. torch "
        f"{record['versions']['torch']}; {_provenance(record)}.",
        "",
        "| workload | | forward ms | × filterbank | × writing the output | forward+backward ms | × filterbank | "
        "max error vs float64 |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, result in record["workloads"].items():
        for name, row in result["rows"].items():
            forward, both = row["forward"], row["forward+backward"]
            lines.append(f"| {kind} | {name} | {forward['median_ms']:.0f} | {forward['x_filterbank']:.1f} | "
                         f"{row['forward_x_floor']:.1f} | {both['median_ms']:.0f} | {both['x_filterbank']:.1f} | "
                         f"{row['max_error']:.1e} |")
    for kind, result in record["workloads"].items():
        if "recurrence_alone" in result:
            alone = result["recurrence_alone"]
            lines.append(f"| {kind} | the recurrence alone (`filterbank.coupled`) | "
                         f"{alone['forward']['median_ms']:.0f} | | {alone['forward_x_floor']:.1f} | "
                         f"{alone['forward+backward']['median_ms']:.0f} | | |")
    peaks = [f"{kind} {result['peak_memory_bytes'] / result['output_bytes']:.2f}x" for kind, result in
             record["workloads"].items() if result.get("peak_memory_bytes") is not None]
    if peaks:
        lines += ["", "Peak memory of filterbank's forward+backward over the output's size: " + ", ".join(peaks) + "."]
    return "\n".join(lines) + "\n"


TABLES = {"extract": extract_table, "lfilter": lfilter_table, "sweep": sweep_table, "frontend": frontend_table,
          "coupled": coupled_table}


def main() -> None:
    tables = [TABLES[r["benchmark"]](r) for r in newest_results() if r["benchmark"] in TABLES]
    body = "\n".join(tables) if tables else "No results yet: run `python bench/lfilter.py`.\n"
    (ROOT / "BENCH.md").write_text(
        "# Benchmarks\n\nGenerated by `python bench/report.py` from `bench/results/*.json`; "
        "each table was measured in one run.\n\n" + body)
    readme = ROOT / "README.md"
    if readme.exists():
        text = readme.read_text()
        if START in text and END in text:
            text = re.sub(f"{re.escape(START)}.*?{re.escape(END)}", f"{START}\n{body}{END}", text, flags=re.S)
            readme.write_text(text)
    print(f"wrote BENCH.md ({len(tables)} table(s))")


if __name__ == "__main__":
    main()
