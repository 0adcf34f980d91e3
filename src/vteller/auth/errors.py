"""Typed authentication failures. Messages never contain key material or tokens."""


class AuthError(Exception):
    """Authentication failed; ``code`` is the wire error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
