"""The code runs on the Python the Space builds with (README's `python_version`, older than the 3.11 used here):
vermin reads every module's syntax and standard-library use and names the oldest Python that has them all."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from conftest import ROOT

VERMIN = "import sys; from vermin import main; sys.exit(main())"  # vermin has no `python -m` entry
CODE = ["app.py", "stylize", "ui", "benchmarks", "tools"]


def space_python() -> str:
    """The `python_version` of README's front matter (quoted there: YAML would read 3.10 as 3.1)."""
    front = (ROOT / "README.md").read_text().split("---")[1]
    found = re.search(r'^python_version:\s*"(\d+\.\d+)"\s*$', front, re.M)
    assert found, "README's front matter names no quoted python_version"
    return found.group(1)


def test_the_space_python_is_one_zerogpu_offers():
    assert space_python() in ("3.10", "3.12")  # Hugging Face's ZeroGPU page, August 2026


def test_the_code_needs_no_newer_python_than_the_space_has():
    pytest.importorskip("vermin", reason="vermin is in requirements-dev.txt")
    target = space_python()
    result = subprocess.run([sys.executable, "-c", VERMIN, "--no-tips", "--eval-annotations", "--violations",
                             f"-t={target}-", *CODE], cwd=ROOT, capture_output=True, text=True, timeout=300)
    # With --violations vermin prints only what needs a newer Python than the target, and exits non-zero if any.
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-1000:]
    minimum = re.search(r"Minimum required versions: (\d+)\.(\d+)", result.stdout)
    assert minimum and (int(minimum[1]), int(minimum[2])) <= tuple(map(int, target.split("."))), result.stdout
