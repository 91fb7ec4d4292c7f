"""What both fulfilment operators share: the Juspay hook, record validation and the ledger."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import cached_property
from typing import TYPE_CHECKING, Any

# Exceptions live in airflow.sdk from 3.2 and in airflow.exceptions in 3.1: common-compat picks.
from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException
from airflow.sdk import BaseOperator

from airflow_provider_juspay.assets.juspay import merchant_of
from airflow_provider_juspay.config import endpoint_of
from airflow_provider_juspay.errors import ErrorCode
from airflow_provider_juspay.fulfilment import FulfilmentRecord
from airflow_provider_juspay.hooks.juspay import JuspayHook
from airflow_provider_juspay.operators.links import JuspayDashboardLink
from airflow_provider_juspay.sync.breaker import BreakerPolicy
from airflow_provider_juspay.sync.control import RunControl, Stop
from airflow_provider_juspay.sync.ledger import (
    DEFAULT_LEASE_S,
    DEFAULT_RETENTION_DAYS,
    DEFAULT_TABLE,
    DEFAULT_WAIT_LIMIT_S,
    ON_CHANGE,
    Ledger,
    RunInfo,
)
from airflow_provider_juspay.sync.report import RunReport
from airflow_provider_juspay.sync.settings import PushSettings, build_control
from airflow_provider_juspay.utils.metrics import emit as emit_metrics
from airflow_provider_juspay.utils.sql import db_api_hook

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context


class FulfilmentOperatorBase(BaseOperator):
    """Stores the shared arguments; every connection is looked up in ``execute``, never at parse time.

    :param juspay_conn_id: the ``juspay`` connection, default ``juspay_default``.
    :param column_map: ``{"source_column": "field"}`` renames.
    :param defaults: values for fields a row lacks, e.g. ``{"fulfillment_command": "NO_ACTION"}``.
    :param ledger_conn_id: a SQL connection (any ``DbApiHook``) holding the delivery ledger; when set,
        delivered keys are skipped and every attempt is recorded, so reruns and backfills are safe.
    :param ledger_table: the ledger's table, created when missing.
    :param on_change: a delivered key whose payload changed is ``send`` (default), ``skip`` or ``fail``.
    :param ledger_lease: seconds a key this run holds in flight is kept from other runs (default 60),
        renewed every quarter of it by a heartbeat while the run makes progress, judged on the ledger
        database's clock; a key left by a dead or stuck process goes again once it has passed. A run
        sends a key only while its lease holds (less a margin: a quarter of it, at most 5 s).
    :param ledger_wait_limit: longest wait, in seconds, for keys another run holds without renewing
        its lease (a dead run with a longer lease, a lease left by 0.2); default 900. Past it those
        rows are ``not_attempted`` (HELD_BY_STALLED_RUN) and the task fails, to be retried.
    :param run_history_days: days a run's row is kept in the run history (``juspay_sync_runs``, beside
        the ledger; the Juspay page reads it); older rows are removed by the next run that starts.
        Default 90.
    :param circuit_breaker: when the run stops sending because Juspay keeps failing
        (``BreakerPolicy``; default: 20 transient failures in a row, or 80% of the last 50 attempts,
        lasting 5 s; 3 answers in a row that are not Juspay's).
    """

    operator_extra_links = (JuspayDashboardLink(),)

    def __init__(
        self,
        *,
        juspay_conn_id: str = JuspayHook.default_conn_name,
        column_map: Mapping[str, str] | None = None,
        defaults: Mapping[str, Any] | None = None,
        ledger_conn_id: str | None = None,
        ledger_table: str = DEFAULT_TABLE,
        on_change: str = "send",
        ledger_lease: float = DEFAULT_LEASE_S,
        ledger_wait_limit: float = DEFAULT_WAIT_LIMIT_S,
        run_history_days: int = DEFAULT_RETENTION_DAYS,
        circuit_breaker: BreakerPolicy | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if on_change not in ON_CHANGE:
            raise ValueError(f"on_change must be one of {ON_CHANGE}, got {on_change!r}")
        if int(run_history_days) < 1:
            raise ValueError(f"run_history_days must be at least 1, got {run_history_days!r}")
        self.run_history_days = int(run_history_days)
        self.ledger_lease = ledger_lease
        self.ledger_wait_limit = ledger_wait_limit
        self.circuit_breaker = circuit_breaker
        self._control: RunControl | None = None
        # What this try did, for OpenLineage (read by the listener on the worker after execute).
        self._report: RunReport | None = None
        self._error: BaseException | None = None
        self.juspay_conn_id = juspay_conn_id
        self.column_map = column_map
        self.defaults = defaults
        self.ledger_conn_id = ledger_conn_id
        self.ledger_table = ledger_table
        self.on_change = on_change

    def hook_pool_size(self) -> int | None:
        """Connections the Juspay hook keeps open (the bulk operator sizes it to its concurrency)."""
        return None

    @cached_property
    def hook(self) -> JuspayHook:
        return JuspayHook(self.juspay_conn_id, pool_size=self.hook_pool_size())

    def run_control(
        self, settings: PushSettings, ledger: Ledger | None = None, max_batch: int | None = None
    ) -> RunControl:
        """The pace, breaker and stop of this task's run, built by the engine from ``settings`` (with
        the merchant's shared budget when ``ledger`` keeps one); ``on_kill`` cancels it."""
        self._control = build_control(settings, self.hook.client, ledger, max_batch=max_batch)
        return self._control

    def on_kill(self) -> None:
        """Stop the run within about a second (SIGTERM, a timeout, "mark failed"); see ``RunControl``."""
        if self._control is not None:
            self._control.cancel("Airflow asked the task to stop (SIGTERM, on_kill or a timeout)")

    def make_record(self, row: Mapping[str, Any]) -> FulfilmentRecord:
        """Validate one row with the connection's zone and commands, and this task's renames."""
        return self.hook.make_record(row, self.column_map, self.defaults)

    @contextmanager
    def open_ledger(self, context: Context) -> Iterator[Ledger | None]:
        """The ledger of this task try (None without ``ledger_conn_id``); its connection closes after.

        Nothing is written here: a run that sends calls ``ensure_table()``, a dry run reads only.
        """
        if not self.ledger_conn_id:
            yield None
            return
        sql_hook = db_api_hook(self.ledger_conn_id)
        connection = sql_hook.get_conn()
        placeholder = getattr(sql_hook, "placeholder", None)
        try:
            ti = context["ti"]
            ledger = Ledger(
                connection,
                merchant_id=self.hook.config.merchant_id,
                table=self.ledger_table,
                run=RunInfo(
                    dag_id=ti.dag_id,
                    run_id=ti.run_id,
                    task_id=ti.task_id,
                    try_number=ti.try_number,
                    map_index=getattr(ti, "map_index", None),
                ),
                lease_s=float(self.ledger_lease),
                wait_limit_s=float(self.ledger_wait_limit),
                retention_days=self.run_history_days,
                placeholder=placeholder if placeholder in ("?", "%s") else None,
                connect=sql_hook.get_conn,  # the heartbeat's own connection
            )
            try:
                yield ledger
            finally:
                ledger.close()
        finally:
            with contextlib.suppress(Exception):  # a connection that already failed must not mask why
                connection.close()

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage | None:
        """Lineage of a finished push: what it read, Juspay's ``orders/fulfillment`` and the counts."""
        return self._openlineage()

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> OperatorLineage | None:
        """The same for a failed push (with its counts so far, when it had any, and the error)."""
        return self._openlineage()

    def announce(self, context: Context) -> None:
        """Put this run's counts in the extra of the asset events of its ``outlets`` (Assets only).

        With a partition key (Airflow 3.2+ partitioned runs) the events carry it as well.
        """
        report, events = self._report, context.get("outlet_events")
        if report is None or events is None:
            return
        from airflow.sdk import Asset

        ti = context["ti"]
        partition_key = context.get("partition_key")
        extra: dict[str, Any] = {
            **report.counts_only(),
            "dag_id": ti.dag_id,
            "run_id": ti.run_id,
            "task_id": ti.task_id,
        }
        if getattr(ti, "map_index", -1) not in (None, -1):
            extra["map_index"] = ti.map_index
        if partition_key:
            extra["partition_key"] = partition_key
        merchant_id = self.hook.config.merchant_id
        for outlet in self.outlets:
            if not isinstance(outlet, Asset):
                continue
            named = merchant_of(outlet.uri)
            if named is not None and named != merchant_id:
                self.log.warning(
                    "outlet %s names merchant %r; this task pushed for %r", outlet.uri, named, merchant_id
                )
            try:
                event = events[outlet]
                event.extra.update(extra)
                if partition_key and hasattr(event, "add_partitions"):  # Airflow 3.2+
                    event.add_partitions(partition_key)
            except Exception as exc:  # the push is done and delivered: an event's extra must not fail it
                self.log.warning("asset event of %s carries no report: %s", outlet.uri, exc)

    def send_metrics(self, context: Context, report: RunReport) -> None:
        """The push's figures to Airflow's metrics (StatsD, OpenTelemetry), when the deployment has them."""
        ti = context["ti"]
        emit_metrics(
            report.to_dict(), dag_id=ti.dag_id, task_id=ti.task_id, merchant_id=self.hook.config.merchant_id
        )

    def suggest_a_ledger(self, report: RunReport) -> None:
        """Without a ledger, orders Juspay already had were sent again: say once how to skip them."""
        again = report.counts.get("already_fulfilled", 0)
        if self.ledger_conn_id or not again:
            return
        self.log.warning(
            "%d orders were already at Juspay (ALREADY_EXISTS): this task has no ledger, so it sent them "
            "again. Give it ledger_conn_id=<a SQL connection> (the warehouse's will do) and later runs skip "
            "what was delivered; Juspay de-duplicates only some commands (docs: the ledger).",
            again,
        )

    @contextmanager
    def recorded_run(self, ledger: Ledger | None) -> Iterator[Callable[[Any, str | None], None]]:
        """The run's row in the run history (``ledger`` None: none), started here and completed however
        the push ends: the body calls the given function with the push and its verdict; a push that
        raises is recorded ``failed`` with its error. Writing the history never fails the push."""
        if ledger is None:
            yield lambda pushed, problem: None
            return
        self._history(ledger.run_started)
        recorded = False

        def record(pushed: Any, problem: str | None) -> None:
            nonlocal recorded
            recorded = True
            stop = pushed.stop
            state = "stopped" if stop is not None else "failed" if problem else "success"
            report = pushed.report.to_dict()
            self._history(
                ledger.run_ended, state, report, stop_reason=stop and stop.error_code, error=problem
            )

        try:
            yield record
        except BaseException as exc:
            if not recorded:
                self._history(ledger.run_ended, "failed", None, error=f"{type(exc).__name__}: {exc}")
            raise

    def _history(self, write: Callable[..., None], *args: Any, **kwargs: Any) -> None:
        try:
            write(*args, **kwargs)
        except Exception as exc:  # a view of the run: the push goes on, and says so
            self.log.warning("The run history could not be written (%s: %s)", type(exc).__name__, exc)

    def judge(
        self, problem: str, report: RunReport, stop: Stop | None, *, min_rows: int | None = None
    ) -> None:
        """Fail the task of a run that is not done (``problem``: its verdict), both operators alike: with
        an Airflow retry where one can deliver more (``RunReport.retry_helps``), without one where the
        same rows would get the same answers or the connection must be fixed first."""
        retry = report.retry_helps(min_rows=min_rows)
        if stop is not None:
            message = _stopped(
                stop, self.juspay_conn_id, report.counts["not_attempted"], self.hook.config.base_url
            )
        elif retry:
            message = (
                f"{problem}; an Airflow retry (or the next run, with a ledger) sends only what was not "
                f"delivered. By error code: {report.errors}"
            )
        else:
            message = (
                f"{problem}; a retry would send the same rows and get the same answers: fix the data, the "
                f"column_map/defaults or the connection, then clear the task. By error code: {report.errors}"
            )
        raise self._failed(AirflowException(message) if retry else AirflowFailException(message))

    def _failed(self, error: BaseException) -> BaseException:
        """Remember why this try fails (for lineage) and hand the exception back to raise."""
        self._error = error
        return error

    def lineage_inputs(self) -> list[Any]:
        """The datasets this task reads (OpenLineage ``Dataset``s); records from XCom are none."""
        return []

    def _openlineage(self) -> OperatorLineage | None:
        try:
            from airflow_provider_juspay.operators import _lineage
        except ImportError:  # the OpenLineage provider is not installed: no lineage, no noise
            return None
        try:
            base_url: str | None = self.hook.config.base_url
        except Exception:  # an unusable connection is the task's own error, reported there
            base_url = None
        try:
            inputs = self.lineage_inputs()
        except Exception as exc:  # lineage must never hide the push's own outcome
            self.log.warning("OpenLineage could not name the tables the query reads: %s", exc)
            inputs = []
        return _lineage.lineage(base_url=base_url, report=self._report, inputs=inputs, error=self._error)


def _stopped(stop: Stop, conn_id: str, unsent: int, base_url: str) -> str:
    """What a stopped run's task says: why it stopped, how many rows went unsent, what to do."""
    if stop.error_code == ErrorCode.UNAUTHORIZED:
        return (
            f"Juspay at {endpoint_of(base_url)} refused the credentials of {conn_id!r} ({stop.error}); "
            f"{unsent} records were not attempted. A key works only in the environment that issued it: "
            "fix the connection's API key, merchant id or extra 'environment' (sandbox | production; "
            "the host field overrides it), then clear the task."
        )
    if stop.error_code == ErrorCode.UNEXPECTED_RESPONSES:
        return (
            f"{stop.message}; {unsent} records were not attempted. Fix the connection {conn_id!r}, "
            "then clear the task."
        )
    if stop.error_code in (ErrorCode.CIRCUIT_OPEN, ErrorCode.THROTTLED):
        return (
            f"{stop.message}; {unsent} records were not attempted. An Airflow retry sends them later "
            "(with a ledger, only what was not delivered)."
        )
    if stop.error_code == ErrorCode.LEASE_LOST:
        return (
            f"the run lost its ledger lease and stopped sending: {stop.message}; {unsent} records were not "
            "attempted. An Airflow retry sends what no run delivered; if pauses or a slow ledger database "
            "are common here, raise ledger_lease (see the ledger page)."
        )
    return f"the run stopped ({stop.error_code}): {stop.message}; {unsent} records not attempted"
