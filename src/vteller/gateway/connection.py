"""One signaling WebSocket: a bounded outbox drained by its own writer task.

Pushes from other parties never wait on a slow client; a client that cannot keep
up with its outbox is disconnected (it may resume) instead of growing memory. A
client's own requests are read only while its outbox has room (backpressure).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiohttp import web
from pydantic import BaseModel

OUTBOX = 256
log = logging.getLogger(__name__)


class WsConnection:
    def __init__(self, ws: web.WebSocketResponse, address: str = "") -> None:
        self._ws = ws
        self.address = address  # the peer's IP as this node sees it
        self._outbox: asyncio.Queue[str | None] = asyncio.Queue(OUTBOX)
        self._writer = asyncio.create_task(self._write())
        self.closed = False
        self._closing: asyncio.Task[None] | None = None

    async def writable(self) -> None:
        """Backpressure for this client's own requests: wait while its outbox is half full."""
        while self._outbox.qsize() > OUTBOX // 2 and not self.closed:
            await asyncio.sleep(0.005)

    def send(self, message: BaseModel) -> None:
        if self.closed:
            return
        try:
            self._outbox.put_nowait(message.model_dump_json())
        except ValueError:  # not serialisable (e.g. a lone surrogate): never the caller's fault
            log.exception("unserialisable message dropped", extra={"type": type(message)})
        except asyncio.QueueFull:
            self.close(4008, "client too slow", flush=False)

    def close(self, code: int, reason: str, flush: bool = True) -> None:
        """Close after what was sent so far has gone out (up to 1 s), or at once."""
        if not self.closed:
            self.closed = True
            self._closing = asyncio.create_task(self._close(code, reason, flush))

    async def _close(self, code: int, reason: str, flush: bool) -> None:
        if flush:
            with contextlib.suppress(asyncio.QueueFull):
                self._outbox.put_nowait(None)
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._writer), 1.0)
        await self._ws.close(code=code, message=reason.encode())

    async def _write(self) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            while (text := await self._outbox.get()) is not None:
                await self._ws.send_str(text)

    async def drain_and_stop(self) -> None:
        if self._closing is not None:  # closing with its own code: let that finish
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._closing), 3.0)
            return
        self.closed = True
        with contextlib.suppress(asyncio.QueueFull):
            self._outbox.put_nowait(None)
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(self._writer, 1.0)
        self._writer.cancel()


class TokenBucket:
    """Per-connection message rate limit."""

    def __init__(self, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._last = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False
