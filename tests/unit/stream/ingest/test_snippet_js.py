"""The browser snippet's delivery rules (splitting, partial rejections, back-off, bounded queue,
query truncation, send time), checked by snippet.test.js under Node with a fake fetch and clock."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from stream.core.events import MAX_QUERY_CHARS, truncate_query
from tests.support.browser import SNIPPET, require_node

NODE_TESTS = Path(__file__).with_name("snippet.test.js")


def test_snippet_delivery_rules_under_node() -> None:
    node = require_node()
    run = subprocess.run(
        [node, "--test", "--test-reporter=tap", str(NODE_TESTS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PROFILESTREAM_SNIPPET": str(SNIPPET)},
    )
    failed = [line for line in run.stdout.splitlines() if line.startswith("not ok")]
    assert run.returncode == 0, "\n".join(failed) + "\n" + run.stdout[-6000:] + run.stderr[-2000:]
    assert re.search(r"^# pass [1-9]", run.stdout, re.MULTILINE), run.stdout[-2000:]


def test_snippet_truncates_queries_at_the_schema_limit() -> None:
    """One over-long-query policy: the snippet's constant is the schema's."""
    match = re.search(r"var MAX_QUERY_CHARS = (\d+);", SNIPPET.read_text())
    assert match is not None, "profilestream.js no longer defines MAX_QUERY_CHARS"
    assert int(match.group(1)) == MAX_QUERY_CHARS


TRUNCATE = r"""
const fs = require("fs"), vm = require("vm");
const sandbox = {};
vm.createContext(sandbox);
vm.runInContext(fs.readFileSync(process.argv[2], "utf8"), sandbox);
const queries = JSON.parse(fs.readFileSync(0, "utf8"));
process.stdout.write(JSON.stringify(queries.map((q) => sandbox.ProfileStream._truncateQuery(q))));
"""


def test_snippet_truncates_like_the_schema(tmp_path: Path) -> None:
    """The same over-long query policy in JS as truncate_query in Python: code points, not UTF-16
    units, and Python's whitespace set (\\x1c-\\x1f, \\x85 are space; a BOM is not)."""
    node = require_node()
    n = MAX_QUERY_CHARS
    pads = [" ", "\t\n", "\x85", "\x1c\x1f", "\u3000\xa0", "\ufeff", "\u200b", ""]
    bodies = ["x" * (n + 88), "\U0001f600" * (n + 1), "\U0001f600" * n, "é" * (n - 1), "a b " * n, "q" * n]
    queries = [pad + body + pad for pad in pads for body in bodies]
    script = tmp_path / "truncate.js"
    script.write_text(TRUNCATE)
    run = subprocess.run(
        [node, str(script), str(SNIPPET)],
        input=json.dumps(queries),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    for query, result in zip(queries, got, strict=True):
        assert result == truncate_query(query), (
            f"{query[:20]!r}...: {len(result)} vs {len(truncate_query(query))}"
        )
