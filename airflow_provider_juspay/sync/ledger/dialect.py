"""SQL-dialect plumbing for the ledger: bind markers, parameters, statements and the database's clock.

The ledger speaks plain DB-API 2 to any database Airflow reaches. What differs between drivers (the
bind marker, the duplicate-key error, how to read the clock) is decided here, once per connection.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from airflow_provider_juspay.errors import LedgerUnusable

log = logging.getLogger(__name__)

#: The bind marker of the ``i``-th parameter (0-based) of a statement.
Marker = Callable[[int], str]


def _qmark(_: int) -> str:
    return "?"


def _format(_: int) -> str:
    return "%s"


def _numeric(i: int) -> str:
    return f":{i + 1}"


def _named(i: int) -> str:
    return f":p{i}"


_BY_PARAMSTYLE: dict[str, Marker] = {
    "qmark": _qmark,
    "format": _format,
    "pyformat": _format,
    "numeric": _numeric,
    "named": _named,
}

#: The database's current time, as precise as each gives it (SQLite's CURRENT_TIMESTAMP has whole seconds).
_CLOCK_SQL = {
    "sqlite3": "SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')",
    # PostgreSQL's CURRENT_TIMESTAMP is the transaction's start: the clock itself, please.
    "psycopg2": "SELECT clock_timestamp()",
    "psycopg": "SELECT clock_timestamp()",
    "": "SELECT CURRENT_TIMESTAMP",
}


def marker_for(placeholder: str) -> Marker:
    """A marker function from an Airflow hook's ``placeholder`` (``?``, ``%s``)."""
    if placeholder == "?":
        return _qmark
    if placeholder == "%s":
        return _format
    raise ValueError(f"unsupported placeholder {placeholder!r}")


def _driver(connection: Any) -> str:
    return type(connection).__module__.split(".")[0]


def driver_of(connection: Any) -> str:
    """The DB-API driver's module name (``sqlite3``, ``psycopg2``): what decides the dialect."""
    return _driver(connection)


def _sniffed_marker(connection: Any) -> Marker:
    """The bind marker of the connection's driver (DB-API ``paramstyle``)."""
    module = sys.modules.get(_driver(connection))
    return _BY_PARAMSTYLE.get(getattr(module, "paramstyle", "qmark"), _qmark)


def _integrity_errors(connection: Any) -> tuple[type[BaseException], ...]:
    """The driver's IntegrityError (a duplicate key), from the connection or its module (DB-API)."""
    error = getattr(connection, "IntegrityError", None)
    if error is None:
        error = getattr(sys.modules.get(_driver(connection)), "IntegrityError", None)
    return (error,) if isinstance(error, type) else (Exception,)


class Binds:
    """Numbers the bind markers of one statement in the order they are written."""

    def __init__(self, marker: Marker) -> None:
        self._marker = marker
        self.count = 0

    def __call__(self) -> str:
        mark = self._marker(self.count)
        self.count += 1
        return mark

    def many(self, n: int) -> str:
        """``n`` markers, comma-separated."""
        return ", ".join(self() for _ in range(n))


class Database:
    """One DB-API connection and its dialect: every statement commits (or, on failure, rolls back)."""

    def __init__(self, connection: Any, marker: Marker | None = None) -> None:
        self.connection = connection
        self.marker = marker or _sniffed_marker(connection)
        self.integrity_errors = _integrity_errors(connection)

    def on(self, connection: Any) -> Database:
        """The same dialect over another connection to the same database (the heartbeat's)."""
        return Database(connection, self.marker)

    def binds(self) -> Binds:
        return Binds(self.marker)

    def execute(self, sql: str, params: list[Any] | None = None) -> int:
        """Run one statement and commit; returns the rows it changed."""
        cursor = self.connection.cursor()
        try:
            if params is None:
                cursor.execute(sql)
            else:
                cursor.execute(sql, self._params(params))
            changed = int(cursor.rowcount)
        finally:
            cursor.close()
        self.connection.commit()
        return changed

    def execute_each(self, sql: str, rows: list[list[Any]]) -> list[int]:
        """Run one statement per row in one transaction; returns the rows each changed."""
        cursor = self.connection.cursor()
        changed = []
        try:
            for row in rows:
                cursor.execute(sql, self._params(row))
                changed.append(int(cursor.rowcount))
        finally:
            cursor.close()
        self.connection.commit()
        return changed

    def executemany(self, sql: str, rows: list[list[Any]]) -> None:
        cursor = self.connection.cursor()
        try:
            cursor.executemany(sql, [self._params(row) for row in rows])
        finally:
            cursor.close()
        self.connection.commit()

    def query(self, sql: str, params: list[Any], limit: int | None = None) -> list[tuple[Any, ...]]:
        cursor = self.connection.cursor()
        try:
            cursor.execute(sql, self._params(params))
            rows = cursor.fetchmany(limit) if limit else cursor.fetchall()
        finally:
            cursor.close()
        self.connection.commit()  # end the read transaction (Postgres would hold it open)
        return [tuple(row) for row in rows]

    def rollback(self) -> None:
        self.connection.rollback()

    def limit_statements(self, seconds: float) -> None:
        """Bound every later statement on this connection: SQLite waits for a lock at most ``seconds``
        (busy timeout); PostgreSQL cancels a statement, or a wait for a lock, that takes longer, and ends
        a session left idle inside a transaction that long. Other databases keep their own settings
        (said once)."""
        driver = _driver(self.connection)
        ms = max(1, int(seconds * 1000))
        try:
            if driver == "sqlite3":
                self.connection.execute(f"PRAGMA busy_timeout = {ms}")
            elif driver in ("psycopg2", "psycopg"):
                cursor = self.connection.cursor()
                try:
                    cursor.execute(f"SET statement_timeout = {ms}")
                    cursor.execute(f"SET lock_timeout = {ms}")
                    # A client that hangs inside a transaction (a stalled network) must not keep its row
                    # locks, which would hold back the run's own writes and other runs' claims.
                    cursor.execute(f"SET idle_in_transaction_session_timeout = {ms}")
                finally:
                    cursor.close()
                self.connection.commit()
            else:
                _say_once(f"no statement timeout is set on {driver} connections: the database's own applies")
        except Exception as exc:  # a driver that refuses: its own timeouts apply
            self.rollback()
            _say_once(f"could not set a statement timeout on {driver} ({type(exc).__name__}: {exc})")

    def let_readers_write_beside(self) -> None:
        """On a SQLite file, switch it to WAL once, so that a query still streaming rows from the same
        file (the warehouse) does not lock the ledger's writes out ("database is locked" mid-run).

        WAL is a lasting property of the file. Raises
        :class:`~airflow_provider_juspay.errors.LedgerUnusable` with the one-line fix when the switch is
        refused (another process holds the file); other databases need nothing."""
        if _driver(self.connection) != "sqlite3":
            return
        cursor = self.connection.cursor()
        try:
            mode = str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower()
            path = next((row[2] for row in cursor.execute("PRAGMA database_list") if row[1] == "main"), "")
            if mode in ("wal", "memory") or not path:  # in-memory and temporary databases have no readers
                return
            try:
                mode = str(cursor.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower()
            except Exception as exc:  # locked by another process past the busy timeout
                mode = f"{mode} ({type(exc).__name__}: {exc})"
        finally:
            cursor.close()
        if mode != "wal":
            raise LedgerUnusable(
                f"the SQLite ledger {path} could not be switched to WAL (journal mode {mode}), which a "
                "ledger in a file other runs or a query read needs. Run once, with nothing else using the "
                f"file: sqlite3 {path} 'PRAGMA journal_mode=WAL;'  (or give ledger_conn_id another file)"
            )
        log.info(
            "Ledger: switched the SQLite file %s to WAL, so that reads and the ledger's writes go "
            "side by side (a lasting setting of the file)",
            path,
        )

    def has_index(self, table: str, name: str) -> bool | None:
        """Whether index ``name`` exists (a catalog read: no lock on the table); None where unknown."""
        driver = _driver(self.connection)
        if driver == "sqlite3":
            sql = "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = ?"
            params: list[Any] = [name]
        elif driver in ("psycopg2", "psycopg"):
            # in the table's schema (an index is named per schema; another ledger's there is not ours)
            schema, dot, _ = table.rpartition(".")
            sql = f"SELECT COUNT(to_regclass({self.binds()()}))"
            params = [f"{schema}{dot}{name}".lower()]
        else:
            return None
        try:
            return int(self.query(sql, params)[0][0]) > 0
        except Exception:
            self.rollback()
            return None

    def estimated_rows(self, table: str) -> int | None:
        """The planner's estimate of the table's rows (PostgreSQL; cheap); None elsewhere."""
        if _driver(self.connection) not in ("psycopg2", "psycopg"):
            return None
        try:
            found = self.query(
                f"SELECT reltuples FROM pg_class WHERE oid = to_regclass({self.binds()()})", [table]
            )
        except Exception:
            self.rollback()
            return None
        return int(found[0][0]) if found and found[0][0] is not None else None

    def clock(self) -> datetime:
        """The database's current time, in UTC."""
        cursor = self.connection.cursor()
        try:
            cursor.execute(_CLOCK_SQL.get(_driver(self.connection), _CLOCK_SQL[""]))
            value = cursor.fetchone()[0]
            self.connection.commit()
        except Exception:
            self.connection.rollback()
            raise
        finally:
            cursor.close()
        return _as_utc(value)

    def _params(self, row: list[Any]) -> Any:
        if self.marker is _named:
            return {f"p{i}": v for i, v in enumerate(row)}
        return row


_SAID: set[str] = set()


def _say_once(message: str) -> None:
    if message not in _SAID:
        _SAID.add(message)
        log.warning("Ledger: %s", message)


def _as_utc(value: Any) -> datetime:
    """A database's timestamp (text or datetime); one without a zone is UTC (SQLite's is)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.strip().replace(" ", "T", 1))
    if not isinstance(value, datetime):
        raise TypeError(f"not a timestamp: {value!r}")
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
