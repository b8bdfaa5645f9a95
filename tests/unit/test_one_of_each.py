"""One of each: a protocol name means one thing across the packages, and test fakes have one home."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from tests.support.paths import REPO

PACKAGES = ("stream", "models", "export")
FAKES = REPO / "tests" / "support" / "fakes.py"


def classes(path: Path) -> list[ast.ClassDef]:
    tree = ast.parse(path.read_text(), str(path))
    return [node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)]


def is_protocol(node: ast.ClassDef) -> bool:
    names = []
    for base in node.bases:
        target = base.value if isinstance(base, ast.Subscript) else base  # Protocol[T]
        names.append(target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", ""))
    return "Protocol" in names


def test_each_protocol_name_is_defined_once() -> None:
    where: dict[str, list[str]] = defaultdict(list)
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            for node in classes(path):
                if is_protocol(node):
                    where[node.name].append(str(path.relative_to(REPO)))
    shared = {name: paths for name, paths in where.items() if len(paths) > 1}
    assert shared == {}, "two protocols share a name: rename the one that means something else"


def test_fakes_are_defined_only_in_tests_support() -> None:
    shared = {node.name for node in classes(FAKES)}
    redefined = [
        f"{path.relative_to(REPO)}: {node.name}"
        for path in sorted((REPO / "tests").rglob("*.py"))
        if path != FAKES
        for node in classes(path)
        if node.name in shared
    ]
    assert redefined == [], "import these from tests.support.fakes instead of defining them again"
