"""`make lint`'s architecture check (lint-imports, contracts in pyproject.toml) catches a wrong import.

The tree is copied, one deliberately wrong import is added inside a function (imports inside
functions count), and lint-imports must refuse the copy while it accepts the tree as it is.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import REPO

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _copy_tree(tmp_path: Path) -> Path:
    for package in ("stream", "models", "export"):
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, check=False
    )


def test_the_tree_keeps_every_contract(tmp_path: Path) -> None:
    result = _lint(_copy_tree(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("module", "bad_import", "broken"),
    [
        # the pure core reaching up into serving (and through it onnxruntime)
        ("stream/core/window.py", "from stream.serving import lookups", "Packages import only downwards"),
        # two siblings importing each other
        ("stream/serving/search.py", "from stream.worker import app", "Packages import only downwards"),
        # torch on the worker's path through export
        ("stream/profiles/computer.py", "import export.onnx_export", "never import torch"),
    ],
)
def test_a_wrong_import_inside_a_function_breaks_a_contract(
    tmp_path: Path, module: str, bad_import: str, broken: str
) -> None:
    root = _copy_tree(tmp_path)
    with open(root / module, "a", encoding="utf-8") as source:
        source.write(f"\n\ndef _wrong() -> None:\n    {bad_import}  # noqa: F401\n")
    result = _lint(root)
    assert result.returncode != 0
    assert f"{broken}" in result.stdout and "BROKEN" in result.stdout, result.stdout
