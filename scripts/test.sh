#!/usr/bin/env bash
# The test command: set up .venv with the test extras, then run pytest
# (tests/ and the doctests in filterbank/). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
exec .venv/bin/python -m pytest "$@"
