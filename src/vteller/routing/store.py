"""The routing store seam: `Router` keeps the state in one process's memory,
`RedisRouter` in Redis for several processes; `make_router` chooses.

Every operation is a single atomic step: in memory because it runs to completion on
the event loop; in Redis because each change is one Lua script, so offer / accept /
abandon races resolve the same way in both: exactly one wins and the others see the
new state. Both decide with the same functions (`decide`) over a snapshot; the Redis
store then commits the decision with `offer`, which fails if the snapshot went stale.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Protocol

from vteller.routing.model import Request, TellerProfile
from vteller.routing.policy import RoutingPolicy
from vteller.routing.tellers import TellerState, TellerStatus


class RoutingStore(Protocol):
    def enqueue(self, request: Request) -> None: ...
    # a waiting request and an available teller, both offered in one step; None if not
    def offer(self, call_id: str, username: str, now: float | None = None
              ) -> TellerStatus | None: ...
    def requeue(self, call_id: str, declined_by: str | None, now: float) -> None: ...
    def remove(self, call_id: str) -> Request | None: ...  # accept or abandon: one wins
    def request(self, call_id: str) -> Request | None: ...
    def waiting(self) -> Iterator[Request]: ...
    def waiting_count(self) -> int: ...
    def teller(self, username: str) -> TellerStatus: ...  # a snapshot
    def set_state(self, username: str, target: TellerState, reason: str | None = None,
                  now: float | None = None) -> TellerStatus: ...  # checked and stored at once
    def set_reason(self, username: str, reason: str | None) -> None: ...
    def tellers(self) -> Iterator[TellerStatus]: ...
    def set_profile(self, username: str, profile: TellerProfile) -> None: ...
    def forget_teller(self, username: str) -> None: ...
    # the next decision; with `among`, only those tellers (a node's own, shared queue)
    def next_match(self, now: float, among: Collection[str] | None = None
                   ) -> tuple[Request, TellerStatus] | None: ...
    def positions(self, now: float) -> dict[str, int]: ...
    def position(self, call_id: str, now: float) -> int | None: ...
    def staffed_for(self, request: Request, now: float) -> int: ...
    # a queue other nodes can see (Redis) or this process's memory only
    shared: bool
    # give up this node's hold on a shared queue now (draining; no-op in memory)
    def release(self) -> None: ...
    def close(self) -> None: ...


def make_router(policy: RoutingPolicy, redis_url: str | None = None,
                prefix: str = "{vteller}:", node: str | None = None,
                lease_s: float = 10.0) -> RoutingStore:
    """The in-memory store, or the Redis one when a URL is given (checked now: a
    `RoutingUnavailable` if Redis cannot be reached; with `node`, the prefix is claimed
    for it, waiting up to 1.5 leases for a crashed holder's lease to run out:
    `PrefixTaken` if a live node still holds it)."""
    if not redis_url:
        from vteller.routing.router import Router

        return Router(policy)
    from vteller.routing.redis_store import RedisRouter

    router = RedisRouter.from_url(policy, redis_url, prefix)
    try:
        router.check()
        if node is not None:  # a node restarted after a crash waits out its old lease
            router.wait_claim(node, lease_s, give_up_s=lease_s * 1.5)
    except Exception:
        router.close()
        raise
    return router
