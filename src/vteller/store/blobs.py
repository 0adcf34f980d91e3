"""Blob storage behind an interface: the filesystem by default; an S3-compatible
implementation provides the same operations (object keys are `session/name`)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import BinaryIO, Protocol

PART = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")  # call ids may start with -


def check_key(key: str) -> tuple[str, str]:
    """`session/name`, each part plain (no separators, dots first, NULs or escapes):
    the same rule for every blob store."""
    session, sep, name = key.partition("/")
    if not sep or not PART.match(session) or not PART.match(name):
        raise ValueError(f"bad blob key {key!r}")
    return session, name


class BlobStore(Protocol):
    def open_write(self, key: str) -> BinaryIO: ...
    def open_read(self, key: str) -> BinaryIO: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str) -> list[str]: ...
    def delete(self, key: str) -> None: ...


class FileBlobStore:
    """Blobs as files under `root` (directories 0700, files 0600)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        if "/" in key:
            check_key(key)
        elif not PART.match(key):
            raise ValueError(f"bad blob prefix {key!r}")
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()) or not key or key.startswith("/"):
            raise ValueError(f"bad blob key {key!r}")
        return path

    def open_write(self, key: str) -> BinaryIO:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        return os.fdopen(fd, "wb")

    def open_read(self, key: str) -> BinaryIO:
        return self._path(key).open("rb")

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        folder = self._path(prefix)
        if not folder.is_dir():
            return []
        return sorted(f"{prefix}/{p.name}" for p in folder.iterdir() if p.is_file())

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
