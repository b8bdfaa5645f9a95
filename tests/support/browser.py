"""Node.js and headless Chromium for the browser snippet's tests: found, or a failure naming the fix.

These tools are part of the test environment (deploy/local/install brings them), so a missing one
fails the test with the command that installs it rather than skipping it unnoticed in CI.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from stream.ingest.collector import STATIC_DIR

SNIPPET = STATIC_DIR / "profilestream.js"
NODE_MIN_MAJOR = 18  # fetch, Blob, crypto.randomUUID and node:test are built in from 18 on
INSTALL_HINT = "run deploy/local/install, or: apt-get install -y nodejs chromium chromium-driver"


def require_node() -> str:
    """The path of a Node.js >= 18, or fail the test saying how to install it."""
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        pytest.fail(f"Node.js is not installed; {INSTALL_HINT}")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=False).stdout
    match = re.match(r"v(\d+)\.", version)
    if match is None or int(match.group(1)) < NODE_MIN_MAJOR:
        pytest.fail(
            f"Node.js {version.strip() or '(unknown)'} is older than v{NODE_MIN_MAJOR}; {INSTALL_HINT}"
        )
    return node


def require_chromium() -> tuple[str, str]:
    """The paths of Debian's chromium and chromedriver, or fail the test saying how to install them."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    missing = [name for name, path in (("chromium", browser), ("chromedriver", driver)) if path is None]
    if browser is None or driver is None:
        pytest.fail(f"{' and '.join(missing)} not found; {INSTALL_HINT}")
    return browser, driver
