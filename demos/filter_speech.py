"""The main job on the bundled data: speech through a 64-band filterbank.

For every clip in ``data/speech/`` (or the files given), this runs a bank of
64 band-pass biquads over the waveform with ``filterbank.lfilter``, turns the
bands into a cochleagram (energy, 10 ms smoothing, 10 ms frames, log), checks
the filtering against scipy in float64, and writes

* ``out/<clip>.npy``: the cochleagram, shape (64, frames), float32;
* ``out/cochleagram.png``: all clips side by side (needs matplotlib).

    python demos/filter_speech.py [files...] [--out out] [--bands 64]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import soundfile
import torch

import filterbank
from filterbank.design import bandpass_biquad

ROOT = Path(__file__).resolve().parent.parent


def band_centres(n_bands: int, sample_rate: float, f_min: float = 100.0) -> torch.Tensor:
    """(n_bands,) centre frequencies in Hz, log-spaced from f_min to 0.45 sample_rate."""
    return torch.logspace(np.log10(f_min), np.log10(0.45 * sample_rate), n_bands, dtype=torch.float64)


def cochleagram(x: torch.Tensor, sample_rate: float, n_bands: int, hop_seconds: float = 0.01):
    """Band energies of ``x`` on a log scale.

    Args:
        x: (time,) waveform.
        sample_rate: in Hz.
        n_bands: number of band-pass filters.

    Returns:
        ``(features, bands)``: features (n_bands, frames) in dB, and the band
        signals (n_bands, time).
    """
    b, a = bandpass_biquad(band_centres(n_bands, sample_rate), 4.0, sample_rate)
    bands = filterbank.lfilter(b.to(x.dtype), a.to(x.dtype), x.unsqueeze(-2))  # (n_bands, time)
    # Energy smoothed by a one-pole low-pass with a 10 ms time constant, then
    # one frame every hop: a plain, non-learnable front-end.
    pole = float(np.exp(-1.0 / (0.01 * sample_rate)))
    smooth_b = torch.tensor([1.0 - pole], dtype=x.dtype)
    smooth_a = torch.tensor([1.0, -pole], dtype=x.dtype)
    energy = filterbank.lfilter(smooth_b, smooth_a, bands.square())
    hop = int(round(hop_seconds * sample_rate))
    frames = energy[..., hop - 1 :: hop]
    return 10 * torch.log10(frames.clamp_min(1e-10)), bands


def max_error_against_scipy(x: np.ndarray, sample_rate: float, n_bands: int) -> float:
    """Largest relative difference from scipy.signal.lfilter over every band, in float64."""
    import scipy.signal

    b, a = bandpass_biquad(band_centres(n_bands, sample_rate), 4.0, sample_rate)
    ours = filterbank.lfilter(b, a, torch.from_numpy(x).double().unsqueeze(-2)).numpy()
    worst = 0.0
    for band in range(n_bands):
        reference = scipy.signal.lfilter(b[band].numpy(), a[band].numpy(), x.astype(np.float64))
        worst = max(worst, float(np.abs(ours[band] - reference).max() / np.abs(reference).max()))
    return worst


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", type=Path, help="audio files (default: data/speech/*.flac)")
    parser.add_argument("--out", type=Path, default=ROOT / "out", help="output folder (default: out/)")
    parser.add_argument("--bands", type=int, default=64, help="number of band-pass filters (default 64)")
    args = parser.parse_args(argv)
    if args.bands < 1:
        parser.error(f"--bands must be at least 1; got {args.bands}")
    files = args.files or sorted((ROOT / "data" / "speech").glob("*.flac"))
    if not files:
        parser.error("no audio files given and none found in data/speech/")
    args.out.mkdir(parents=True, exist_ok=True)

    results = []
    print(f"filterbank {filterbank.__version__}: {args.bands} band-pass biquads per clip (torch {torch.__version__})")
    print(f"{'clip':28} {'rate':>6} {'seconds':>8} {'filter ms':>10} {'x real time':>12} {'err vs scipy':>13}")
    for path in files:
        try:
            audio, sample_rate = soundfile.read(path, dtype="float32", always_2d=True)
        except (RuntimeError, OSError) as error:  # libsndfile errors are RuntimeErrors
            print(f"{path}: cannot read: {error}", file=sys.stderr)
            return 1
        x = torch.from_numpy(audio.mean(axis=1))  # mono
        cochleagram(x, sample_rate, args.bands)  # warm-up (numba loads its cache once)
        start = time.perf_counter()
        features, _ = cochleagram(x, sample_rate, args.bands)
        elapsed = time.perf_counter() - start
        seconds = x.shape[-1] / sample_rate
        error = max_error_against_scipy(x.numpy(), sample_rate, args.bands)
        np.save(args.out / f"{path.stem}.npy", features.numpy())
        results.append((path.stem, sample_rate, features))
        print(f"{path.stem:28} {sample_rate:6d} {seconds:8.2f} {elapsed * 1e3:10.1f} {seconds / elapsed:12.0f} "
              f"{error:13.1e}")
        if error > 1e-10:
            print(f"{path}: filterbank differs from scipy by {error:.1e} (relative) in float64", file=sys.stderr)
            return 1
    print(f"cochleagrams written to {args.out}/<clip>.npy, shape (bands, frames of 10 ms)")
    draw(results, args.out / "cochleagram.png")
    return 0


def draw(results, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no PNG drawn (pip install 'filterbank[demo]')")
        return
    figure, axes = plt.subplots(len(results), 1, figsize=(9, 2.4 * len(results)), squeeze=False)
    for axis, (name, sample_rate, features) in zip(axes[:, 0], results):
        frames = features.shape[-1]
        top = float(features.max())
        image = axis.imshow(features.numpy(), origin="lower", aspect="auto", cmap="magma",
                            vmin=top - 60, vmax=top, extent=(0, frames * 0.01, 0, features.shape[0]))
        centres = band_centres(features.shape[0], sample_rate)
        ticks = np.linspace(0, features.shape[0] - 1, 5).astype(int)
        axis.set_yticks(ticks + 0.5, [f"{centres[i]:.0f}" for i in ticks])
        axis.set_ylabel("centre (Hz)")
        axis.set_title(f"{name} ({sample_rate} Hz)", fontsize=9)
        figure.colorbar(image, ax=axis, label="dB")
    axes[-1, 0].set_xlabel("time (s)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    print(f"drawn: {path}")


if __name__ == "__main__":
    sys.exit(main())
