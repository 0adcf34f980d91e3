"""Typed protocol errors sent to clients as ``{"type": "error", code, message, re}``."""

from enum import StrEnum


class ErrorCode(StrEnum):
    BAD_JSON = "bad_json"
    UNKNOWN_TYPE = "unknown_type"
    INVALID_MESSAGE = "invalid_message"
    FORBIDDEN = "forbidden"
    TOO_LARGE = "too_large"
    WRONG_STATE = "wrong_state"
    RATE_LIMITED = "rate_limited"
    UNAUTHENTICATED = "unauthenticated"
    TOKEN_EXPIRED = "token_expired"
    TOKEN_INVALID = "token_invalid"
    TOKEN_REUSED = "token_reused"
    BAD_SDP = "bad_sdp"
    NO_COMMON_CODEC = "no_common_codec"
    RESUME_FAILED = "resume_failed"
    NOT_ALLOWED = "not_allowed"
    EVIDENCE_MISSING = "evidence_missing"
    MEDIA_DROPPED = "media_dropped"  # approval refused: the session must start afresh
    SCRIPT_INCOMPLETE = "script_incomplete"  # approval refused: statements unconfirmed
    LOCATION_NOT_ALLOWED = "location_not_allowed"  # approval refused: place unknown or outside
    NO_REFERENCE = "no_reference"
    STORAGE_UNAVAILABLE = "storage_unavailable"
    CLOSED = "closed"  # outside the opening hours (welcome.service has them)
    SERVICE_UNAVAILABLE = "service_unavailable"  # the shared routing store is unreachable
    INTERNAL = "internal"



class ProtocolError(Exception):
    """A request the server refuses; carries the wire error code."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
