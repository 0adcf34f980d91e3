"""Typed authentication failures. Messages never contain key material or tokens."""


class AuthError(Exception):
    """Authentication failed; ``code`` is the wire error code."""

    def __init__(self, code: str, message: str, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s  # rate_limited: the same figure as the message
