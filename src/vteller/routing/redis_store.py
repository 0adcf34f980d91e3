"""The routing store in Redis: one queue and one set of teller states for every
vteller process pointed at the same Redis (`VTELLER_REDIS_URL`).

Layout (all keys under one hash tag, so a clustered Redis keeps them in one slot):
- ``req:<call_id>``: a hash (data = the request as JSON, state = waiting|offered,
  member, group, declined = 1 once any teller declined it); ``waiting`` and
  ``offered``: sets of call ids;
- ``g:<class>|<business type>|<language>|<booked teller>``: a sorted set per group of waiting
  requests, score = enqueue time, member = zero-padded sequence number + call id (so
  equal times keep arrival order, as in memory); ``groups``: the set of group keys;
- ``t:<username>``: a hash (state, reason, since, profile as JSON); ``tellers`` and
  ``available``: sets of usernames; ``seq``: the arrival counter.

Every change is one Lua script, so two processes racing for a request or a teller
resolve as in memory: one wins, the other sees the new state. A decision reads one
consistent snapshot (one script: the available tellers and each group's first
requests), decides with `decide.next_match` in Python (the same code as in memory),
and is committed by `offer`, which fails if either side moved on meanwhile; the
caller then decides again. Teller transitions are checked in the script against the
allowed previous states, computed from `tellers.TRANSITIONS` (the one table).

The client is redis-py's blocking one: each operation is one round trip (~0.1-0.3 ms
on loopback) on the caller's thread. A lost connection raises `RoutingUnavailable`;
after one failure every operation fails at once (no socket wait on the event loop)
until a background thread reaches Redis again (`PROBE_S`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Collection, Iterator
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from vteller.routing import decide
from vteller.routing.model import Request, TellerProfile
from vteller.routing.policy import RoutingPolicy
from vteller.routing.tellers import TRANSITIONS, IllegalTransition, TellerState, TellerStatus

log = logging.getLogger(__name__)

SOCKET_TIMEOUT_S = 0.5  # a Redis op on loopback or a LAN takes well under 1 ms
PROBE_S = 0.5  # while unreachable: how often the background thread tries again
STARTUP_WAIT_S = 5.0  # at start, how long a Redis that times out is waited for
# target -> the states it may be reached from (the inverse of TRANSITIONS)
ALLOWED_FROM: dict[TellerState, list[str]] = {
    target: sorted(s.value for s, targets in TRANSITIONS.items() if target in targets)
    for target in TellerState}

_ENQUEUE = """
local p = ARGV[1]
local rk = p .. 'req:' .. ARGV[2]
if redis.call('EXISTS', rk) == 1 then return 0 end
local seq = redis.call('INCR', p .. 'seq')
local member = string.format('%016d', seq) .. ':' .. ARGV[2]
redis.call('HSET', rk, 'data', ARGV[3], 'state', 'waiting', 'member', member,
           'group', ARGV[4], 'seq', seq)
redis.call('ZADD', p .. 'g:' .. ARGV[4], ARGV[5], member)
redis.call('SADD', p .. 'groups', ARGV[4])
redis.call('SADD', p .. 'waiting', ARGV[2])
return seq
"""

_UNLINK = """
local function unlink(p, id, rk)
  local member, group = unpack(redis.call('HMGET', rk, 'member', 'group'))
  local gk = p .. 'g:' .. group
  redis.call('ZREM', gk, member)
  if redis.call('ZCARD', gk) == 0 then redis.call('SREM', p .. 'groups', group) end
  redis.call('SREM', p .. 'waiting', id)
end
"""

# ARGV: prefix, call id, username, allowed teller states (space separated), since
_OFFER = _UNLINK + """
local p = ARGV[1]
local rk, tk = p .. 'req:' .. ARGV[2], p .. 't:' .. ARGV[3]
if redis.call('HGET', rk, 'state') ~= 'waiting' then return 0 end
if redis.call('HGET', tk, 'state') ~= 'available' then return 0 end
unlink(p, ARGV[2], rk)
redis.call('HSET', rk, 'state', 'offered')
redis.call('SADD', p .. 'offered', ARGV[2])
redis.call('HSET', tk, 'state', 'offered', 'reason', '', 'since', ARGV[4])
redis.call('SREM', p .. 'available', ARGV[3])
return 1
"""

# ARGV: prefix, call id, new data (declined_by), score, declined by anyone (1 or 0)
_REQUEUE = """
local p = ARGV[1]
local rk = p .. 'req:' .. ARGV[2]
if redis.call('HGET', rk, 'state') ~= 'offered' then return 0 end
local member, group = unpack(redis.call('HMGET', rk, 'member', 'group'))
redis.call('HSET', rk, 'state', 'waiting', 'data', ARGV[3], 'declined', ARGV[5])
redis.call('SREM', p .. 'offered', ARGV[2])
redis.call('ZADD', p .. 'g:' .. group, ARGV[4], member)
redis.call('SADD', p .. 'groups', group)
redis.call('SADD', p .. 'waiting', ARGV[2])
return 1
"""

_REMOVE = _UNLINK + """
local p = ARGV[1]
local rk = p .. 'req:' .. ARGV[2]
local state, data, seq = unpack(redis.call('HMGET', rk, 'state', 'data', 'seq'))
if not state then return false end
if state == 'waiting' then unlink(p, ARGV[2], rk)
else redis.call('SREM', p .. 'offered', ARGV[2]) end
redis.call('DEL', rk)
return {data, seq}
"""

# ARGV: prefix, username, target, reason, since, allowed previous states (space separated)
_SET_STATE = """
local p = ARGV[1]
local tk = p .. 't:' .. ARGV[2]
local current = redis.call('HGET', tk, 'state') or 'offline'
local allowed = false
for s in string.gmatch(ARGV[6], '%S+') do if s == current then allowed = true end end
if not allowed then return {0, current} end
redis.call('HSET', tk, 'state', ARGV[3], 'reason', ARGV[4], 'since', ARGV[5])
redis.call('SADD', p .. 'tellers', ARGV[2])
if ARGV[3] == 'available' then redis.call('SADD', p .. 'available', ARGV[2])
else redis.call('SREM', p .. 'available', ARGV[2]) end
return {1, current}
"""

# ARGV: prefix, heads per group
_SNAPSHOT = """
local p = ARGV[1]
local tellers = {}
for _, name in ipairs(redis.call('SMEMBERS', p .. 'available')) do
  table.insert(tellers, {name, redis.call('HGETALL', p .. 't:' .. name)})
end
local groups = {}
if #tellers > 0 then
  for _, group in ipairs(redis.call('SMEMBERS', p .. 'groups')) do
    local heads = {}
    for _, member in ipairs(redis.call('ZRANGE', p .. 'g:' .. group, 0, tonumber(ARGV[2]) - 1)) do
      local id = string.sub(member, 18)
      local row = redis.call('HMGET', p .. 'req:' .. id, 'data', 'seq', 'declined')
      table.insert(heads, {row[1], row[2]})
      -- past a request only when it was declined (as decide.next_match reads them)
      if row[3] ~= '1' then break end
    end
    table.insert(groups, heads)
  end
end
return {tellers, groups}
"""


# ARGV: prefix, node id, lease ms. Take the prefix if free or ours; renew it if ours.
_CLAIM = """
local k = ARGV[1] .. 'node'
local holder = redis.call('GET', k)
if holder and holder ~= ARGV[2] then return holder end
redis.call('SET', k, ARGV[2], 'PX', ARGV[3])
return ''
"""

_RELEASE = """
local k = ARGV[1] .. 'node'
if redis.call('GET', k) == ARGV[2] then redis.call('DEL', k) end
return 1
"""

LEASE_S = 10.0  # a node's hold on its prefix; renewed every LEASE_S / 4


class RoutingUnavailable(Exception):
    """The routing store cannot be reached (Redis down or unreachable)."""


class PrefixTaken(Exception):
    """Another live node holds this Redis prefix (one node per prefix until the cluster
    step: a node treats waiting requests without a local call as stale)."""


def _request_json(request: Request) -> str:
    return json.dumps({
        "call_id": request.call_id, "business_type": request.business_type,
        "language": request.language, "segments": sorted(request.segments),
        "enqueued_at": request.enqueued_at, "channel": request.channel,
        "declined_by": request.declined_by, "node": request.node,
        "booked_teller": request.booked_teller, "booked_until": request.booked_until},
        separators=(",", ":"))


def _request(data: str | bytes, seq: Any) -> Request:
    d = json.loads(data)
    return Request(d["call_id"], d["business_type"], d["language"], frozenset(d["segments"]),
                   enqueued_at=float(d["enqueued_at"]), channel=d["channel"],
                   seq=int(seq or 0), declined_by={k: float(v)
                                                   for k, v in d["declined_by"].items()},
                   node=d.get("node", ""), booked_teller=d.get("booked_teller", ""),
                   booked_until=float(d.get("booked_until", 0.0)))


def _teller(username: str, fields: dict[str, str]) -> TellerStatus:
    if not fields:
        return TellerStatus(username)
    profile = fields.get("profile")
    return TellerStatus(
        username, TellerState(fields.get("state", "offline")),
        fields.get("reason") or None, float(fields.get("since", 0.0)),
        TellerProfile.from_dict(json.loads(profile)) if profile else TellerProfile())


def _pairs(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


class RedisRouter:
    """The `RoutingStore` in Redis (see the module docstring)."""

    shared = True  # every node on this prefix sees the same queue

    def __init__(self, policy: RoutingPolicy, client: redis.Redis, prefix: str = "{vteller}:",
                 rng: random.Random | None = None) -> None:
        self.policy = policy
        self._r = client
        self._p = prefix
        self._rng = rng or random.Random()
        self._down = threading.Event()  # set while Redis is unreachable
        self._down_lock = threading.Lock()
        self._closed = False
        self._scripts = {name: client.register_script(src) for name, src in (
            ("enqueue", _ENQUEUE), ("offer", _OFFER), ("requeue", _REQUEUE),
            ("remove", _REMOVE), ("set_state", _SET_STATE), ("snapshot", _SNAPSHOT),
            ("claim", _CLAIM), ("release", _RELEASE))}
        self._node: str | None = None
        self._lease_s = LEASE_S
        # called (from the lease thread) when another node holds this node's prefix
        self.on_lost: Callable[[], None] | None = None

    @classmethod
    def from_url(cls, policy: RoutingPolicy, url: str, prefix: str = "{vteller}:"
                 ) -> RedisRouter:
        client = redis.Redis.from_url(url, decode_responses=True,
                                      socket_timeout=SOCKET_TIMEOUT_S,
                                      socket_connect_timeout=SOCKET_TIMEOUT_S,
                                      # one retry on a fresh connection (Redis restarted),
                                      # none on a timeout: never a long wait on the loop
                                      retry=Retry(NoBackoff(), 1,
                                                  supported_errors=(redis.ConnectionError,)),
                                      health_check_interval=10)
        return cls(policy, client, prefix)

    def check(self, wait_s: float = STARTUP_WAIT_S) -> None:
        """Reach Redis now (at start: a clear error instead of a failing first call).
        A Redis that is there but slow to answer (timeouts) is given `wait_s`; one that
        refuses the connection fails at once."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                self._r.ping()
                return
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                if isinstance(exc, redis.ConnectionError) or time.monotonic() >= deadline:
                    raise RoutingUnavailable(
                        f"routing store unreachable ({type(exc).__name__})") from exc
                time.sleep(PROBE_S)

    def _run(self, name: str, *args: Any) -> Any:
        return self._call(self._scripts[name], None, [self._p, *args])

    def _call(self, fn: Any, *args: Any) -> Any:
        if self._down.is_set():
            raise RoutingUnavailable("routing store unreachable (reconnecting)")
        try:
            return fn(*args)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            self._went_down(exc)
            raise RoutingUnavailable(f"routing store unreachable ({type(exc).__name__})") \
                from exc

    def _went_down(self, exc: Exception) -> None:
        with self._down_lock:
            if self._down.is_set():
                return
            self._down.set()
        log.warning("routing store unreachable (%s); failing fast until it answers",
                    type(exc).__name__)
        threading.Thread(target=self._probe, name="redis-probe", daemon=True).start()

    def _probe(self) -> None:
        while not self._closed:
            time.sleep(PROBE_S)
            try:
                self._r.ping()
            except (redis.ConnectionError, redis.TimeoutError):
                continue
            self._down.clear()
            log.warning("routing store reachable again")
            return

    def claim(self, node: str, lease_s: float = LEASE_S) -> None:
        """Hold this prefix for `node` (PrefixTaken if another live node does), renewed
        by a background thread until `close`."""
        holder = self._run("claim", node, int(lease_s * 1000))
        if holder:
            raise PrefixTaken(f"prefix {self._p!r} is held by node {holder}")
        self._node = node
        self._lease_s = lease_s
        threading.Thread(target=self._renew, name="redis-lease", daemon=True).start()

    def holder(self) -> str | None:
        """The node holding this prefix now, if any."""
        held = self._call(self._r.get, f"{self._p}node")
        return held.decode() if isinstance(held, bytes) else held

    def wait_claim(self, node: str, lease_s: float = LEASE_S,
                   give_up_s: float | None = None) -> None:
        """Blocking: wait until the prefix is free (its holder stopped renewing for
        `lease_s`), then hold it; a standby waits for ever (Redis being away only
        lengthens the wait), a starting node `give_up_s` (then PrefixTaken)."""
        deadline = None if give_up_s is None else time.monotonic() + give_up_s
        while not self._closed:
            try:
                self.claim(node, lease_s)
                return
            except PrefixTaken:
                if deadline is not None and time.monotonic() > deadline:
                    raise
            except RoutingUnavailable:
                if deadline is not None:
                    raise
            time.sleep(lease_s / 8)

    def _renew(self) -> None:
        while not self._closed:
            time.sleep(self._lease_s / 4)
            if self._closed or self._node is None:
                return
            try:
                holder = self._scripts["claim"](args=[self._p, self._node,
                                                      int(self._lease_s * 1000)])
            except (redis.ConnectionError, redis.TimeoutError):
                continue  # the probe handles reachability; try again next round
            if holder:  # Redis was out of reach past the lease and a standby took over
                log.error("another node (%s) took this node's Redis prefix; this node stops "
                          "taking calls and drains", holder)
                self._node = None
                if self.on_lost is not None:
                    self.on_lost()
                return

    def release(self) -> None:
        """Give up this node's hold on the prefix now (a draining node: a standby takes
        over while this one finishes its calls); the store stays usable."""
        node, self._node = self._node, None
        if node is not None:
            with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                self._scripts["release"](args=[self._p, node])

    def close(self) -> None:
        self._closed = True
        if self._node is not None:
            with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                self._scripts["release"](args=[self._p, self._node])
        self._r.close()

    # requests -------------------------------------------------------------
    def enqueue(self, request: Request) -> None:
        group = "|".join(decide.group_key(request))
        seq = self._run("enqueue", request.call_id, _request_json(request), group,
                        repr(request.enqueued_at))
        if seq:
            request.seq = int(seq)

    def offer(self, call_id: str, username: str, now: float | None = None
              ) -> TellerStatus | None:
        since = now if now is not None else TellerStatus(username).since
        if not self._run("offer", call_id, username, repr(since)):
            return None
        return self.teller(username)

    def requeue(self, call_id: str, declined_by: str | None, now: float) -> None:
        request = self.request(call_id)
        if request is None:
            raise KeyError(call_id)
        if declined_by:
            request.declined_by[declined_by] = now
        if not self._run("requeue", call_id, _request_json(request), repr(request.enqueued_at),
                         "1" if request.declined_by else "0"):
            raise KeyError(call_id)

    def remove(self, call_id: str) -> Request | None:
        got = self._run("remove", call_id)
        return _request(got[0], got[1]) if got else None

    def request(self, call_id: str) -> Request | None:
        data, seq = self._call(self._r.hmget, f"{self._p}req:{call_id}", ["data", "seq"])
        return _request(data, seq) if data else None

    def waiting(self) -> Iterator[Request]:
        ids = sorted(self._call(self._r.smembers, f"{self._p}waiting"))
        pipe = self._r.pipeline(transaction=False)
        for call_id in ids:
            pipe.hmget(f"{self._p}req:{call_id}", ["data", "seq"])
        rows = self._call(pipe.execute)
        return iter([_request(d, s) for d, s in rows if d])

    def waiting_count(self) -> int:
        return int(self._call(self._r.scard, f"{self._p}waiting"))

    # tellers --------------------------------------------------------------
    def teller(self, username: str) -> TellerStatus:
        return _teller(username, self._call(self._r.hgetall, f"{self._p}t:{username}"))

    def set_state(self, username: str, target: TellerState, reason: str | None = None,
                  now: float | None = None) -> TellerStatus:
        status = TellerStatus(username)  # for its default `since`
        since = status.since if now is None else now
        ok, current = self._run("set_state", username, target.value,
                                (reason or "") if target == TellerState.BREAK else "",
                                repr(since), " ".join(ALLOWED_FROM[target]))
        if not int(ok):
            raise IllegalTransition("teller", current, target)
        return self.teller(username)

    def set_reason(self, username: str, reason: str | None) -> None:
        key = f"{self._p}t:{username}"
        # only while on break; WATCH makes the check and the write one step
        def change(pipe: Any) -> None:
            if pipe.hget(key, "state") == TellerState.BREAK.value:
                pipe.multi()
                pipe.hset(key, "reason", reason or "")
        self._call(self._r.transaction, change, key)

    def tellers(self) -> Iterator[TellerStatus]:
        names = sorted(self._call(self._r.smembers, f"{self._p}tellers"))
        pipe = self._r.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(f"{self._p}t:{name}")
        rows = self._call(pipe.execute)
        return iter([_teller(n, f) for n, f in zip(names, rows, strict=True) if f])

    def set_profile(self, username: str, profile: TellerProfile) -> None:
        pipe = self._r.pipeline(transaction=True)
        pipe.hset(f"{self._p}t:{username}", "profile", json.dumps(profile.to_dict()))
        pipe.hsetnx(f"{self._p}t:{username}", "state", TellerState.OFFLINE.value)
        pipe.hsetnx(f"{self._p}t:{username}", "since", repr(TellerStatus(username).since))
        pipe.sadd(f"{self._p}tellers", username)
        self._call(pipe.execute)

    def forget_teller(self, username: str) -> None:
        pipe = self._r.pipeline(transaction=True)
        pipe.delete(f"{self._p}t:{username}")
        pipe.srem(f"{self._p}tellers", username)
        pipe.srem(f"{self._p}available", username)
        self._call(pipe.execute)

    # decisions ------------------------------------------------------------
    def next_match(self, now: float, among: Collection[str] | None = None
                   ) -> tuple[Request, TellerStatus] | None:
        tellers, groups = self._run("snapshot", decide.HEADS)
        available = [t for t in (_teller(name, _pairs(flat)) for name, flat in tellers)
                     if t.state == TellerState.AVAILABLE
                     and (among is None or t.username in among)]
        heads = [[_request(d, s) for d, s in group if d] for group in groups]
        return decide.next_match(self.policy, heads, available, now, self._rng)

    # customer feedback ------------------------------------------------------
    def positions(self, now: float) -> dict[str, int]:
        return decide.positions(self.policy, self.waiting(), now)

    def staffed_for(self, request: Request, now: float) -> int:
        return decide.staffed_for(self.policy, self.tellers(), request, now)

    def position(self, call_id: str, now: float) -> int | None:
        return self.positions(now).get(call_id)

    def clear(self) -> None:
        """Delete every key of this prefix (tests and a fresh start of a dev cluster)."""
        keys = self._call(lambda: list(self._r.scan_iter(f"{self._p}*")))
        if keys:
            self._call(self._r.delete, *keys)


__all__ = ["PrefixTaken", "RedisRouter", "RoutingUnavailable"]
