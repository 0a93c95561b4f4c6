"""The linters the code is written against run with the tests, so a type or lint error fails CI.

ruff checks everything (its settings in pyproject.toml); mypy checks the product's packages
(``[tool.mypy]``: the pydantic plugin, so the settings object is typed too).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.mark.parametrize("tool", [["ruff", "check", "."], ["ruff", "format", "--check", "."], ["mypy"]],
                         ids=["ruff check", "ruff format", "mypy"])  # fmt: skip
def test_the_tree_passes(tool: list[str]) -> None:
    done = subprocess.run([str(BIN / tool[0]), *tool[1:]], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
