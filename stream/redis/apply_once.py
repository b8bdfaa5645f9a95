"""Apply a batch's Redis writes exactly once, per hash slot, on a single Redis or a Redis Cluster.

A batch's write plan is a list of `RedisOp`s over many users' keys and the shop-wide `popular`
set. A cluster refuses a MULTI/EXEC or a script whose keys lie in different slots (CROSSSLOT), so
the plan is cut into *units*, one per hash tag (`Settings.redis_key` tags every key of a user with
the user id; `popular` has its own tag). Units are applied by calls of one Lua script
(`APPLY_ONCE_LUA`), each call atomic on the node that owns its slot; per unit the script

1. skips the unit if its marker key (``{prefix}:{tag}:applied:{writer}``, in the unit's slot)
   already holds this batch's id: an earlier try already applied it;
2. run the unit's commands in order (the newer-only profile write is one of them, inlined);
3. set the marker to the batch id, expiring after `APPLIED_MARKER_TTL_S`.

A script call applies several units when their keys share one slot: on a single Redis every
key does, so a batch's units go as a few calls of up to `MAX_UNITS_PER_CALL` each (one call per
unit cost the worker's event loop a command's packing and reply per user: about 40 % of the
batch's Redis write, `bench/redis_write_path.py`); on a cluster, units go one per call unless
their tags hash to one slot. A "single" Redis that turns out to be several shards behind a proxy
refuses a mixed call with CROSSSLOT before running any of it; the batch's calls are then planned
as on a cluster and resent. Each unit keeps its own marker and result inside the call. The
calls of a batch go out in one non-transactional pipeline (a cluster client sends each node's
share in parallel). A try cut anywhere leaves every unit either applied with its marker or
not applied at all; the next try resends only the calls without a result, and the units a cut had
applied see their marker and stop. So ZINCRBY and RPUSH, which are not idempotent, apply once.
One case is outside this: Redis does not undo a script that fails on a command (WRONGTYPE on a
key that some other program wrote, say). The units of the call before it stay applied with their
markers, the failing one may be half applied, the rest did not run, and the error is raised to
the caller; a caller that retries under a new batch id (the worker's poison isolation) applies
the earlier units again.
The markers are per tag and *writer*, not per batch: one short string per active user and writer,
overwritten by that writer's next batch, gone ten minutes after its last write. The writer (the
caller's name and a random id of the process) keeps two writers of one tag from overwriting each
other's marker between a cut try and its retry: the worker writes a user's recent list, profile
and identity links from three concurrent pipelines, and every worker process writes `popular`.
With one shared marker, a retry after another writer's batch would find a foreign id and apply
its ZINCRBY or RPUSH a second time.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterCrossSlotError,
    ClusterDownError,
    ClusterError,
    MovedError,
    NoScriptError,
    ReadOnlyError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from stream.redis.client import AsyncRedis

log = logging.getLogger(__name__)

APPLIED_KIND = "applied"
# Names this process in its markers: two worker processes never share one.
PROCESS_WRITER_ID = uuid.uuid4().hex[:12]
MAX_BACKOFF_S = 5.0


class UnansweredClock:
    """Since when this process's writes have waited for Redis (`execute_until_done` retrying).

    One per process (`REDIS_UNANSWERED`): the worker's /readyz reports it, so that a worker whose
    batches wait for an unreachable Redis is not counted as serving.
    """

    def __init__(self) -> None:
        self._since_s: float | None = None  # time.monotonic() of the first unanswered try

    def failed(self) -> None:
        if self._since_s is None:
            self._since_s = time.monotonic()

    def answered(self) -> None:
        self._since_s = None

    def unanswered_s(self) -> float:
        """Seconds since the writes began to wait for Redis; 0.0 while Redis answers."""
        return 0.0 if self._since_s is None else time.monotonic() - self._since_s


REDIS_UNANSWERED = UnansweredClock()
# A unit's marker only has to outlive the retries of one batch, which check it as soon as Redis
# answers again; ten minutes covers that and keeps the markers few.
APPLIED_MARKER_TTL_S = 600
# Lua's `unpack` takes at most ~8000 values; longer pushes are split into several commands.
MAX_VALUES_PER_COMMAND = 1000
# A script blocks the server while it runs. A worker's 450-user batch (recent lists and profiles
# from two writers) as calls of 64 units: 1.2 ms of server time per call; of 16: 0.33 ms, for
# the same wall time and 8 % more client CPU than 64 (and 45 % less than one unit per call). So
# 16: a lookup waits at most about a third of a millisecond behind a write.
MAX_UNITS_PER_CALL = 16
# Errors after which a unit may or may not have run: the next try resends it, and its marker
# keeps it from applying twice. A cluster answers these while a failover or a slot move is under
# way (a replica of a dead master that is not yet promoted answers READONLY, say).
RETRIED_ERRORS: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ClusterDownError,
    ClusterError,
    TryAgainError,
    MovedError,
    AskError,
    ReadOnlyError,
    ConnectionError,
    TimeoutError,
)

# The newer-only profile write: compare the incoming window version with the stored one byte by
# byte (Lua's own string comparison follows the server's locale), refuse a window whose newest
# receive time is at or before the forget's receive time (see `stream.redis.reco_store`).
APPLY_ONCE_LUA = (
    """
local function bytes_greater(a, b)
  if a == b then return false end
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x > y end
  end
  return #a > #b
end
-- reco, emb, forgotten keys; newest receive time, window version, payload, vector, ttl
local function write_if_newer(reco, emb, forgotten, received, version, payload, vector, ttl)
  local forgot = redis.call('GET', forgotten)
  if forgot and tonumber(received) <= tonumber(forgot) then return -1 end
  local stored = redis.call('HGET', reco, 'ver')
  if stored and not bytes_greater(version, stored) then return 0 end
  redis.call('HSET', reco, 'ver', version, 'json', payload)
  redis.call('SET', emb, vector)
  if tonumber(ttl) > 0 then
    redis.call('EXPIRE', reco, ttl)
    redis.call('EXPIRE', emb, ttl)
  end
  return 1
end
-- KEYS: each unit's marker and every key its commands touch (declared for the cluster).
-- ARGV[1]: the batch id; ARGV[2]: the markers' expiry (s); then per unit: its marker's index in
-- KEYS, the count of its values, and per command: name, count, args. Returns per unit 0 (its
-- marker already held the batch id: applied before) or 1.
-- Values one RPUSH takes from a Lua table (unpack's limit, as for the batch's own commands).
"""
    + f"local MAX_VALUES = {MAX_VALUES_PER_COMMAND}\n"
    + """
-- A recent-activity entry's head up to the end of its event id, '{"event_id":"<id>"', as
-- stream.redis.activity.activity_entry writes it (event_id first; JSON escapes stepped over), or
-- nil for an entry of another shape (never matched, never removed).
local function id_head(entry)
  if string.sub(entry, 1, 13) ~= '{"event_id":"' then return nil end
  local at = 14
  while true do
    at = string.find(entry, '["\\\\]', at)
    if not at then return nil end
    if string.byte(entry, at) == 34 then return string.sub(entry, 1, at) end
    at = at + 2
  end
end
-- Push ARGV[first..last] (entries) onto the list `key`, which holds each event id once: a stored
-- entry of a pushed id leaves first whatever its content, and of pushed entries sharing an id the
-- last one stays. One scan of the list, plus an LREM per stored entry that goes. A stored entry
-- has a pushed id when its first #head bytes are that head (the bytes before the head's closing
-- quote being the same, that quote ends the stored id too): one cut per distinct head length
-- (the ids of a batch mostly have one) and a table lookup, not a parse of every stored entry.
local function push_by_id(key, first, last)
  local last_of, lengths = {}, {}
  for j = first, last do
    local head = id_head(ARGV[j])
    if head then
      last_of[head] = j
      lengths[#head] = true
    end
  end
  if next(last_of) then
    for _, stored in ipairs(redis.call('LRANGE', key, 0, -1)) do
      for n in pairs(lengths) do
        if last_of[string.sub(stored, 1, n)] then
          redis.call('LREM', key, 0, stored)
          break
        end
      end
    end
  end
  local values = {}
  for j = first, last do
    local head = id_head(ARGV[j])
    if not head or last_of[head] == j then values[#values + 1] = ARGV[j] end
  end
  for start = 1, #values, MAX_VALUES do
    redis.call('RPUSH', key, unpack(values, start, math.min(start + MAX_VALUES - 1, #values)))
  end
end

local results = {}
local i = 3
while i <= #ARGV do
  local marker, last = KEYS[tonumber(ARGV[i])], i + 1 + tonumber(ARGV[i + 1])
  i = i + 2
  if redis.call('GET', marker) == ARGV[1] then
    results[#results + 1] = 0
  else
    while i <= last do
      local name, n = ARGV[i], tonumber(ARGV[i + 1])
      if name == 'WRITE_IF_NEWER' then
        write_if_newer(unpack(ARGV, i + 2, i + 1 + n))
      elseif name == 'PUSH_BY_ID' then
        push_by_id(ARGV[i + 2], i + 3, i + 1 + n)
      else
        redis.call(name, unpack(ARGV, i + 2, i + 1 + n))
      end
      i = i + 2 + n
    end
    redis.call('SET', marker, ARGV[1], 'EX', ARGV[2])
    results[#results + 1] = 1
  end
  i = last + 1
end
return results
"""
)

APPLY_ONCE_SHA = hashlib.sha1(APPLY_ONCE_LUA.encode(), usedforsecurity=False).hexdigest()

# redis-py method names that differ from the Redis command; every other name is upper-cased.
_COMMANDS = {"delete": "DEL", "write_if_newer": "WRITE_IF_NEWER", "push_by_id": "PUSH_BY_ID"}
# Commands whose every argument is a key; for the others the keys come first (`_key_count`).
_ALL_KEYS = frozenset({"delete", "unlink"})


@dataclass(frozen=True, slots=True)
class RedisOp:
    """One Redis command of a batch's write plan, e.g. ``RedisOp("rpush", (key, v1, v2))``.

    ``write_if_newer`` is the newer-only profile write: ``(reco_key, emb_key, forgotten_key,
    newest_received_ms, window_version, payload_json, vector_bytes, ttl_s)``. ``push_by_id`` is
    the recent-activity push: ``(list_key, entry, ...)`` appends the entries (`activity_entry`
    lines) to a list that holds each event id once, removing a stored entry of a pushed id
    whatever its content; it is never split, so one scan of the list sees every pushed id.
    """

    command: str
    args: tuple[str | int | float | bytes, ...]

    @property
    def keys(self) -> tuple[str, ...]:
        if self.command in _ALL_KEYS:
            count = len(self.args)
        elif self.command == "write_if_newer":
            count = 3
        else:
            count = 1
        return tuple(str(key) for key in self.args[:count])


def hash_tag(key: str) -> str:
    """The part of `key` Redis Cluster hashes: the text inside its first ``{...}``, if not empty."""
    start = key.find("{")
    if start != -1:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


@dataclass(frozen=True, slots=True)
class Unit:
    """The ops of one hash tag, applied once under its own marker (in a `ScriptCall`)."""

    tag: str
    keys: tuple[str, ...]
    argv: tuple[str | int | float | bytes, ...]


def plan_units(ops: Sequence[RedisOp], key_prefix: str, writer: str) -> list[Unit]:
    """Group `ops` by hash tag, keeping their order within a tag (pure).

    Each unit's marker is ``{key_prefix}:{tag}:applied:{writer}`` (see the module docstring).

    Raises ValueError for an op whose keys do not share one tag: no single node could apply it.
    """
    # Each op's keys once: this runs for every op of every batch on the worker's event loop.
    by_tag: dict[str, list[tuple[RedisOp, tuple[str, ...]]]] = {}
    for op in ops:
        op_keys = op.keys
        tag = hash_tag(op_keys[0]) if op_keys else ""
        if not op_keys or any(hash_tag(key) != tag for key in op_keys[1:]):
            raise ValueError(f"{op.command} touches keys of several hash slots: {op_keys}")
        by_tag.setdefault(tag, []).append((op, op_keys))
    units = []
    for tag, tag_ops in by_tag.items():
        keys = dict.fromkeys(key for _, op_keys in tag_ops for key in op_keys)
        argv: list[str | int | float | bytes] = []
        for op, _ in tag_ops:
            for args in _split(op):
                argv += [_COMMANDS.get(op.command, op.command.upper()), len(args), *args]
        marker = f"{key_prefix}:{{{tag}}}:{APPLIED_KIND}:{writer}"
        units.append(Unit(tag, (marker, *keys), tuple(argv)))
    return units


@dataclass(frozen=True, slots=True)
class ScriptCall:
    """Units whose keys share one slot, applied by one call of `APPLY_ONCE_LUA` (in order)."""

    units: tuple[Unit, ...]

    def arguments(self, batch_id: str) -> tuple[str | int | float | bytes, ...]:
        """EVALSHA's arguments after the script's sha: key count, keys, then the script's ARGV."""
        keys: list[str] = []
        argv: list[str | int | float | bytes] = [batch_id, APPLIED_MARKER_TTL_S]
        for unit in self.units:
            argv += [len(keys) + 1, len(unit.argv), *unit.argv]
            keys += unit.keys
        return (len(keys), *keys, *argv)


def plan_calls(units: Sequence[Unit], *, cluster: bool, max_units: int | None = None) -> list[ScriptCall]:
    """Units packed into script calls of at most `max_units` (`MAX_UNITS_PER_CALL`) each (pure).

    On a single Redis any units share a call; on a cluster only units whose tags hash to one
    slot do (a script's keys must lie in one slot), so most go one per call there.
    """
    max_units = MAX_UNITS_PER_CALL if max_units is None else max_units
    if max_units < 1:
        raise ValueError(f"max_units must be at least 1, not {max_units}")
    groups: dict[int, list[Unit]] = {}
    for unit in units:
        groups.setdefault(key_slot(unit.tag.encode()) if cluster else 0, []).append(unit)
    return [
        ScriptCall(tuple(group[start : start + max_units]))
        for group in groups.values()
        for start in range(0, len(group), max_units)
    ]


def _split(op: RedisOp) -> list[tuple[str | int | float | bytes, ...]]:
    """An RPUSH of many values as several, each within what Lua's `unpack` takes."""
    if op.command != "rpush" or len(op.args) <= MAX_VALUES_PER_COMMAND + 1:
        return [op.args]
    key, values = op.args[0], op.args[1:]
    return [
        (key, *values[start : start + MAX_VALUES_PER_COMMAND])
        for start in range(0, len(values), MAX_VALUES_PER_COMMAND)
    ]


async def execute_until_done(
    redis: AsyncRedis,
    ops: Sequence[RedisOp],
    *,
    what: str,
    key_prefix: str,
    writer: str,
    batch_id: str | None = None,
) -> None:
    """Apply `ops` exactly once, an atomic script call per slot's units, retrying while Redis is
    unreachable.

    Blocking here holds the partition back, which is the back-pressure we want: the batch's
    offsets are not committed until Redis has it, so nothing is lost. The module docstring says
    why nothing applies twice. The one case left is the single-Redis one of before: a huge batch
    still in the client kernel's send buffer when the client gave up could reach Redis after a
    retry already applied it (its marker then stops the retry's copy, but not the late one).
    `batch_id` (a fresh one by default) names the batch in the markers; tests pass one to resend.
    `writer` names the caller (``recent``, ``reco``, ...): callers that may write the same tags
    concurrently pass different names; the process's id is added to it.
    """
    batch_id = batch_id or uuid.uuid4().hex
    units = plan_units(ops, key_prefix, f"{writer}-{PROCESS_WRITER_ID}")
    cluster = isinstance(redis, RedisCluster)
    pending = plan_calls(units, cluster=cluster)
    backoff_s = 0.1
    while pending:
        failure: BaseException | None = None
        try:
            async with redis.pipeline(transaction=False) as pipe:
                for call in pending:
                    # By name: redis-py's cluster pipeline refuses its `evalsha` method (a script
                    # might touch any slot), but routes an EVALSHA by its declared keys, which
                    # here all share the call's slot.
                    pipe.execute_command("EVALSHA", APPLY_ONCE_SHA, *call.arguments(batch_id))
                results = await pipe.execute(raise_on_error=False)
        except RETRIED_ERRORS as exc:
            # redis-py raised for the whole pipeline: any call may have run; resend them all.
            failure, results = exc, [exc] * len(pending)
        applied = sum(
            1 for result in results if not isinstance(result, BaseException) for flag in result if flag == 0
        )
        errors = [result for result in results if isinstance(result, BaseException)]
        if applied:
            log.info("redis already applied %d of %d units of %s before a retry", applied, len(units), what)
        pending = [
            call for call, result in zip(pending, results, strict=True) if isinstance(result, BaseException)
        ]
        if not pending:
            REDIS_UNANSWERED.answered()
            return
        if not cluster and any(_cross_slot(error) for error in errors):
            # Several shards behind one address: nothing of a refused call ran (the slot check
            # comes first), so the pending units are planned per slot and resent at once.
            log.warning("redis refused keys of several slots in one call (%s); planning per slot", errors[0])
            cluster = True
            pending = plan_calls([unit for call in pending for unit in call.units], cluster=True)
            continue
        if any(isinstance(error, NoScriptError) for error in errors):
            # A restarted (or promoted) Redis has an empty script cache: load it, then resend.
            await _load_script(redis)
        fatal = [e for e in errors if not isinstance(e, (*RETRIED_ERRORS, NoScriptError))]
        if fatal:
            raise fatal[0]
        if all(isinstance(error, NoScriptError) for error in errors):
            continue
        failure = failure or next(e for e in errors if not isinstance(e, NoScriptError))
        REDIS_UNANSWERED.failed()
        log.warning(
            "redis unreachable (%s); retrying %d of %d script calls of %s in %.1fs",
            failure, len(pending), len(results), what, backoff_s,
        )  # fmt: skip
        await asyncio.sleep(backoff_s)
        backoff_s = min(backoff_s * 2, MAX_BACKOFF_S)


def _cross_slot(error: BaseException) -> bool:
    # redis-py maps the server's CROSSSLOT reply to this class (and drops the code from the text).
    return isinstance(error, ClusterCrossSlotError)


async def _load_script(redis: AsyncRedis) -> None:
    """SCRIPT LOAD on the single Redis, or on every primary of a cluster."""
    try:
        await redis.script_load(APPLY_ONCE_LUA)
    except RETRIED_ERRORS as exc:
        log.warning("redis could not load the write script yet (%s); retrying", exc)
