"""``filterbank extract``: features of audio files with a filterbank front-end, batched, sharded and resumable.

One .npy (or .pt) per file, shape (n_filters, frames) or (channels,
n_filters, frames), mirroring the input folders, and a manifest.jsonl of
every file's status. Files are sorted by length and batched zero-padded;
``FrontEnd(x, lengths)`` makes each file's features equal its features
alone, and a file too long for ``--memory-mb`` is streamed through
``FrontEnd.stream``. Under torchrun, ``--rank``/``--world-size`` default to
``$RANK``/``$WORLD_SIZE`` and plain ``--device cuda`` means
``cuda:$LOCAL_RANK``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .. import features
from ._files import (
    Stopped, check_output_folder, find_audio, order_by_length, output_paths, progress, raise_swallowed_signals_again,
    read_audio, shard, stop_on_signals, stopped_line, summary, write_or_fail,
)
from ._options import (
    CASCADE, add_bank_options, check_bank_options, check_device, make_bank, non_negative_int, positive_int,
)

__all__ = ["add_parser"]

_NONE = "none"  # --compression none: the energies as they are


def add_parser(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "extract", help="features of audio files with a filterbank front-end",
        description="Features of audio files (wav, flac, ogg ...; files, folders or globs) with a filterbank "
                    "front-end: one .npy or .pt per file, shape (n_filters, frames) or (channels, n_filters, frames), "
                    "and manifest.jsonl. Under torchrun, --rank and --world-size default to RANK and WORLD_SIZE.")
    parser.add_argument("inputs", nargs="+", help="audio files, folders (searched recursively) or globs")
    parser.add_argument("--out", required=True, help="output folder (mirrors the input folders)")
    add_bank_options(parser)
    parser.add_argument("--hop-length", type=positive_int, default=160, help="samples between frames (default 160)")
    parser.add_argument("--compression", default="log", choices=features.COMPRESSIONS + (_NONE,))
    parser.add_argument("--sample-rate", type=positive_int, default=None,
                        help="required rate: other rates are rejected, or resampled with --resample")
    parser.add_argument("--resample", action="store_true", help="resample files at other rates to --sample-rate")
    parser.add_argument("--mono", action="store_true", help="mix multichannel files down to one channel")
    parser.add_argument("--format", default="npy", choices=["npy", "pt"])
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:index] (default cpu); plain cuda under torchrun "
                                                        "means cuda:$LOCAL_RANK")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="files per forward call (default 32)")
    parser.add_argument("--memory-mb", type=positive_int, default=1024,
                        help="memory per worker for band signals (default 1024): batches stay within it, and a file "
                             "over it is processed in streamed blocks (same features)")
    parser.add_argument("--workers", type=positive_int, default=1, help="worker processes (default 1)")
    parser.add_argument("--overwrite", action="store_true", help="recompute outputs that exist")
    parser.add_argument("--rank", type=non_negative_int, default=None, help="this machine's shard (default $RANK or 0)")
    parser.add_argument("--world-size", type=positive_int, default=None,
                        help="number of shards (default $WORLD_SIZE or 1)")
    parser.set_defaults(check=check, run=run)
    return parser


def check(args, parser: argparse.ArgumentParser) -> None:
    """The options together, before any work; torchrun's variables where the options are not given."""
    # --rank/--world-size default to torchrun's variables: name them when they are what is wrong.
    for name, variable, parse, fallback in (("rank", "RANK", non_negative_int, 0),
                                            ("world_size", "WORLD_SIZE", positive_int, 1)):
        if getattr(args, name) is not None:
            continue
        if variable not in os.environ:
            setattr(args, name, fallback)
            continue
        try:
            setattr(args, name, parse(os.environ[variable]))
        except argparse.ArgumentTypeError as error:
            parser.error(f"${variable} (the default of --{name.replace('_', '-')}): {error}")
    if args.rank >= args.world_size:
        parser.error(f"--rank must be below --world-size ({args.world_size}); got {args.rank}")
    if args.resample and args.sample_rate is None:
        parser.error("--resample needs --sample-rate")
    if args.device == "cuda" and os.environ.get("LOCAL_RANK", "").isdigit():
        args.device = f"cuda:{os.environ['LOCAL_RANK']}"   # under torchrun: one GPU per process
    check_device(args, parser)
    # With --sample-rate every file is (or is resampled to) that rate: the whole bank is checked here.
    check_bank_options(args, parser, args.sample_rate)
    check_output_folder(Path(args.out), parser)   # last: it creates the folder


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

    from ..nn import FrontEnd

    bank = make_bank(options.kind, options.n_filters, sample_rate, options.scale, options.f_min, options.f_max)
    front_end = FrontEnd(sample_rate=sample_rate, hop_length=options.hop_length, filterbank=bank,
                         compression=options.compression)
    return front_end.to(torch.device(options.device)).eval()


def _extract_group(args) -> list[dict]:
    """Extract features for a list of files (one worker's share): manifest records, one per file."""
    import numpy as np
    import torch

    pairs, options = args
    records, batch, front_ends = [], [], {}
    # Band signals take channels x n_filters x time x 4 bytes (a cascade about
    # five times that: its recurrence's input and two states per stage); a
    # batch stays within the budget, and a file alone over it is streamed in blocks.
    copies = 5 if options.kind == CASCADE else 1
    budget = options.memory_mb * 2**20 / (4 * options.n_filters * copies)   # samples (channels x time) per forward

    def front_end(rate):
        if rate not in front_ends:
            front_ends[rate] = _front_end(options, rate)
        return front_ends[rate]

    def write(file, x, rate, target, feature):
        feature = feature[0] if x.shape[0] == 1 else feature   # (n_filters, frames) for one channel
        if not bool(torch.isfinite(feature).all()):
            failure = "its features are not finite (nothing written)"
        elif options.format == "npy":
            failure = write_or_fail(target, lambda temporary: np.save(temporary, feature.numpy()))
        else:
            failure = write_or_fail(target, lambda temporary: torch.save(feature.clone(), temporary))
        if failure:
            records.append({"input": str(file), "output": str(target), "status": "error", "reason": failure})
            return
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
            x, rate = read_audio(file, options.sample_rate, options.resample, options.mono)
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


def _ready_kernels(options: ExtractOptions) -> float:
    """Run the front-end once on a few hops of silence, so that the kernels are compiled (or loaded
    from numba's cache) before any file: seconds taken. A rate the options cannot build at is left
    to the files to report."""
    import torch

    started = time.perf_counter()
    hops = 4 * options.hop_length
    try:
        front_end = _front_end(options, options.sample_rate or 16000)
    except ValueError:
        return 0.0
    with torch.no_grad():
        front_end(torch.zeros(1, 1, hops, device=options.device), torch.tensor([hops]))
    return time.perf_counter() - started


def run(args) -> int:
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
        f_max=args.f_max, hop_length=args.hop_length, compression=None if args.compression == _NONE else
        args.compression, device=args.device, batch_size=args.batch_size, format=args.format, memory_mb=args.memory_mb,
        resample=args.resample, mono=args.mono, overwrite=args.overwrite)
    ordered = order_by_length(pairs)
    # Work comes in groups of files; a worker takes one group at a time.
    group_size = max(args.batch_size, 1) * 4
    groups = [ordered[i : i + group_size] for i in range(0, len(ordered), group_size)]
    records: list[dict] = [{"input": name, "status": "error", "reason": reason} for name, reason in problems]
    done, stopped, start_up = 0, None, 0.0
    with stop_on_signals():
        try:
            if groups:
                # Before the workers fork, so that they inherit the compiled kernels.
                start_up = _ready_kernels(options)
            if args.workers > 1 and len(groups) > 1:
                import multiprocessing

                context = multiprocessing.get_context("fork" if _fork_is_safe(args.device) else "spawn")
                # Leaving the block (a signal included) terminates the workers at once.
                with context.Pool(args.workers, initializer=_start_worker) as pool:
                    for group_records in pool.imap(_extract_group, [(g, options) for g in groups]):
                        records.extend(group_records)
                        done += len(group_records)
                        progress(done, len(pairs), start)
            else:
                for group in groups:
                    group_records = _extract_group((group, options))
                    records.extend(group_records)
                    done += len(group_records)
                    progress(done, len(pairs), start)
        except (Stopped, KeyboardInterrupt) as stop:
            stopped = stop.signal if isinstance(stop, Stopped) else signal.SIGINT
    manifest = out / (f"manifest.rank{args.rank}.jsonl" if args.world_size > 1 else "manifest.jsonl")
    lines = "".join(json.dumps(record) + "\n" for record in records)
    failure = write_or_fail(manifest, lambda temporary: Path(temporary).write_text(lines))
    if stopped is not None:
        return stopped_line(stopped, done, len(pairs), f"listed in {manifest}" if not failure else
                            f"no manifest: {failure}")
    return summary(records, time.perf_counter() - start, manifest, failure, start_up)


def _start_worker() -> None:
    """A worker process: one core's worth of threads; the parent handles Ctrl-C, SIGTERM ends it cleanly."""
    import numba
    import torch

    torch.set_num_threads(1)
    numba.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(128 + number))  # unwinds: temporary files go
    sys.unraisablehook = raise_swallowed_signals_again


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
