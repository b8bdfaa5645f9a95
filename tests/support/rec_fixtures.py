"""A small synthetic next-item folder in the amazon-office layout (items.json, valid.csv, test.csv).

Items come in topics (pens, paper, desks, ...); each user stays inside one topic, so a history says
what comes next. Test targets use their own item ids (``t...``) that occur nowhere else except in
later test histories, so a test can check that training never sees one.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

TOPICS = {
    "pen": ("pen", "pens", "ink", "black", "blue", "red"),
    "paper": ("paper", "sheet", "sheets", "letter", "notebook", "pad"),
    "desk": ("desk", "chair", "lamp", "office", "large", "small"),
    "cable": ("usb", "hub", "cable", "mouse", "keyboard", "long"),
}
COLUMNS = (
    "user_id",
    "history_item_title",
    "item_title",
    "history_item_id",
    "item_id",
    "history_item_sid",
    "item_sid",
)


def _items() -> dict[str, dict[str, str]]:
    items: dict[str, dict[str, str]] = {}
    for t, (topic, words) in enumerate(TOPICS.items()):
        for n in range(6):
            title = f"{words[n]} {words[(n + 1) % 6]} {topic}"
            items[f"{t * 10 + n}"] = {"title": title, "brand": f"{topic} co", "description": "['']"}
        # Test targets: only ever a test row's target (or a later test row's history).
        items[f"t{t}"] = {"title": f"{words[0]} {words[2]} {topic}", "brand": f"{topic} co"}
    items["orphan"] = {"title": "green tape", "brand": ""}
    return items


def _row(user: str, history: list[str], target: str) -> dict[str, str]:
    return {
        "user_id": user,
        "history_item_title": "[]",
        "item_title": "",
        "history_item_id": str([int(h) if h.isdigit() else h for h in history]),
        "item_id": target,
        "history_item_sid": "",
        "item_sid": "",
    }


def write_dataset(directory: Path, users_per_topic: int = 6) -> Path:
    """valid: two rows per user; test: two rows per user, the second one's history holding the
    first one's target (as in the real files)."""
    directory.mkdir(parents=True, exist_ok=True)
    items = _items()
    (directory / "items.json").write_text(json.dumps(items), encoding="utf-8")
    valid: list[dict[str, str]] = []
    test: list[dict[str, str]] = []
    for t in range(len(TOPICS)):
        for u in range(users_per_topic):
            user = f"u{t}-{u}"
            seq = [str(t * 10 + (u + k) % 6) for k in range(5)]
            valid.append(_row(user, seq[:2], seq[2]))
            valid.append(_row(user, seq[:3], seq[3]))
            test.append(_row(user, seq[:4], f"t{t}"))
            test.append(_row(user, [*seq[1:4], f"t{t}"], seq[4]))
    test.append(_row("u-new", ["orphan"], "missing-item"))
    for name, rows in (("valid.csv", valid), ("test.csv", test)):
        with (directory / name).open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    return directory
