"""What every subcommand does with files: finding audio, naming and writing outputs, reading, reporting."""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Iterable, Optional

__all__ = ["AUDIO_SUFFIXES", "find_audio", "shard", "write_atomically", "write_or_fail", "check_output_folder",
           "output_paths", "read_audio", "progress", "order_by_length", "summary", "Stopped", "stop_on_signals",
           "stopped_line"]

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".au", ".mp3")


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


def write_atomically(path: Path, write) -> None:
    """``write(temporary_path)``, then rename it to ``path``: a reader never sees a partial file.

    The temporary file is created with mode 0666 less the umask, as any file
    a program writes (0644 under umask 022), and removed if anything fails.
    Raises OSError when ``path`` cannot be written (see :func:`write_or_fail`).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # The clean-up covers the file's creation too: a signal may raise the
    # moment os.open returns. The name holds this process's id and a fresh
    # random token, so a file of that name is this call's own.
    temporary = None
    try:
        while True:
            temporary = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp{path.suffix}"
            try:
                os.close(os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
                break
            except FileExistsError:  # a name another writer holds: draw again
                temporary = None
        write(str(temporary))
        os.replace(temporary, path)
    except BaseException:
        if temporary is not None and temporary.exists():
            temporary.unlink()
        raise


def write_or_fail(path: Path, write) -> Optional[str]:
    """:func:`write_atomically`; None when written, else why not (``cannot write out/a.npy: Permission denied``)."""
    try:
        write_atomically(path, write)
        return None
    except OSError as error:
        return f"cannot write {path}: {error.strerror or error}"


def check_output_folder(out: Path, parser) -> None:
    """``--out`` is a folder that can be written (created if need be), else a usage error before any work."""
    if out.exists() and not out.is_dir():
        parser.error(f"--out {out} is a file; give a folder (the outputs are written inside it)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".filterbank-probe.{os.getpid()}.{secrets.token_hex(4)}"
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        probe.unlink()
    except OSError as error:
        parser.error(f"--out {out}: cannot write there: {error.strerror or error}")


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


def read_audio(path: Path, sample_rate: Optional[int], resample: bool, mono: bool):
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
        from ..resample import resample as resample_signal

        x = resample_signal(x, rate, sample_rate)
        rate = sample_rate
    return x, rate


def progress(done: int, total: int, start: float, stream=None) -> None:
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


def order_by_length(pairs: list[tuple[Path, Path]]) -> list[tuple[Path, Path]]:
    """(file, output) pairs grouped by (rate, channels, length) so that batches fill; unreadable headers last."""
    import soundfile

    def key(pair):
        try:
            info = soundfile.info(str(pair[0]))
            return (0, info.samplerate, info.channels, info.frames, str(pair[0]))
        except Exception:  # reported when read
            return (1, 0, 0, 0, str(pair[0]))

    return sorted(pairs, key=key)


def summary(records: list[dict], elapsed: float, manifest: Optional[Path] = None,
            manifest_error: Optional[str] = None, start_up: float = 0.0) -> int:
    """Print ``12 done, 0 skipped, 2 failed ...`` and each failure; the exit code: 1 if any file (or the
    manifest) failed. ``start_up``: seconds of the elapsed time spent readying the kernels (compiling
    them on a machine's first run, loading numba's cache after), reported apart and left out of the rate."""
    ok = [r for r in records if r["status"] == "ok"]
    skipped = [r for r in records if r["status"] == "skipped"]
    failed = [r for r in records if r["status"] == "error"]
    seconds = sum(r.get("seconds", 0.0) for r in ok)
    working = elapsed - start_up
    speed = f", {seconds / working:.0f} x real time" if ok and working > 0 else ""
    ready = f", after {start_up:.1f} s readying the kernels" if start_up >= 0.05 else ""
    print(f"{len(ok)} done, {len(skipped)} skipped, {len(failed)} failed in {elapsed:.1f} s "
          f"({seconds:.1f} s of audio{speed}{ready})"
          + (f"; manifest: {manifest}" if manifest and not manifest_error else ""))
    for record in failed:
        print(f"error: {record['input']}: {record['reason']}", file=sys.stderr)
    if manifest_error:
        print(f"error: the manifest: {manifest_error}", file=sys.stderr)
    return 1 if failed or manifest_error else 0


class Stopped(Exception):
    """SIGTERM arrived: unwind (temporary files are removed on the way) and report."""

    def __init__(self, signal_number: int):
        super().__init__(signal_number)
        self.signal = signal_number


def raise_swallowed_signals_again(unraisable) -> None:
    """A :data:`sys.unraisablehook`: a signal's exception raised where it cannot propagate is raised again.

    A signal that lands while C code has called back into Python (numba's
    compiler does while it builds a kernel) raises there; Python prints that
    exception as a traceback, drops it, and the program would go on. The
    signal is sent again a moment later instead, from another thread, so that
    it raises once control is back in Python code and unwinds as usual (sent
    from here it would raise in this hook, where it is dropped too).
    """
    value, number = unraisable.exc_value, None
    if isinstance(value, KeyboardInterrupt):
        number = signal.SIGINT
    elif isinstance(value, Stopped):
        number = value.signal
    elif isinstance(value, SystemExit) and isinstance(value.code, int) and value.code > 128:
        number = value.code - 128    # a worker's SIGTERM handler exits with 128 + the signal's number
    if number is None:
        sys.__unraisablehook__(unraisable)
        return
    again = threading.Timer(0.005, os.kill, (os.getpid(), number))
    again.daemon = True
    again.start()


@contextlib.contextmanager
def stop_on_signals():
    """SIGTERM raises :class:`Stopped` in the main thread while extraction runs (SIGINT is KeyboardInterrupt)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signal_number, frame):
        raise Stopped(signal_number)

    previous, previous_hook = signal.signal(signal.SIGTERM, stop), sys.unraisablehook
    sys.unraisablehook = raise_swallowed_signals_again
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        sys.unraisablehook = previous_hook


def stopped_line(signal_number: int, done: int, total: int, manifest: str) -> int:
    """Say how a run was stopped; its exit code (128 + the signal's number)."""
    print(f"\nstopped by {signal.Signals(signal_number).name} after {done} of {total} files ({manifest}); every "
          "output written is whole, and a rerun skips those that exist", file=sys.stderr)
    return 128 + signal_number
