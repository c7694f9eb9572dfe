#!/usr/bin/env bash
# Creates .venv (if absent) and installs filterbank into it, editable, with the
# extras named in $1 (default: test). torch comes first, as TORCH_SPEC
# (default torch==2.13.0, the CPU build this project's machines carry; on other
# machines set e.g. TORCH_SPEC='torch>=2.11').
set -euo pipefail
cd "$(dirname "$0")/.."
extras=${1:-test}
if [ ! -x .venv/bin/python ]; then
  "${PYTHON:-python3}" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check "${TORCH_SPEC:-torch==2.13.0}"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[$extras]"
