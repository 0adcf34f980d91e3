"""A party to calls (customer or staff) and its connection."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel

from vteller.protocol import messages as m


def resume_hash(token: str) -> str:
    """Resume secrets are kept only as SHA-256."""
    return hashlib.sha256(token.encode()).hexdigest()


class Connection(Protocol):
    """What the gateway gives the manager: a non-blocking send, a close, and the peer's
    address as this node sees it."""

    address: str

    def send(self, message: BaseModel) -> None: ...

    def close(self, code: int, reason: str) -> None: ...


@dataclass
class Party:
    key: str
    role: str
    principal: str
    display_name: str
    conn: Connection | None = None
    resume_hash: str = ""
    grace: asyncio.Task[None] | None = None
    call_id: str | None = None
    segments: frozenset[str] = frozenset()
    media: dict[str, bool] = field(default_factory=lambda: {"audio": True, "video": True})
    last_status: tuple[Any, ...] | None = None
    survey_call: str | None = None  # the served call this customer may rate (once)

    @property
    def elderly(self) -> bool:
        return "elderly" in self.segments

    def send(self, message: BaseModel) -> None:
        if self.conn is not None:
            self.conn.send(message)

    def info(self) -> m.PartyInfo:
        return m.PartyInfo(display_name=self.display_name, role=self.role)  # type: ignore[arg-type]
