"""``filterbank.precompile`` and ``filterbank compile``: kernels compiled ahead load in a fresh process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from filterbank import precompile

ROOT = Path(__file__).resolve().parent.parent

# Counts numba's compiler passes while a family runs: none when every kernel
# comes from the cache. A new function compiled after it shows the count works.
_COUNT_COMPILES = textwrap.dedent("""
    import sys
    import numba
    from numba.core import event

    class Count(event.Listener):
        passes = 0
        def on_start(self, e):
            Count.passes += 1
        def on_end(self, e):
            pass

    event.register("numba:run_pass", Count())
    from filterbank import precompile
    precompile.warm(sys.argv[1], sys.argv[2])
    after_family = Count.passes
    numba.njit(lambda v: v + 1)(1)
    print(after_family, Count.passes - after_family)
""")


def _run(arguments, cache: Path, **kwargs) -> subprocess.CompletedProcess:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, *arguments], env=env, capture_output=True, text=True, cwd=ROOT,
                          timeout=600, **kwargs)


def test_a_fresh_process_loads_what_compile_wrote(tmp_path):
    cache = tmp_path / "numba-cache"
    done = _run(["-m", "filterbank", "compile", "--family", "filter", "--dtype", "float64", "--jobs", "1"], cache)
    assert done.returncode == 0, done.stdout + done.stderr
    assert str(cache) in done.stdout and "filter" in done.stdout
    assert any(cache.rglob("*.nbi")), "numba's cache index was written"
    counted = _run(["-c", _COUNT_COMPILES, "filter", "float64"], cache)
    assert counted.returncode == 0, counted.stderr
    family_passes, control_passes = (int(v) for v in counted.stdout.split())
    assert control_passes > 0, "the counter sees a compile"
    assert family_passes == 0, "every kernel of the family came from the cache"


@pytest.mark.parametrize("family", precompile.FAMILIES)
def test_every_family_runs(family):
    # In this process, against the test run's cache: the families' calls are valid.
    for dtype in precompile.DTYPES:
        precompile.warm(family, dtype)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="family must be one of"):
        precompile.warm("filters")
    with pytest.raises(ValueError, match="dtype must be one of"):
        precompile.warm("filter", "float16")
    with pytest.raises(ValueError, match="families takes"):
        precompile.precompile(["filter", "lfilter"])
    with pytest.raises(ValueError, match="dtypes takes"):
        precompile.precompile(dtypes=["bfloat16"])
    with pytest.raises(TypeError, match="dtypes must be an iterable"):
        precompile.precompile(dtypes="float32")
    with pytest.raises(ValueError, match="jobs"):
        precompile.precompile(jobs=0)


def test_a_failing_family_is_reported(tmp_path, monkeypatch):
    # A stand-in interpreter that fails: the error names the family and carries the child's output.
    failing = tmp_path / "failing-python"
    failing.write_text("#!/bin/sh\necho broken interpreter >&2\nexit 3\n")
    failing.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(failing))
    with pytest.raises(RuntimeError, match=r"(?s)compiling the sparse kernels \(float32\) failed.*broken interpreter"):
        precompile.precompile(["sparse"], jobs=1)


def test_the_cache_location_is_said(monkeypatch, tmp_path):
    import numba

    monkeypatch.setattr(numba.config, "CACHE_DIR", str(tmp_path))
    assert precompile.cache_location().startswith(str(tmp_path))
