"""A node's identity: one running `vteller serve` process."""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass


@dataclass(frozen=True)
class NodeId:
    """host:pid:nonce. The nonce tells a restarted process (the pid may be reused)
    from the one before it."""

    host: str
    pid: int
    nonce: str

    @classmethod
    def this_process(cls) -> NodeId:
        return cls(socket.gethostname(), os.getpid(), secrets.token_hex(3))

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{self.nonce}"


def process_alive(pid: int) -> bool:
    """Is a process with this pid running on this host? (A reused pid answers yes: the
    caller then waits for the lease to expire, the safe side.)"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
