"""The ledger table: its columns, creating and migrating it, and the statements the protocol runs."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

from airflow_provider_juspay.sync.ledger.dialect import Database
from airflow_provider_juspay.sync.ledger.rows import IN_FLIGHT, LedgerRow

log = logging.getLogger(__name__)

DEFAULT_TABLE = "juspay_fulfilment_ledger"
_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")

_DDL = """
CREATE TABLE IF NOT EXISTS {table} (
    merchant_id VARCHAR(128) NOT NULL,
    order_id VARCHAR(255) NOT NULL,
    command VARCHAR(64) NOT NULL,
    fulfillment_id VARCHAR(255) NOT NULL,
    payload_hash CHAR(64) NOT NULL,
    state VARCHAR(32) NOT NULL,
    attempts INTEGER NOT NULL,
    http_status INTEGER,
    error_code VARCHAR(255),
    message VARCHAR(2000),
    first_attempt_at VARCHAR(32) NOT NULL,
    last_attempt_at VARCHAR(32) NOT NULL,
    dag_id VARCHAR(250),
    run_id VARCHAR(250),
    task_id VARCHAR(250),
    try_number INTEGER,
    map_index INTEGER,
    claim_id VARCHAR(64),
    lease_until VARCHAR(32),
    PRIMARY KEY (merchant_id, order_id, command, fulfillment_id)
)
"""
#: Columns added since the first release, with their types: ``ensure_table`` adds them when missing.
_ADDED_COLUMNS = (("map_index", "INTEGER"), ("claim_id", "VARCHAR(64)"), ("lease_until", "VARCHAR(32)"))
COLUMNS = (
    "merchant_id", "order_id", "command", "fulfillment_id", "payload_hash", "state", "attempts",
    "http_status", "error_code", "message", "first_attempt_at", "last_attempt_at",
    "dag_id", "run_id", "task_id", "try_number", "map_index", "claim_id", "lease_until",
)  # fmt: skip
RUN_COLUMNS = ("dag_id", "run_id", "task_id", "try_number", "map_index")
KEY_COLUMNS = ("merchant_id", "order_id", "command", "fulfillment_id")
#: The size of the text columns an outcome writes.
ERROR_CODE_SIZE, MESSAGE_SIZE = 255, 2000


def checked_table_name(table: str) -> str:
    """The name, if it is a plain ``[schema.]name`` (it is written into statements)."""
    if not _TABLE_NAME.match(table):
        raise ValueError(f"ledger table must be a plain [schema.]name, got {table!r}")
    return table


def ensure_table(db: Database, table: str) -> None:
    """Create the table when missing and add columns newer releases need (portable DDL).

    Safe when several runs start together: losing a race to create the table or add a column is fine.
    """
    try:
        db.execute(_DDL.format(table=table))
    except Exception:
        db.rollback()
        if not table_exists(db, table):
            raise
    add_missing_columns(db, table, _ADDED_COLUMNS)
    ensure_indexes(db, table, index_statements(table))


def add_missing_columns(db: Database, table: str, columns: Iterable[tuple[str, str]]) -> None:
    """Add the ``(name, type)`` columns a table made by an older release lacks (safe when runs race)."""
    for name, kind in columns:
        if _has_column(db, table, name):
            continue
        try:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
        except Exception:
            db.rollback()
            if not _has_column(db, table, name):
                raise


#: Past this many rows (the planner's estimate), a missing index is not built by a run: building it
#: locks the table against writes (other runs' claims and lease renewals) for as long as it takes.
BUILD_INDEX_UP_TO_ROWS = 1_000_000


def ensure_indexes(db: Database, table: str, statements: list[str]) -> None:
    """Create the missing ones among ``statements`` (``CREATE INDEX IF NOT EXISTS <name> ON ...``).

    An index that exists costs a catalog read, never a lock. A missing one on a large PostgreSQL table
    is left to a person (the log gives the statement that builds it without blocking writers); one that
    cannot be built is said, never raised: the page reads slowly without it, a push never needs it.
    """
    for statement in statements:
        name = statement.split()[5]
        if db.has_index(table, name):
            continue
        rows = db.estimated_rows(table)
        if rows is not None and rows > BUILD_INDEX_UP_TO_ROWS:
            concurrently = statement.replace("CREATE INDEX", "CREATE INDEX CONCURRENTLY", 1)
            log.warning(
                "Index %s is missing on %s (about %d rows): not built by a run, which would hold writes "
                "back while it builds. Build it once, beside the runs: %s",
                name, table, rows, concurrently,
            )  # fmt: skip
            continue
        try:
            db.execute(statement)
        except Exception as exc:
            db.rollback()
            log.warning("Index %s not created on %s (%s); the Juspay page reads slowly without it: %s",
                        name, table, exc, statement)  # fmt: skip


def index_statements(table: str) -> list[str]:
    """The ledger's indexes for reading it (the Juspay page): failures and keys in flight by state and
    time, a run's rows by its claim. The claim protocol itself needs only the primary key."""
    name = table.rpartition(".")[2]
    return [
        f"CREATE INDEX IF NOT EXISTS {name}_state_attempt ON {table} (state, last_attempt_at)",
        f"CREATE INDEX IF NOT EXISTS {name}_claim ON {table} (claim_id)",
    ]


def table_exists(db: Database, table: str) -> bool:
    """Whether the table is there (without creating it)."""
    return _has_column(db, table, "state")


def _has_column(db: Database, table: str, name: str) -> bool:
    try:
        db.query(f"SELECT {name} FROM {table} WHERE 1 = 0", [])
    except Exception:  # each driver has its own Error class: any failure means "not there"
        db.rollback()
        return False
    return True


@dataclass(frozen=True)
class Statements:
    """The statements of the claim protocol for one table and dialect, written once per ledger."""

    table: str
    insert: str
    claim_seen: str
    outcome: str
    renew_key: str

    @classmethod
    def for_table(cls, db: Database, table: str) -> Statements:
        return cls(
            table=table,
            insert=_insert(db, table),
            claim_seen=_claim_seen(db, table),
            outcome=_outcome(db, table),
            renew_key=_renew_key(db, table),
        )

    def lookup_of(self, db: Database, n_orders: int) -> str:
        """Read the rows of ``n_orders`` order ids (merchant id first, then the order ids)."""
        bind = db.binds()
        return (
            f"SELECT {', '.join(LedgerRow.COLUMNS)} FROM {self.table} "
            f"WHERE merchant_id = {bind()} AND order_id IN ({bind.many(n_orders)})"
        )


def _insert(db: Database, table: str) -> str:
    """Claim a new key: a second run inserting it too gets a duplicate-key error."""
    return f"INSERT INTO {table} ({', '.join(COLUMNS)}) VALUES ({db.binds().many(len(COLUMNS))})"


def _claim_seen(db: Database, table: str) -> str:
    """Claim a known key only if its row is still as it was read: one run wins, whatever the database.

    Parameters: the new payload hash, state, attempt time, run columns, claim id and lease; the key;
    then the state, attempt time, claim id and lease as read.
    """
    bind = db.binds()
    sets = ("payload_hash", "state", "last_attempt_at", *RUN_COLUMNS, "claim_id", "lease_until")
    assignments = ", ".join(f"{c} = {bind()}" for c in sets)
    key = " AND ".join(f"{c} = {bind()}" for c in KEY_COLUMNS)
    seen = (
        f"state = {bind()} AND last_attempt_at = {bind()} "
        f"AND COALESCE(claim_id, '') = {bind()} AND COALESCE(lease_until, '') = {bind()}"
    )
    return f"UPDATE {table} SET {assignments} WHERE {key} AND {seen}"


def _outcome(db: Database, table: str) -> str:
    """Write an outcome, only while this run still holds the key.

    Parameters: state, attempts to add, HTTP status, error code, message, attempt time, run columns;
    the key; the claim id.
    """
    bind = db.binds()
    sets = [f"state = {bind()}", f"attempts = attempts + {bind()}"]
    sets += [f"{c} = {bind()}" for c in ("http_status", "error_code", "message", "last_attempt_at")]
    sets += [f"{c} = {bind()}" for c in RUN_COLUMNS]
    sets += ["lease_until = NULL"]
    key = " AND ".join(f"{c} = {bind()}" for c in KEY_COLUMNS)
    return f"UPDATE {table} SET {', '.join(sets)} WHERE {key} AND claim_id = {bind()}"


def _renew_key(db: Database, table: str) -> str:
    """Push a run's lease forward on one key, if the run still holds it in flight (by the primary key:
    no scan, and rows locked in the order the run writes them). Parameters: lease, the key with its
    merchant, the claim id."""
    bind = db.binds()
    lease = bind()
    key = " AND ".join(f"{c} = {bind()}" for c in KEY_COLUMNS)
    mine = f"claim_id = {bind()} AND state = '{IN_FLIGHT}'"
    return f"UPDATE {table} SET lease_until = {lease} WHERE {key} AND {mine}"
