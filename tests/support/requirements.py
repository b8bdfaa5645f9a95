"""What a test needs from the machine: present, or skipped locally and FAILED in CI.

In CI (``CI=true``) no test may skip for something the install step can bring
(deploy/local/install): a skip there would let a feature go untested unnoticed. Outside CI a
missing tool or data set is a skip with the same instructions.
"""

from __future__ import annotations

import importlib
import os
import shutil
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest

INSTALL = "run deploy/local/install"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def missing(what: str, how: str) -> NoReturn:
    """Fail in CI, skip elsewhere; the message says what is missing and how to get it."""
    message = f"{what} is missing; {how}"
    if in_ci():
        pytest.fail(f"{message} (CI=true: tests never skip for a missing tool)")
    pytest.skip(message, allow_module_level=True)


def require_tool(name: str, debian_package: str) -> str:
    """The path of the command `name`, which Debian's `debian_package` installs."""
    path = shutil.which(name)
    if path is None:
        missing(f"the `{name}` command", f"{INSTALL}, or: apt-get install -y {debian_package}")
    return path


def require_module(name: str, extra: str = "export") -> ModuleType:
    """Import `name`, a module the project's `extra` installs."""
    try:
        return importlib.import_module(name)
    except ImportError:
        missing(f"the Python module {name}", f"{INSTALL}, or: pip install -e '.[{extra}]'")


def require_path(path: Path, what: str) -> Path:
    """A data set outside the repository (../shared): a skip locally, a failure in CI."""
    if not path.exists():
        missing(f"{what} ({path})", "place the shared data beside the checkout (../shared/data)")
    return path
