"""Rows from SQL, streamed from any DB-API connection, and the column check every source's first batch
passes (files are read by ``sync.files``; XCom records reach the engine as the operator's list)."""

from __future__ import annotations

import difflib
import itertools
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from airflow_provider_juspay.errors import MappingError
from airflow_provider_juspay.fulfilment import RECORD_FIELDS

__all__ = [
    "DEFAULT_FETCH_SIZE",
    "REQUIRED_FIELDS",
    "check_columns",
    "checked_first_batch",
    "stream_query",
    "unmapped_columns",
]

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


#: Fields no record goes without: a source must name them (through ``column_map``) or ``defaults`` give them.
REQUIRED_FIELDS = ("order_id", "fulfillment_status", "fulfillment_command")
#: Words that point at a field in a column's name, for the ``column_map`` suggestion.
_HINTS = {
    "order_id": ("order", "ord"),
    "fulfillment_status": ("status", "state"),
    "fulfillment_command": ("command", "action"),
}


def check_columns(
    columns: Sequence[str], column_map: Mapping[str, str] | None, defaults: Mapping[str, Any] | None
) -> None:
    """Raise :class:`~airflow_provider_juspay.errors.MappingError` when no column (after
    ``column_map``) names a required field that ``defaults`` does not give either: every row would be
    invalid, so nothing should be read further."""
    renames = column_map or {}
    named = {renames.get(c, c) for c in columns} | set(defaults or {})
    missing = [f for f in REQUIRED_FIELDS if f not in named]
    if not missing:
        return
    free = [c for c in columns if renames.get(c, c) not in RECORD_FIELDS]
    suggestion = {}
    for field in missing:
        guess = _guess(field, [c for c in free if c not in suggestion])
        suggestion[guess or f"<your {field} column>"] = field
    more = f" and {len(columns) - 30} more" if len(columns) > 30 else ""
    shown = ", ".join(map(str, columns[:30])) + more
    raise MappingError(
        f"the source's columns name no field for {', '.join(missing)} (columns seen: {shown or 'none'}). "
        f"Map them with column_map={suggestion!r}, or give a constant in defaults= "
        '(e.g. {"fulfillment_command": "NO_ACTION"}). Nothing was sent; a retry would read the same columns.'
    )


def _guess(field: str, columns: Sequence[str]) -> str | None:
    lowered = {c.lower(): c for c in columns}
    for hint in _HINTS.get(field, ()):
        for low, column in lowered.items():
            if hint in low:
                return column
    close = difflib.get_close_matches(field, list(lowered), n=1, cutoff=0.6)
    return lowered[close[0]] if close else None


def checked_first_batch(
    rows: Iterable[Any],
    *,
    column_map: Mapping[str, str] | None,
    defaults: Mapping[str, Any] | None,
    batch: int = DEFAULT_FETCH_SIZE,
    on_columns: Callable[[list[str]], None] | None = None,
) -> Iterator[Any]:
    """The rows, after the columns of the first ``batch`` (their union: XCom and JSON rows may differ)
    were shown to ``on_columns`` and checked by :func:`check_columns`, before any row is passed on."""
    source = iter(rows)
    first = list(itertools.islice(source, batch))
    columns: dict[str, None] = {}
    for row in first:
        if isinstance(row, Mapping):
            columns.update(dict.fromkeys(str(k) for k in row))
    if columns:
        if on_columns is not None:
            on_columns(list(columns))
        check_columns(list(columns), column_map, defaults)
    yield from first
    yield from source
