"""One spelling of an id everywhere: the NFC and NFD spellings of a name are one user or item at
every entry point (events through the collector, the standard routes, the SDK, the worker,
replay and load; catalogue rows; lookups, search and `reco`), because every one of them reads ids
through `stream.core.normalise.id_text` (breaker report 14, NFC/NFD)."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest

from models.index.catalog import read_catalog
from stream.core.events import valid_id
from stream.serving.search import check_user_id
from tests.unit.stream import entry_points as ep

NAMES = ["José-Zoë", "Ångström", "한국어-7", "ﬁle-\u1e9b\u0323", "Ελλάδα", "u42"]
SPELLINGS = [(form, name) for name in NAMES for form in ("NFC", "NFD", "NFKD")]


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


@pytest.mark.parametrize("field", ["user_id", "item_id"])
@pytest.mark.parametrize(("form", "name"), SPELLINGS)
def test_every_event_entry_point_stores_the_nfc_spelling(
    field: str, form: str, name: str, tmp_path: Path
) -> None:
    sent = unicodedata.normalize(form, name)  # type: ignore[arg-type]
    outcomes = {entry: ep.run_v1(entry, field, sent, tmp_path) for entry in ep.V1_ENTRY_POINTS}
    for entry, (adapter, names) in ep.STANDARD_ENTRY_POINTS.items():
        if field in names:
            outcomes[entry] = adapter(field, sent)
    # replay forwards a line its value rules leave unchanged as it is (`is_normal_v1`), so its
    # record may hold the spelling sent; the worker reads it through the same rule (below).
    replayed = outcomes.pop("replay-jsonl")
    wrong = {e: o.short() for e, o in outcomes.items() if not o.accepted or o.value != nfc(sent)}
    assert not wrong, f"expected ok {nfc(sent)!r}, got {wrong}"
    assert replayed.accepted
    assert ep.via_worker(field, replayed.value).value == nfc(sent)


def test_replay_forwards_ids_in_nfc(tmp_path: Path) -> None:
    sent = unicodedata.normalize("NFD", "José-Zoë")
    assert ep.via_replay_jsonl("user_id", sent, tmp_path).value == "José-Zoë"


@pytest.mark.parametrize(("form", "name"), SPELLINGS)
def test_catalogue_lookups_and_search_read_the_same_spelling(form: str, name: str, tmp_path: Path) -> None:
    sent = unicodedata.normalize(form, name)  # type: ignore[arg-type]
    catalogue = tmp_path / "items.jsonl"
    catalogue.write_text(json.dumps({"item_id": sent, "title": "T"}) + "\n")
    [item] = read_catalog(catalogue)
    as_read = {
        "events": valid_id(sent, "user_id"),
        "catalogue": item.item_id,
        "lookups, search and reco": check_user_id(sent),
    }
    assert set(as_read.values()) == {nfc(sent)}, as_read


def test_the_two_spellings_of_one_name_differ_before_and_agree_after() -> None:
    nfd = unicodedata.normalize("NFD", "José-Zoë")
    assert nfd != "José-Zoë"
    assert valid_id(nfd, "user_id") == valid_id("José-Zoë", "user_id") == "José-Zoë"
    assert valid_id("u42", "user_id") == "u42"  # ASCII is returned as it is
