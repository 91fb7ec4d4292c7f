"""Sources of rows: a SQL query streamed from any DB-API connection, or an in-memory list."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from airflow_provider_juspay.fulfilment import RECORD_FIELDS

__all__ = ["DEFAULT_FETCH_SIZE", "stream_query", "unmapped_columns"]

DEFAULT_FETCH_SIZE = 1000


def stream_query(
    connection: Any,
    sql: str,
    parameters: Sequence[Any] | Mapping[str, Any] | None = None,
    *,
    fetch_size: int = DEFAULT_FETCH_SIZE,
    on_columns: Callable[[list[str]], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield the rows of ``sql`` as dicts, ``fetch_size`` at a time; the result set is never held whole.

    On PostgreSQL (psycopg 2 or 3) a named, server-side cursor is used so the driver does not buffer
    the result set either.

    :param connection: a DB-API 2 connection (``DbApiHook.get_conn()``).
    :param on_columns: called once with the column names, before the first row.
    """
    cursor = _streaming_cursor(connection, fetch_size)
    try:
        if parameters is None:
            cursor.execute(sql)
        else:
            cursor.execute(sql, parameters)
        batch = cursor.fetchmany(fetch_size)
        if cursor.description is None:
            raise ValueError("the SQL returned no result set: it must be a SELECT")
        columns = [column[0] for column in cursor.description]
        if on_columns is not None:
            on_columns(columns)
        while batch:
            for row in batch:
                yield dict(zip(columns, row, strict=True))
            batch = cursor.fetchmany(fetch_size)
    finally:
        cursor.close()


def _streaming_cursor(connection: Any, fetch_size: int) -> Any:
    if type(connection).__module__.startswith(("psycopg2", "psycopg")):
        cursor = connection.cursor(name=f"juspay_bulk_{uuid.uuid4().hex[:12]}")
        cursor.itersize = fetch_size
        return cursor
    return connection.cursor()


def unmapped_columns(columns: Iterable[str], column_map: Mapping[str, str] | None) -> list[str]:
    """Source columns that name no record field (after ``column_map``): read, never sent."""
    renames = column_map or {}
    return [c for c in columns if renames.get(c, c) not in RECORD_FIELDS]
