"""Where the repository and the shared data lie, for tests that read files beside the code."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
DATA = SHARED / "data"
FIELD_CASES = SHARED / "field-cases"
