"""One bulk push, end to end: rows -> records -> ledger filter -> dispatcher -> results -> ledger, report."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from airflow_provider_juspay.errors import ErrorCode
from airflow_provider_juspay.fulfilment import FulfilmentRecord, FulfilmentResult
from airflow_provider_juspay.sync.control import RunControl, Stop
from airflow_provider_juspay.sync.dispatcher import DEFAULT_MAX_CONCURRENCY, Dispatcher, not_attempted
from airflow_provider_juspay.sync.ledger import Ledger, LedgerPreview
from airflow_provider_juspay.sync.records import validate_rows
from airflow_provider_juspay.sync.report import ReportBuilder, RunReport
from airflow_provider_juspay.sync.settings import PushSettings, Sender, build_control

__all__ = ["DryRun", "Pushed", "push"]


class _Pipeline:
    """One run of the pipeline (what :func:`push` drives); :meth:`results` yields one result per row read.

    :param ledger: when given, delivered keys are skipped and every attempt is recorded.
    :param on_change: the ledger's rule for a delivered key whose payload changed (see ``Ledger.filter``).
    :param control: the run's pace, breaker and stop, shared with ``send``; a cancel stops reading
        rows at once (rows already read still get their outcome).
    """

    def __init__(
        self,
        *,
        make_record: Callable[[Mapping[str, Any]], FulfilmentRecord],
        send: Callable[[FulfilmentRecord], FulfilmentResult],
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        ledger: Ledger | LedgerPreview | None = None,
        on_change: str = "send",
        control: RunControl | None = None,
    ) -> None:
        self.make_record = make_record
        self.ledger = ledger
        self.on_change = on_change
        self.control = control or RunControl()
        if isinstance(ledger, Ledger):
            # No request leaves without the lease on its key, and a lost lease stops the run.
            self.control.fence = ledger
            ledger.on_lost(self._lease_lost)
        self.dispatcher = Dispatcher(send, max_concurrency=max_concurrency, control=self.control)

    def _lease_lost(self, reason: str) -> None:
        self.control.stop(ErrorCode.LEASE_LOST, reason)

    @property
    def stop_reason(self) -> Stop | None:
        """Why the run stopped early (refused key, breaker, cancel), if it did."""
        return self.control.stop_reason

    def results(self, rows: Iterable[Mapping[str, Any]]) -> Iterator[FulfilmentResult]:
        items = validate_rows(self._until_cancelled(rows), self.make_record)
        if self.ledger is None:
            yield from self.dispatcher.run(items)
            return

        def stopped() -> bool:
            return self.control.stopped

        claimed = self.ledger.filter(items, on_change=self.on_change, stopped=stopped)
        try:
            yield from self.ledger.write_outcomes(self.dispatcher.run(claimed))
        except Exception:
            # Writing the last outcomes can fail for the reason the source did (the ledger's database
            # gone): the source's error is the one to read.
            if self.dispatcher.source_error is not None:
                raise self.dispatcher.source_error from None
            raise
        # Keys other runs held: decided once this run's own outcomes are written (see Ledger.settle_held).
        settled = self.ledger.settle_held(on_change=self.on_change, stopped=stopped)
        yield from self.ledger.write_outcomes(self.dispatcher.run(settled))

    def _until_cancelled(self, rows: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
        source = iter(rows)
        # Checked before each row is read: rows not read get no outcome, and the report says why.
        while not self.control.cancelled:
            try:
                row = next(source)
            except StopIteration:
                return
            yield row


@dataclass(frozen=True)
class Pushed:
    """The report, and why the run stopped early, if it did."""

    report: RunReport
    stop: Stop | None


def push(
    rows: Iterable[Mapping[str, Any]],
    *,
    client: Sender,
    report: ReportBuilder,
    make_record: Callable[[Mapping[str, Any]], FulfilmentRecord],
    settings: PushSettings | None = None,
    ledger: Ledger | LedgerPreview | None = None,
    on_change: str = "send",
    control: RunControl | None = None,
    export: Callable[[FulfilmentResult], None] | None = None,
) -> Pushed:
    """The engine's one entry point: validate, filter, send and count every row; each row read ends in
    exactly one outcome.

    :param rows: mappings with record fields, read lazily.
    :param client: sends each record (``JuspayClient``; :class:`DryRun` in a dry run).
    :param report: folds the results (its progress lines, its failure list).
    :param make_record: turns a row into a record, or raises ``RecordError`` (the row is ``invalid``).
    :param settings: concurrency ceiling, pacing, rate limit, breaker (default:
        :class:`~airflow_provider_juspay.sync.settings.PushSettings`).
    :param ledger: when given, delivered keys are skipped and every attempt is recorded; with adaptive
        pacing the merchant's shared budget is kept beside it.
    :param on_change: the ledger's rule for a delivered key whose payload changed (see ``Ledger.filter``).
    :param control: the run's pace, breaker and stop, when the caller needs it before the push starts
        (to cancel it): :func:`~airflow_provider_juspay.sync.settings.build_control` of the same
        settings; built here otherwise. A cancel stops reading rows at once (rows already read still
        get their outcome). Closed at the end (the task leaves the merchant's budget).
    :param export: sees each result as it comes (e.g. ``FailureExport.add``, or a list's ``append``).
    """
    settings = settings or PushSettings()
    control = control or build_control(settings, client, ledger)
    try:
        run = _Pipeline(
            make_record=make_record,
            send=partial(client.fulfil, control=control),
            max_concurrency=settings.ceiling,
            ledger=ledger,
            on_change=on_change,
            control=control,
        )
        if run.control.pacer is not None or run.control.limiter is not None:
            report.pace = run.control
        with report.heartbeat():
            for result in run.results(rows):
                report.add(result)
                if export is not None:
                    export(result)
        return Pushed(report.finish(stop=run.stop_reason), run.stop_reason)
    finally:
        control.close()


class DryRun:
    """Stands in for the client in a dry run: each valid record is reported, and nothing is sent."""

    config = None

    def fulfil(self, record: FulfilmentRecord, *, control: Any = None) -> FulfilmentResult:
        return not_attempted(record, "dry run (the record is valid)")

    def abort_in_flight(self) -> int:
        return 0
