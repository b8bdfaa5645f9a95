"""The READMEs: a short front page that reaches every other one, and a configuration table that
lists every setting wherever that table lives."""

from __future__ import annotations

import re
from pathlib import Path

from stream.core.settings import Settings, env_name
from tests.support.paths import REPO

README = REPO / "README.md"
FRONT_PAGE_MAX_LINES = 250
# Folders that hold no documentation of ours (virtual environments, build and run output).
_SKIPPED_PARTS = {".venv", "var", "node_modules", ".git", "build", "dist", ".mypy_cache", ".pytest_cache"}
_LINK = re.compile(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)")
_HEADING = re.compile(r"^#{1,6} ", re.MULTILINE)


def all_readmes() -> list[Path]:
    return sorted(
        path
        for path in REPO.rglob("README.md")
        if not _SKIPPED_PARTS.intersection(path.relative_to(REPO).parts[:-1])
        and not any(part.endswith(".egg-info") for part in path.relative_to(REPO).parts)
    )


def linked_readmes(readme: Path) -> set[Path]:
    """The README files that `readme` links to with relative markdown links."""
    found = set()
    for target, _ in _LINK.findall(readme.read_text()):
        if not target or "://" in target:
            continue
        path = (readme.parent / target).resolve()
        if path.is_dir():
            path = path / "README.md"
        if path.name == "README.md" and path.is_file():
            found.add(path)
    return found


def configuration_section(text: str) -> str | None:
    """The text under a `## Configuration` heading up to the next heading, if there is one."""
    match = re.search(r"^## Configuration\s*$", text, re.MULTILINE)
    if match is None:
        return None
    rest = text[match.end() :]
    following = _HEADING.search(rest)
    return rest if following is None else rest[: following.start()]


def test_front_page_is_short() -> None:
    lines = README.read_text().count("\n")
    assert lines <= FRONT_PAGE_MAX_LINES, f"README.md has {lines} lines; move details out"


def test_every_readme_is_reachable_from_the_front_page() -> None:
    seen = {README.resolve()}
    todo = [README.resolve()]
    while todo:
        for target in linked_readmes(todo.pop()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    unreachable = [str(path.relative_to(REPO)) for path in all_readmes() if path.resolve() not in seen]
    assert unreachable == [], "link these from README.md (or a README it links to)"


def anchors(readme: Path) -> set[str]:
    """GitHub's anchors for the headings of `readme`: lower case, punctuation dropped, spaces to -."""
    return {
        re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        for heading in re.findall(r"^#{1,6} (.+)$", readme.read_text(), re.MULTILINE)
    }


def test_relative_links_in_readmes_resolve() -> None:
    broken = []
    for readme in all_readmes():
        for target, anchor in _LINK.findall(readme.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            path = readme.parent / target if target else readme
            if not path.exists():
                broken.append(f"{readme.relative_to(REPO)} -> {target}")
            elif anchor and path.suffix == ".md" and anchor not in anchors(path):
                broken.append(f"{readme.relative_to(REPO)} -> {target}#{anchor}")
    assert broken == []


def test_configuration_table_lists_every_setting() -> None:
    sections = {path: configuration_section(path.read_text()) for path in all_readmes()}
    tables = {path: section for path, section in sections.items() if section is not None}
    assert len(tables) == 1, "expected exactly one '## Configuration' section among the READMEs"
    ((where, table),) = tables.items()
    missing = [env_name(name) for name in Settings.model_fields if f"`{env_name(name)}`" not in table]
    assert missing == [], f"add a row for each to the configuration table in {where.relative_to(REPO)}"


_REPO_PATH = re.compile(r"`((?:stream|models|export|bench|deploy|tests)/[A-Za-z0-9_./-]+)`")


def test_code_paths_named_in_readmes_exist() -> None:
    """A path such as `stream/worker/app.py` in a README names a file or folder of the tree (none
    left over from before a move)."""
    stale = [
        f"{readme.relative_to(REPO)}: {path}"
        for readme in all_readmes()
        for path in _REPO_PATH.findall(readme.read_text())
        if not (REPO / path).exists()
    ]
    assert stale == []
