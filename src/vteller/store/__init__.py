"""Persistence behind interfaces. Embedded default: SQLite (one file under data_dir)."""

from vteller.store.blobs import BlobStore, FileBlobStore
from vteller.store.sqlite import SqliteStore, StaffUser

__all__ = ["BlobStore", "FileBlobStore", "SqliteStore", "StaffUser"]
