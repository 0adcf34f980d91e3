"""The call session: state machine and the coordinator of routing and media."""

from vteller.calls.manager import CallManager
from vteller.calls.party import Connection, Party
from vteller.calls.session import Call, CallState

__all__ = ["Call", "CallManager", "CallState", "Connection", "Party"]
