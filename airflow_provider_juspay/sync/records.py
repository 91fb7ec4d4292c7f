"""Turns source rows into records to send, or into ``invalid`` results that are never sent."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from airflow_provider_juspay.errors import RecordError
from airflow_provider_juspay.fulfilment import FulfilmentRecord, FulfilmentResult, Outcome
from airflow_provider_juspay.sync.dispatcher import Item

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
            yield FulfilmentResult(
                order_id=exc.order_id or _raw_order_id(row),
                outcome=Outcome.INVALID,
                error_code="INVALID_RECORD",
                message=f"row {number}: {exc}",
            )
        except (TypeError, AttributeError) as exc:
            # Not a mapping at all (e.g. a list in an XCom list): still one row, one outcome.
            yield FulfilmentResult(
                order_id=None,
                outcome=Outcome.INVALID,
                error_code="INVALID_RECORD",
                message=f"row {number}: not a mapping ({exc})",
            )


def _raw_order_id(row: Mapping[str, Any]) -> str | None:
    value = row.get("order_id") if isinstance(row, Mapping) else None
    return None if value is None else str(value)
