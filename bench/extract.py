"""``filterbank extract`` over 1,000 one-second files: real-time factor, reading and writing included.

Writes 1,000 one-second 16 kHz FLAC files (noise and tones) to a temporary
folder, then times the command as a user runs it (a fresh process: importing
torch, numba's cache, reading, the 64-filter front-end, writing .npy files and
the manifest), for a few worker and batch settings, and in steady state (the
same work in a warmed-up process: reading and writing still included). Saves JSON to
``bench/results/extract_cpu_<date>.json``.

    python bench/extract.py [--files 1000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, save  # noqa: E402


def make_corpus(folder: Path, n_files: int, sample_rate: int = 16000) -> None:
    generator = np.random.default_rng(0)
    t = np.arange(sample_rate) / sample_rate
    for index in range(n_files):
        tone = 0.3 * np.sin(2 * np.pi * generator.uniform(100, 4000) * t)
        audio = (tone + 0.05 * generator.standard_normal(sample_rate)).astype(np.float32)
        soundfile.write(folder / f"clip_{index:05d}.flac", audio, sample_rate, subtype="PCM_16")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    runs = []
    with tempfile.TemporaryDirectory() as temporary:
        corpus, out = Path(temporary) / "corpus", Path(temporary) / "features"
        corpus.mkdir()
        make_corpus(corpus, args.files)
        for workers, batch in ((1, 32), (2, 32), (2, 64)):
            command = [sys.executable, "-m", "filterbank", "extract", str(corpus), "--out", str(out), "--n-filters",
                       "64", "--workers", str(workers), "--batch-size", str(batch), "--overwrite"]
            start = time.perf_counter()
            result = subprocess.run(command, capture_output=True, text=True)
            elapsed = time.perf_counter() - start
            if result.returncode:
                raise RuntimeError(result.stderr[-2000:])
            written = len(list(out.glob("*.npy")))
            runs.append({"workers": workers, "batch_size": batch, "seconds": elapsed, "files": written,
                         "steady_state": False, "real_time_factor": args.files / elapsed})
            print(f"workers {workers}, batch {batch}: {elapsed:.2f} s for {args.files} s of audio "
                  f"({args.files / elapsed:.0f} x real time), {written} files written")
        # The fixed cost of a fresh process: Python, torch and filterbank
        # imported, arguments parsed, nothing done.
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "filterbank", "extract", "--help"], capture_output=True, check=True)
        startup = time.perf_counter() - start
        print(f"start-up alone (python -m filterbank extract --help): {startup:.2f} s")
        # Steady state: the same command in this process after a warm-up, so
        # that importing torch and loading numba's cached kernels are paid
        # before the clock starts.
        from filterbank import cli

        cli.main(["extract", str(corpus / "clip_00000.flac"), "--out", str(out / "warm"), "--overwrite"])
        # One worker: more would be spawned afresh (forking after numba's
        # thread pool started is unsafe), which is start-up again.
        for workers in (1,):
            start = time.perf_counter()
            code = cli.main(["extract", str(corpus), "--out", str(out), "--n-filters", "64", "--workers", str(workers),
                             "--batch-size", "32", "--overwrite"])
            elapsed = time.perf_counter() - start
            runs.append({"workers": workers, "batch_size": 32, "seconds": elapsed, "steady_state": True,
                         "real_time_factor": args.files / elapsed, "exit_code": code})
            print(f"steady state, workers {workers}: {elapsed:.2f} s ({args.files / elapsed:.0f} x real time)")
    record = environment("cpu")
    record.update({"benchmark": "extract", "device": "cpu", "files": args.files, "n_filters": 64,
                   "startup_s": startup,
                   "note": "steady_state false: wall time of a fresh `python -m filterbank extract` process; true: "
                           "cli.main in a warmed-up process (reading and writing included)", "runs": runs})
    if not args.no_save:
        print(f"saved {save('extract', 'cpu', record)}")
    return record


if __name__ == "__main__":
    main()
