"""Learning check: does a learnable biquad front-end help a small spoken-digit classifier?

Trains the same tiny classifier on the bundled digits (data/digits/; test
voices are speakers never heard in training) behind three front-ends of the
same size (40 bands, 10 ms hop, log energies):

* ``learned``: ``filterbank.nn.FrontEnd`` with band-pass biquads on the mel
  scale whose centre frequencies and Q are trained with the classifier;
* ``fixed``: the same biquad front-end, frozen at its mel initialisation;
* ``stft-mel``: a conventional mel spectrogram (STFT, triangular mel filters).

Each is trained with several seeds; the script prints test accuracy (mean and
spread), training time per epoch (and its ratio to the STFT-mel's), how far
the learned filters moved from their initialisation (median change of
centre frequency in semitones, share of filters that moved more than one),
and draws the learned responses against the initial ones to
out/learned_responses.png (needs matplotlib). ``--validation`` holds two
training voices out and reports accuracy on them instead, for choosing
settings without looking at the test voices.

    python demos/train_frontend.py [--epochs 30] [--seeds 5] [--validation]
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
import soundfile
import torch
from torch import Tensor, nn

import filterbank
from filterbank import design
from filterbank.nn import BiquadFilterbank, FrontEnd

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_RATE = 16000
CLIP = 16000  # one second: clips are centred and zero-padded or cut to this
N_BANDS = 40
HOP = 160


def load_digits(folder: Path):
    """(waveforms (n, CLIP) float32, labels (n,) int64, splits (n,) str, voices (n,) str) from the manifest."""
    with open(folder / "manifest.csv") as handle:
        rows = list(csv.DictReader(handle))
    waveforms, labels, splits, voices = [], [], [], []
    for row in rows:
        audio, rate = soundfile.read(folder / row["file"], dtype="float32")
        if rate != SAMPLE_RATE:
            raise ValueError(f"{row['file']}: expected {SAMPLE_RATE} Hz, got {rate}")
        clip = np.zeros(CLIP, np.float32)
        audio = audio[:CLIP]
        start = (CLIP - len(audio)) // 2
        clip[start : start + len(audio)] = audio
        waveforms.append(clip)
        labels.append(int(row["digit"]))
        splits.append(row["split"])
        voices.append(row["voice"])
    return torch.from_numpy(np.stack(waveforms)), torch.tensor(labels), np.array(splits), np.array(voices)


class StftMel(nn.Module):
    """A fixed log-mel spectrogram: |STFT|^2 (400-sample Hann, hop 160) through triangular mel filters."""

    def __init__(self, n_mels: int, sample_rate: int, hop_length: int, n_fft: int = 400):
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        bins = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
        edges = design.mel_to_hz(torch.linspace(float(design.hz_to_mel(torch.tensor(30.0))),
                                                float(design.hz_to_mel(torch.tensor(0.95 * sample_rate / 2))),
                                                n_mels + 2, dtype=torch.float64))
        lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
        rising = (bins - lower) / (centre - lower)
        falling = (upper - bins) / (upper - centre)
        triangles = torch.clamp(torch.minimum(rising, falling), min=0)
        # Slaney's area normalisation, so that bands of every width carry comparable energy.
        triangles = triangles * (2 / (upper - lower))
        self.register_buffer("filters", triangles.float())
        self.register_buffer("window", torch.hann_window(n_fft))

    def forward(self, x):
        spectrum = torch.stft(x, self.n_fft, self.hop_length, window=self.window, center=True, return_complex=True)
        return torch.log(self.filters @ spectrum.abs().square() + 1e-6)


class Classifier(nn.Module):
    """Per-utterance normalised features -> three 1-D conv blocks -> pooled -> 10 digits."""

    def __init__(self, n_bands: int, width: int = 64, n_classes: int = 10):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(n_bands, width, 5, padding=2), nn.BatchNorm1d(width), nn.ReLU(),
            nn.Conv1d(width, width, 5, padding=2, stride=2), nn.BatchNorm1d(width), nn.ReLU(),
            nn.Conv1d(width, width, 5, padding=2, stride=2), nn.BatchNorm1d(width), nn.ReLU(),
        )
        self.head = nn.Linear(width, n_classes)

    def forward(self, features):
        features = (features - features.mean(-1, keepdim=True)) / (features.std(-1, keepdim=True) + 1e-5)
        return self.head(self.net(features).mean(-1))


def make_front_end(kind: str, q: Optional[float] = None) -> nn.Module:
    if kind == "stft-mel":
        return StftMel(N_BANDS, SAMPLE_RATE, HOP)
    learn = ("frequency", "q") if kind == "learned" else ()
    bank = BiquadFilterbank(N_BANDS, SAMPLE_RATE, kind="bandpass", scale="mel", q=q, learn=learn)
    return FrontEnd(sample_rate=SAMPLE_RATE, hop_length=HOP, filterbank=bank, compression="log")


def augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random gain (+-6 dB) and a random shift of up to 0.1 s: the speakers' levels and timing vary."""
    gains = 10 ** ((torch.rand(batch.shape[0], 1, generator=generator) * 12 - 6) / 20)
    shifts = torch.randint(-1600, 1601, (batch.shape[0],), generator=generator)
    shifted = torch.stack([torch.roll(clip, int(shift)) for clip, shift in zip(batch, shifts)])
    return shifted * gains


# Adam's learning rate for the filters' parameters (chosen on the validation voices).
FILTER_LR = 1e-2
# Training voices held out by --validation (one female, one male).
VALIDATION_VOICES = ("en+m3", "en-gb-x-rp+f4")


def semitones_moved(initial: BiquadFilterbank, learned: BiquadFilterbank) -> Tensor:
    """(n_filters,) |change of centre frequency| in semitones."""
    with torch.no_grad():
        return (12 * torch.log2(learned.centre_hz / initial.centre_hz)).abs()


def train(kind: str, data, epochs: int, seed: int, batch_size: int = 32, validation: bool = False,
          filter_lr: Optional[float] = None, q: Optional[float] = None):
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    waveforms, labels, splits, voices = data
    held_out = np.isin(voices, VALIDATION_VOICES)
    if validation:
        train_index = np.flatnonzero((splits == "train") & ~held_out)
        test_index = np.flatnonzero((splits == "train") & held_out)
    else:
        train_index = np.flatnonzero(splits == "train")
        test_index = np.flatnonzero(splits == "test")
    front_end = make_front_end(kind, q)
    model = nn.Sequential(front_end, Classifier(N_BANDS))
    filter_parameters = [p for n, p in model.named_parameters() if n.startswith("0.")]
    other_parameters = [p for n, p in model.named_parameters() if not n.startswith("0.")]
    groups = [{"params": other_parameters, "lr": 3e-3}]
    if filter_parameters:
        groups.append({"params": filter_parameters, "lr": FILTER_LR if filter_lr is None else filter_lr})
    optimiser = torch.optim.Adam(groups)
    seconds = []
    for _ in range(epochs):
        model.train()
        order = torch.from_numpy(train_index)[torch.randperm(len(train_index), generator=generator)]
        start = time.perf_counter()
        for first in range(0, len(order), batch_size):
            batch = order[first : first + batch_size]
            optimiser.zero_grad()
            loss = nn.functional.cross_entropy(model(augment(waveforms[batch], generator)), labels[batch])
            loss.backward()
            optimiser.step()
        seconds.append(time.perf_counter() - start)
    model.eval()
    with torch.no_grad():
        predicted = model(waveforms[test_index]).argmax(-1)
    accuracy = float((predicted == labels[test_index]).float().mean())
    return accuracy, float(np.median(seconds)), front_end


def draw(initial: BiquadFilterbank, learned: BiquadFilterbank, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot drawn (pip install 'filterbank[demo]')")
        return
    figure, axis = plt.subplots(figsize=(9, 4))
    with torch.no_grad():
        for bank, style, label in ((initial, ":", "initial (mel)"), (learned, "-", "learned")):
            frequencies, magnitude = bank.responses(2048)
            decibels = 20 * torch.log10(magnitude.clamp_min(1e-6))
            for index, curve in enumerate(decibels):
                axis.plot(frequencies, curve, style, linewidth=0.8, color=plt.cm.viridis(index / N_BANDS),
                          label=label if index == 0 else None)
    axis.set(xscale="log", xlim=(30, SAMPLE_RATE / 2), ylim=(-40, 3), xlabel="frequency (Hz)", ylabel="dB",
             title="Band-pass biquads: mel initialisation and after training on spoken digits")
    axis.legend(loc="lower left")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    print(f"drawn: {path}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--validation", action="store_true",
                        help=f"train without the voices {', '.join(VALIDATION_VOICES)} and report accuracy on them")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "digits")
    parser.add_argument("--out", type=Path, default=ROOT / "out")
    parser.add_argument("--filter-lr", type=float, default=FILTER_LR, help="Adam's learning rate for the filters' "
                        f"parameters (the classifier's is 3e-3; default {FILTER_LR:g})")
    parser.add_argument("--q", type=float, default=None, help="the bands' initial Q (default: the bank's, from "
                        "the spacing of the centre frequencies)")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    data = load_digits(args.data)
    in_training = data[2] == "train"
    held_out = np.isin(data[3], VALIDATION_VOICES)
    if args.validation:
        n_train, n_test, scored = int((in_training & ~held_out).sum()), int((in_training & held_out).sum()), "validation"
    else:
        n_train, n_test, scored = int(in_training.sum()), int((~in_training).sum()), "test"
    print(f"filterbank {filterbank.__version__}, torch {torch.__version__}: {n_train} training clips, {n_test} "
          f"{scored} clips (unseen voices); {args.epochs} epochs x {args.seeds} seeds per front-end")
    results = {}
    learned_bank = None
    initial = make_front_end("fixed", args.q).filterbank
    moved = []
    for kind in ("learned", "fixed", "stft-mel"):
        accuracies, seconds = [], []
        for seed in range(args.seeds):
            accuracy, epoch_seconds, front_end = train(kind, data, args.epochs, seed, validation=args.validation,
                                                       filter_lr=args.filter_lr, q=args.q)
            accuracies.append(accuracy)
            seconds.append(epoch_seconds)
            if kind == "learned":
                moved.append(semitones_moved(initial, front_end.filterbank))
                if seed == 0:
                    learned_bank = front_end.filterbank
            print(f"  {kind:9} seed {seed}: {scored} accuracy {accuracy:.3f}, {epoch_seconds:.2f} s per epoch",
                  file=sys.stderr)
        results[kind] = (np.mean(accuracies), np.std(accuracies), np.median(seconds))
    print(f"\n{'front-end':10} {scored + ' accuracy':>24} {'s / epoch':>10} {'/ stft-mel':>10}")
    for kind, (mean, spread, seconds) in results.items():
        print(f"{kind:10} {mean:16.3f} +- {spread:.3f} {seconds:10.2f} {seconds / results['stft-mel'][2]:9.2f}x")
    if moved:
        semitones = torch.stack(moved)                      # (seeds, n_filters)
        print(f"learned filters moved: median {float(semitones.median()):.2f} semitones, "
              f"{float((semitones > 1).double().mean()):.0%} of them more than one semitone "
              f"(over {semitones.shape[0]} seeds x {semitones.shape[1]} filters)")
    if learned_bank is not None:
        draw(initial, learned_bank, args.out / "learned_responses.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
