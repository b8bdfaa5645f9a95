"""A reproducible synthetic event stream for the demo, tests and benchmarks.

Users act with Zipf-like activity (a few heavy users, many light ones); each event's time moves
forward per user, so per-user order is the order of `ts_ms`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from stream.core.events import Event, EventType

_TYPE_WEIGHTS = {
    EventType.VIEW: 50,
    EventType.CLICK: 20,
    EventType.SEARCH: 15,
    EventType.ADD_TO_CART: 10,
    EventType.PURCHASE: 5,
}
_QUERIES = (
    "stapler",
    "gel pens",
    "desk lamp",
    "printer paper",
    "notebook a5",
    "label maker",
    "ink",
    "shredder",
)


_BRANDS = ("Acme", "Papyrus", "Inkwell", "Deskpro", "Brightline", "Northwind", "Tidy", "Clipper")
_PRODUCTS = (
    ("stapler", "Staplers"),
    ("staples 1000 pack", "Staplers"),
    ("gel pens", "Writing"),
    ("ballpoint pens", "Writing"),
    ("highlighters", "Writing"),
    ("notebook a5", "Paper"),
    ("printer paper a4", "Paper"),
    ("sticky notes", "Paper"),
    ("desk lamp", "Furniture"),
    ("monitor stand", "Furniture"),
    ("label maker", "Electronics"),
    ("ink cartridge", "Electronics"),
    ("paper shredder", "Electronics"),
    ("binder clips", "Organisers"),
    ("file folders", "Organisers"),
    ("desk organiser", "Organisers"),
)
_ADJECTIVES = ("black", "blue", "red", "compact", "heavy duty", "recycled", "premium", "ergonomic", "mini")


def sample_catalogue(items: int = 500, seed: int = 7) -> list[dict[str, object]]:
    """A synthetic office-supplies catalogue whose ids match `sample_events` (sku-00000 ...)."""
    rng = random.Random(seed)
    rows: list[dict[str, object]] = []
    for n in range(items):
        product, category = rng.choice(_PRODUCTS)
        brand = rng.choice(_BRANDS)
        rows.append(
            {
                "item_id": f"sku-{n:05d}",
                "title": f"{brand} {rng.choice(_ADJECTIVES)} {product}",
                "brand": brand,
                "category": category,
                "price": round(rng.uniform(1.5, 120.0), 2),
                # A few items out of stock exercise the in-stock filter.
                "in_stock": rng.random() > 0.05,
            }
        )
    return rows


@dataclass(frozen=True, slots=True)
class SampleSpec:
    users: int = 50
    events: int = 1000
    items: int = 500
    start_ts_ms: int = 1_764_000_000_000  # 2025-11-24, a fixed origin keeps runs reproducible
    seed: int = 7
    zipf_s: float = 1.1


def sample_events(spec: SampleSpec) -> list[Event]:
    """`spec.events` valid v1 events over `spec.users` users, in a fixed random global order."""
    rng = random.Random(spec.seed)
    user_weights = [1.0 / (rank + 1) ** spec.zipf_s for rank in range(spec.users)]
    types = list(_TYPE_WEIGHTS)
    type_weights = list(_TYPE_WEIGHTS.values())
    clock_ms: dict[str, int] = {}
    events = []
    for n in range(spec.events):
        user_id = f"u{rng.choices(range(spec.users), user_weights)[0]:04d}"
        ts_ms = clock_ms.get(user_id, spec.start_ts_ms + rng.randrange(60_000)) + rng.randrange(
            1_000, 120_000
        )
        clock_ms[user_id] = ts_ms
        event_type = rng.choices(types, type_weights)[0]
        is_search = event_type is EventType.SEARCH
        events.append(
            Event(
                event_id=f"e{spec.seed}-{n:08d}",
                user_id=user_id,
                type=event_type,
                ts_ms=ts_ms,
                item_id=None if is_search else f"sku-{rng.randrange(spec.items):05d}",
                query=rng.choice(_QUERIES) if is_search else None,
                session_id=f"s-{user_id}-{ts_ms // 1_800_000}",
            )
        )
    return events
