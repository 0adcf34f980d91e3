"""This node's lease in the shared database: registered at start, renewed every
third of its length with the node's load, removed at a clean stop. A renewal that
finds the node evicted (a survivor took it for dead, e.g. after a long stall)
calls `on_lost`: the node must stop, since its sessions are being sealed."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import structlog

from vteller.cluster.node import NodeId
from vteller.store import Store, StoreError

log = structlog.get_logger("vteller.cluster")


class NodeLease:
    def __init__(self, store: Store, node: NodeId, ttl_s: float,
                 load: Callable[[], dict[str, Any]], on_lost: Callable[[], None]) -> None:
        self._store = store
        self.node = node
        self.ttl_s = ttl_s
        self._load = load
        self._on_lost = on_lost
        self._task: asyncio.Task[None] | None = None
        self.renewed_at = 0.0  # monotonic, of the last successful renewal
        self._view: list[dict[str, Any]] = []  # every node, as read at the last renewal

    async def start(self) -> None:
        await asyncio.to_thread(self._store.register_node, str(self.node), self.node.host,
                                self.node.pid, self.ttl_s)
        self.renewed_at = time.monotonic()
        await self._refresh_view()
        self._task = asyncio.create_task(self._renew_loop(), name="node-lease")

    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(self.ttl_s / 3)
            try:
                held = await asyncio.to_thread(self._store.renew_node, str(self.node),
                                               self.ttl_s, self._load())
            except StoreError as exc:  # nobody can evict us while the database is away
                log.warning("node_lease_not_renewed", error=type(exc).__name__)
                continue
            if not held:
                log.error("node_lease_lost", node=str(self.node),
                          note="another node took this one for dead and seals its sessions")
                self._on_lost()
                return
            self.renewed_at = time.monotonic()
            await self._refresh_view()

    async def _refresh_view(self) -> None:
        try:
            rows = await asyncio.to_thread(self._store.nodes)
        except StoreError:
            return
        self._view = [{"node": r.node_id, "host": r.host, "expired": r.expired or r.evicted,
                       "role": r.load.get("role", "active"),
                       **{k: r.load.get(k, 0) for k in ("in_call", "waiting", "connections")}}
                      for r in rows]

    def view(self) -> list[dict[str, Any]]:
        """The nodes sharing this database (for the supervisor's dashboard)."""
        return list(self._view)

    async def stop(self) -> None:
        """A clean stop (after every session of this node is closed)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(StoreError):
            await asyncio.to_thread(self._store.leave_node, str(self.node))
