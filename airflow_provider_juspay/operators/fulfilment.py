"""Operators that tell Juspay what happened to orders."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cached_property
from typing import TYPE_CHECKING, Any

# Exceptions live in airflow.sdk from 3.2 and in airflow.exceptions in 3.1: common-compat picks.
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_juspay.fulfilment import ORDER_FIELDS, FulfilmentResult
from airflow_provider_juspay.hooks.juspay import fail_without_retry_on_config_error
from airflow_provider_juspay.operators._base import FulfilmentOperatorBase
from airflow_provider_juspay.operators._interval import empty_interval_problem, mentions_interval
from airflow_provider_juspay.sync.control import RunControl
from airflow_provider_juspay.sync.engine import DryRun, push
from airflow_provider_juspay.sync.export import FailureExport, export_format
from airflow_provider_juspay.sync.files import CsvOptions, file_format_of, read_files
from airflow_provider_juspay.sync.ledger import Ledger, LedgerPreview
from airflow_provider_juspay.sync.report import (
    DEFAULT_MAX_FAILURES_LISTED,
    ReportBuilder,
    RunReport,
    checked_limits,
)
from airflow_provider_juspay.sync.settings import PACINGS, PushSettings, Sender
from airflow_provider_juspay.sync.sources import (
    DEFAULT_FETCH_SIZE,
    checked_first_batch,
    stream_query,
    unmapped_columns,
)
from airflow_provider_juspay.utils.deprecations import refuse_removed, warn_deprecated
from airflow_provider_juspay.utils.files import failure_export, files_to_read
from airflow_provider_juspay.utils.sql import db_api_hook
from airflow_provider_juspay.utils.xcom import DEPRECATED_RESULTS_KEY, REPORT_KEY

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["BulkFulfilmentOperator", "FulfilmentSyncOperator"]

#: Above this many records, the bulk operator is the better tool (concurrency, ledger, report).
SHORT_LIST = 100


class FulfilmentSyncOperator(FulfilmentOperatorBase):
    """Send the fulfilment of one order, or of a short list of orders, to Juspay.

    Give either the fields of one order (``order_id``, ``fulfillment_status``, ...) or ``records``, a
    list of mappings such as an upstream task's XCom.

    Returns (XCom) the result as a dict for one order, or a list of dicts for ``records``, and pushes the
    run's report under the XCom key ``report``, as every task that makes one does. The task is judged by
    :meth:`~airflow_provider_juspay.sync.report.RunReport.verdict`, the rule of every task: rows that
    failed or were not attempted fail it; other failures (``rejected``, ``invalid``) fail it beyond
    ``max_failures`` / ``max_failure_ratio``, and with neither limit given, any does. A refused key, an
    unusable connection or data Juspay refused fail it without Airflow retries.

    :param order_id: the order's id, as Juspay knows it (templated).
    :param fulfillment_status: ``SUCCESS`` or ``FAILURE`` (templated).
    :param fulfillment_command: e.g. ``NO_ACTION``, ``INITIATE_REFUND`` (templated).
    :param fulfillment_time: when it happened: datetime, date or ISO-8601 text (templated).
    :param fulfillment_id: your reference of the fulfilment, e.g. a delivery id (templated).
    :param fulfillment_data: free text, or a mapping/list sent as JSON (templated).
    :param routing_id: sent as ``x-routing-id``, e.g. the customer id (templated).
    :param records: or mappings with record fields (or source names mapped by ``column_map``), or their
        JSON text (templated).
    :param max_failures: failures allowed (a count). With neither limit, none is allowed.
    :param max_failure_ratio: share of failures allowed, 0 to 1.
    :param max_failures_listed: failures listed in the report (all are counted), default 100.
    :param fail_on_error: deprecated: ``False`` is ``max_failure_ratio=1.0``; ``True`` is the default.
    :param juspay_conn_id: the ``juspay`` connection, default ``juspay_default`` (templated).
    :param column_map: ``{"source_column": "field"}`` renames.
    :param defaults: values for fields a record lacks (templated).
    :param ledger_conn_id: a SQL connection holding the delivery ledger (templated); reruns are safe.
    :param ledger_table: the ledger's table, created when missing.
    :param on_change: a delivered key whose payload changed is ``send`` (default), ``skip`` or ``fail``.
    :param ledger_lease: seconds a key this run holds in flight is kept from other runs (default 60,
        renewed by a heartbeat while the run makes progress; a run sends only while its lease holds).
    :param ledger_wait_limit: longest wait for keys another run holds without renewing (default 900 s).
    :param run_history_days: days each run's row stays in the run history beside the ledger (default 90).
    :param circuit_breaker: a ``BreakerPolicy``: when the run stops sending because Juspay keeps failing.
    :param kwargs: the arguments of every Airflow operator (``task_id``, ``retries``, ``trigger_rule``,
        ``on_failure_callback``, ...), passed to ``BaseOperator``.
    """

    template_fields: Sequence[str] = (
        "juspay_conn_id",
        "ledger_conn_id",
        *ORDER_FIELDS,
        "records",
        "defaults",
    )
    template_fields_renderers = {"records": "json", "defaults": "json", "fulfillment_data": "json"}
    ui_color = "#0b2d63"
    ui_fgcolor = "#ffffff"

    def __init__(
        self,
        *,
        order_id: str | None = None,
        fulfillment_status: str | None = None,
        fulfillment_command: str | None = None,
        fulfillment_time: Any = None,
        fulfillment_id: str | None = None,
        fulfillment_data: Any = None,
        routing_id: str | None = None,
        records: Any = None,
        max_failures: int | None = None,
        max_failure_ratio: float | None = None,
        max_failures_listed: int = DEFAULT_MAX_FAILURES_LISTED,
        fail_on_error: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (order_id is None) == (records is None):
            raise ValueError("give exactly one of order_id (one order) or records (a list of mappings)")
        if fail_on_error is not None:
            warn_deprecated(
                "fail_on_error",
                "max_failures / max_failure_ratio (fail_on_error=False is max_failure_ratio=1.0)",
            )
            if not fail_on_error and max_failures is None and max_failure_ratio is None:
                max_failure_ratio = 1.0
        self.max_failures, self.max_failure_ratio = checked_limits(max_failures, max_failure_ratio)
        self.max_failures_listed = max_failures_listed
        self.order_id = order_id
        self.fulfillment_status = fulfillment_status
        self.fulfillment_command = fulfillment_command
        self.fulfillment_time = fulfillment_time
        self.fulfillment_id = fulfillment_id
        self.fulfillment_data = fulfillment_data
        self.routing_id = routing_id
        self.records = records

    def execute(self, context: Context) -> dict[str, Any] | list[dict[str, Any]]:
        with fail_without_retry_on_config_error(self.juspay_conn_id):
            return self._execute(context)

    def _execute(self, context: Context) -> dict[str, Any] | list[dict[str, Any]]:
        single = self.records is None
        rows = [self._single_row()] if single else _as_rows(self.records)
        if len(rows) > SHORT_LIST:
            self.log.warning(
                "%d records: BulkFulfilmentOperator sends them concurrently, with a report", len(rows)
            )
        results: list[FulfilmentResult] = []
        try:
            with self.open_ledger(context) as ledger:
                if ledger is not None:
                    ledger.ensure_table()
                settings = PushSettings(max_concurrency=1, breaker=self.circuit_breaker)
                control = self.run_control(settings, ledger, max_batch=len(rows))
                with self.recorded_run(ledger) as record:
                    pushed = push(
                        rows,
                        client=self.hook.client,
                        report=ReportBuilder(total=len(rows), max_failures_listed=self.max_failures_listed),
                        make_record=self.make_record,
                        settings=settings,
                        ledger=ledger,
                        on_change=self.on_change,
                        control=control,
                        export=results.append,
                    )
                    record(pushed, self._verdict(pushed.report))
        finally:
            self.hook.close()
        for result in results:
            self.log.info(
                "order %s: %s%s",
                result.order_id,
                result.outcome.value,
                f" ({result.error_code}: {result.message})" if result.error_code else "",
            )
        payload = [r.to_dict() for r in results]
        report = self._report = pushed.report
        self.suggest_a_ledger(report)
        self.send_metrics(context, report)
        # The same report as the bulk operator's, under the same key, for notifiers and lineage.
        context["ti"].xcom_push(key=REPORT_KEY, value=report.to_dict())
        problem = self._verdict(report)
        if problem is not None:
            context["ti"].xcom_push(key=DEPRECATED_RESULTS_KEY, value=payload)
            failures = [r for r in results if r.outcome.is_failure]
            shown = "; ".join(
                f"{r.order_id}: {r.outcome.value} {r.error_code or ''} {r.message or ''}".strip()
                for r in failures[:10]
            )
            self.judge(f"{problem} ({shown})", report, pushed.stop)
        self.announce(context)
        return payload[0] if single else payload

    def _verdict(self, report: RunReport) -> str | None:
        return report.verdict(max_failures=self.max_failures, max_failure_ratio=self.max_failure_ratio)

    def _single_row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in ORDER_FIELDS if getattr(self, name) is not None}


def _as_rows(records: Any) -> list[Mapping[str, Any]]:
    """Accept a list of mappings, one mapping, or their JSON text (a rendered template)."""
    if isinstance(records, str):
        try:
            records = json.loads(records)
        except ValueError:
            raise ValueError("records is text but not JSON; give a list of mappings") from None
    if isinstance(records, Mapping):
        return [records]
    if isinstance(records, (str, bytes)) or not isinstance(records, Iterable):
        raise ValueError(
            f"records must be a list of mappings (or its JSON text), got {type(records).__name__}"
        )
    return list(records)


class BulkFulfilmentOperator(FulfilmentOperatorBase):
    """Push many fulfilments to Juspay concurrently, under a rate limit, and return a report.

    Rows come from exactly one source: ``records`` (a list of mappings, e.g. an upstream task's
    XCom), ``sql`` run on ``sql_conn_id`` (any connection whose hook is a ``DbApiHook``), streamed
    ``fetch_size`` rows at a time, or ``path``: CSV, JSON Lines or Parquet files on any object store
    Airflow knows, streamed. Column names are record fields, renamed by ``column_map``; other
    columns are named once in the log and not sent.

    Returns (XCom) the report (``RunReport.to_dict()``): ``total``, ``counts`` by outcome (summing to
    total), ``errors`` by code, the first ``failures``, ``duration_s``, ``records_per_s``, ``dry_run``,
    ``retries`` by cause, ``stopped`` (why the run stopped early, or null), ``failure_count`` and
    ``failure_ratio``; the same report is pushed to XCom under ``report``. The task fails, after logging
    the report, by ``RunReport.verdict``, the rule of every task: when any row is ``failed`` or
    ``not_attempted`` (whatever the limits: an Airflow retry would deliver them), or when failures
    (rejected, failed, invalid, not attempted) exceed ``max_failures`` or ``max_failure_ratio``; with
    neither limit given, any failure does. Rows another live run holds (``held_elsewhere``) are that
    run's to deliver, not failures.

    :param records: a list of mappings, or its JSON text, e.g. an upstream task's XCom (templated).
    :param sql: a query, or a path ending in ``.sql`` rendered as a template (templated).
    :param sql_conn_id: the warehouse: any connection whose hook is a ``DbApiHook`` (templated).
    :param parameters: bind parameters for ``sql`` in the driver's style (templated).
    :param path: a file, a folder or a glob, as an ``ObjectStoragePath`` URL (``file://``,
        ``s3://conn_id@bucket/...``, ...; a plain path is local), read in name order (templated).
    :param file_format: ``csv``, ``jsonl`` or ``parquet``; default from each file's suffix (``.gz`` too).
    :param csv_options: a ``CsvOptions`` (delimiter, header, encoding) for CSV files.
    :param failures_path: write every failure (order, command, fulfilment id, outcome, error code,
        message, attempts, HTTP status, row position) to this URL as the run goes; ``.jsonl`` or
        ``.csv`` (templated). Any source.
    :param max_concurrency: requests in flight at most. With ``pacing="adaptive"`` (the default) it is
        the ceiling of the concurrency found from Juspay's answers (default 64); with ``"fixed"``, the
        number kept in flight (default 16).
    :param pacing: ``adaptive`` (default): grow the requests in flight while Juspay answers without
        pushback and the limit is in use, back off by a tenth on a 429, 503 or timeout, hold while
        latency rises; ``fixed``: ``max_concurrency`` workers, a 429 pauses all and halves the pace.
    :param rate_limit: requests per second over all workers, a hard cap (default: none).
    :param fetch_size: rows read per ``fetchmany`` (default 1000); PostgreSQL streams server-side.
    :param dry_run: validate and report, send nothing and write no ledger (valid rows count
        ``not_attempted``; with a ledger, delivered keys count ``skipped`` as in a real run).
    :param max_failures: failures allowed (a count). With neither limit, none is allowed.
    :param max_failure_ratio: share of failures allowed, 0 to 1.
    :param max_failures_listed: failures listed in the report (all are counted), default 100.
    :param min_rows: fail the run when the source reads fewer rows (default: none; a run that reads 0
        rows passes with a WARNING). A late upstream load then fails loudly, and an Airflow retry reads again.
    :param juspay_conn_id: the ``juspay`` connection, default ``juspay_default`` (templated).
    :param column_map: ``{"source_column": "field"}`` renames.
    :param defaults: values for fields a row lacks (templated).
    :param ledger_conn_id: a SQL connection holding the delivery ledger (templated); reruns are safe.
    :param ledger_table: the ledger's table, created when missing.
    :param on_change: a delivered key whose payload changed is ``send`` (default), ``skip`` or ``fail``.
    :param ledger_lease: seconds a key this run holds in flight is kept from other runs (default 60,
        renewed by a heartbeat while the run makes progress; a run sends only while its lease holds).
    :param ledger_wait_limit: longest wait for keys another run holds without renewing (default 900 s).
    :param run_history_days: days each run's row stays in the run history beside the ledger (default 90).
    :param circuit_breaker: a ``BreakerPolicy``: when the run stops sending because Juspay keeps failing.
    :param kwargs: the arguments of every Airflow operator (``task_id``, ``retries``, ``trigger_rule``,
        ``on_failure_callback``, ...), passed to ``BaseOperator``.
    """

    template_fields: Sequence[str] = (
        "juspay_conn_id",
        "sql_conn_id",
        "ledger_conn_id",
        "sql",
        "parameters",
        "records",
        "path",
        "failures_path",
        "defaults",
    )
    template_ext: Sequence[str] = (".sql",)
    template_fields_renderers = {"sql": "sql", "records": "json", "parameters": "json", "defaults": "json"}
    ui_color = "#0b2d63"
    ui_fgcolor = "#ffffff"

    def __init__(
        self,
        *,
        records: Any = None,
        sql: str | None = None,
        sql_conn_id: str | None = None,
        parameters: Any = None,
        path: str | None = None,
        file_format: str | None = None,
        csv_options: CsvOptions | None = None,
        failures_path: str | None = None,
        max_concurrency: int | None = None,
        pacing: str = "adaptive",
        rate_limit: float | None = None,
        fetch_size: int = DEFAULT_FETCH_SIZE,
        dry_run: bool = False,
        max_failures: int | None = None,
        max_failure_ratio: float | None = None,
        max_failures_listed: int = DEFAULT_MAX_FAILURES_LISTED,
        min_rows: int | None = None,
        **kwargs: Any,
    ) -> None:
        refuse_removed(kwargs, {"max_failed_ratio": "max_failure_ratio"})
        super().__init__(**kwargs)
        if sum(source is not None for source in (records, sql, path)) != 1:
            raise ValueError(
                "give exactly one source: records (a list of mappings), sql with sql_conn_id, or path (files)"
            )
        if file_format is not None:
            file_format_of("", file_format)  # a typo fails when the DAG is parsed, not at 3 a.m.
        if failures_path is not None and "{{" not in failures_path:
            export_format(failures_path)
        if sql is not None and not sql_conn_id:
            raise ValueError("sql needs sql_conn_id, the warehouse connection to run it on")
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if pacing not in PACINGS:
            raise ValueError(f"pacing must be one of {PACINGS}, got {pacing!r}")
        self.records = records
        self.sql = sql
        self.sql_conn_id = sql_conn_id
        self.parameters = parameters
        self.path = path
        self.file_format = file_format
        self.csv_options = csv_options
        self.failures_path = failures_path
        self.pacing = pacing
        #: Workers (and pooled connections): the fixed number, or the adaptive ceiling.
        self.max_concurrency = PushSettings(max_concurrency=max_concurrency, pacing=pacing).ceiling
        self.rate_limit = rate_limit
        self.fetch_size = fetch_size
        # Not self.dry_run: that name is BaseOperator's own dry_run() method.
        self.is_dry_run = dry_run
        self.max_failures, self.max_failure_ratio = checked_limits(max_failures, max_failure_ratio)
        self.max_failures_listed = max_failures_listed
        if min_rows is not None and min_rows < 0:
            raise ValueError(f"min_rows must be >= 0, got {min_rows}")
        self.min_rows = min_rows
        #: Source fields whose templates use the data interval (found when they are rendered).
        self._interval_fields: list[str] = []

    def render_template_fields(self, context: Context, jinja_env: Any = None) -> None:
        """Render as usual, noting first which source fields are templated on the data interval."""
        env = jinja_env or self.get_template_env()
        self._interval_fields = [
            name
            for name in ("sql", "parameters", "records", "path")
            if mentions_interval(getattr(self, name), env, self.template_ext)
        ]
        super().render_template_fields(context, env)

    def hook_pool_size(self) -> int | None:
        return self.push_settings().ceiling

    def execute(self, context: Context) -> dict[str, Any]:
        with fail_without_retry_on_config_error(self.juspay_conn_id):
            return self._execute(context)

    def _execute(self, context: Context) -> dict[str, Any]:
        if problem := empty_interval_problem(context, self._interval_fields):
            raise self._failed(AirflowFailException(problem))
        # Resolved first: a missing file or an empty glob fails before anything is sent.
        files = files_to_read(str(self.path)) if self.path is not None else None
        builder = ReportBuilder(
            total=self._known_total(),
            dry_run=self.is_dry_run,
            max_failures_listed=self.max_failures_listed,
            log=self.log,
            retries=None if self.is_dry_run else self.hook.client.retries.counts,
            retried_server_errors=None if self.is_dry_run else self.hook.client.retries.server_errors,
        )
        try:
            with self.open_ledger(context) as ledger:
                settings = self.push_settings()
                client: Sender
                if self.is_dry_run:
                    # Nothing to pace or break, nothing written; on_kill still stops the reading.
                    control, client = RunControl(), DryRun()
                    self._control = control
                    run_ledger: Ledger | LedgerPreview | None = ledger.read_only() if ledger else None
                else:
                    if ledger is not None:
                        ledger.ensure_table()
                    control, client, run_ledger = self.run_control(settings, ledger), self.hook.client, ledger
                history = ledger if not self.is_dry_run else None
                with self.recorded_run(history) as record, self._failure_export() as export:
                    pushed = push(
                        self._rows(files, builder),
                        client=client,
                        report=builder,
                        make_record=self.make_record,
                        settings=settings,
                        ledger=run_ledger,
                        on_change=self.on_change,
                        control=control,
                        export=export.add if export is not None else None,
                    )
                    if export is not None and export.rows:  # before the history row, which names it
                        pushed.report.failures_export = {"path": str(self.failures_path), "rows": export.rows}
                    record(pushed, self._verdict(pushed.report))
        finally:
            self.hook.close()
        report = self._report = pushed.report
        self.log.info("%s", report.format())
        self.suggest_a_ledger(report)
        if not self.is_dry_run:
            self.send_metrics(context, report)
        if report.total == 0 and not report.unread:
            self.log.warning(
                "The source read 0 rows: nothing was sent. If rows were expected, check the query's "
                "window (data interval, dates) and the source; min_rows= fails a run that reads fewer."
            )
        problem = self._verdict(report)
        context["ti"].xcom_push(key=REPORT_KEY, value=report.to_dict())
        if problem is not None:
            self.judge(problem, report, pushed.stop, min_rows=self.min_rows)
        self.announce(context)
        return report.to_dict()

    def _verdict(self, report: RunReport) -> str | None:
        return report.verdict(
            max_failures=self.max_failures, max_failure_ratio=self.max_failure_ratio, min_rows=self.min_rows
        )

    def push_settings(self) -> PushSettings:
        """This task's settings for the engine (after templating): where each one enters."""
        return PushSettings(
            max_concurrency=self.max_concurrency,
            pacing=self.pacing,
            rate_limit=self.rate_limit,
            breaker=self.circuit_breaker,
        )

    def lineage_inputs(self) -> list[Any]:
        """The tables the query reads (parsed as common-sql's operators parse theirs), or the files."""
        from airflow_provider_juspay.operators._lineage import file_inputs, sql_inputs

        if self.path is not None:
            return file_inputs(str(self.path))
        if self.sql is None or not str(self.sql).strip():
            return []

        return sql_inputs(db_api_hook(str(self.sql_conn_id)), str(self.sql_conn_id), str(self.sql))

    def _known_total(self) -> int | None:
        """Rows to expect (for the ETA): the parsed records, never the length of their JSON text."""
        return None if self.records is None else len(self._records)

    @cached_property
    def _records(self) -> list[Mapping[str, Any]]:
        return _as_rows(self.records)

    @contextmanager
    def _failure_export(self) -> Iterator[FailureExport | None]:
        if not self.failures_path:
            yield None
            return
        with failure_export(str(self.failures_path), dry_run=self.is_dry_run, log=self.log) as export:
            yield export

    def _rows(self, files: list[Any] | None, builder: ReportBuilder) -> Iterator[Any]:
        """The rows of the one source given (files, XCom records or the query), their columns checked
        on the first batch: columns that name no required field fail the task before anything is sent."""
        if files is not None:
            rows: Iterable[Any] = self._file_rows(files, builder)
        elif self.sql is None:
            rows = self._records
        else:
            rows = self._sql_rows()
        return checked_first_batch(
            rows,
            column_map=self.column_map,
            defaults=self.defaults,
            batch=self.fetch_size,
            on_columns=self._log_unmapped,
        )

    def _file_rows(self, files: list[Any], builder: ReportBuilder) -> Iterator[Any]:
        return read_files(
            files,
            file_format=self.file_format,
            csv_options=self.csv_options,
            on_error=builder.unreadable,
        )

    def _sql_rows(self) -> Iterator[Any]:
        db = db_api_hook(str(self.sql_conn_id)).get_conn()
        try:
            yield from stream_query(db, str(self.sql), self.parameters, fetch_size=self.fetch_size)
        finally:
            db.close()

    def _log_unmapped(self, columns: list[str]) -> None:
        ignored = unmapped_columns(columns, self.column_map)
        if ignored:
            self.log.info("Columns not sent (they name no record field): %s", ", ".join(ignored))
