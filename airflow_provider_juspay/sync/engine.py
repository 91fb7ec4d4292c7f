"""One bulk push, end to end: rows -> records -> dispatcher -> results -> report."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_juspay.errors import AuthError
from airflow_provider_juspay.fulfilment import FulfilmentRecord, FulfilmentResult
from airflow_provider_juspay.sync.dispatcher import Dispatcher, not_attempted
from airflow_provider_juspay.sync.records import validate_rows
from airflow_provider_juspay.sync.report import ReportBuilder

__all__ = ["PushOutcome", "dry_run_send", "push"]


@dataclass(frozen=True)
class PushOutcome:
    """The report, and the authentication error that stopped the run, if one did."""

    report: dict[str, Any]
    stopped_by: AuthError | None


def push(
    rows: Iterable[Mapping[str, Any]],
    *,
    make_record: Callable[[Mapping[str, Any]], FulfilmentRecord],
    send: Callable[[FulfilmentRecord], FulfilmentResult],
    max_concurrency: int,
    report: ReportBuilder,
) -> PushOutcome:
    """Validate, send and count every row; each row ends in exactly one outcome."""
    dispatcher = Dispatcher(send, max_concurrency=max_concurrency)
    for result in dispatcher.run(validate_rows(rows, make_record)):
        report.add(result)
    return PushOutcome(report.finish(), dispatcher.stopped_by)


def dry_run_send(record: FulfilmentRecord) -> FulfilmentResult:
    """Stands in for the client in a dry run: the record is valid, and nothing is sent."""
    return not_attempted(record, "dry run (the record is valid)")
