"""Turns source rows into records to send, or into ``invalid`` results that are never sent."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from airflow_provider_juspay.errors import ErrorCode, RecordError
from airflow_provider_juspay.fulfilment import (
    MAX_ORDER_ID_CHARS,
    FulfilmentRecord,
    FulfilmentResult,
    Item,
    Outcome,
    printable,
)

__all__ = ["BrokenRow", "SourceRow", "validate_rows"]


class SourceRow(dict[str, Any]):
    """A row that knows where it was read (``orders.csv line 17``): its results say so."""

    __slots__ = ("position",)

    def __init__(self, values: Mapping[str, Any], position: str) -> None:
        super().__init__(values)
        self.position = position


class BrokenRow:
    """A row that could not be read at all (a malformed line): it ends ``invalid`` with the reason."""

    __slots__ = ("position", "reason")

    def __init__(self, position: str, reason: str) -> None:
        self.position = position
        self.reason = reason


def validate_rows(
    rows: Iterable[Mapping[str, Any]], make_record: Callable[[Mapping[str, Any]], FulfilmentRecord]
) -> Iterator[Item]:
    """Yield a record per good row and an ``invalid`` result (with the broken rule) per bad one.

    Messages of bad rows start with the row's number in the source, so a row without an order id
    can still be found.
    """
    for number, row in enumerate(rows, start=1):
        where = row.position if isinstance(row, (SourceRow, BrokenRow)) else f"row {number}"
        if isinstance(row, BrokenRow):
            yield _invalid(None, f"{where}: {row.reason}", where)
            continue
        try:
            record = make_record(row)
        except RecordError as exc:
            yield _invalid(
                exc.order_id or _raw_order_id(row),
                f"{where}: {exc}",
                where,
                command=exc.fields.get("fulfillment_command"),
                fulfillment_id=exc.fields.get("fulfillment_id"),
            )
        except Exception as exc:  # whatever a row holds, it is one row with one outcome, never the run's end
            reason = "not a mapping" if not isinstance(row, Mapping) else "could not be read"
            yield _invalid(
                _raw_order_id(row), f"{where}: {reason} ({type(exc).__name__}: {_shown(exc)})", where
            )
        else:
            # Frozen for its identity, but the position is not part of it (and costs no copy here).
            object.__setattr__(record, "position", where)
            yield record


def _invalid(
    order_id: str | None,
    message: str,
    position: str,
    *,
    command: str | None = None,
    fulfillment_id: str | None = None,
) -> FulfilmentResult:
    """An invalid row's result, with what it said of its shipment (operations find it by its AWB)."""
    return FulfilmentResult(
        order_id=order_id,
        outcome=Outcome.INVALID,
        error_code=ErrorCode.INVALID_RECORD,
        message=message,
        position=position,
        command=command,
        fulfillment_id=fulfillment_id,
    )


def _raw_order_id(row: object) -> str | None:
    """The row's order id as printable text (for people to find the row), whatever it holds."""
    try:
        value = row.get("order_id") if isinstance(row, Mapping) else None
        return None if value is None else printable(str(value))[:MAX_ORDER_ID_CHARS]
    except Exception:
        return None


def _shown(exc: BaseException) -> str:
    text = printable(str(exc))
    return text if len(text) <= 200 else text[:197] + "..."
