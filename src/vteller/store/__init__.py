"""Persistence behind interfaces: typed repositories over SQLite (embedded default) or
PostgreSQL; blobs on the filesystem (default) or S3-compatible object storage."""

from vteller.store.blobs import BlobStore, FileBlobStore
from vteller.store.calls import CallRow, CallSearch
from vteller.store.db import IntegrityError, StoreError, Unavailable
from vteller.store.schema import SchemaMismatch
from vteller.store.staff import StaffUser
from vteller.store.store import SqliteStore, Store, open_store

__all__ = ["BlobStore", "CallRow", "CallSearch", "FileBlobStore", "IntegrityError",
           "SchemaMismatch", "SqliteStore", "StaffUser", "Store", "StoreError", "Unavailable",
           "open_store"]
