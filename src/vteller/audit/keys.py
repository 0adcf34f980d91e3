"""Key-encryption keys (KEK) and per-session data keys.

A fresh 256-bit data key per session is stored only wrapped: AES-256-GCM under the
current KEK, with the KEK id and the session id as associated data. The KEK provider
is an interface; the default keeps KEKs in a local key ring directory (files 0600,
outside the data directory), and `EnvKek` takes one from the environment. A KMS or
Vault transit provider implements the same two methods. Rotation adds a new current
KEK; old sessions stay readable with the KEK id they were wrapped under.
"""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vteller.tls import write_private

_AAD = b"vteller data key v1|"


class KeyError_(Exception):
    """A key problem with a clear message (never containing key material)."""


class WrongKey(KeyError_):
    pass


class KeyUnavailable(KeyError_):
    pass


@dataclass(frozen=True)
class WrappedKey:
    kek_id: str
    blob: bytes  # nonce (12) || ciphertext+tag


class KekProvider(Protocol):
    @property
    def current_id(self) -> str: ...

    def wrap(self, data_key: bytes, context: str) -> WrappedKey: ...

    def unwrap(self, wrapped: WrappedKey, context: str) -> bytes: ...


def _wrap(kek: bytes, kek_id: str, data_key: bytes, context: str) -> WrappedKey:
    nonce = os.urandom(12)
    ct = AESGCM(kek).encrypt(nonce, data_key, _AAD + kek_id.encode() + b"|" + context.encode())
    return WrappedKey(kek_id, nonce + ct)


def _unwrap(kek: bytes, wrapped: WrappedKey, context: str) -> bytes:
    try:
        return AESGCM(kek).decrypt(wrapped.blob[:12], wrapped.blob[12:],
                                   _AAD + wrapped.kek_id.encode() + b"|" + context.encode())
    except (InvalidTag, ValueError):
        raise WrongKey(f"data key of {context} does not open with key-encryption key "
                       f"{wrapped.kek_id!r} (wrong key, or the wrapped key was altered)") from None


class LocalKeyring:
    """KEKs as 32-byte files `kek-<id>.key` (0600) in a directory; `current` names one."""

    def __init__(self, directory: Path) -> None:
        self._dir = directory
        self._keys: dict[str, bytes] = {}
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        for path in directory.glob("kek-*.key"):
            key = path.read_bytes()
            if len(key) != 32:
                raise KeyError_(f"{path.name} is not a 256-bit key")
            self._keys[path.stem[4:]] = key
        current = directory / "current"
        self._current = current.read_text().strip() if current.exists() else ""
        if self._current not in self._keys:
            self._current = self.rotate()

    def rotate(self) -> str:
        """Make a new KEK and use it for new sessions; returns its id."""
        kek_id = secrets.token_hex(4)
        key = os.urandom(32)
        write_private(self._dir / f"kek-{kek_id}.key", key)
        (self._dir / "current").write_text(kek_id + "\n")
        self._keys[kek_id] = key
        self._current = kek_id
        return kek_id

    @property
    def current_id(self) -> str:
        return self._current

    def wrap(self, data_key: bytes, context: str) -> WrappedKey:
        return _wrap(self._keys[self._current], self._current, data_key, context)

    def unwrap(self, wrapped: WrappedKey, context: str) -> bytes:
        kek = self._keys.get(wrapped.kek_id)
        if kek is None:
            raise KeyUnavailable(f"key-encryption key {wrapped.kek_id!r} is not in the key ring")
        return _unwrap(kek, wrapped, context)


class EnvKek:
    """One KEK from an environment variable (base64 of 32 bytes), id `env-<name>`."""

    def __init__(self, variable: str = "VTELLER_KEK") -> None:
        raw = os.environ.get(variable)
        if not raw:
            raise KeyUnavailable(f"{variable} is not set")
        try:
            key = base64.b64decode(raw, validate=True)
        except ValueError:
            raise KeyError_(f"{variable} is not base64") from None
        if len(key) != 32:
            raise KeyError_(f"{variable} must decode to 32 bytes")
        self._key = key
        self._id = f"env-{variable.lower()}"

    @property
    def current_id(self) -> str:
        return self._id

    def wrap(self, data_key: bytes, context: str) -> WrappedKey:
        return _wrap(self._key, self._id, data_key, context)

    def unwrap(self, wrapped: WrappedKey, context: str) -> bytes:
        if wrapped.kek_id != self._id:
            raise KeyUnavailable(f"key-encryption key {wrapped.kek_id!r} is not available")
        return _unwrap(self._key, wrapped, context)


def new_data_key() -> bytes:
    return secrets.token_bytes(32)


FIELD_PREFIX = "enc:v1:"


def seal_field(data_key: bytes, context: str, text: str) -> str:
    """Free text kept beside a session (e.g. decision notes) encrypted under the
    session's data key: crypto-shredding the session shreds it too."""
    nonce = os.urandom(12)
    ct = AESGCM(data_key).encrypt(nonce, text.encode(), b"vteller field v1|" + context.encode())
    return FIELD_PREFIX + base64.b64encode(nonce + ct).decode()


def open_field(data_key: bytes, context: str, sealed: str) -> str:
    raw = base64.b64decode(sealed.removeprefix(FIELD_PREFIX))
    return AESGCM(data_key).decrypt(raw[:12], raw[12:],
                                    b"vteller field v1|" + context.encode()).decode()


def unwrap_session_key(store: SessionKeys, kek: KekProvider, session_id: str) -> bytes | None:
    """The one way to a session's data key: None when the session has none (purged or
    unknown); KeyUnavailable / WrongKey when the ring cannot open it."""
    row = store.session_key(session_id)
    if row is None:
        return None
    kek_id, blob = row
    if type(kek_id) is not str or type(blob) is not bytes:
        raise WrongKey(f"the stored key of {session_id} is malformed")
    return kek.unwrap(WrappedKey(kek_id, blob), session_id)


class SessionKeys(Protocol):
    def session_key(self, session_id: str) -> tuple[Any, Any] | None: ...
