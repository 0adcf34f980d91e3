"""The store: one database, seen through typed repositories (staff, calls, audit,
references). Nothing outside `store/` writes SQL."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from vteller.store import schema
from vteller.store.appointments import AppointmentRepository
from vteller.store.approvals import ApprovalRepository
from vteller.store.audit import AuditRepository
from vteller.store.calls import CallRepository
from vteller.store.db import Database, Row, SqliteDatabase, connect
from vteller.store.nodes import NodeRepository
from vteller.store.references import ReferenceRepository
from vteller.store.shared import SharedStateRepository
from vteller.store.staff import StaffRepository


class Store(StaffRepository, CallRepository, AuditRepository, ReferenceRepository,
            ApprovalRepository, AppointmentRepository,
            NodeRepository, SharedStateRepository):
    def __init__(self, db: Database) -> None:
        self.db = db

    @property
    def dialect(self) -> str:
        return self.db.dialect

    def atomic(self, lock: str | None = None) -> contextlib.AbstractContextManager[None]:
        return self.db.atomic(lock)

    def snapshot(self) -> contextlib.AbstractContextManager[None]:
        return self.db.snapshot()

    def run(self, sql: str, args: tuple[Any, ...] = ()) -> list[Row]:
        """Raw SQL: for tests that play an attacker editing rows, and tools; the
        application goes through the repository methods."""
        return self.db.execute(sql, args)

    def ping(self) -> bool:
        return self.db.execute("SELECT 1") == [(1,)]

    def close(self) -> None:
        self.db.close()


class SqliteStore(Store):
    """The embedded store: one SQLite file, migrated on open."""

    def __init__(self, path: Path) -> None:
        super().__init__(SqliteDatabase(path))
        schema.migrate(self.db)


def open_store(database_url: str | None, sqlite_path: Path, migrate: bool = False) -> Store:
    """The configured store. SQLite is migrated on open (one process owns the file);
    PostgreSQL must already be at this code's schema (`vteller db migrate`) unless
    `migrate` is asked for."""
    db = connect(database_url, sqlite_path)
    try:
        if db.dialect == "sqlite" or migrate:
            schema.migrate(db)
        else:
            schema.check(db)
    except Exception:
        db.close()
        raise
    return Store(db)
