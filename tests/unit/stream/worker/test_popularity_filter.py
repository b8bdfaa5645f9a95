"""Popularity counts only the index's items: a client cannot grow `popular` with made-up ids."""

from __future__ import annotations

from stream.worker.retention import catalogue_only


def test_items_outside_the_catalogue_are_left_out() -> None:
    increments = {"sku-1": 1.0, "made-up-123": 5.0, "sku-2": 0.5}
    assert catalogue_only(increments, frozenset({"sku-1", "sku-2", "sku-3"})) == {"sku-1": 1.0, "sku-2": 0.5}
