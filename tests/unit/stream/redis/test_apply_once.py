"""The write plan cut into apply-once units (pure): one per hash tag, each within one slot."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from stream.core.settings import load_settings
from stream.redis.apply_once import (
    APPLIED_MARKER_TTL_S,
    MAX_VALUES_PER_COMMAND,
    RedisOp,
    Unit,
    hash_tag,
    plan_calls,
    plan_units,
)
from stream.redis.reco_store import popular_key

SETTINGS = load_settings({}, redis_key_prefix="t")
KINDS = ("reco", "emb", "forgotten", "recent", "applied", "alias", "aliases")


@given(st.text(min_size=1, max_size=40))
def test_every_key_of_a_user_shares_one_slot_whatever_the_id(user_id: str) -> None:
    keys = [SETTINGS.redis_key(kind, user_id) for kind in KINDS]
    assert len({key_slot(key.encode()) for key in keys}) == 1
    assert len({hash_tag(key) for key in keys}) == 1


@given(st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=20))
def test_distinct_ids_get_distinct_keys(a: str, b: str) -> None:
    if a != b:
        assert SETTINGS.redis_key("reco", a) != SETTINGS.redis_key("reco", b)


def test_braces_in_an_id_are_escaped_so_the_tag_is_the_whole_id() -> None:
    assert SETTINGS.redis_key("reco", "}x{") == "t:{%7Dx%7B}:reco"
    assert SETTINGS.redis_key("reco", "50%") == "t:{50%25}:reco"
    assert hash_tag(SETTINGS.redis_key("emb", "{}")) == "%7B%7D"
    assert popular_key(SETTINGS) == "t:{popular}:popular"


def test_a_key_prefix_with_braces_is_refused() -> None:
    with pytest.raises(Exception, match="A-Z a-z 0-9"):
        load_settings({}, redis_key_prefix="shop{1}")


def test_ops_are_grouped_by_user_in_order_with_one_marker_each() -> None:
    key = SETTINGS.redis_key
    ops = [
        RedisOp("rpush", (key("recent", "a"), "e1")),
        RedisOp("rpush", (key("recent", "b"), "e2")),
        RedisOp("delete", (key("reco", "a"), key("emb", "a"))),
        RedisOp("zincrby", (popular_key(SETTINGS), 1.0, "sku-1")),
    ]
    units = plan_units(ops, "t", "w1")
    assert [u.tag for u in units] == ["a", "b", "popular"]
    a = units[0]
    assert a.keys == ("t:{a}:applied:w1", key("recent", "a"), key("reco", "a"), key("emb", "a"))
    assert a.argv == ("RPUSH", 2, key("recent", "a"), "e1", "DEL", 2, key("reco", "a"), key("emb", "a"))


def test_an_op_over_two_users_slots_is_refused() -> None:
    op = RedisOp("delete", (SETTINGS.redis_key("reco", "a"), SETTINGS.redis_key("reco", "b")))
    with pytest.raises(ValueError, match="several hash slots"):
        plan_units([op], "t", "w1")


def test_a_long_push_is_split_within_what_lua_unpacks() -> None:
    key = SETTINGS.redis_key("recent", "a")
    values = [f"e{n}" for n in range(2 * MAX_VALUES_PER_COMMAND + 1)]
    (unit,) = plan_units([RedisOp("rpush", (key, *values))], "t", "w1")
    pushes = [n for n, arg in enumerate(unit.argv) if arg == "RPUSH"]
    assert len(pushes) == 3
    assert [unit.argv[n + 1] for n in pushes] == [MAX_VALUES_PER_COMMAND + 1, MAX_VALUES_PER_COMMAND + 1, 2]


def _units(users: list[str]) -> list[Unit]:
    ops = [RedisOp("rpush", (SETTINGS.redis_key("recent", u), f"e-{u}")) for u in users]
    return plan_units(ops, "t", "w1")


def test_on_a_single_redis_units_share_calls_in_order_up_to_the_bound() -> None:
    units = _units([f"u{n}" for n in range(5)])
    calls = plan_calls(units, cluster=False, max_units=2)
    assert [len(call.units) for call in calls] == [2, 2, 1]
    assert [unit for call in calls for unit in call.units] == units


def test_on_a_cluster_only_units_of_one_slot_share_a_call() -> None:
    slot_of = {u: key_slot(u.encode()) for u in (f"u{n}" for n in range(2000))}
    by_slot: dict[int, list[str]] = {}
    for user, slot in slot_of.items():
        by_slot.setdefault(slot, []).append(user)
    same = next(users[:2] for users in by_slot.values() if len(users) >= 2)
    units = _units([same[0], "lonely", same[1]])
    calls = plan_calls(units, cluster=True)
    assert sorted(len(call.units) for call in calls) == [1, 2]
    for call in calls:
        assert len({key_slot(unit.tag.encode()) for unit in call.units}) == 1


def test_a_calls_arguments_point_each_unit_at_its_own_marker() -> None:
    units = _units(["a", "b"])
    (call,) = plan_calls(units, cluster=False)
    arguments = call.arguments("batch-1")
    numkeys = int(arguments[0])
    keys, argv = list(arguments[1 : 1 + numkeys]), list(arguments[1 + numkeys :])
    assert keys == [*units[0].keys, *units[1].keys]
    assert argv[:2] == ["batch-1", APPLIED_MARKER_TTL_S]
    at = 2
    for unit in units:
        marker_index, count = int(argv[at]), int(argv[at + 1])
        assert keys[marker_index - 1] == unit.keys[0]  # Lua indexes KEYS from 1
        assert tuple(argv[at + 2 : at + 2 + count]) == unit.argv
        at += 2 + count
    assert at == len(argv)
