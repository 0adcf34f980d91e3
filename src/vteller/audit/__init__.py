"""Audit: keys, encrypted streams (recordings). The hash-chained event trail,
signed checkpoints and the global Merkle log are the rest of issue 7 (not yet)."""

from vteller.audit.keys import (
    EnvKek,
    KekProvider,
    KeyUnavailable,
    LocalKeyring,
    WrappedKey,
    WrongKey,
    new_data_key,
)
from vteller.audit.stream import StreamError, StreamWriter, decrypt

__all__ = ["EnvKek", "KekProvider", "KeyUnavailable", "LocalKeyring", "StreamError",
           "StreamWriter", "WrappedKey", "WrongKey", "decrypt", "new_data_key"]
