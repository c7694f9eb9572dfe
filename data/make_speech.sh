#!/usr/bin/env bash
# Synthesises the bundled speech clips in data/speech/ (16 kHz, mono, 16-bit FLAC).
# Needs espeak-ng and sox (Debian: apt-get install espeak-ng sox). Re-running it
# rewrites the clips; espeak-ng's output can differ slightly between its versions.
set -euo pipefail
cd "$(dirname "$0")/speech"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

clip() {  # name voice words-per-minute pitch text
  espeak-ng -v "$2" -s "$3" -p "$4" -w "$tmp/$1.wav" "$5"
  # Resample to 16 kHz, trim leading/trailing silence, normalise to -3 dBFS.
  sox "$tmp/$1.wav" -r 16000 -c 1 -b 16 "$1.flac" silence 1 0.02 0.5% reverse silence 1 0.02 0.5% reverse norm -3
}

clip en_us_male en-us 160 50 "The quick brown fox jumps over the lazy dog."
clip en_gb_female en+f3 150 65 "She sells sea shells by the sea shore, seven at a time."
clip en_scottish en-gb-scotland 175 40 "Filter banks split a waveform into many narrow bands of frequency."
