"""The signaling wire contract: message models, error codes, schema export."""

from vteller.protocol.errors import ErrorCode, ProtocolError
from vteller.protocol.messages import (
    CLIENT_MESSAGES,
    PROTOCOL_VERSION,
    SERVER_MESSAGES,
    ClientMessage,
    parse_client_message,
)

__all__ = [
    "CLIENT_MESSAGES",
    "PROTOCOL_VERSION",
    "SERVER_MESSAGES",
    "ClientMessage",
    "ErrorCode",
    "ProtocolError",
    "parse_client_message",
]
