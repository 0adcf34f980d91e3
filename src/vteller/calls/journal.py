"""The journal: the call coordinator's one ordered writer.

Store writes and audit-trail operations run one after another, in the order the
coordinator issued them (an event never overtakes the state change it records), off
the event loop. Each returns a future that completes when the operation is durable,
so acknowledgements can wait for it without making handlers async.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

import structlog

log = structlog.get_logger("vteller.journal")
BACKLOG = 10_000  # operations queued before new ones fail at once

Operation = Callable[..., Any]  # a store coroutine function, or a blocking callable


class Journal:
    def __init__(self, backlog: int = BACKLOG) -> None:
        self._queue: asyncio.Queue[tuple[Operation, tuple[Any, ...], dict[str, Any],
                                         asyncio.Future[None]]] = asyncio.Queue(backlog)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="journal")

    def write(self, op: Operation, *args: Any, **kwargs: Any) -> asyncio.Future[None]:
        """Queue `op`: awaited when it is a coroutine function (the store's async
        methods), else run in a worker thread (the audit trail's blocking methods)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait((op, args, kwargs, done))
        except asyncio.QueueFull:
            log.error("journal_backlog_full", op=getattr(op, "__name__", "?"))
            done.set_exception(RuntimeError("journal backlog full"))
        return done

    async def _run(self) -> None:
        while True:
            op, args, kwargs, done = await self._queue.get()
            try:
                if inspect.iscoroutinefunction(op):
                    await op(*args, **kwargs)
                else:
                    await asyncio.to_thread(op, *args, **kwargs)
                if not done.done():
                    done.set_result(None)
            except Exception as exc:
                log.exception("journal_write_failed", op=getattr(op, "__name__", "?"))
                if not done.done():
                    done.set_exception(exc)
                    done.exception()  # retrieved: the caller may not wait for it
            finally:
                self._queue.task_done()

    async def flush(self) -> None:
        await self._queue.join()

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
