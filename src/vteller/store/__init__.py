"""Persistence behind interfaces. Embedded default: SQLite (one file under data_dir)."""

from vteller.store.sqlite import SqliteStore, StaffUser

__all__ = ["SqliteStore", "StaffUser"]
