"""The README's main job (demos/filter_speech.py) on the bundled data."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import soundfile
import torch

from filterbank.nn._parametrise import raw_from_frequency

ROOT = Path(__file__).resolve().parent.parent


def _load_demo():
    spec = importlib.util.spec_from_file_location("filter_speech", ROOT / "demos" / "filter_speech.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_filter_speech_writes_the_library_features(tmp_path, capsys):
    demo = _load_demo()
    clips = [ROOT / "data" / "speech" / "recorded_weasels_8k.flac", ROOT / "data" / "speech" / "en_us_male.flac"]
    assert demo.main([str(c) for c in clips] + ["--out", str(tmp_path), "--bands", "16"]) == 0
    for clip in clips:
        written = np.load(tmp_path / f"{clip.stem}.npy")
        audio, rate = soundfile.read(clip, dtype="float32")
        expected, _ = demo.cochleagram(torch.from_numpy(audio), rate, 16)
        assert written.shape == (16, len(audio) // int(rate * 0.01))
        np.testing.assert_array_equal(written, expected.numpy())
    assert "err vs scipy" in capsys.readouterr().out


def test_filter_speech_reports_an_unreadable_file(tmp_path, capsys):
    demo = _load_demo()
    broken = tmp_path / "broken.flac"
    broken.write_bytes(b"not audio")
    assert demo.main([str(broken), "--out", str(tmp_path)]) == 1
    assert "broken.flac: cannot read" in capsys.readouterr().err


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "demos" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_lfilter_speed_plots_a_saved_run(tmp_path):
    saved = sorted((ROOT / "bench" / "results").glob("lfilter_cpu_*.json"))[-1]
    png = tmp_path / "speed.png"
    assert _load("lfilter_speed").main(["--from", str(saved), "--png", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_draw_features_draws_what_extract_wrote(tmp_path, capsys):
    from filterbank import cli

    assert cli.main(["extract", str(ROOT / "data" / "speech"), "--out", str(tmp_path / "features"),
                     "--n-filters", "16"]) == 0
    assert _load("draw_features").main([str(tmp_path / "features")]) == 0
    assert (tmp_path / "features.png").read_bytes()[:4] == b"\x89PNG"
    assert "(4 files)" in capsys.readouterr().out


def test_train_frontend_reports_accuracy_time_and_movement(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("train_frontend", ROOT / "demos" / "train_frontend.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    assert demo.main(["--epochs", "1", "--seeds", "1", "--validation", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "160 training clips, 40 validation clips" in out
    for line in ("learned ", "fixed ", "stft-mel ", "learned filters moved: median"):
        assert line in out
    initial = demo.BiquadFilterbank(4, 16000)
    shifted = demo.BiquadFilterbank(4, 16000)
    with torch.no_grad():
        shifted.raw_frequency.copy_(raw_from_frequency(initial.centre_hz * 2 ** (-1 / 12), 8000))  # a semitone down
    torch.testing.assert_close(demo.semitones_moved(initial, shifted), torch.ones(4), rtol=1e-4, atol=1e-4)
