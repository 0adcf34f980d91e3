"""Database engines behind one small interface: SQLite (embedded default) and
PostgreSQL (several processes and machines). Only `store/` writes SQL; it uses `?`
placeholders and the SQL both engines share, and these classes carry the rest.

Blocking: call them from worker threads (the `a*` methods of the repositories do).
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

Row = tuple[Any, ...]


class StoreError(Exception):
    """The database refused or failed; `setting` names what to fix when known."""


class IntegrityError(StoreError):
    """A uniqueness or key constraint (e.g. two writers took the same sequence number)."""


class Unavailable(StoreError):
    """The database cannot be reached (down, restarting, wrong address)."""


class Database(Protocol):
    dialect: str  # "sqlite" | "postgres"

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> list[Row]: ...
    def rowcount(self, sql: str, args: tuple[Any, ...] = ()) -> int: ...
    def atomic(self, lock: str | None = None) -> contextlib.AbstractContextManager[None]: ...
    def snapshot(self) -> contextlib.AbstractContextManager[None]: ...
    def close(self) -> None: ...


class SqliteDatabase:
    """One connection guarded by a lock, WAL with synchronous=FULL (a statement is on
    disk when it returns). `BEGIN IMMEDIATE` serialises writers of other processes."""

    dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600, exist_ok=True)  # holds password hashes: owner only
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None,
                                   timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._lock = threading.RLock()

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> list[Row]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.IntegrityError as exc:
                raise IntegrityError(str(exc)) from None
            except sqlite3.OperationalError as exc:
                if "disk" in str(exc) or "full" in str(exc):
                    raise StoreError(f"the database cannot write ({exc}): free disk space "
                                     f"under {self.path.parent}") from None
                raise

    def rowcount(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        with self._lock:
            try:
                return self._db.execute(sql, args).rowcount
            except sqlite3.IntegrityError as exc:
                raise IntegrityError(str(exc)) from None

    @contextlib.contextmanager
    def atomic(self, lock: str | None = None) -> Iterator[None]:
        with self._lock:
            if self._db.in_transaction:  # nested: part of the outer transaction
                yield
                return
            self.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        with self._lock:
            if self._db.in_transaction:
                yield
                return
            self._db.execute("BEGIN")
            try:
                yield
            finally:
                self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _advisory_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


# A transaction left open this long (its node stopped, frozen or cut off from the
# database mid-write) is ended by PostgreSQL with its locks (the global log's among
# them), so the other nodes go on; ours take milliseconds.
IDLE_IN_TRANSACTION_S = 30.0


class PostgresDatabase:
    """A psycopg 3 connection pool. Statements outside `atomic()` autocommit; inside,
    the thread's one connection runs them in a transaction, and `lock` takes a
    transaction-scoped advisory lock, so writers on every node queue in the database."""

    dialect = "postgres"

    def __init__(self, url: str, min_size: int = 1, max_size: int = 8,
                 connect_timeout_s: float = 10.0,
                 idle_in_transaction_s: float = IDLE_IN_TRANSACTION_S) -> None:
        import psycopg
        from psycopg_pool import ConnectionPool, PoolTimeout

        self._psycopg = psycopg
        # the server unreachable, or our session ended by it (a transaction left open)
        self._gone = (psycopg.OperationalError, psycopg.errors.IdleInTransactionSessionTimeout)
        self._pool_timeout = PoolTimeout
        self._local = threading.local()
        idle_ms = int(idle_in_transaction_s * 1000)

        def configure(conn: Any) -> None:  # a stalled node's transaction ends, and its locks
            conn.execute(f"SET idle_in_transaction_session_timeout = {idle_ms}")

        self._pool = ConnectionPool(url, min_size=min_size, max_size=max_size, open=False,
                                    kwargs={"autocommit": True}, configure=configure,
                                    timeout=connect_timeout_s, reconnect_timeout=60,
                                    check=ConnectionPool.check_connection)
        try:
            self._pool.open(wait=True, timeout=connect_timeout_s)
        except Exception as exc:  # noqa: BLE001 - reported with the setting's name
            self._pool.close()
            raise Unavailable(f"cannot connect to PostgreSQL at {redact(url)} "
                              f"({type(exc).__name__})") from None

    @staticmethod
    def _sql(sql: str) -> str:
        return sql.replace("%", "%%").replace("?", "%s")

    def _run(self, conn: Any, sql: str, args: tuple[Any, ...]) -> Any:
        try:
            return conn.execute(self._sql(sql), args)
        except self._psycopg.errors.IntegrityError as exc:
            raise IntegrityError(str(exc).splitlines()[0]) from None
        except self._gone as exc:
            raise Unavailable(f"PostgreSQL: {str(exc).splitlines()[0] if str(exc) else exc!r}"
                              ) from None

    @contextlib.contextmanager
    def _conn(self) -> Iterator[Any]:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            yield conn
            return
        try:
            with self._pool.connection() as conn:
                yield conn
        except self._pool_timeout as exc:
            raise Unavailable(f"PostgreSQL: no connection ({type(exc).__name__})") from None

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> list[Row]:
        with self._conn() as conn:
            cur = self._run(conn, sql, args)
            return cur.fetchall() if cur.description is not None else []

    def rowcount(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        with self._conn() as conn:
            return int(self._run(conn, sql, args).rowcount)

    @contextlib.contextmanager
    def atomic(self, lock: str | None = None) -> Iterator[None]:
        if getattr(self._local, "conn", None) is not None:
            if lock is not None:
                self._run(self._local.conn, "SELECT pg_advisory_xact_lock(?)",
                          (_advisory_key(lock),))
            yield
            return
        with self._conn() as conn:
            try:
                with conn.transaction():
                    self._local.conn = conn
                    try:
                        if lock is not None:
                            self._run(conn, "SELECT pg_advisory_xact_lock(?)",
                                      (_advisory_key(lock),))
                        yield
                    finally:
                        self._local.conn = None
            except self._gone as exc:
                raise Unavailable(f"PostgreSQL: {exc!r}") from None

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        if getattr(self._local, "conn", None) is not None:
            yield
            return
        with self._conn() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            self._local.conn = conn
            try:
                yield
            finally:
                self._local.conn = None

    def close(self) -> None:
        self._pool.close()


def redact(url: str) -> str:
    """A database URL as it may be printed: no password."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(unparsable URL)"
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


def connect(url: str | None, sqlite_path: Path) -> Database:
    """The configured engine: PostgreSQL for a postgresql:// URL, else SQLite."""
    if not url:
        return SqliteDatabase(sqlite_path)
    try:
        scheme = urlsplit(url).scheme
    except ValueError:
        raise StoreError("VTELLER_DATABASE_URL is not a URL") from None
    if scheme in ("postgresql", "postgres"):
        return PostgresDatabase(url)
    if scheme == "sqlite":
        return SqliteDatabase(Path(urlsplit(url).path))
    raise StoreError(f"VTELLER_DATABASE_URL: unsupported scheme {scheme!r} "
                     "(postgresql://user@host/db, or unset for the embedded SQLite file)")
