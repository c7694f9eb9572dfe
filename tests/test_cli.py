"""The ``filterbank`` command end to end: extract, filter, response, errors, sharding."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from filterbank import cli, design
from filterbank.functional import sosfilt, sosfiltfilt
from filterbank.nn import BiquadFilterbank, FrontEnd, GammatoneFilterbank

ROOT = Path(__file__).resolve().parent.parent
SPEECH = ROOT / "data" / "speech"
DIGITS = ROOT / "data" / "digits"


def library_features(path: Path, n_filters=64, hop_length=160, compression="log", kind="bandpass", scale="mel"):
    """What extract should write for one file, computed with the library directly: (channels?, n_filters, frames)."""
    audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    if kind == "gammatone":
        bank = GammatoneFilterbank(n_filters, rate, scale=scale, learn=())
    else:
        bank = BiquadFilterbank(n_filters, rate, kind=kind, scale=scale, learn=())
    front_end = FrontEnd(sample_rate=rate, hop_length=hop_length, filterbank=bank, compression=compression)
    with torch.no_grad():
        features = front_end(torch.from_numpy(audio.T.copy()))
    return features[0] if features.shape[0] == 1 else features


def read_manifest(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_extract_bundled_speech_equals_library_features(tmp_path, capsys):
    out = tmp_path / "features"
    assert cli.main(["extract", str(SPEECH), "--out", str(out), "--n-filters", "32"]) == 0
    flac = sorted(SPEECH.glob("*.flac"))
    records = read_manifest(out / "manifest.jsonl")
    assert sorted(r["input"] for r in records) == sorted(str(p) for p in flac)
    for record in records:
        assert record["status"] == "ok"
        features = np.load(record["output"])
        expected = library_features(Path(record["input"]), n_filters=32).numpy()
        assert list(features.shape) == record["shape"] == list(expected.shape)
        np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-5)
        info = soundfile.info(record["input"])
        assert record["sample_rate"] == info.samplerate
        assert record["seconds"] == pytest.approx(info.frames / info.samplerate)
        assert Path(record["output"]).parent == out
    assert "4 done, 0 skipped, 0 failed" in capsys.readouterr().out
    assert not list(out.glob(".*.tmp*"))  # atomic writes leave no temporary files


def test_extract_batches_of_unequal_lengths_equal_one_file_at_a_time(tmp_path):
    # Digits differ in length: batches are zero-padded, and must still give
    # each file's own features.
    files = sorted(DIGITS.rglob("*.flac"))[:24]
    batched, single = tmp_path / "batched", tmp_path / "single"
    assert cli.main(["extract", *map(str, files), "--out", str(batched), "--batch-size", "16",
                     "--compression", "pcen"]) == 0
    assert cli.main(["extract", *map(str, files), "--out", str(single), "--batch-size", "1",
                     "--compression", "pcen"]) == 0
    assert len({soundfile.info(str(f)).frames for f in files}) > 1
    outputs = {name: {r["input"]: r["output"] for r in read_manifest(out / "manifest.jsonl")}
               for name, out in (("batched", batched), ("single", single))}
    assert sorted(outputs["batched"]) == sorted(map(str, files))
    for file in files:
        a, b = np.load(outputs["batched"][str(file)]), np.load(outputs["single"][str(file)])
        assert a.shape == b.shape == (64, 1 + soundfile.info(str(file)).frames // 160)
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("options, kind, scale, compression", [
    (["--kind", "gammatone", "--scale", "erb"], "gammatone", "erb", "log"),
    (["--kind", "bandpass_skirt", "--scale", "bark", "--compression", "power"], "bandpass_skirt", "bark", "power"),
])
def test_extract_other_banks_equal_library_features(tmp_path, options, kind, scale, compression):
    file = SPEECH / "en_gb_female.flac"
    assert cli.main(["extract", str(file), "--out", str(tmp_path), "--n-filters", "16", *options]) == 0
    expected = library_features(file, n_filters=16, kind=kind, scale=scale, compression=compression).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "en_gb_female.npy"), expected, rtol=1e-5, atol=1e-5)


def test_extract_mirrors_folders_and_writes_pt(tmp_path):
    out = tmp_path / "out"
    assert cli.main(["extract", str(DIGITS), "--out", str(out), "--format", "pt", "--n-filters", "8"]) == 0
    sources = sorted(DIGITS.rglob("*.flac"))
    written = sorted(out.rglob("*.pt"))
    assert len(written) == len(sources)
    relative = sources[0].relative_to(DIGITS).with_suffix(".pt")
    tensor = torch.load(out / relative)
    assert tensor.shape == (8, 1 + soundfile.info(str(sources[0])).frames // 160)


def test_streamed_long_files_equal_whole_file_features(tmp_path):
    file = SPEECH / "en_us_male.flac"
    whole, streamed = tmp_path / "whole", tmp_path / "streamed"
    assert cli.main(["extract", str(file), "--out", str(whole)]) == 0
    # 1 MB holds 4096 samples of 64 bands: the file is streamed in blocks.
    assert cli.main(["extract", str(file), "--out", str(streamed), "--memory-mb", "1"]) == 0
    a, b = np.load(whole / "en_us_male.npy"), np.load(streamed / "en_us_male.npy")
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_missing_corrupt_and_empty_files_are_reported_and_the_rest_processed(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(SPEECH / "en_gb_female.flac", corpus / "good.flac")
    (corpus / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    soundfile.write(corpus / "empty.wav", np.zeros((0,), dtype=np.float32), 16000)
    out = tmp_path / "out"
    code = cli.main(["extract", str(corpus), str(tmp_path / "missing.wav"), "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 1
    assert "1 done, 0 skipped, 3 failed" in captured.out
    assert f"{tmp_path / 'missing.wav'}: no such file or folder" in captured.err
    assert f"{corpus / 'corrupt.wav'}: cannot read audio" in captured.err
    assert f"{corpus / 'empty.wav'}: the file holds no samples" in captured.err
    assert (out / "good.npy").exists()
    statuses = {Path(r["input"]).name: r["status"] for r in read_manifest(out / "manifest.jsonl")}
    assert statuses == {"good.flac": "ok", "corrupt.wav": "error", "empty.wav": "error", "missing.wav": "error"}


@pytest.mark.parametrize("arguments, message", [
    (["extract", "data", "--out", "x", "--n-filters", "0"], "--n-filters: expected a positive integer; got 0"),
    (["extract", "data", "--out", "x", "--rank", "3", "--world-size", "3"], "--rank must be below --world-size"),
    (["extract", "data", "--out", "x", "--resample"], "--resample needs --sample-rate"),
    (["extract", "data", "--out", "x", "--scale", "octave"], "invalid choice: 'octave'"),
    (["extract", "data", "--out", "x", "--device", "cuda:7"], "--device cuda:7"),
    (["extract", "data"], "the following arguments are required: --out"),
    (["filter", "data", "--out", "x"], "give exactly one of --design and --sos"),
    (["filter", "data", "--out", "x", "--design", "butter", "--btype", "bandpass", "--cutoff", "300"],
     "needs 2 --cutoff values"),
    (["filter", "data", "--out", "x", "--design", "notch"], "--design notch needs --cutoff"),
    (["filter", "data", "--out", "x", "--design", "notch", "--cutoff", "50", "--subtype", "PCM_13"], "--subtype"),
    (["response", "--out", "x.png", "--design", "butter", "--cutoff", "9000"], "cutoff"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_bad_options_are_usage_errors(arguments, message, capsys):
    with pytest.raises(SystemExit) as raised:
        cli.main(arguments)
    assert raised.value.code == 2
    assert message in capsys.readouterr().err


def test_python_dash_m_and_exit_codes():
    run = subprocess.run([sys.executable, "-m", "filterbank", "extract", "nowhere.wav", "--out", "unused", "--rank",
                          "1", "--world-size", "1"], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 2
    assert "--rank must be below --world-size" in run.stderr and "Traceback" not in run.stderr
    run = subprocess.run([sys.executable, "-m", "filterbank", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0
    for command in ("extract", "filter", "response", "bench"):
        assert command in run.stdout


def test_sharding_covers_every_file_exactly_once(tmp_path, monkeypatch):
    files = list(range(23))
    shards = [cli.shard(files, rank, 4) for rank in range(4)]
    assert sorted(sum(shards, [])) == files
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    # End to end, with the torchrun variables as defaults for two of the ranks.
    inputs = []
    for rank in range(3):
        out = tmp_path / "out"
        if rank < 2:
            monkeypatch.setenv("RANK", str(rank))
            monkeypatch.setenv("WORLD_SIZE", "3")
            arguments = []
        else:
            monkeypatch.delenv("RANK")
            monkeypatch.delenv("WORLD_SIZE")
            arguments = ["--rank", "2", "--world-size", "3"]
        assert cli.main(["extract", str(DIGITS / "test"), "--out", str(out), "--n-filters", "4", *arguments]) == 0
        inputs.append([r["input"] for r in read_manifest(out / f"manifest.rank{rank}.jsonl")])
    everything = sorted(str(p) for p in (DIGITS / "test").rglob("*.flac"))
    assert sorted(sum(inputs, [])) == everything
    assert sum(map(len, inputs)) == len(everything)
    assert len(list((tmp_path / "out").rglob("*.npy"))) == len(everything)


def test_existing_outputs_are_skipped_unless_overwrite(tmp_path, capsys):
    file = SPEECH / "en_scottish.flac"
    out = tmp_path / "out"
    assert cli.main(["extract", str(file), "--out", str(out), "--n-filters", "8"]) == 0
    target = out / "en_scottish.npy"
    np.save(target, np.zeros(1))  # a stale output
    capsys.readouterr()
    assert cli.main(["extract", str(file), "--out", str(out), "--n-filters", "8"]) == 0
    assert "0 done, 1 skipped" in capsys.readouterr().out
    assert np.load(target).shape == (1,)
    assert cli.main(["extract", str(file), "--out", str(out), "--n-filters", "8", "--overwrite"]) == 0
    assert np.load(target).shape == library_features(file, n_filters=8).shape


def test_other_rates_are_rejected_or_resampled(tmp_path, capsys):
    file = SPEECH / "recorded_weasels_8k.flac"
    out = tmp_path / "out"
    assert cli.main(["extract", str(file), "--out", str(out), "--sample-rate", "16000"]) == 1
    assert "sample rate 8000 Hz, but --sample-rate is 16000 Hz (add --resample" in capsys.readouterr().err
    assert cli.main(["extract", str(file), "--out", str(out), "--sample-rate", "16000", "--resample"]) == 0
    frames = soundfile.info(str(file)).frames * 2
    record = read_manifest(out / "manifest.jsonl")[0]
    assert record["sample_rate"] == 16000 and record["shape"] == [64, 1 + frames // 160]


def test_stereo_files_keep_channels_or_mix_down(tmp_path):
    audio, rate = soundfile.read(str(SPEECH / "en_us_male.flac"), dtype="float32")
    stereo = np.stack([audio, 0.5 * audio[::-1]], axis=1)
    source = tmp_path / "stereo.wav"
    soundfile.write(source, stereo, rate, subtype="FLOAT")
    assert cli.main(["extract", str(source), "--out", str(tmp_path / "both"), "--n-filters", "16"]) == 0
    assert cli.main(["extract", str(source), "--out", str(tmp_path / "mono"), "--n-filters", "16", "--mono"]) == 0
    both, mono = np.load(tmp_path / "both" / "stereo.npy"), np.load(tmp_path / "mono" / "stereo.npy")
    assert both.shape == (2, 16, 1 + len(audio) // 160) and mono.shape == both.shape[1:]
    expected = library_features(source, n_filters=16).numpy()
    np.testing.assert_allclose(both, expected, rtol=1e-5, atol=1e-5)


def test_workers_give_the_same_features(tmp_path):
    files = sorted((DIGITS / "test").rglob("*.flac"))[:40]
    one, two = tmp_path / "one", tmp_path / "two"
    assert cli.main(["extract", *map(str, files), "--out", str(one), "--n-filters", "8", "--batch-size", "4"]) == 0
    assert cli.main(["extract", *map(str, files), "--out", str(two), "--n-filters", "8", "--batch-size", "4",
                     "--workers", "2"]) == 0
    for record in read_manifest(one / "manifest.jsonl"):
        relative = Path(record["output"]).relative_to(one)
        np.testing.assert_array_equal(np.load(one / relative), np.load(two / relative))
    assert len(read_manifest(two / "manifest.jsonl")) == len(files)


# --------------------------------------------------------------------------
# filter


def test_filter_writes_the_inputs_rate_and_subtype(tmp_path):
    source = SPEECH / "en_gb_female.flac"
    out = tmp_path / "out"
    assert cli.main(["filter", str(source), "--out", str(out), "--design", "butter", "--cutoff", "1000",
                     "--order", "6"]) == 0
    written = out / source.name
    info_in, info_out = soundfile.info(str(source)), soundfile.info(str(written))
    assert (info_out.samplerate, info_out.subtype, info_out.format, info_out.frames) == (
        info_in.samplerate, info_in.subtype, info_in.format, info_in.frames)
    x, rate = soundfile.read(str(source), dtype="float64")
    expected = sosfilt(design.butter_sos(6, torch.tensor(1000.0, dtype=torch.float64), rate),
                       torch.from_numpy(x)).numpy()
    y, _ = soundfile.read(str(written), dtype="float64")
    assert np.abs(y - expected).max() <= 1 / 32768 + 1e-12  # one PCM_16 step


@pytest.mark.parametrize("options", [
    ["--design", "butter", "--btype", "bandpass", "--cutoff", "300", "3000", "--zero-phase"],
    ["--design", "peaking", "--cutoff", "1000", "--q", "2", "--gain", "-6"],
    ["--design", "gammatone", "--cutoff", "800"],
    ["--sos", "SOSFILE"],
])
def test_filter_designs_and_sos_files(tmp_path, options):
    source = SPEECH / "en_scottish.flac"
    x, rate = soundfile.read(str(source), dtype="float64")
    signal = torch.from_numpy(x)
    if options[0] == "--sos":
        sos = design.cheby1_sos(4, 1.0, torch.tensor(2000.0, dtype=torch.float64), rate, btype="highpass")
        np.save(tmp_path / "sos.npy", sos.numpy())
        options = ["--sos", str(tmp_path / "sos.npy"), "--subtype", "PCM_24"]
        expected = sosfilt(sos, signal)
    elif options[1] == "butter":
        expected = sosfiltfilt(design.butter_sos(4, torch.tensor([300.0, 3000.0], dtype=torch.float64), rate,
                                                 btype="bandpass"), signal)
    elif options[1] == "peaking":
        b, a = design.peaking_biquad(torch.tensor(1000.0, dtype=torch.float64), 2.0, -6.0, rate)
        expected = sosfilt(torch.cat([b, a]).unsqueeze(0), signal)
    else:
        expected = sosfilt(design.gammatone_sos(torch.tensor(800.0, dtype=torch.float64), rate), signal)
    assert cli.main(["filter", str(source), "--out", str(tmp_path / "out"), *options]) == 0
    y, _ = soundfile.read(str(tmp_path / "out" / source.name), dtype="float64")
    tolerance = 1 / 2**23 + 1e-12 if "PCM_24" in options else 1 / 32768 + 1e-12
    assert np.abs(y - expected.numpy()).max() <= tolerance


def test_filter_refuses_to_write_over_its_input_and_warns_of_clipping(tmp_path, capsys):
    source = tmp_path / "loud.wav"
    soundfile.write(source, 0.9 * np.sin(np.linspace(0, 200 * np.pi, 8000)), 8000, subtype="PCM_16")
    assert cli.main(["filter", str(source), "--out", str(tmp_path), "--design", "notch", "--cutoff", "50"]) == 1
    assert "would overwrite the input" in capsys.readouterr().err
    assert cli.main(["filter", str(source), "--out", str(tmp_path / "out"), "--design", "peaking", "--cutoff", "100",
                     "--gain", "12", "--q", "1"]) == 0
    assert "peaks at" in capsys.readouterr().err


def test_a_subtype_the_format_cannot_hold_is_reported(tmp_path, capsys):
    assert cli.main(["filter", str(SPEECH / "en_us_male.flac"), "--out", str(tmp_path), "--design", "notch",
                     "--cutoff", "50", "--subtype", "FLOAT"]) == 1
    assert "FLAC files cannot hold --subtype FLOAT; they take" in capsys.readouterr().err


def test_bad_sos_file_is_a_usage_error(tmp_path, capsys):
    np.save(tmp_path / "sos.npy", np.zeros((2, 5)))
    with pytest.raises(SystemExit) as raised:
        cli.main(["filter", str(SPEECH), "--out", str(tmp_path / "out"), "--sos", str(tmp_path / "sos.npy")])
    assert raised.value.code == 2
    assert "expected rows of 6 coefficients [b0 b1 b2 a0 a1 a2]; got shape (2, 5)" in capsys.readouterr().err


# --------------------------------------------------------------------------
# response


@pytest.mark.parametrize("options", [
    ["--n-filters", "20", "--scale", "erb"],
    ["--kind", "gammatone", "--n-filters", "12"],
    ["--design", "cheby2", "--btype", "highpass", "--cutoff", "500", "--order", "6"],
])
def test_response_draws_a_png(tmp_path, options):
    pytest.importorskip("matplotlib")
    out = tmp_path / "response.png"
    assert cli.main(["response", "--out", str(out), *options]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def test_outputs_mirror_folders_and_clashes_are_reported(tmp_path):
    for folder in ("a", "b/c"):
        (tmp_path / folder).mkdir(parents=True)
        shutil.copy(SPEECH / "en_us_male.flac", tmp_path / folder / "x.flac")
    shutil.copy(SPEECH / "en_us_male.flac", tmp_path / "a" / "x.wav")
    out = tmp_path / "out"
    files, _ = cli.find_audio([str(tmp_path / "a"), str(tmp_path / "b")])
    pairs, problems = cli.output_paths(files, [str(tmp_path / "a"), str(tmp_path / "b")], out, ".npy")
    assert [(f.relative_to(tmp_path), t.relative_to(out)) for f, t in pairs] == [
        (Path("a/x.flac"), Path("x.npy")), (Path("b/c/x.flac"), Path("c/x.npy"))]
    assert problems == [(str(tmp_path / "a" / "x.wav"), f"its output {out / 'x.npy'} would also be that of "
                         f"{tmp_path / 'a' / 'x.flac'} (outputs are named after the input's path without its suffix; "
                         "give the folder that holds both, rename one, or extract them separately)")]
    loose = [tmp_path / "a" / "x.flac", tmp_path / "b" / "c" / "x.flac"]
    pairs, problems = cli.output_paths(loose, list(map(str, loose)), out, ".npy")
    assert [t.relative_to(out) for _, t in pairs] == [Path("a/x.npy"), Path("b/c/x.npy")] and not problems
    pairs, problems = cli.output_paths(loose[:1], [str(loose[0])], tmp_path / "a", None)
    assert pairs == [] and "would overwrite the input" in problems[0][1]


def test_response_without_matplotlib_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    assert cli.main(["response", "--out", str(tmp_path / "r.png")]) == 1
    assert "draws with matplotlib, which is not installed here" in capsys.readouterr().err
    assert not (tmp_path / "r.png").exists()


def test_find_audio_reports_names_that_match_nothing(tmp_path):
    files, problems = cli.find_audio([str(SPEECH), str(SPEECH / "*.flac"), str(tmp_path / "*.wav"), str(tmp_path)])
    assert files == sorted(SPEECH.glob("*.flac"))  # each file once, the licence text left out
    assert [reason for _, reason in problems] == ["the pattern matches no file",
                                                  "folder holds no audio files (" + ", ".join(cli.AUDIO_SUFFIXES)
                                                  + ")"]


def test_ogg_and_upper_case_suffixes_are_read_and_written(tmp_path):
    audio, rate = soundfile.read(str(SPEECH / "en_us_male.flac"), dtype="float32")
    soundfile.write(tmp_path / "clip.ogg", audio, rate, format="OGG", subtype="VORBIS")
    soundfile.write(tmp_path / "LOUD.WAV", audio, rate, subtype="PCM_24")
    assert cli.main(["extract", str(tmp_path), "--out", str(tmp_path / "feats"), "--n-filters", "8"]) == 0
    for name in ("clip.ogg", "LOUD.WAV"):
        features = np.load(tmp_path / "feats" / (Path(name).stem + ".npy"))
        np.testing.assert_allclose(features, library_features(tmp_path / name, n_filters=8).numpy(), rtol=1e-5,
                                   atol=1e-5)
    assert cli.main(["filter", str(tmp_path / "clip.ogg"), "--out", str(tmp_path / "filtered"), "--design", "notch",
                     "--cutoff", "1000"]) == 0
    info = soundfile.info(str(tmp_path / "filtered" / "clip.ogg"))
    assert (info.format, info.subtype, info.samplerate) == ("OGG", "VORBIS", rate)


def test_a_bad_torchrun_variable_is_named(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(SystemExit) as raised:
        cli.main(["extract", str(SPEECH), "--out", "unused"])
    assert raised.value.code == 2
    assert "$WORLD_SIZE (the default of --world-size): expected a positive integer; got 'two'" in capsys.readouterr().err


def test_outputs_inside_an_input_folder_are_not_filtered_again(tmp_path):
    shutil.copy(SPEECH / "en_us_male.flac", tmp_path / "a.flac")
    arguments = ["filter", str(tmp_path), "--out", str(tmp_path / "filtered"), "--design", "notch", "--cutoff", "50"]
    assert cli.main(arguments) == 0
    assert cli.main(arguments + ["--overwrite"]) == 0
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.flac")) == [Path("a.flac"),
                                                                                 Path("filtered/a.flac")]


# --------------------------------------------------------------------------
# Reliability: no silent bad output, no traceback for a user's mistake, files others can read.


def _usage_error(arguments, capsys) -> str:
    with pytest.raises(SystemExit) as raised:
        cli.main(arguments)
    assert raised.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("options, message", [
    (["--f-min", "5000", "--f-max", "100"], "--f-min must be below --f-max; got 5000 and 100 Hz"),
    (["--f-min", "nan"], "--f-min must be > 0 Hz; got nan"),
    (["--f-min", "-10"], "--f-min must be > 0 Hz; got -10.0"),
    (["--f-max", "9000", "--sample-rate", "16000"], "at 16000 Hz: need 0 < f_min < f_max < sample_rate / 2 = 8000 Hz"),
])
def test_extract_options_that_cannot_work_are_usage_errors_before_any_file(tmp_path, capsys, options, message):
    err = _usage_error(["extract", str(SPEECH), "--out", str(tmp_path / "out"), *options], capsys)
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists(), "nothing was written"


@pytest.mark.parametrize("options, message", [
    (["--design", "peaking", "--cutoff", "1000", "--q", "0"], "--q must be > 0; got 0.0"),
    (["--design", "butter", "--cutoff", "-100"], "--cutoff must be > 0 Hz; got -100.0"),
    (["--design", "butter", "--btype", "bandpass", "--cutoff", "3000", "300"], "--cutoff low must be below high"),
    (["--design", "cheby1", "--cutoff", "300", "--ripple", "0"], "--ripple must be > 0 dB; got 0.0"),
    (["--design", "lowshelf", "--cutoff", "300", "--gain", "inf"], "--gain must be finite; got inf"),
])
def test_filter_options_that_cannot_work_are_usage_errors_before_any_file(tmp_path, capsys, options, message):
    err = _usage_error(["filter", str(SPEECH), "--out", str(tmp_path / "out"), *options], capsys)
    assert message in err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("rows, message", [
    ([[1, 0, 0, 1, float("nan"), 0]], "row 0 holds non-finite coefficients"),
    ([[1, 0, 0, 1, -2.5, 1.5]], "row 0 is unstable: a pole at radius 1.5 (>= 1)"),
    ([[1, 0, 0, 1, -0.5, 0], [1, 0, 0, 0, 0.1, 0]], "row 1 has a0 = 0"),
])
def test_an_sos_file_that_cannot_filter_is_a_usage_error(tmp_path, capsys, rows, message):
    np.save(tmp_path / "sos.npy", np.array(rows, dtype=np.float64))
    err = _usage_error(["filter", str(SPEECH), "--out", str(tmp_path / "out"), "--sos", str(tmp_path / "sos.npy")],
                       capsys)
    assert message in err


def test_filter_never_writes_a_signal_that_is_not_finite(tmp_path, capsys):
    source = tmp_path / "tone.wav"
    soundfile.write(source, 0.5 * np.sin(np.linspace(0, 100 * np.pi, 4000)), 8000, subtype="FLOAT")
    np.save(tmp_path / "huge.npy", np.array([[1e300, 0, 0, 1, 0, 0]]))
    assert cli.main(["filter", str(source), "--out", str(tmp_path / "out"), "--sos", str(tmp_path / "huge.npy")]) == 1
    assert "the filtered signal is not finite in FLOAT" in capsys.readouterr().err
    assert not (tmp_path / "out" / "tone.wav").exists()


def test_clipping_warning_counts_the_clipped_samples(tmp_path, capsys):
    source = tmp_path / "tone.wav"
    soundfile.write(source, 0.5 * np.sin(np.linspace(0, 100 * np.pi, 4000)), 8000, subtype="PCM_16")
    np.save(tmp_path / "gain.npy", np.array([[4.0, 0, 0, 1, 0, 0]]))
    assert cli.main(["filter", str(source), "--out", str(tmp_path / "out"), "--sos", str(tmp_path / "gain.npy")]) == 0
    err = capsys.readouterr().err
    assert "peaks at 2 (> 1) and PCM_16 clips" in err and "% of its samples" in err


def test_an_output_that_is_not_a_folder_is_a_usage_error(tmp_path, capsys):
    clip = tmp_path / "v.wav"
    shutil.copy(SPEECH / "en_us_male.flac", tmp_path / "v.flac")
    soundfile.write(clip, np.zeros(800, dtype=np.float32), 8000)
    assert "--out" in _usage_error(["extract", str(clip), "--out", str(clip)], capsys)
    assert "is a file; give a folder" in _usage_error(["filter", str(clip), "--out", str(clip), "--design", "notch",
                                                       "--cutoff", "50"], capsys)
    assert "cannot write there" in _usage_error(["extract", str(clip), "--out", str(clip / "sub")], capsys)
    pytest.importorskip("matplotlib")
    assert "is a folder; give the PNG file" in _usage_error(["response", "--out", str(tmp_path)], capsys)


def test_an_output_folder_unwritable_midway_fails_those_files_only(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    for part in ("a", "b"):
        (corpus / part).mkdir(parents=True)
        for index in range(2):
            soundfile.write(corpus / part / f"{index}.wav", np.random.default_rng(index).normal(0, 0.1, 800), 8000)
    out = tmp_path / "out"
    out.mkdir()
    (out / "a").write_text("a file where extract needs a folder")   # unwritable as a folder, even for root
    assert cli.main(["extract", str(corpus), "--out", str(out), "--n-filters", "4"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"cannot write {out / 'a' / '0.npy'}" in err
    statuses = {r["input"].split("corpus/")[1]: r["status"] for r in read_manifest(out / "manifest.jsonl")}
    assert statuses == {"a/0.wav": "error", "a/1.wav": "error", "b/0.wav": "ok", "b/1.wav": "ok"}
    assert (out / "b" / "0.npy").exists() and (out / "b" / "1.npy").exists()


def test_outputs_respect_the_umask(tmp_path):
    import os

    previous = os.umask(0o022)
    try:
        assert cli.main(["extract", str(SPEECH / "en_us_male.flac"), "--out", str(tmp_path / "f"), "--n-filters",
                         "8"]) == 0
        assert cli.main(["filter", str(SPEECH / "en_us_male.flac"), "--out", str(tmp_path / "a"), "--design", "notch",
                         "--cutoff", "50"]) == 0
        written = [tmp_path / "f" / "en_us_male.npy", tmp_path / "f" / "manifest.jsonl",
                   tmp_path / "a" / "en_us_male.flac"]
        if __import__("importlib").util.find_spec("matplotlib"):
            assert cli.main(["response", "--out", str(tmp_path / "r.png"), "--n-filters", "4"]) == 0
            written.append(tmp_path / "r.png")
    finally:
        os.umask(previous)
    assert {path.name: oct(path.stat().st_mode & 0o777) for path in written} == {path.name: "0o644" for path in written}


def test_features_that_are_not_finite_are_not_written(tmp_path, capsys, monkeypatch):
    from filterbank.cli import extract

    class Broken(torch.nn.Module):
        def forward(self, x, lengths=None):
            return torch.full(x.shape[:-1] + (4, 1 + x.shape[-1] // 160), float("nan"))

    monkeypatch.setattr(extract, "_front_end", lambda options, rate: Broken())
    assert cli.main(["extract", str(SPEECH / "en_us_male.flac"), "--out", str(tmp_path), "--n-filters", "4"]) == 1
    assert "its features are not finite (nothing written)" in capsys.readouterr().err
    assert not (tmp_path / "en_us_male.npy").exists()


def _long_corpus(folder: Path, n_files: int) -> Path:
    """``n_files`` hard links to one 30 s FLAC file: distinct inputs, one file's worth of disk."""
    import os

    folder.mkdir()
    soundfile.write(folder / "source.flac", (0.3 * np.sin(np.arange(16000 * 30) * 0.05)).astype(np.float32), 16000)
    for index in range(n_files):
        os.link(folder / "source.flac", folder / f"clip{index:03d}.flac")
    return folder


def _terminate_after_the_first_output(command: list[str], out: Path, suffix: str):
    """Run ``command``, send SIGTERM once ``out`` holds a finished output; (return code, stderr, seconds to stop)."""
    import signal
    import time

    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    deadline = time.monotonic() + 120
    while not (out.exists() and any(out.glob("*" + suffix))) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    _, err = process.communicate(timeout=60)
    return process.returncode, err, time.monotonic() - sent


def test_sigterm_stops_the_workers_at_once_and_leaves_whole_files(tmp_path):
    import os
    import signal
    import time

    corpus, out = _long_corpus(tmp_path / "corpus", 160), tmp_path / "out"
    code, err, seconds = _terminate_after_the_first_output(
        [sys.executable, "-m", "filterbank", "extract", str(corpus), "--out", str(out), "--workers", "2",
         "--batch-size", "1", "--n-filters", "128"], out, ".npy")
    assert seconds < 15, "the run stops promptly"
    assert code == 128 + signal.SIGTERM, err
    assert "Traceback" not in err and "stopped by SIGTERM after" in err
    assert not [path for path in out.iterdir() if path.name.startswith(".")], "no temporary file is left"
    for path in out.glob("*.npy"):
        assert np.load(path).shape == (128, 1 + 16000 * 30 // 160)
    time.sleep(0.5)

    def command_line(pid: str) -> bytes:
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:   # gone meanwhile
            return b""

    # Forked workers carry the parent's command line, --out included.
    workers = [pid for pid in os.listdir("/proc") if pid.isdigit() and str(out).encode() in command_line(pid)]
    assert not workers, "no worker outlives the run"


def test_sigterm_stops_filter_with_one_line_and_no_temporary_file(tmp_path):
    import signal

    corpus, out = _long_corpus(tmp_path / "corpus", 200), tmp_path / "out"
    code, err, _ = _terminate_after_the_first_output(
        [sys.executable, "-m", "filterbank", "filter", str(corpus), "--out", str(out), "--design", "butter",
         "--cutoff", "1000"], out, ".flac")
    assert code == 128 + signal.SIGTERM and "Traceback" not in err and "stopped by SIGTERM after" in err, err
    assert not [path for path in out.iterdir() if path.name.startswith(".")], "no temporary file is left"
    for path in out.glob("*.flac"):
        assert soundfile.info(str(path)).frames == 16000 * 30


@pytest.mark.parametrize("interrupted", ["creating", "writing", "renaming"])
def test_an_interrupted_atomic_write_leaves_no_temporary_file(tmp_path, monkeypatch, interrupted):
    # A signal raises wherever the main thread is, the moment the temporary
    # file exists included (just after os.open returns).
    import os

    from filterbank.cli import _files

    real_close = os.close

    def close_then_stop(fd):
        real_close(fd)
        raise KeyboardInterrupt

    def write(temporary):
        Path(temporary).write_bytes(b"partial")
        if interrupted == "writing":
            raise KeyboardInterrupt

    def fail_to_rename(source, target):
        raise KeyboardInterrupt

    if interrupted == "creating":
        monkeypatch.setattr(_files.os, "close", close_then_stop)
    if interrupted == "renaming":
        monkeypatch.setattr(_files.os, "replace", fail_to_rename)
    with pytest.raises(KeyboardInterrupt):
        _files.write_atomically(tmp_path / "a.npy", write)
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == [], "neither the output nor a temporary file is left"


def test_summary_reports_the_kernel_start_up_apart(capsys):
    # A first run compiles the kernels: that one-time cost is not the extraction rate.
    from filterbank.cli._files import summary

    records = [{"input": "a.wav", "status": "ok", "seconds": 30.0}]
    assert summary(records, elapsed=7.0, start_up=6.0) == 0
    line = capsys.readouterr().out
    assert "30.0 s of audio, 30 x real time, after 6.0 s readying the kernels" in line


@pytest.mark.parametrize("where, signal_name", [("worker", "SIGTERM"), ("main", "SIGTERM"), ("main", "SIGINT")])
def test_a_signal_inside_a_c_callback_still_stops_without_a_traceback(where, signal_name):
    # A signal during a kernel compile can land in numba's callbacks into
    # Python, where an exception cannot propagate: the run still stops, quietly.
    # (Workers ignore Ctrl-C: the parent handles it.)
    import subprocess

    set_up = ("from filterbank.cli.extract import _start_worker\n_start_worker()\n" if where == "worker" else
              "from filterbank.cli._files import stop_on_signals\nstopping = stop_on_signals()\n"
              "stopping.__enter__()\n")
    program = (
        "import ctypes, os, signal, sys, time\n" + set_up +
        "def inside():\n"
        f"    os.kill(os.getpid(), signal.{signal_name})\n"
        "    time.sleep(1)\n"
        "try:\n"
        "    ctypes.CFUNCTYPE(None)(inside)()\n"
        "    time.sleep(2)   # the compile goes on in Python\n"
        "    print('went on after the signal')\n"
        "except (KeyboardInterrupt, Exception) as stop:\n"
        "    print('stopped by', type(stop).__name__)\n"
        "    sys.exit(3)\n")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr and "went on" not in done.stdout, (done.stdout, done.stderr)
    if where == "worker":
        assert done.returncode == 128 + 15, done.stderr
    else:
        expected = "KeyboardInterrupt" if signal_name == "SIGINT" else "Stopped"
        assert done.returncode == 3 and f"stopped by {expected}" in done.stdout, (done.stdout, done.stderr)
