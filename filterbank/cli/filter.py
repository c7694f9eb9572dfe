"""``filterbank filter``: filter audio files with a designed filter or a file of sections.

Each output keeps its input's format, sample rate and subtype (or
``--subtype``); ``--zero-phase`` runs ``sosfiltfilt``. The filter is
designed once per sample rate.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from ._files import (
    Stopped, check_output_folder, find_audio, output_paths, progress, read_audio, stop_on_signals, stopped_line, summary,
    write_or_fail,
)
from ._options import add_design_options, check_design_options, design_sos

__all__ = ["add_parser"]


def add_parser(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser("filter", help="filter audio files with a designed filter or an SOS file",
                                 description="Filter audio files and write audio with each input's rate and subtype.")
    parser.add_argument("inputs", nargs="+", help="audio files, folders or globs")
    parser.add_argument("--out", required=True, help="output folder (never the inputs' own files; inside an input "
                                                     "folder, the files in it are not inputs)")
    add_design_options(parser, required=True)
    parser.add_argument("--zero-phase", action="store_true", help="forwards and backwards (sosfiltfilt)")
    parser.add_argument("--subtype", default=None, help="output subtype, e.g. PCM_16, PCM_24, FLOAT (default: the "
                                                        "input's)")
    parser.add_argument("--overwrite", action="store_true")
    parser.set_defaults(check=check, run=run)
    return parser


def check(args, parser: argparse.ArgumentParser) -> None:
    if (args.design is None) == (args.sos is None):
        parser.error("give exactly one of --design and --sos")
    check_design_options(args, parser)   # each file's rate is known only when it is read
    if args.subtype is not None:
        import soundfile

        if args.subtype not in soundfile.available_subtypes():
            parser.error(f"--subtype must be one of {', '.join(sorted(soundfile.available_subtypes()))}; got "
                         f"{args.subtype!r}")
    check_output_folder(Path(args.out), parser)   # last: it creates the folder


def run(args) -> int:
    files, problems = find_audio(args.inputs)
    pairs, clashes = output_paths(files, args.inputs, Path(args.out), None)
    records = [{"input": name, "status": "error", "reason": reason} for name, reason in problems + clashes]
    start = time.perf_counter()
    with stop_on_signals():
        try:
            _filter_files(args, pairs, records, start)
        except (Stopped, KeyboardInterrupt) as stop:
            return stopped_line(stop.signal if isinstance(stop, Stopped) else signal.SIGINT,
                                len(records) - len(problems) - len(clashes), len(pairs), "filter keeps no manifest")
    return summary(records, time.perf_counter() - start)


def _filter_files(args, pairs: list, records: list, start: float) -> None:
    """Filter each (input, output) pair, appending a record for each to ``records``."""
    import numpy as np
    import soundfile
    import torch

    from ..functional import sosfilt, sosfiltfilt

    # An --sos file serves every rate (read, and checked, with the options).
    fixed = args.sos_sections
    designs: dict[int, object] = {}   # --design, per sample rate
    for index, (file, target) in enumerate(pairs):
        try:
            if target.exists() and not args.overwrite:
                records.append({"input": str(file), "output": str(target), "status": "skipped",
                                "reason": "output exists (use --overwrite)"})
                continue
            try:
                info = soundfile.info(str(file))
            except (RuntimeError, OSError) as error:
                raise ValueError(f"cannot read audio: {error}") from None
            x, rate = read_audio(file, None, False, False)
            if fixed is None and rate not in designs:
                try:
                    designs[rate] = design_sos(args, rate)
                except ValueError as error:  # e.g. a cut-off above this file's Nyquist frequency
                    raise ValueError(f"cannot design the filter at {rate} Hz: {error}") from None
            sos = fixed if fixed is not None else designs[rate]
            with torch.no_grad():
                signal = x.double()                               # (channels, time)
                y = sosfiltfilt(sos, signal) if args.zero_phase else sosfilt(sos, signal)
            audio = np.ascontiguousarray(y.T.numpy())                 # (time, channels)
            subtype = args.subtype or info.subtype
            if not soundfile.check_format(info.format, subtype):
                raise ValueError(f"{info.format} files cannot hold --subtype {subtype}; they take "
                                 f"{', '.join(soundfile.available_subtypes(info.format))}")
            peak = float(np.abs(audio).max()) if audio.size else 0.0
            if not np.isfinite(audio).all() or (subtype == "FLOAT" and peak > float(np.finfo(np.float32).max)):
                raise ValueError(f"the filtered signal is not finite{' in ' + subtype if np.isfinite(peak) else ''} "
                                 "(the filter's gain is too large for this signal); nothing written")
            if peak > 1 and not subtype.startswith(("FLOAT", "DOUBLE")):
                # Fixed-point formats clip at full scale: say so rather than clip silently.
                clipped = float((np.abs(audio) > 1).mean())
                print(f"warning: {file}: the output peaks at {peak:.3g} (> 1) and {subtype} clips {clipped:.2%} of "
                      "its samples (lower the gain, or pass --subtype FLOAT)", file=sys.stderr)
            failure = write_or_fail(target, lambda temporary: soundfile.write(temporary, audio, rate,
                                                                              subtype=subtype, format=info.format))
            if failure:
                raise ValueError(failure)
            records.append({"input": str(file), "output": str(target), "status": "ok", "seconds": x.shape[-1] / rate,
                            "sample_rate": rate})
        except (ValueError, RuntimeError) as error:   # RuntimeError: libsndfile cannot write that subtype
            records.append({"input": str(file), "status": "error", "reason": str(error)})
        progress(index + 1, len(pairs), start)
