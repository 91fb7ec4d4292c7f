"""One bulk push, end to end: rows -> records -> ledger filter -> dispatcher -> results -> ledger, report."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_juspay.errors import AuthError
from airflow_provider_juspay.fulfilment import FulfilmentRecord, FulfilmentResult
from airflow_provider_juspay.ledger import Ledger, LedgerPreview
from airflow_provider_juspay.sync.dispatcher import DEFAULT_MAX_CONCURRENCY, Dispatcher, not_attempted
from airflow_provider_juspay.sync.records import validate_rows
from airflow_provider_juspay.sync.report import ReportBuilder

__all__ = ["Push", "PushOutcome", "dry_run_send", "push"]


class Push:
    """One run of the pipeline; :meth:`results` yields one result per source row.

    :param ledger: when given, delivered keys are skipped and every attempt is recorded.
    :param on_change: the ledger's rule for a delivered key whose payload changed (see ``Ledger.filter``).
    """

    def __init__(
        self,
        *,
        make_record: Callable[[Mapping[str, Any]], FulfilmentRecord],
        send: Callable[[FulfilmentRecord], FulfilmentResult],
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        ledger: Ledger | LedgerPreview | None = None,
        on_change: str = "send",
    ) -> None:
        self.make_record = make_record
        self.ledger = ledger
        self.on_change = on_change
        self.dispatcher = Dispatcher(send, max_concurrency=max_concurrency)

    @property
    def stopped_by(self) -> AuthError | None:
        """The authentication error that stopped the run, if one did."""
        return self.dispatcher.stopped_by

    def results(self, rows: Iterable[Mapping[str, Any]]) -> Iterator[FulfilmentResult]:
        items = validate_rows(rows, self.make_record)
        if self.ledger is None:
            yield from self.dispatcher.run(items)
            return
        yield from self.ledger.record(
            self.dispatcher.run(self.ledger.filter(items, on_change=self.on_change))
        )


@dataclass(frozen=True)
class PushOutcome:
    """The report, and the authentication error that stopped the run, if one did."""

    report: dict[str, Any]
    stopped_by: AuthError | None


def push(rows: Iterable[Mapping[str, Any]], *, report: ReportBuilder, **options: Any) -> PushOutcome:
    """Validate, filter, send and count every row; each row ends in exactly one outcome.

    :param options: as for :class:`Push`.
    """
    run = Push(**options)
    with report.heartbeat():
        for result in run.results(rows):
            report.add(result)
    return PushOutcome(report.finish(), run.stopped_by)


def dry_run_send(record: FulfilmentRecord) -> FulfilmentResult:
    """Stands in for the client in a dry run: the record is valid, and nothing is sent."""
    return not_attempted(record, "dry run (the record is valid)")
