"""What the active nodes of one shared queue tell each other (`VTELLER_SHARE_QUEUE`),
through the Redis that holds the queue:

- who is alive: each node keeps ``alive:<node>`` (its address) with a lease (renewed
  every quarter); a waiting request names the node holding its customer, and a request
  whose node is gone is not offered (its customer resumes on another node, from the
  database);
- where each party is: ``home:<party key>`` names the node holding its connection, so a
  reconnect that the load balancer sent elsewhere is sent home (`node.move`);
- `Move`: "your customer's request is offered to a teller on my node: send the
  customer to `url`", answered by the customer's reconnect or by `Gone` ("no such
  customer here"); `Nudge`: "a request is waiting: decide again";
- hand-offs: a node that sends a customer away leaves a record under the customer's
  party key (``ho:<key>``, for the reconnect grace period), so the node the customer
  resumes on knows which request it continues.

Pub/sub is at most once: a lost `Move` or `Gone` costs the offering node its wait
(`VTELLER_MOVE_TIMEOUT_S`), after which the request goes back to the queue; nothing
is lost. The client is redis-py's blocking one on two threads (lease, listener); the
event loop only publishes and reads hand-offs (one round trip each).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

import redis

from vteller.routing.model import Request

log = logging.getLogger(__name__)

SOCKET_TIMEOUT_S = 0.5
RETRY_AFTER_S = 1.0  # after a failed operation the loop's calls fail at once this long


@dataclass(frozen=True)
class Move:
    call_id: str  # the request, as the customer's node knows it
    to_node: str
    url: str  # where the customer reconnects


@dataclass(frozen=True)
class Gone:
    call_id: str
    to_node: str  # the node that asked for the move
    requeue: bool  # True: the customer is here but cannot move now; False: no such customer


@dataclass(frozen=True)
class Nudge:
    from_node: str


@dataclass(frozen=True)
class Handoff:
    """A customer sent away by `from_node`: to a named node for a request offered there
    (`to_node`), or to any node with its waiting request (`request`, a drain)."""

    call_id: str
    from_node: str
    to_node: str | None = None
    request: Request | None = None

    def to_json(self) -> str:
        r = self.request
        return json.dumps({"call_id": self.call_id, "from": self.from_node, "to": self.to_node,
                           "request": None if r is None else {
                               "call_id": r.call_id, "business_type": r.business_type,
                               "language": r.language, "segments": sorted(r.segments),
                               "enqueued_at": r.enqueued_at, "node": r.node}})

    @classmethod
    def from_json(cls, data: str) -> Handoff:
        d = json.loads(data)
        r = d["request"]
        request = None if r is None else Request(
            r["call_id"], r["business_type"], r["language"], frozenset(r["segments"]),
            enqueued_at=float(r["enqueued_at"]), node=r["node"])
        return cls(d["call_id"], d["from"], d["to"], request)


class BusListener(Protocol):
    """What a node does with its peers' messages (called on the event loop)."""

    def on_move(self, move: Move) -> None: ...
    def on_gone(self, gone: Gone) -> None: ...
    def on_nudge(self, nudge: Nudge) -> None: ...


class BusUnavailable(Exception):
    """Redis cannot be reached for a bus operation."""


class NodeBus:
    def __init__(self, url: str, prefix: str, node: str, node_url: str, lease_s: float
                 ) -> None:
        self.node_url = node_url  # where clients reach this node itself
        self._r = redis.Redis.from_url(url, decode_responses=True,
                                       socket_timeout=SOCKET_TIMEOUT_S,
                                       socket_connect_timeout=SOCKET_TIMEOUT_S)
        self._p = prefix
        self.node = node
        self._lease_s = lease_s
        self._channel = f"{prefix}bus"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._down_until = 0.0  # monotonic: Redis failed; do not wait on it until then
        self._clear_home = self._r.register_script(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end")

    # lifecycle ------------------------------------------------------------
    def start(self, listener: BusListener) -> None:
        """Announce this node and listen (on the running event loop's behalf)."""
        loop = asyncio.get_running_loop()
        self._beat()
        for target, name in ((self._lease_loop, "bus-lease"),
                             (lambda: self._listen(loop, listener), "bus-listen")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop listening and say this node is gone (a clean stop)."""
        self._stop.set()
        with contextlib.suppress(redis.RedisError):
            self._r.delete(self._alive_key(self.node))
        for thread in self._threads:
            thread.join(timeout=2)
        self._r.close()

    def _alive_key(self, node: str) -> str:
        return f"{self._p}alive:{node}"

    def _beat(self) -> None:
        with contextlib.suppress(redis.RedisError):
            self._r.set(self._alive_key(self.node), self.node_url,
                        px=int(self._lease_s * 1000))

    def _lease_loop(self) -> None:
        while not self._stop.wait(self._lease_s / 4):
            self._beat()

    def _listen(self, loop: asyncio.AbstractEventLoop, listener: BusListener) -> None:
        while not self._stop.is_set():
            pubsub = self._r.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self._channel)
                while not self._stop.is_set():
                    msg = pubsub.get_message(timeout=0.25)
                    if msg is not None and msg.get("type") == "message":
                        self._deliver(loop, listener, msg["data"])
            except (redis.RedisError, OSError) as exc:
                log.warning("node bus unreachable (%s); listening again shortly",
                            type(exc).__name__)
                self._stop.wait(0.5)
            finally:
                with contextlib.suppress(Exception):
                    pubsub.close()

    def _deliver(self, loop: asyncio.AbstractEventLoop, listener: BusListener,
                 data: str) -> None:
        try:
            d = json.loads(data)
            kind = d["t"]
            if kind == "move" and d["to"] != self.node:
                loop.call_soon_threadsafe(listener.on_move, Move(d["call"], d["to"], d["url"]))
            elif kind == "gone" and d["to"] == self.node:
                loop.call_soon_threadsafe(listener.on_gone,
                                          Gone(d["call"], d["to"], bool(d["requeue"])))
            elif kind == "nudge" and d["from"] != self.node:
                loop.call_soon_threadsafe(listener.on_nudge, Nudge(d["from"]))
        except (ValueError, KeyError, TypeError):
            log.warning("node bus: malformed message ignored")
        except RuntimeError:  # the loop closed (shutting down)
            self._stop.set()

    # messages (from the event loop: one round trip each) ---------------------
    def _op(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """One Redis call from the event loop; BusUnavailable at once while Redis was
        just found unreachable (never a socket timeout per call during an outage)."""
        if time.monotonic() < self._down_until:
            raise BusUnavailable("node bus unreachable (retrying shortly)")
        try:
            return fn(*args, **kwargs)
        except redis.RedisError as exc:
            self._down_until = time.monotonic() + RETRY_AFTER_S
            raise BusUnavailable(type(exc).__name__) from exc

    def _publish(self, payload: dict[str, Any]) -> None:
        self._op(self._r.publish, self._channel, json.dumps(payload, separators=(",", ":")))

    def move(self, move: Move) -> None:
        self._publish({"t": "move", "call": move.call_id, "to": move.to_node, "url": move.url})

    def gone(self, gone: Gone) -> None:
        self._publish({"t": "gone", "call": gone.call_id, "to": gone.to_node,
                       "requeue": gone.requeue})

    def nudge(self) -> None:
        with contextlib.suppress(BusUnavailable):  # the others' tick decides within 1 s
            self._publish({"t": "nudge", "from": self.node})

    # liveness and hand-offs ---------------------------------------------------
    def alive(self, node: str) -> bool:
        """Is this node still holding its customers? (True when Redis cannot say: the
        request is then left for a later decision, never dropped.)"""
        if node == self.node:
            return True
        try:
            return bool(self._op(self._r.exists, self._alive_key(node)))
        except BusUnavailable:
            return True

    def set_home(self, party_key: str) -> None:
        with contextlib.suppress(BusUnavailable):
            self._op(self._r.set, f"{self._p}home:{party_key}", self.node)

    def clear_home(self, party_key: str) -> None:
        """This node no longer holds the party (unless another node took it since)."""
        with contextlib.suppress(BusUnavailable):
            self._op(self._clear_home, keys=[f"{self._p}home:{party_key}"], args=[self.node])

    def home_url(self, party_key: str) -> str | None:
        """The address of another live node holding this party, if one does (a worker
        thread calls this)."""
        try:
            node = self._r.get(f"{self._p}home:{party_key}")
            if not node or node == self.node:
                return None
            return self._r.get(self._alive_key(node)) or None
        except redis.RedisError:
            return None

    def hand_off(self, party_key: str, handoff: Handoff, ttl_s: float) -> None:
        self._op(self._r.set, f"{self._p}ho:{party_key}", handoff.to_json(),
                 px=max(1000, int(ttl_s * 1000)))

    def take_handoff(self, party_key: str) -> Handoff | None:
        """The record a node left for this customer, taken (one node gets it; a worker
        thread calls this)."""
        key = f"{self._p}ho:{party_key}"
        try:
            pipe = self._r.pipeline(transaction=True)
            pipe.get(key)
            pipe.delete(key)
            data, _ = pipe.execute()
        except redis.RedisError:
            return None
        return Handoff.from_json(data) if data else None

