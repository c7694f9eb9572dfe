"""The package as a wheel installs it: every package listed, the CUDA sources found, nothing outside it referred to.

The wheel itself is built, installed into a fresh virtual environment and
used by scripts/wheel_check.sh (CI runs it after the tests).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import filterbank
from filterbank.kernels import cuda

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "filterbank"


def _listed_packages() -> set[str]:
    text = (ROOT / "pyproject.toml").read_text()
    block = re.search(r"^packages = \[(.*?)\]", text, re.S | re.M).group(1)
    return set(re.findall(r'"([\w.]+)"', block))


def test_every_package_is_in_the_wheel():
    found = {".".join(path.parent.relative_to(ROOT).parts) for path in PACKAGE.rglob("__init__.py")}
    assert found | {"filterbank.kernels.csrc"} == _listed_packages()


def test_cuda_sources_are_found_and_are_the_checkouts():
    # In a checkout (or an editable install) the sources are csrc/ itself; in a
    # wheel, the copy under filterbank/kernels/csrc (scripts/wheel_check.sh).
    assert all(path.is_file() for path in cuda.sources())
    assert all((cuda.source_folder() / name).is_file() for name in cuda.FILES)
    assert sorted(p.name for p in (ROOT / "csrc").iterdir() if p.suffix != ".md") == sorted(cuda.FILES)
    assert cuda.source_folder().resolve() in (ROOT / "csrc", PACKAGE / "kernels" / "csrc")


def test_source_folder_can_be_chosen(monkeypatch, tmp_path):
    monkeypatch.setenv("FILTERBANK_CSRC", str(tmp_path))
    assert cuda.sources() == [tmp_path / "binding.cpp", tmp_path / "iir_scan.cu", tmp_path / "coupled.cu"]


def test_nothing_refers_outside_the_repository_or_to_its_history():
    # Spelt in pieces, so that this file does not match itself.
    pattern = re.compile("|".join([r"\.\./" + "shared", "shared/" + "DESIGN", "later" + " issue", r"the \w+ " + "issue adds"]),
                         re.I)
    offenders = []
    for path in [*PACKAGE.rglob("*.py"), *(ROOT / "csrc").iterdir(), *(ROOT / "tests").glob("*.py"),
                 *(ROOT / "bench").glob("*.py"), *(ROOT / "demos").glob("*.py"), ROOT / "README.md"]:
        if path.is_file():
            offenders += [f"{path.relative_to(ROOT)}:{n}" for n, line in enumerate(path.read_text().splitlines(), 1)
                          if pattern.search(line)]
    assert not offenders, offenders


def _imported(path: Path) -> set[str]:
    """The filterbank modules a file imports (relative imports resolved), e.g. {"filterbank._ops"}."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1] if path.name != "__init__.py"
                       else path.relative_to(ROOT).parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            found |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return {name for name in found if name.startswith("filterbank")}


def test_layers_do_not_reach_past_the_one_below():
    def reaching(folder: str, forbidden: tuple[str, ...]) -> list[str]:
        return sorted(f"{path.relative_to(ROOT)} imports {name}" for path in (PACKAGE / folder).rglob("*.py")
                      for name in _imported(path)
                      if any(name == f"filterbank.{f}" or name.startswith(f"filterbank.{f}.") for f in forbidden))

    assert not reaching("nn", ("kernels", "_ops")), "modules call the functional layer, not the ops or kernels"
    assert not reaching("cli", ("kernels", "_ops")), "the command line uses the library's public layers"
    assert not reaching("kernels", ("functional", "nn", "cli", "design", "features", "_ops")), \
        "kernels know nothing above them"


def test_the_command_runs_from_anywhere(tmp_path):
    run = subprocess.run([sys.executable, "-m", "filterbank", "bench", "--help"], capture_output=True, text=True,
                         cwd=tmp_path)
    assert run.returncode == 0 and "memory floor" in run.stdout
    assert filterbank.empty_cache() is None
