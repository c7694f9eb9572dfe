"""The ``filterbank`` command: feature extraction, filtering, responses and benchmarks for audio files.

    filterbank extract data/speech --out out/features            # features per file + manifest.jsonl
    filterbank filter song.flac --out out --design butter --btype lowpass --cutoff 3000 --order 6
    filterbank response --out bank.png --n-filters 40 --scale erb
    filterbank bench                                              # bench/lfilter.py's table

Also ``python -m filterbank``. ``filterbank <command> --help`` lists each
command's options. Unreadable, empty or corrupt inputs are reported with their
path and reason and the rest are processed; the exit code is then 1 with a
summary. Bad options are usage errors (exit code 2).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".au", ".mp3")

__all__ = ["main", "find_audio", "shard"]


# --------------------------------------------------------------------------
# Inputs and outputs.


def find_audio(inputs: Iterable[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Audio files named by ``inputs`` (files, folders searched recursively, or globs), sorted, unique.

    Returns ``(files, problems)``; problems are ``(input, reason)`` for names
    that match nothing.
    """
    files, problems = [], []
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            found = [p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()]
            if not found:
                problems.append((name, "folder holds no audio files (" + ", ".join(AUDIO_SUFFIXES) + ")"))
            files.extend(found)
        elif path.is_file():
            files.append(path)
        elif any(c in name for c in "*?["):
            found = [Path(p) for p in glob.glob(name, recursive=True) if Path(p).is_file()]
            if not found:
                problems.append((name, "the pattern matches no file"))
            files.extend(found)
        else:
            problems.append((name, "no such file or folder"))
    unique = sorted({p.resolve(): p for p in files}.values(), key=lambda p: str(p))
    return unique, problems


def shard(files: list, rank: int, world_size: int) -> list:
    """The files of machine ``rank`` among ``world_size``: every file exactly once across ranks."""
    return files[rank::world_size]


def _write_atomically(path: Path, write) -> None:
    """``write(temporary_path)`` then rename, so a reader never sees a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(handle)
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def output_paths(files: list[Path], inputs: Iterable[str], out: Path, suffix: Optional[str]) -> tuple[
        list[tuple[Path, Path]], list[tuple[str, str]]]:
    """Where each file's output goes: ``([(file, output)], problems)``.

    A file found in an input folder keeps its place under that folder; other
    files keep theirs under their common parent folder. ``suffix`` replaces
    the file's (None keeps it). Two files that would share an output, or an
    output that is an input, are problems ``(input, reason)``. Files inside
    ``out``, when ``out`` lies inside an input folder, are left out: they
    are outputs of earlier runs.
    """
    roots = [Path(name).resolve() for name in inputs if Path(name).is_dir()]
    resolved = {file: file.resolve() for file in files}   # once per file: resolving is a system call per part
    # With --out inside an input folder, the files found under --out are
    # earlier outputs (of `filter`, say), not inputs.
    outputs_root = out.resolve()
    if any(outputs_root != root and outputs_root.is_relative_to(root) for root in roots):
        files = [f for f in files if not resolved[f].is_relative_to(outputs_root)]
    home = {f: next((r for r in roots if resolved[f].is_relative_to(r)), None) for f in files}
    loose = [resolved[f] for f in files if home[f] is None]
    common = Path(os.path.commonpath([str(f.parent) for f in loose])) if loose else None
    inputs_resolved = {resolved[f] for f in files}
    pairs, problems, owners = [], [], {}
    for file in files:
        relative = resolved[file].relative_to(home[file] or common)
        if suffix is not None:
            relative = relative.with_suffix(suffix)
        target = out / relative
        key = outputs_root / relative   # resolved: relative comes from resolved paths
        if key == resolved[file]:
            problems.append((str(file), "the output would overwrite the input (choose another --out)"))
        elif key in owners:
            problems.append((str(file), f"its output {target} would also be that of {owners[key]} (outputs are "
                                        "named after the input's path without its suffix; give the folder that holds "
                                        "both, rename one, or extract them separately)"))
        elif key in inputs_resolved:
            problems.append((str(file), f"its output {target} is one of the inputs"))
        else:
            owners[key] = file
            pairs.append((file, target))
    return pairs, problems


def _read(path: Path, sample_rate: Optional[int], resample: bool, mono: bool):
    """(audio (channels, time) float32 tensor, rate) or raise ValueError with the reason."""
    import numpy as np
    import soundfile
    import torch

    try:
        audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, OSError) as error:  # libsndfile reports unreadable and corrupt files as RuntimeError
        raise ValueError(f"cannot read audio: {error}") from None
    if audio.shape[0] == 0:
        raise ValueError("the file holds no samples")
    if not np.isfinite(audio).all():
        raise ValueError("the file holds non-finite samples")
    x = torch.from_numpy(np.ascontiguousarray(audio.T))
    if mono:
        x = x.mean(0, keepdim=True)
    if sample_rate is not None and rate != sample_rate:
        if not resample:
            raise ValueError(f"sample rate {rate} Hz, but --sample-rate is {sample_rate} Hz (add --resample to "
                             "resample it)")
        from .resample import resample as resample_signal

        x = resample_signal(x, rate, sample_rate)
        rate = sample_rate
    return x, rate


# --------------------------------------------------------------------------
# extract


@dataclass
class ExtractOptions:
    n_filters: int
    sample_rate: Optional[int]
    kind: str
    scale: str
    f_min: Optional[float]
    f_max: Optional[float]
    hop_length: int
    compression: Optional[str]
    device: str
    batch_size: int
    format: str
    memory_mb: int
    resample: bool
    mono: bool
    overwrite: bool


def _front_end(options: ExtractOptions, sample_rate: int):
    import torch

    from .nn import BiquadFilterbank, FrontEnd, GammatoneFilterbank

    if options.kind == "gammatone":
        bank = GammatoneFilterbank(options.n_filters, sample_rate, scale=options.scale, f_min=options.f_min,
                                   f_max=options.f_max, learn_frequency=False)
    else:
        bank = BiquadFilterbank(options.n_filters, sample_rate, kind=options.kind, scale=options.scale,
                                f_min=options.f_min, f_max=options.f_max, learn=())
    front_end = FrontEnd(sample_rate=sample_rate, hop_length=options.hop_length, filterbank=bank,
                         compression=options.compression)
    return front_end.to(torch.device(options.device)).eval()


def _extract_group(args) -> list[dict]:
    """Extract features for a list of files (one worker's share): manifest records, one per file."""
    import numpy as np
    import torch

    pairs, options = args
    records, batch, front_ends = [], [], {}
    # Band signals take channels x n_filters x time x 4 bytes; a batch stays
    # within the budget, and a file alone over it is streamed in blocks.
    budget = options.memory_mb * 2**20 / (4 * options.n_filters)   # samples (channels x time) per forward

    def front_end(rate):
        if rate not in front_ends:
            front_ends[rate] = _front_end(options, rate)
        return front_ends[rate]

    def write(file, x, rate, target, feature):
        feature = feature[0] if x.shape[0] == 1 else feature   # (n_filters, frames) for one channel
        if options.format == "npy":
            _write_atomically(target, lambda temporary: np.save(temporary, feature.numpy()))
        else:
            _write_atomically(target, lambda temporary: torch.save(feature.clone(), temporary))
        records.append({"input": str(file), "output": str(target), "shape": list(feature.shape),
                        "sample_rate": rate, "seconds": x.shape[-1] / rate, "status": "ok"})

    def flush():
        if not batch:
            return
        rate, channels = batch[0][2], batch[0][1].shape[0]
        longest = max(x.shape[-1] for _, x, _, _ in batch)
        signals = torch.zeros((len(batch), channels, longest))              # (files, channels, time), zero-padded
        for index, (_, x, _, _) in enumerate(batch):
            signals[index, :, : x.shape[-1]] = x
        lengths = torch.tensor([x.shape[-1] for _, x, _, _ in batch])
        with torch.no_grad():
            # Frames of the real samples equal each file's own features.
            features = front_end(rate)(signals.to(options.device), lengths).cpu()  # (files, channels, n_filters, frames)
        for (file, x, rate_, target), feature, length in zip(batch, features, lengths.tolist()):
            write(file, x, rate_, target, feature[..., : 1 + length // options.hop_length])
        batch.clear()

    def stream(file, x, rate, target):
        model = front_end(rate)
        block = max(options.hop_length, int(budget // x.shape[0]) // options.hop_length * options.hop_length)
        pieces, state = [], None
        with torch.no_grad():
            for begin in range(0, x.shape[-1], block):
                frames, state = model.stream(x[:, begin : begin + block].to(options.device), state)
                pieces.append(frames.cpu())
            pieces.append(model.finish(state).cpu())
        write(file, x, rate, target, torch.cat(pieces, -1))

    for file, target in pairs:
        if target.exists() and not options.overwrite:
            records.append({"input": str(file), "output": str(target), "status": "skipped",
                            "reason": "output exists (use --overwrite)"})
            continue
        try:
            x, rate = _read(file, options.sample_rate, options.resample, options.mono)
        except ValueError as error:
            records.append({"input": str(file), "status": "error", "reason": str(error)})
            continue
        try:
            front_end(rate)
        except ValueError as error:  # e.g. --f-max above this file's Nyquist frequency
            records.append({"input": str(file), "status": "error",
                            "reason": f"cannot build the front-end at {rate} Hz: {error}"})
            continue
        if x.shape[0] * x.shape[-1] > budget:
            flush()
            stream(file, x, rate, target)
            continue
        if batch:
            shortest = min(b[1].shape[-1] for b in batch)
            longest = max([b[1].shape[-1] for b in batch] + [x.shape[-1]])
            # Files come sorted by length, so padding to the longest wastes
            # little; a batch changes with the rate or the channel count.
            if (batch[0][2] != rate or batch[0][1].shape[0] != x.shape[0] or len(batch) == options.batch_size
                    or longest > 1.25 * shortest + options.hop_length
                    or (len(batch) + 1) * x.shape[0] * longest > budget):
                flush()
        batch.append((file, x, rate, target))
    flush()
    return records


def _progress(done: int, total: int, start: float, stream=None) -> None:
    """A bar redrawn in place on a terminal; in a log, a line every 10% of the files."""
    stream = stream or sys.stderr
    terminal = stream.isatty()
    if not terminal and done != total and done % max(1, total // 10):
        return
    elapsed = time.perf_counter() - start
    width = 30
    filled = int(width * done / max(total, 1))
    line = f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total} files, {elapsed:.1f} s"
    stream.write(("\r" + line + ("\n" if done == total else "")) if terminal else line + "\n")
    stream.flush()


def _order_by_length(pairs: list[tuple[Path, Path]]) -> list[tuple[Path, Path]]:
    """(file, output) pairs grouped by (rate, channels, length) so that batches fill; unreadable headers last."""
    import soundfile

    def key(pair):
        try:
            info = soundfile.info(str(pair[0]))
            return (0, info.samplerate, info.channels, info.frames, str(pair[0]))
        except Exception:  # reported when read
            return (1, 0, 0, 0, str(pair[0]))

    return sorted(pairs, key=key)


def command_extract(args) -> int:
    start = time.perf_counter()
    files, problems = find_audio(args.inputs)
    out = Path(args.out)
    pairs, clashes = output_paths(files, args.inputs, out, "." + args.format)
    # Every rank sees the same list, so the shards cover each file once; the
    # problems found before any work are reported by rank 0 alone.
    pairs = shard(pairs, args.rank, args.world_size)
    problems = problems + clashes if args.rank == 0 else []
    options = ExtractOptions(
        n_filters=args.n_filters, sample_rate=args.sample_rate, kind=args.kind, scale=args.scale, f_min=args.f_min,
        f_max=args.f_max, hop_length=args.hop_length, compression=None if args.compression == "none" else
        args.compression, device=args.device, batch_size=args.batch_size, format=args.format, memory_mb=args.memory_mb,
        resample=args.resample, mono=args.mono, overwrite=args.overwrite)
    ordered = _order_by_length(pairs)
    # Work comes in groups of files; a worker takes one group at a time.
    group_size = max(args.batch_size, 1) * 4
    groups = [ordered[i : i + group_size] for i in range(0, len(ordered), group_size)]
    records: list[dict] = [{"input": name, "status": "error", "reason": reason} for name, reason in problems]
    done = 0
    if args.workers > 1 and len(groups) > 1:
        import multiprocessing

        context = multiprocessing.get_context("fork" if _fork_is_safe(args.device) else "spawn")
        with context.Pool(args.workers, initializer=_limit_threads) as pool:
            for group_records in pool.imap(_extract_group, [(g, options) for g in groups]):
                records.extend(group_records)
                done += len(group_records)
                _progress(done, len(pairs), start)
    else:
        for group in groups:
            group_records = _extract_group((group, options))
            records.extend(group_records)
            done += len(group_records)
            _progress(done, len(pairs), start)
    manifest = out / (f"manifest.rank{args.rank}.jsonl" if args.world_size > 1 else "manifest.jsonl")
    lines = "".join(json.dumps(record) + "\n" for record in records)
    _write_atomically(manifest, lambda temporary: Path(temporary).write_text(lines))
    return _summary(records, time.perf_counter() - start, manifest)


def _fork_is_safe(device: str) -> bool:
    """Whether worker processes may be forked from this one.

    Not after numba's OpenMP thread pool has started here (a forked child
    is then killed), e.g. when extraction already ran in this process, nor
    with CUDA.
    """
    if device != "cpu":
        return False
    try:
        from numba.np.ufunc import parallel
    except ImportError:
        return False
    return not getattr(parallel, "_is_initialized", True)


def _limit_threads() -> None:
    # Each worker process takes one core's worth of threads.
    import numba
    import torch

    torch.set_num_threads(1)
    numba.set_num_threads(1)


def _summary(records: list[dict], elapsed: float, manifest: Optional[Path] = None) -> int:
    ok = [r for r in records if r["status"] == "ok"]
    skipped = [r for r in records if r["status"] == "skipped"]
    failed = [r for r in records if r["status"] == "error"]
    seconds = sum(r.get("seconds", 0.0) for r in ok)
    speed = f", {seconds / elapsed:.0f} x real time" if ok and elapsed > 0 else ""
    print(f"{len(ok)} done, {len(skipped)} skipped, {len(failed)} failed in {elapsed:.1f} s "
          f"({seconds:.1f} s of audio{speed})" + (f"; manifest: {manifest}" if manifest else ""))
    for record in failed:
        print(f"error: {record['input']}: {record['reason']}", file=sys.stderr)
    return 1 if failed else 0


# --------------------------------------------------------------------------
# filter


def _read_sos(name: str):
    """The cascade in an --sos file (.npy, or text/.csv rows): (n_sections, 6) float64."""
    import numpy as np
    import torch

    path = Path(name)
    try:
        values = np.load(path) if path.suffix == ".npy" else np.loadtxt(path, delimiter="," if path.suffix ==
                                                                      ".csv" else None, ndmin=2)
    except (OSError, ValueError) as error:
        raise ValueError(f"--sos {path}: cannot read it: {error}") from None
    sos = torch.as_tensor(np.asarray(values, dtype=np.float64))
    if sos.ndim != 2 or sos.shape[-1] != 6:
        raise ValueError(f"--sos {path}: expected rows of 6 coefficients [b0 b1 b2 a0 a1 a2]; got shape "
                         f"{tuple(sos.shape)}")
    return sos


def _design_sos(args, sample_rate: int):
    """The cascade of --design (or --sos) at ``sample_rate``: (n_sections, 6) float64.

    The number of --cutoff values was checked with the other options (main).
    """
    import torch

    from . import design

    if args.sos is not None:
        return _read_sos(args.sos)
    cutoff = torch.tensor(args.cutoff, dtype=torch.float64)
    if args.design in ("butter", "cheby1", "cheby2"):
        if args.btype != "bandpass":
            cutoff = cutoff[0]
        if args.design == "butter":
            return design.butter_sos(args.order, cutoff, sample_rate, btype=args.btype)
        if args.design == "cheby1":
            return design.cheby1_sos(args.order, args.ripple, cutoff, sample_rate, btype=args.btype)
        return design.cheby2_sos(args.order, args.attenuation, cutoff, sample_rate, btype=args.btype)
    frequency = cutoff[0]
    if args.design == "gammatone":
        return design.gammatone_sos(frequency, sample_rate)
    if args.design == "peaking":
        b, a = design.peaking_biquad(frequency, args.q, args.gain, sample_rate)
    elif args.design == "notch":
        b, a = design.notch_biquad(frequency, args.q, sample_rate)
    elif args.design == "lowshelf":
        b, a = design.lowshelf_biquad(frequency, args.q, args.gain, sample_rate)
    else:
        b, a = design.highshelf_biquad(frequency, args.q, args.gain, sample_rate)
    return torch.cat([b, a]).unsqueeze(0)


def command_filter(args) -> int:
    import numpy as np
    import soundfile
    import torch

    from .functional import sosfilt, sosfiltfilt

    files, problems = find_audio(args.inputs)
    out = Path(args.out)
    pairs, clashes = output_paths(files, args.inputs, out, None)
    records = [{"input": name, "status": "error", "reason": reason} for name, reason in problems + clashes]
    # An --sos file serves every rate; a bad one is a usage error (main), before any work.
    fixed = _read_sos(args.sos) if args.sos is not None else None
    designs: dict[int, object] = {}   # --design, per sample rate
    start = time.perf_counter()
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
            x, rate = _read(file, None, False, False)
            if fixed is None and rate not in designs:
                try:
                    designs[rate] = _design_sos(args, rate)
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
            if peak > 1 and not subtype.startswith(("FLOAT", "DOUBLE")):
                # Fixed-point formats clip at full scale: say so rather than clip silently.
                print(f"warning: {file}: the output peaks at {peak:.3g} (> 1); {subtype} clips it (lower the "
                      "gain, or pass --subtype FLOAT)", file=sys.stderr)
            _write_atomically(target, lambda temporary: soundfile.write(temporary, audio, rate, subtype=subtype,
                                                                        format=info.format))
            records.append({"input": str(file), "output": str(target), "status": "ok", "seconds": x.shape[-1] / rate,
                            "sample_rate": rate})
        except (ValueError, RuntimeError) as error:   # RuntimeError: libsndfile cannot write that subtype
            records.append({"input": str(file), "status": "error", "reason": str(error)})
        _progress(index + 1, len(pairs), start)
    return _summary(records, time.perf_counter() - start)


# --------------------------------------------------------------------------
# response


def command_response(args) -> int:
    import torch

    from . import design
    from .nn import BiquadFilterbank, GammatoneFilterbank
    from .plotting import plot_responses

    if args.command == "response" and args.design is not None and args.sos is not None:
        raise ValueError("give at most one of --design and --sos")
    if args.design is not None or args.sos is not None:
        sos = _design_sos(args, args.sample_rate)

        class Fixed:
            sample_rate = float(args.sample_rate)

            def responses(self, n):
                frequencies, response = design.sosfreqz(sos.unsqueeze(0), n, sample_rate=self.sample_rate)
                return frequencies, response.abs()

        if args.design is None:
            title = Path(args.sos).name
        else:
            title = args.design + (f" {args.btype}" if args.design in ("butter", "cheby1", "cheby2") else "")
        bank = Fixed()
    elif args.kind == "gammatone":
        bank = GammatoneFilterbank(args.n_filters, args.sample_rate, scale=args.scale, f_min=args.f_min,
                                   f_max=args.f_max, learn_frequency=False)
        title = None
    else:
        bank = BiquadFilterbank(args.n_filters, args.sample_rate, kind=args.kind, scale=args.scale, f_min=args.f_min,
                                f_max=args.f_max, learn=())
        title = None
    try:
        import matplotlib
    except ImportError:
        print("error: filterbank response draws with matplotlib, which is not installed here (pip install "
              "matplotlib, or filterbank[demo])", file=sys.stderr)
        return 1
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(9, 4))
    with torch.no_grad():
        plot_responses(bank, axis, log_frequency=not args.linear, title=title)
    figure.tight_layout()
    out = Path(args.out)
    _write_atomically(out, lambda temporary: figure.savefig(temporary, dpi=110, format="png"))
    print(f"drawn: {out}")
    return 0


# --------------------------------------------------------------------------
# bench


def command_bench(args) -> int:
    import runpy

    script = Path(__file__).resolve().parent.parent / "bench" / "lfilter.py"
    if not script.exists():
        print(f"error: the benchmark script is not here ({script}); it ships with the source checkout",
              file=sys.stderr)
        return 1
    sys.argv = [str(script), "--device", args.device, "--skip-first-call"] + (["--no-save"] if args.no_save else [])
    runpy.run_path(str(script), run_name="__main__")
    return 0


# --------------------------------------------------------------------------
# Argument parsing.


def _int_at_least(minimum: int, expected: str):
    """An argparse type: an int >= ``minimum``, or a usage error saying what was expected."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}; got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {expected}; got {value}")
        return value

    return parse


_positive_int = _int_at_least(1, "a positive integer")
_non_negative_int = _int_at_least(0, "an integer >= 0")


def _add_bank_options(parser, n_filters=64) -> None:
    parser.add_argument("--n-filters", type=_positive_int, default=n_filters, help=f"bands (default {n_filters})")
    parser.add_argument("--scale", default="mel", choices=["mel", "mel_htk", "erb", "bark", "linear", "log"],
                        help="spacing of the centre frequencies (default mel)")
    parser.add_argument("--f-min", type=float, default=None, help="lowest centre frequency, Hz (default 30)")
    parser.add_argument("--f-max", type=float, default=None, help="highest centre frequency, Hz (default 0.95 Nyquist)")


def _add_design_options(parser, required: bool) -> None:
    group = parser.add_argument_group("the filter" + ("" if required else " (instead of a bank)"))
    group.add_argument("--design", choices=["butter", "cheby1", "cheby2", "peaking", "notch", "lowshelf", "highshelf",
                                            "gammatone"], default=None)
    group.add_argument("--btype", choices=["lowpass", "highpass", "bandpass"], default="lowpass",
                       help="for butter/cheby1/cheby2")
    group.add_argument("--cutoff", type=float, nargs="+", help="Hz: one value, or low and high for bandpass")
    group.add_argument("--order", type=_positive_int, default=4, help="for butter/cheby1/cheby2 (default 4)")
    group.add_argument("--ripple", type=float, default=1.0, help="cheby1 pass-band ripple, dB (default 1)")
    group.add_argument("--attenuation", type=float, default=40.0, help="cheby2 stop-band attenuation, dB (default 40)")
    group.add_argument("--q", type=float, default=0.707, help="for peaking/notch/shelves (default 0.707)")
    group.add_argument("--gain", type=float, default=0.0, help="dB, for peaking and shelves")
    group.add_argument("--sos", default=None, help="a .npy/.txt/.csv of rows [b0 b1 b2 a0 a1 a2] instead of --design")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="filterbank", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")

    extract = commands.add_parser("extract", help="features of audio files with a filterbank front-end",
                                  description="Features of audio files (wav, flac, ogg ...; files, folders or globs) "
                                              "with a biquad filterbank front-end: one .npy or .pt per file, shape "
                                              "(n_filters, frames) or (channels, n_filters, frames), and "
                                              "manifest.jsonl. Under torchrun, --rank and --world-size default to "
                                              "RANK and WORLD_SIZE.")
    extract.add_argument("inputs", nargs="+", help="audio files, folders (searched recursively) or globs")
    extract.add_argument("--out", required=True, help="output folder (mirrors the input folders)")
    _add_bank_options(extract)
    extract.add_argument("--kind", default="bandpass", choices=["bandpass", "bandpass_skirt", "lowpass", "highpass",
                                                                "notch", "allpass", "gammatone"],
                         help="biquad kind, or gammatone (4th-order gammatones: four biquads each) (default bandpass)")
    extract.add_argument("--hop-length", type=_positive_int, default=160, help="samples between frames (default 160)")
    extract.add_argument("--compression", default="log", choices=["log", "power", "pcen", "none"])
    extract.add_argument("--sample-rate", type=_positive_int, default=None,
                         help="required rate: other rates are rejected, or resampled with --resample")
    extract.add_argument("--resample", action="store_true", help="resample files at other rates to --sample-rate")
    extract.add_argument("--mono", action="store_true", help="mix multichannel files down to one channel")
    extract.add_argument("--format", default="npy", choices=["npy", "pt"])
    extract.add_argument("--device", default="cpu", help="cpu or cuda[:index] (default cpu); plain cuda under torchrun "
                                                         "means cuda:$LOCAL_RANK")
    extract.add_argument("--batch-size", type=_positive_int, default=32, help="files per forward call (default 32)")
    extract.add_argument("--memory-mb", type=_positive_int, default=1024,
                         help="memory per worker for band signals (default 1024): batches stay within it, and a file "
                              "over it is processed in streamed blocks (same features)")
    extract.add_argument("--workers", type=_positive_int, default=1, help="worker processes (default 1)")
    extract.add_argument("--overwrite", action="store_true", help="recompute outputs that exist")
    extract.add_argument("--rank", type=_non_negative_int, default=None,
                         help="this machine's shard (default $RANK or 0)")
    extract.add_argument("--world-size", type=_positive_int, default=None,
                         help="number of shards (default $WORLD_SIZE or 1)")
    extract.set_defaults(run=command_extract)

    filter_ = commands.add_parser("filter", help="filter audio files with a designed filter or an SOS file",
                                  description="Filter audio files and write audio with each input's rate and subtype.")
    filter_.add_argument("inputs", nargs="+", help="audio files, folders or globs")
    filter_.add_argument("--out", required=True, help="output folder (never the inputs' own files; inside an input "
                                                      "folder, the files in it are not inputs)")
    _add_design_options(filter_, required=True)
    filter_.add_argument("--zero-phase", action="store_true", help="forwards and backwards (sosfiltfilt)")
    filter_.add_argument("--subtype", default=None, help="output subtype, e.g. PCM_16, PCM_24, FLOAT (default: the "
                                                         "input's)")
    filter_.add_argument("--overwrite", action="store_true")
    filter_.set_defaults(run=command_filter)

    response = commands.add_parser("response", help="draw magnitude responses to a PNG")
    response.add_argument("--out", required=True, help="PNG file")
    response.add_argument("--sample-rate", type=_positive_int, default=16000)
    _add_bank_options(response, n_filters=40)
    response.add_argument("--kind", default="bandpass",
                          choices=["bandpass", "bandpass_skirt", "lowpass", "highpass", "notch", "allpass", "gammatone"])
    response.add_argument("--linear", action="store_true", help="linear frequency axis")
    _add_design_options(response, required=False)
    response.set_defaults(run=command_response)

    bench = commands.add_parser("bench", help="run the lfilter benchmark and print its table")
    bench.add_argument("--device", default="cpu")
    bench.add_argument("--no-save", action="store_true")
    bench.set_defaults(run=command_bench)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "extract":
        # --rank/--world-size default to torchrun's variables: name them when they are what is wrong.
        for name, variable, check, fallback in (("rank", "RANK", _non_negative_int, 0),
                                                 ("world_size", "WORLD_SIZE", _positive_int, 1)):
            if getattr(args, name) is not None:
                continue
            if variable not in os.environ:
                setattr(args, name, fallback)
                continue
            try:
                setattr(args, name, check(os.environ[variable]))
            except argparse.ArgumentTypeError as error:
                parser.error(f"${variable} (the default of --{name.replace('_', '-')}): {error}")
    if args.command == "extract" and args.rank >= args.world_size:
        parser.error(f"--rank must be below --world-size ({args.world_size}); got {args.rank}")
    if args.command == "extract" and args.resample and args.sample_rate is None:
        parser.error("--resample needs --sample-rate")
    if args.command == "filter" and (args.design is None) == (args.sos is None):
        parser.error("give exactly one of --design and --sos")
    if args.command in ("filter", "response") and args.design is not None:
        if not args.cutoff:
            parser.error(f"--design {args.design} needs --cutoff")
        needed = 2 if args.design in ("butter", "cheby1", "cheby2") and args.btype == "bandpass" else 1
        if len(args.cutoff) != needed:
            parser.error(f"--design {args.design}" + (f" --btype {args.btype}" if args.design in
                         ("butter", "cheby1", "cheby2") else "") + f" needs {needed} --cutoff value"
                         + ("s (low high)" if needed == 2 else "") + f"; got {len(args.cutoff)}")
    if args.command == "filter" and args.subtype is not None:
        import soundfile

        if args.subtype not in soundfile.available_subtypes():
            parser.error(f"--subtype must be one of {', '.join(sorted(soundfile.available_subtypes()))}; got "
                         f"{args.subtype!r}")
    if args.command == "extract" and args.device == "cuda" and os.environ.get("LOCAL_RANK", "").isdigit():
        args.device = f"cuda:{os.environ['LOCAL_RANK']}"   # under torchrun: one GPU per process
    if getattr(args, "device", "cpu") != "cpu":
        import torch

        try:
            device = torch.device(args.device)
        except RuntimeError:
            parser.error(f"--device must be cpu or cuda[:index]; got {args.device!r}")
        if device.type != "cuda" or not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count():
            parser.error(f"--device {args.device}: " + ("no CUDA device is available here" if device.type == "cuda"
                                                         else "expected cpu or cuda[:index]"))
    try:
        return args.run(args)
    except ValueError as error:  # a bad combination of options found while designing
        parser.error(str(error))


if __name__ == "__main__":
    sys.exit(main())
