#!/usr/bin/env bash
# The main job: set up .venv, then filter the bundled speech in data/speech/
# through a 64-band filterbank, check it against scipy, and write cochleagrams
# to out/ (out/<clip>.npy and out/cochleagram.png). Extra arguments go to the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test,demo
exec .venv/bin/python demos/filter_speech.py "$@"
