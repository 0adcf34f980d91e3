"""The listening socket, guarded against slow and idle clients.

aiohttp has no deadline for a request's headers and asyncio's TLS handshake waits a
minute by default, so one client could hold connections open for ever by trickling
bytes. `GuardedSite` listens like `web.TCPSite`, with a TLS handshake timeout and a
deadline for the first request's headers (`HeaderDeadline`); aiohttp's keep-alive
timeout bounds the idle time between later requests.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

HEADER_END = b"\r\n\r\n"


class HeaderDeadline(asyncio.Protocol):
    """Wraps aiohttp's request handler: closes the connection when the first
    request's headers are not complete within `timeout_s` of the connection (after
    the TLS handshake)."""

    def __init__(self, inner: Any, timeout_s: float) -> None:
        self._inner = inner
        self._timeout_s = timeout_s
        self._head = b""
        self._done = False
        self._timer: asyncio.TimerHandle | None = None
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._timer = asyncio.get_running_loop().call_later(self._timeout_s, self._expire)
        self._inner.connection_made(transport)

    def _expire(self) -> None:
        if not self._done and self._transport is not None:
            self._transport.abort()  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if not self._done:
            self._head = (self._head + data)[-(len(HEADER_END) + len(data)):]
            if HEADER_END in self._head:
                self._done = True
                self._head = b""
                if self._timer is not None:
                    self._timer.cancel()
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()  # type: ignore[no-any-return]

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class GuardedSite(web.TCPSite):
    def __init__(self, runner: web.BaseRunner, host: str, port: int, *, ssl_context: Any,
                 header_timeout_s: float, tls_handshake_timeout_s: float,
                 reuse_port: bool = False) -> None:
        super().__init__(runner, host, port, ssl_context=ssl_context,
                         reuse_port=reuse_port or None)
        self._header_timeout_s = header_timeout_s
        self._tls_timeout_s = tls_handshake_timeout_s

    async def start(self) -> None:
        self._runner._reg_site(self)  # what BaseSite.start does
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: HeaderDeadline(server(), self._header_timeout_s),
            self._host, self._port, ssl=self._ssl_context, backlog=self._backlog,
            reuse_address=self._reuse_address, reuse_port=self._reuse_port,
            ssl_handshake_timeout=self._tls_timeout_s if self._ssl_context else None)
        self._bound_port = (self._server.sockets[0].getsockname()[1] if self._server.sockets
                            else self._port)


def runner_for(app: web.Application, keepalive_timeout_s: float) -> web.AppRunner:
    """aiohttp's runner with the keep-alive bound and no `Server` version header."""
    return web.AppRunner(app, access_log=None, keepalive_timeout=keepalive_timeout_s)
