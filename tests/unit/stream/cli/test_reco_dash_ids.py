"""`reco` takes ids that start with "-" (breaker report 14: `reco -42` was "No such option: -4")."""

from __future__ import annotations

import unicodedata
from typing import Any

import pytest
from click.testing import CliRunner

from stream.cli.main import main
from stream.serving.lookups import RecoClient


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int | None]]:
    seen: list[tuple[str, int | None]] = []

    class Result:
        def __init__(self, user_id: str) -> None:
            self.user_id = user_id

        def to_dict(self) -> dict[str, Any]:
            return {"user_id": self.user_id}

    async def get(self: RecoClient, user_id: str, k: int | None = None) -> Result:
        seen.append((user_id, k))
        return Result(user_id)

    async def close(self: RecoClient) -> None:
        return None

    monkeypatch.setattr(RecoClient, "get", get)
    monkeypatch.setattr(RecoClient, "close", close)
    return seen


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-42"], ("-42", None)),
        (["-42", "-k", "3"], ("-42", 3)),
        (["-k", "3", "-42"], ("-42", 3)),
        (["-k3", "-42"], ("-42", 3)),
        (["-4k2"], ("-4k2", None)),  # click read this as user "-4" with k=2
        (["-look"], ("-look", None)),
        (["--shop-7"], ("--shop-7", None)),
        (["--", "-k7"], ("-k7", None)),
        (["--", "--help"], ("--help", None)),
        (["u42"], ("u42", None)),
        ([unicodedata.normalize("NFD", "José")], ("José", None)),  # read as events store it
    ],
)
def test_ids_starting_with_a_dash_are_the_id(
    asked: list[tuple[str, int | None]], args: list[str], expected: tuple[str, int | None]
) -> None:
    result = CliRunner().invoke(main, ["reco", *args])
    assert result.exit_code == 0, result.output
    assert asked == [expected]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["-k"], "Option '-k' requires an argument"),
        (["u1", "-k", "0"], "0 is not in the range"),
        (["a", "b"], "unexpected extra argument"),
        ([], "Missing argument 'USER_ID'"),
        (["u1 "], "user_id must be an id an event can carry"),
    ],
)
def test_usage_errors_stay_usage_errors(
    asked: list[tuple[str, int | None]], args: list[str], fragment: str
) -> None:
    result = CliRunner().invoke(main, ["reco", *args])
    assert result.exit_code == 2, result.output
    assert fragment in result.output
    assert asked == []
