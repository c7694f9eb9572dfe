#!/usr/bin/env python3
"""Build data/digits/: a small spoken-digit dataset ("zero" .. "nine").

Every synthetic clip is spoken by espeak-ng (called as a subprocess), resampled
to 16 kHz mono by sox, then trimmed, peak-normalised and (for the noisy
variants) mixed with seeded pink or white noise in numpy, and written as 16-bit
FLAC with soundfile. The real recordings of the digits from Debian's
asterisk-core-sounds-en-wav (Allison Smith, 8 kHz, CC-BY-SA-3.0) go through the
same chain from the sox step on and form the held-out voice "recorded-allison".

Whole voices are held out for the test split, so the test measures how well a
classifier generalises to unseen speakers.

Usage (from the repository root):

    .venv/bin/python data/make_digits.py

Needs espeak-ng, sox, numpy, soundfile and the asterisk-core-sounds-en-wav
package. It deletes and rewrites data/digits/ and data/digits/manifest.csv.
Everything random is drawn from fixed seeds, so re-running it reproduces the
same files with the same tool versions (espeak-ng's output can change slightly
between its versions).
"""

from __future__ import annotations

import collections
import csv
import shutil
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import soundfile as sf

SEED = 20240611
SAMPLE_RATE = 16000
PEAK = 10 ** (-6 / 20)  # peak-normalise to -6 dBFS: headroom for the added noise
TRIM_DB = -40.0  # trim leading/trailing frames this far below the loudest frame
PAD_S = 0.01  # silence added on each side after trimming
MAX_SECONDS = 1.2  # hard limit; the words are short

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]

# espeak-ng 1.51 voices "<voice>+<variant>". Note: "en-gb+<variant>" silently
# drops the variant in espeak-ng 1.51 (it gives the plain en-gb voice), so the
# British English voice is addressed by its identifier "en" (gmw/en) instead.
# "en-us-nyc" is left out: for these ten words it is identical to "en-us"
# except for "two", "four" and "eight".
TRAIN_VOICES = [
    "en-us",  # American English, default male
    "en-us+f2",
    "en-us+klatt",  # Klatt formant synthesiser
    "en+f3",  # British English
    "en+m3",
    "en-gb-scotland+m7",
    "en-gb-x-rp+f4",  # Received Pronunciation
    "en-gb-x-rp+m4",
    "en-029+f3",  # Caribbean
    "en-gb-x-gbclan+f1",  # Lancaster
]
TEST_VOICES = [
    "en-gb-x-gbcwmd+f5",  # West Midlands: an accent not in the train split
    "en-029+m2",
    "en-gb-scotland+klatt3",
]
RECORDED_VOICE = "recorded-allison"
RECORDED_DIR = Path("/usr/share/asterisk/sounds/en/digits")  # 0.wav .. 9.wav, 8 kHz
RECORDED_NOTICE = """\
The clips in this folder are adaptations of digits/0.wav .. digits/9.wav from
the Asterisk core sounds (English, WAV), as packaged by Debian in
asterisk-core-sounds-en-wav 1.6.1-1.

Upstream: http://downloads.asterisk.org/pub/telephony/asterisk/
Recorded by: Allison Smith (http://www.theivrvoice.com)
Financial contributions by: Digium, Inc. (http://www.digium.com)
Copyright: 2003-2010, Allison Smith

Changes (made by data/make_digits.py): resampled from 8 kHz to 16 kHz,
leading/trailing silence trimmed, peak-normalised, and, in the *_snr20 and
*_snr10 clips, seeded white or pink noise added.

Licence: Creative Commons Attribution-ShareAlike 3.0 Unported (CC BY-SA 3.0),
https://creativecommons.org/licenses/by-sa/3.0/legalcode ; these adaptations
are shared under the same licence. Full text: data/speech/LICENSE-asterisk-sounds.txt
"""

# Noise conditions: clean, 20 dB and 10 dB SNR. Each (synthetic voice, digit)
# is rendered twice, at two speeds and two pitches drawn (seeded) from the grids
# below: once clean and once noisy (20 dB or 10 dB, alternating over voices and
# digits). Each recorded digit gets all three conditions.
SNRS_DB = [None, 20.0, 10.0]
SPEEDS_WPM = [160, 175, 190, 205, 220]  # espeak-ng's default is 175
PITCHES = [30, 40, 50, 60, 70, 80]  # espeak-ng's default is 50 (range 0-99)
# Noise colour per SNR (pink compresses much better than white in FLAC).
NOISE_COLOUR = {20.0: "white", 10.0: "pink"}

ROOT = Path(__file__).resolve().parent / "digits"


def run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def sox_to_16k(src: Path, dst: Path) -> np.ndarray:
    """Resample any wav to 16 kHz mono 32-bit float (no dither) and load it."""
    run(["sox", "-V1", str(src), "-r", str(SAMPLE_RATE), "-c", "1",
         "-e", "floating-point", "-b", "32", str(dst)])
    x, sr = sf.read(dst, dtype="float64")
    assert sr == SAMPLE_RATE and x.ndim == 1, (src, sr, x.shape)
    return x


def trim(x: np.ndarray) -> np.ndarray:
    """Cut leading/trailing frames quieter than TRIM_DB re the loudest frame."""
    hop, win = SAMPLE_RATE // 200, SAMPLE_RATE // 50  # 5 ms hop, 20 ms window
    n = max(1, 1 + (len(x) - win) // hop)
    rms = np.array([np.sqrt(np.mean(x[i * hop:i * hop + win] ** 2)) for i in range(n)])
    level = 20 * np.log10(rms + 1e-12)
    active = np.flatnonzero(level > level.max() + TRIM_DB)
    start, stop = active[0] * hop, min(len(x), active[-1] * hop + win)
    pad = np.zeros(int(PAD_S * SAMPLE_RATE))
    return np.concatenate([pad, x[start:stop], pad])


def noise(n: int, colour: str, rng: np.random.Generator) -> np.ndarray:
    """Unit-power white or pink (1/f) Gaussian noise."""
    w = rng.standard_normal(n)
    if colour == "pink":  # shape white noise to a 1/f power spectrum
        spec = np.fft.rfft(w)
        f = np.arange(len(spec), dtype=np.float64)
        f[0] = 1.0
        w = np.fft.irfft(spec / np.sqrt(f), n)
    return w / np.sqrt(np.mean(w ** 2))


def process(x: np.ndarray, snr_db: float | None, seed_key: str) -> np.ndarray:
    """Trim, peak-normalise, then add noise at snr_db (re the clip's mean power)."""
    x = trim(x)
    x = x * (PEAK / np.max(np.abs(x)))
    if snr_db is not None:
        rng = np.random.default_rng([SEED, zlib.crc32(seed_key.encode())])
        p_signal = np.mean(x ** 2)
        x = x + noise(len(x), NOISE_COLOUR[snr_db], rng) * np.sqrt(p_signal / 10 ** (snr_db / 10))
        peak = np.max(np.abs(x))
        if peak > 0.99:  # only rescale where the noise would clip (never so far)
            x = x * (0.99 / peak)
    return x


def check(path: Path) -> float:
    """Re-read a written clip and assert it is sane; return its length in s."""
    y, sr = sf.read(path, dtype="float64", always_2d=True)
    info = sf.info(path)
    assert sr == SAMPLE_RATE, (path, sr)
    assert y.shape[1] == 1, (path, y.shape)
    assert info.subtype == "PCM_16" and info.format == "FLAC", (path, info)
    assert len(y) > 0 and np.all(np.isfinite(y)), path
    assert np.max(np.abs(y)) > 0.1, path  # not silent
    seconds = len(y) / sr
    assert seconds <= MAX_SECONDS, (path, seconds)
    return seconds


def slug(voice: str) -> str:
    return voice.replace("+", "_")


def condition(snr_db: float | None) -> str:
    return "clean" if snr_db is None else f"snr{snr_db:g}"


def espeak(voice: str, word: str, speed: int, pitch: int, out: Path) -> None:
    run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(out), word])


def check_voice(voice: str, available: str, tmp: Path) -> None:
    """Fail if the voice is missing or espeak-ng silently ignores its variant."""
    base = voice.split("+")[0]
    assert any(line.split()[1:2] == [base] or f"/{base} " in line
               for line in available.splitlines()[1:]), f"voice {base} missing"
    if "+" in voice:
        a, b = tmp / "a.wav", tmp / "b.wav"
        espeak(voice, "zero", 175, 50, a)
        espeak(base, "zero", 175, 50, b)
        assert a.read_bytes() != b.read_bytes(), f"espeak-ng ignores the variant of {voice}"


def main() -> None:
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found")
    if not (RECORDED_DIR / "0.wav").exists():
        sys.exit(f"{RECORDED_DIR} not found (Debian: apt-get install asterisk-core-sounds-en-wav)")
    available = subprocess.run(["espeak-ng", "--voices=en"], check=True,
                               capture_output=True, text=True).stdout
    version = subprocess.run(["espeak-ng", "--version"], check=True,
                             capture_output=True, text=True).stdout.strip()
    print(version)

    if ROOT.exists():
        shutil.rmtree(ROOT)
    ROOT.mkdir()
    rows = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        raw = tmp / "espeak.wav"
        synthetic = [("train", v) for v in TRAIN_VOICES] + [("test", v) for v in TEST_VOICES]
        for vi, (split, voice) in enumerate(synthetic):
            check_voice(voice, available, tmp)
            rng = np.random.default_rng([SEED, zlib.crc32(voice.encode())])
            for digit, word in enumerate(WORDS):
                # Two renditions with different speed and pitch: one clean, one
                # noisy; the noisy one alternates between 20 dB and 10 dB.
                speeds = rng.choice(SPEEDS_WPM, size=2, replace=False)
                pitches = rng.choice(PITCHES, size=2, replace=False)
                for k in range(2):
                    snr = None if k == 0 else SNRS_DB[1 + (vi + digit) % 2]
                    speed, pitch = int(speeds[k]), int(pitches[k])
                    espeak(voice, word, speed, pitch, raw)
                    x = sox_to_16k(raw, tmp / "16k.wav")
                    rel = f"{split}/{slug(voice)}/{digit}_{word}_{condition(snr)}.flac"
                    rows.append(write(rel, process(x, snr, rel), digit, word, voice,
                                      speed, pitch, snr, split))
        for digit, word in enumerate(WORDS):
            x = sox_to_16k(RECORDED_DIR / f"{digit}.wav", tmp / "16k.wav")
            for snr in SNRS_DB:
                rel = f"test/{RECORDED_VOICE}/{digit}_{word}_{condition(snr)}.flac"
                rows.append(write(rel, process(x, snr, rel), digit, word, RECORDED_VOICE,
                                  "", "", snr, "test"))
        (ROOT / "test" / RECORDED_VOICE / "ATTRIBUTION.txt").write_text(RECORDED_NOTICE)

    fields = ["file", "digit", "word", "voice", "speed", "pitch", "snr_db", "split", "seconds"]
    with open(ROOT / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    summary(rows)


def write(rel, x, digit, word, voice, speed, pitch, snr, split) -> dict:
    """Write one clip as 16-bit FLAC, re-check it and return its manifest row."""
    path = ROOT / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    assert x.ndim == 1 and len(x) > 0 and np.all(np.isfinite(x)), rel
    sf.write(path, x, SAMPLE_RATE, subtype="PCM_16", format="FLAC", compression_level=1.0)
    seconds = check(path)
    return {"file": rel, "digit": digit, "word": word, "voice": voice, "speed": speed,
            "pitch": pitch, "snr_db": "" if snr is None else f"{snr:g}", "split": split,
            "seconds": f"{seconds:.3f}"}


def summary(rows: list[dict]) -> None:
    print(f"{len(rows)} clips")
    for split in ("train", "test"):
        sel = [r for r in rows if r["split"] == split]
        voices = collections.Counter(r["voice"] for r in sel)
        print(f"  {split}: {len(sel)} clips, {len(voices)} voices, "
              f"{sum(float(r['seconds']) for r in sel):.1f} s")
        for voice, n in voices.items():
            print(f"    {voice:24s} {n}")
    per_cond = collections.Counter((r["split"], r["snr_db"] or "clean") for r in rows)
    for split in ("train", "test"):
        print(f"  {split} per condition: " + " ".join(
            f"{c}:{per_cond[(split, c)]}" for c in ("clean", "20", "10")))
    per_digit = collections.Counter((r["split"], r["digit"]) for r in rows)
    for split in ("train", "test"):
        print(f"  {split} per digit: " + " ".join(
            f"{d}:{per_digit[(split, d)]}" for d in range(10)))
    secs = [float(r["seconds"]) for r in rows]
    print(f"  seconds: min {min(secs):.3f} mean {np.mean(secs):.3f} max {max(secs):.3f}; "
          f"{sum(s > 1.0 for s in secs)} clips over 1 s")
    files = [p for p in ROOT.rglob("*") if p.is_file()]
    total = sum(p.stat().st_size for p in files)
    # What du counts: whole file-system blocks, folders included.
    on_disk = sum(p.stat().st_blocks * 512 for p in [ROOT, *ROOT.rglob("*")])
    print(f"  total size of {ROOT.name}/: {total / 1e6:.2f} MB in {len(files)} files "
          f"({on_disk / 1e6:.2f} MB on disk)")
    assert max(total, on_disk) < 3.5e6, "data/digits/ must stay under 3.5 MB"


if __name__ == "__main__":
    main()
