"""What a survivor does for nodes that died: evict them (one survivor wins each, by a
conditional update) and seal their open audit sessions as incomplete, so every
acknowledged event of a dead node's calls is bound, signed and in the global log; the
calls get their outcome (`missed` or `dropped`, reason `node_stopped`) unless a node
that continues them gave one.

A node is dead when its lease has expired by the database's clock, or at once when it
ran on this host and its process is gone (a restart after kill -9 seals immediately).
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from vteller.audit.trail import AuditTrail
from vteller.cluster.node import NodeId, process_alive
from vteller.store import BlobStore, Store, StoreError

log = structlog.get_logger("vteller.cluster")


class SessionSweeper:
    def __init__(self, store: Store, trail: AuditTrail, blobs: BlobStore, node: NodeId,
                 interval_s: float) -> None:
        self._store = store
        self._trail = trail
        self._blobs = blobs
        self.node = node
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def at_start(self) -> list[str]:
        """Blocking. Sweep dead nodes, then seal every open session whose owner is not
        alive (sessions from before owners were recorded included)."""
        sealed = self.sweep()
        live = frozenset(r.node_id for r in self._store.nodes() if not r.evicted)
        ownerless = self._trail.seal_open_sessions(self._blobs, live)
        self._store.settle_lost_calls(ownerless)
        return sealed + ownerless

    def sweep(self) -> list[str]:
        """Blocking. Evict dead nodes and seal their sessions; returns what was sealed."""
        sealed: list[str] = []
        for row in self._store.nodes():
            if row.node_id == str(self.node):
                continue
            if not row.evicted:
                gone_here = row.host == self.node.host and not process_alive(row.pid)
                if not (row.expired or gone_here):
                    continue
                if not self._store.evict_node(row.node_id, only_if_expired=not gone_here):
                    continue  # renewed meanwhile, or another survivor evicted it first
                log.warning("node_evicted", node=row.node_id,
                            why="process gone" if gone_here else "lease expired")
            done, left = self._trail.seal_sessions_of(row.node_id, self._blobs)
            sealed += done
            if left == 0:
                self._store.forget_node(row.node_id)
        if sealed:
            self._store.settle_lost_calls(sealed)
            log.warning("sealed_sessions_of_dead_nodes", count=len(sealed))
        return sealed

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="node-sweeper")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await asyncio.to_thread(self.sweep)
            except StoreError as exc:
                log.warning("node_sweep_failed", error=type(exc).__name__)
            except Exception:
                log.exception("node_sweep_failed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
