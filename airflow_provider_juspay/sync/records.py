"""Turns source rows into records to send, or into ``invalid`` results that are never sent."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from airflow_provider_juspay.errors import RecordError
from airflow_provider_juspay.fulfilment import (
    MAX_ORDER_ID_CHARS,
    FulfilmentRecord,
    FulfilmentResult,
    Item,
    Outcome,
    printable,
)

__all__ = ["validate_rows"]


def validate_rows(
    rows: Iterable[Mapping[str, Any]], make_record: Callable[[Mapping[str, Any]], FulfilmentRecord]
) -> Iterator[Item]:
    """Yield a record per good row and an ``invalid`` result (with the broken rule) per bad one.

    Messages of bad rows start with the row's number in the source, so a row without an order id
    can still be found.
    """
    for number, row in enumerate(rows, start=1):
        try:
            yield make_record(row)
        except RecordError as exc:
            yield _invalid(exc.order_id or _raw_order_id(row), f"row {number}: {exc}")
        except Exception as exc:  # whatever a row holds, it is one row with one outcome, never the run's end
            reason = "not a mapping" if not isinstance(row, Mapping) else "could not be read"
            yield _invalid(
                _raw_order_id(row), f"row {number}: {reason} ({type(exc).__name__}: {_shown(exc)})"
            )


def _invalid(order_id: str | None, message: str) -> FulfilmentResult:
    return FulfilmentResult(
        order_id=order_id, outcome=Outcome.INVALID, error_code="INVALID_RECORD", message=message
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
