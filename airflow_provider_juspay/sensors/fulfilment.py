"""Sensors: turn a sync's failures into a visible task result, and wait for an order to be paid."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

# Exceptions live in airflow.sdk from 3.2 and in airflow.exceptions in 3.1: common-compat picks.
from airflow.providers.common.compat.sdk import (
    AirflowFailException,
)
from airflow.sdk import BaseSensorOperator

from airflow_provider_juspay.hooks.juspay import JuspayHook, fail_without_retry_on_config_error

# Users import OrderStatusSensor from here too (the first releases kept both sensors in this module).
from airflow_provider_juspay.sensors.order_status import OrderStatusSensor
from airflow_provider_juspay.sync.ledger import DEFAULT_TABLE, Ledger
from airflow_provider_juspay.sync.report import RunReport, checked_limits
from airflow_provider_juspay.utils.deprecations import refuse_removed
from airflow_provider_juspay.utils.sql import db_api_hook
from airflow_provider_juspay.utils.xcom import DEPRECATED_FAILURES_KEY, REPORT_KEY

if TYPE_CHECKING:
    from airflow.sdk import Context

#: Task-instance states after which a push task pushes nothing more.
_ENDED = frozenset({"success", "failed", "upstream_failed", "skipped", "removed"})
#: Ended states of an instance that had nothing to push, so no report is owed.
_NOTHING_TO_DO = frozenset({"skipped", "removed"})

__all__ = ["FulfilmentFailureSensor", "OrderStatusSensor"]


class FulfilmentFailureSensor(BaseSensorOperator):
    """Wait for a sync to finish, then pass if its failures are within limits, else fail with the list.

    Reads the report of ``sync_task_id`` (a ``BulkFulfilmentOperator`` in the same DAG run, mapped or not:
    shards' reports are added up; set this sensor's ``trigger_rule="all_done"`` to check failed syncs
    too), or, with ``ledger_conn_id``, the ledger rows of ``run_id`` or of the window ``[since, until)``
    (ISO UTC times), e.g. from a separate monitoring DAG. It keeps waiting while the sync has not
    reported (or, in the ledger, while keys are in flight in a live run).

    It judges with the rule every task keeps (``RunReport.verdict``): rows ``failed`` or
    ``not_attempted`` fail it whatever the limits; otherwise the failures (rejected, failed, invalid,
    not attempted) must be within ``max_failures`` and ``max_failure_ratio`` (with neither given, none is
    allowed, as on every task). On success and on failure it pushes the report to XCom under ``report``
    (at most ``max_failures_listed`` failures listed), for a notifier to send; the key ``failures``
    holds it too, deprecated (removed in 2.0).

    :param sync_task_id: the push task whose report is read (templated).
    :param ledger_conn_id: or a SQL connection holding the ledger (templated).
    :param ledger_table: the ledger's table, default ``juspay_fulfilment_ledger``.
    :param run_id: with a ledger: the Airflow run id whose keys are judged (templated).
    :param since: with a ledger: the window's start, ISO UTC (templated).
    :param until: with a ledger: the window's end, ISO UTC, exclusive (templated).
    :param juspay_conn_id: the ``juspay`` connection, for its merchant id (templated).
    :param max_failures: failures allowed (a count). With neither limit, none is allowed.
    :param max_failure_ratio: share of failures allowed (0 to 1).
    :param max_failures_listed: failures listed in the message and the XCom value, default 20.
    """

    template_fields: Sequence[str] = (
        "sync_task_id",
        "ledger_conn_id",
        "run_id",
        "since",
        "until",
        "juspay_conn_id",
    )
    ui_color = "#fdecea"

    def __init__(
        self,
        *,
        sync_task_id: str | None = None,
        max_failures: int | None = None,
        max_failure_ratio: float | None = None,
        ledger_conn_id: str | None = None,
        ledger_table: str = DEFAULT_TABLE,
        run_id: str | None = None,
        since: str | None = None,
        until: str | None = None,
        juspay_conn_id: str = JuspayHook.default_conn_name,
        max_failures_listed: int = 20,
        **kwargs: Any,
    ) -> None:
        refuse_removed(kwargs, {"max_listed": "max_failures_listed"})
        super().__init__(**kwargs)
        if (sync_task_id is None) == (ledger_conn_id is None):
            raise ValueError(
                "give exactly one of sync_task_id (its XCom report) or ledger_conn_id (the ledger)"
            )
        if ledger_conn_id is not None and run_id is None and since is None:
            raise ValueError("with ledger_conn_id, give run_id or a time window (since, until)")
        self.sync_task_id = sync_task_id
        self.max_failures, self.max_failure_ratio = checked_limits(max_failures, max_failure_ratio)
        self.ledger_conn_id = ledger_conn_id
        self.ledger_table = ledger_table
        self.run_id = run_id
        self.since = since
        self.until = until
        self.juspay_conn_id = juspay_conn_id
        self.max_failures_listed = max_failures_listed

    def poke(self, context: Context) -> bool:
        with fail_without_retry_on_config_error(self.juspay_conn_id):
            return self._poke(context)

    def _poke(self, context: Context) -> bool:
        report = self._report_from_ledger() if self.ledger_conn_id else self._report_of_the_sync(context)
        if report is None:
            self.log.info("The sync has not finished yet")
            return False
        report.failures = report.failures[: self.max_failures_listed]
        context["ti"].xcom_push(key=REPORT_KEY, value=report.to_dict())
        context["ti"].xcom_push(key=DEPRECATED_FAILURES_KEY, value=report.to_dict())
        problem = report.verdict(max_failures=self.max_failures, max_failure_ratio=self.max_failure_ratio)
        if problem is None:
            self.log.info(
                "%d of %d fulfilments not delivered: within the limits", report.failure_count, report.total
            )
            return True
        raise AirflowFailException(f"{problem}\n{report.format(failures_shown=self.max_failures_listed)}")

    def _report_of_the_sync(self, context: Context) -> RunReport | None:
        """The sync's report (shards' added up), once every instance of it has ended with one."""
        ti = context["ti"]
        pushed = ti.xcom_pull(task_ids=self.sync_task_id, key=REPORT_KEY)
        if pushed is None:
            reports = []
        else:
            reports = [pushed] if isinstance(pushed, Mapping) else [r for r in pushed if r]  # mapped syncs
        states = self._sync_states(ti)
        if states is not None:
            if not states or any(state not in _ENDED for state in states.values()):
                return None  # still running (or not expanded yet): never judge part of a sync
            reporting = {name: state for name, state in states.items() if state not in _NOTHING_TO_DO}
            if len(reports) < len(reporting):
                # A push that fails before it has counted its rows (a query that does not run, a file
                # missing, a column check) pushes no report: its rows are not delivered.
                unreported = sorted(name for name, state in reporting.items() if state != "success")
                raise AirflowFailException(
                    f"{len(reporting) - len(reports)} of {len(reporting)} instances of "
                    f"{self.sync_task_id!r} ended without a report "
                    f"({', '.join(f'{n}: {reporting[n]}' for n in unreported)}): they stopped before their "
                    "rows were pushed and counted. See their logs, fix, and clear them."
                )
        if not reports:
            return None
        return RunReport.merge(RunReport.from_dict(one) for one in reports)

    def _sync_states(self, ti: Any) -> dict[str, str] | None:
        """The state of each instance of the sync task in this run (by ``task_id`` or ``task_id_N``), or
        None where the task instance cannot tell (a test's stand-in)."""
        get_task_states = getattr(ti, "get_task_states", None)
        if get_task_states is None:
            return None
        by_run = get_task_states(dag_id=ti.dag_id, task_ids=[self.sync_task_id], run_ids=[ti.run_id])
        states = by_run.get(ti.run_id, {})
        return {name: str(getattr(state, "value", state)) for name, state in states.items()}

    def _report_from_ledger(self) -> RunReport | None:
        merchant_id = JuspayHook(self.juspay_conn_id).config.merchant_id
        connection = db_api_hook(str(self.ledger_conn_id)).get_conn()
        try:
            ledger = Ledger(connection, merchant_id=merchant_id, table=self.ledger_table)
            report = ledger.run_report(run_id=self.run_id, since=self.since, until=self.until)
        finally:
            connection.close()
        if report.in_flight:
            self.log.info("%d fulfilments are still in flight", report.in_flight)
            return None
        return report
