"""The worker's join step (`stream.worker.identity`) with a fake topic and fake links: the moved
events are acknowledged before the anonymous window is handed back cleared."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

from stream.core.batch import apply_batch
from stream.core.events import Event, EventType
from stream.core.identity import FORGET_OF, MERGED_FROM
from stream.core.settings import load_settings
from stream.core.window import Window, WindowConfig
from stream.redis.activity import RedisOp
from stream.worker.identity import IdentityJoiner, Joined

T0 = 1_764_000_000_000
CONFIG = WindowConfig()
HALF_LIFE_MS = 7 * 24 * 3600 * 1000


class HeldTopic:
    """Sends complete only when `release` is called: the broker's ack, held back."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, bytes]] = []
        self.acks: list[asyncio.Future[None]] = []

    async def send(self, *, key: bytes, value: bytes) -> asyncio.Future[None]:
        self.sent.append((key, value))
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.acks.append(ack)
        return ack

    def release(self) -> None:
        for ack in self.acks:
            if not ack.done():
                ack.set_result(None)


class FakeLinks:
    def __init__(self, linked: dict[str, set[str]] | None = None) -> None:
        self.applied: list[str] = []
        self._linked = linked or {}

    def link_ops(self, links: Iterable[tuple[str, str]]) -> list[RedisOp]:
        return [RedisOp("set", (f"alias:{a}", k)) for a, k in links]

    def removal_ops(self, users: Iterable[str]) -> list[RedisOp]:
        return [RedisOp("delete", (f"reco:{u}",)) for u in users]

    def unlink_ops(self, users: Iterable[str]) -> list[RedisOp]:
        return [RedisOp("delete", (f"alias:{u}",)) for u in users]

    async def apply(self, ops: Sequence[RedisOp], what: str) -> None:
        self.applied += [str(op.args[0]) for op in ops]

    async def linked(self, users: Sequence[str]) -> dict[str, set[str]]:
        return {u: self._linked[u] for u in users if u in self._linked}


def joiner(topic: HeldTopic, links: FakeLinks) -> IdentityJoiner:
    identity = IdentityJoiner(topic, load_settings({}))
    identity._links = links  # type: ignore[assignment]
    return identity


def view(event_id: str, user: str, ts: int) -> Event:
    return Event(event_id, user, EventType.VIEW, T0 + ts, item_id=f"sku-{event_id}")


def test_the_anonymous_window_is_handed_back_cleared_only_after_the_acks() -> None:
    topic, links = HeldTopic(), FakeLinks()
    identity = joiner(topic, links)
    stored = {"anon": Window()}
    batch = [
        view("a1", "anon", 1),
        view("a2", "anon", 2),
        Event("login", "anon", EventType.IDENTIFY, T0 + 3, known_user_id="u42"),
    ]

    async def run() -> Joined:
        windows, outcome = apply_batch(stored, batch, CONFIG, HALF_LIFE_MS)
        task = asyncio.ensure_future(identity.apply(batch, stored, windows, outcome))
        await asyncio.sleep(0.01)
        # Sent, link recorded first, but not acknowledged: the step must still be waiting.
        assert not task.done()
        assert links.applied == ["alias:anon"]
        topic.release()
        return await task

    joined = asyncio.run(run())
    windows, outcome = joined.windows, joined.outcome
    assert [key for key, _ in topic.sent] == [b"u42", b"u42"]
    moved = [Event(**{k: v for k, v in _doc(value).items() if k != "v"}) for _, value in topic.sent]
    assert [(e.event_id, e.user_id, e.context[MERGED_FROM]) for e in moved] == [
        ("a1", "u42", "anon"),
        ("a2", "u42", "anon"),
    ]
    assert windows["anon"].events == ()
    assert all(user != "anon" for user, _ in outcome.changed)

    asyncio.run(identity.after_activity(asyncio.sleep(0), joined.anonymous))
    assert links.applied[-1] == "reco:anon"


def test_a_batch_without_logins_or_forgets_touches_nothing() -> None:
    topic, links = HeldTopic(), FakeLinks({"u1": {"anon"}})
    identity = joiner(topic, links)
    batch = [view("a1", "u1", 1)]
    windows, outcome = apply_batch({}, batch, CONFIG, HALF_LIFE_MS)
    assert asyncio.run(identity.apply(batch, {}, windows, outcome)) == Joined(windows, outcome)
    assert topic.sent == [] and links.applied == []


def test_a_forget_is_sent_to_linked_ids_before_the_links_go() -> None:
    topic, links = HeldTopic(), FakeLinks({"u42": {"anon"}})
    identity = joiner(topic, links)
    forget = Event("f1", "u42", EventType.FORGET, T0 + 9, received_ms=T0 + 9)

    async def run() -> None:
        windows, outcome = apply_batch({}, [forget], CONFIG, HALF_LIFE_MS)
        task = asyncio.ensure_future(identity.apply([forget], {}, windows, outcome))
        await asyncio.sleep(0.01)
        assert not task.done() and links.applied == []  # links kept until the forget is acked
        topic.release()
        await task

    asyncio.run(run())
    (key, value), *rest = topic.sent
    assert rest == [] and key == b"anon"
    assert _doc(value)["type"] == "forget" and _doc(value)["context"] == {FORGET_OF: "u42"}
    assert sorted(links.applied) == ["alias:anon", "alias:u42"]


def _doc(value: bytes) -> dict[str, Any]:
    import json

    doc: dict[str, Any] = json.loads(value)
    return doc
