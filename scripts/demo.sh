#!/usr/bin/env bash
# The main job: set up .venv, then
#   1. extract 64-band features from the bundled speech in data/speech/ with the
#      filterbank command (out/features/<clip>.npy + manifest.jsonl) and draw
#      them (out/features.png);
#   2. draw the bank's magnitude responses (out/filterbank.png);
#   3. filter the same speech through 64 band-pass biquads, check every band
#      against scipy in float64 and draw cochleagrams (out/<clip>.npy,
#      out/cochleagram.png). Extra arguments go to this last step.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test,demo
.venv/bin/filterbank extract data/speech --out out/features --n-filters 64 --overwrite
.venv/bin/python demos/draw_features.py out/features --png out/features.png
.venv/bin/filterbank response --out out/filterbank.png --n-filters 64
exec .venv/bin/python demos/filter_speech.py "$@"
