"""Sensors: turn a sync's failures into a visible task result, and wait for an order to be paid."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

# Exceptions live in airflow.sdk from 3.2 and in airflow.exceptions in 3.1: common-compat picks.
from airflow.providers.common.compat.sdk import (
    AirflowFailException,
)
from airflow.sdk import BaseSensorOperator

from airflow_provider_juspay.fulfilment import Outcome
from airflow_provider_juspay.hooks.juspay import JuspayHook
from airflow_provider_juspay.hooks.sql import db_api_hook

# Users import OrderStatusSensor from here too (the first releases kept both sensors in this module).
from airflow_provider_juspay.sensors.order_status import OrderStatusSensor
from airflow_provider_juspay.sync.ledger import DEFAULT_TABLE, Ledger
from airflow_provider_juspay.sync.report import undone_reason

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["FulfilmentFailureSensor", "OrderStatusSensor"]


class FulfilmentFailureSensor(BaseSensorOperator):
    """Wait for a sync to finish, then pass if its failures are within limits, else fail with the list.

    Reads the report of ``sync_task_id`` (a ``BulkFulfilmentOperator`` in the same DAG run; set this
    sensor's ``trigger_rule="all_done"`` to check failed syncs too), or, with ``ledger_conn_id``, the
    ledger rows of ``run_id`` or of the window ``[since, until)`` (ISO UTC times), e.g. from a
    separate monitoring DAG. It keeps waiting while the sync has not reported (or, in the ledger,
    while keys are in flight).

    On success and on failure it pushes ``failures`` to XCom: counts by outcome and error code and
    the failed order ids with messages (at most ``max_listed``), for a notifier to send.

    :param max_failures: failures (rejected, failed, invalid, not attempted) allowed.
    :param max_failure_ratio: share of failures allowed. Each limit given is checked; with neither,
        no failure is allowed.
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
        max_listed: int = 20,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (sync_task_id is None) == (ledger_conn_id is None):
            raise ValueError(
                "give exactly one of sync_task_id (its XCom report) or ledger_conn_id (the ledger)"
            )
        if ledger_conn_id is not None and run_id is None and since is None:
            raise ValueError("with ledger_conn_id, give run_id or a time window (since, until)")
        self.sync_task_id = sync_task_id
        self.max_failures = 0 if max_failures is None and max_failure_ratio is None else max_failures
        self.max_failure_ratio = max_failure_ratio
        self.ledger_conn_id = ledger_conn_id
        self.ledger_table = ledger_table
        self.run_id = run_id
        self.since = since
        self.until = until
        self.juspay_conn_id = juspay_conn_id
        self.max_listed = max_listed

    def poke(self, context: Context) -> bool:
        summary = self._summary_from_ledger() if self.ledger_conn_id else self._summary_from_report(context)
        if summary is None:
            self.log.info("The sync has not finished yet")
            return False
        summary["failures"] = summary["failures"][: self.max_listed]
        context["ti"].xcom_push(key="failures", value=summary)
        if summary["undone"]:
            # The rule every task that judges a run keeps: undelivered rows fail it, whatever the limits.
            raise AirflowFailException(
                "; ".join(summary["undone"])
                + "\n"
                + _failure_message(summary, self.max_failures, self.max_failure_ratio)
            )
        failed, total = summary["failed"], summary["total"]
        ratio = failed / total if total else 0.0
        within = (self.max_failures is None or failed <= self.max_failures) and (
            self.max_failure_ratio is None or ratio <= self.max_failure_ratio
        )
        if within:
            self.log.info("%d of %d fulfilments not delivered: within the limits", failed, total)
            return True
        raise AirflowFailException(_failure_message(summary, self.max_failures, self.max_failure_ratio))

    def _summary_from_report(self, context: Context) -> dict[str, Any] | None:
        ti = context["ti"]
        report = ti.xcom_pull(task_ids=self.sync_task_id, key="return_value")
        if report is None:
            report = ti.xcom_pull(task_ids=self.sync_task_id, key="report")
        if report is None:
            return None
        reports = [report] if isinstance(report, Mapping) else [r for r in report if r]  # mapped syncs
        if not reports:
            return None
        counts: dict[str, int] = {}
        errors: dict[str, int] = {}
        failures: list[dict[str, Any]] = []
        failed = 0
        undone = [reason for one in reports if (reason := undone_reason(one))]
        for one in reports:
            for outcome, n in one["counts"].items():
                counts[outcome] = counts.get(outcome, 0) + n
            for code, n in one["errors"].items():
                errors[code] = errors.get(code, 0) + n
            failures += one["failures"]
            not_delivered = [
                # In a dry run, not_attempted only means "valid, would be sent".
                o
                for o in Outcome
                if o.is_undelivered and not (one.get("dry_run") and o is Outcome.NOT_ATTEMPTED)
            ]
            failed += sum(one["counts"].get(o.value, 0) for o in not_delivered)
        total = sum(counts.values())
        return {
            "total": total,
            "counts": counts,
            "errors": errors,
            "failures": failures,
            "failed": failed,
            "undone": undone,
        }

    def _summary_from_ledger(self) -> dict[str, Any] | None:
        merchant_id = JuspayHook(self.juspay_conn_id).config.merchant_id
        connection = db_api_hook(self.ledger_conn_id).get_conn()
        try:
            ledger = Ledger(connection, merchant_id=merchant_id, table=self.ledger_table)
            summary = ledger.summary(run_id=self.run_id, since=self.since, until=self.until)
        finally:
            connection.close()
        if summary["in_flight"]:
            self.log.info("%d fulfilments are still in flight", summary["in_flight"])
            return None
        counts = summary["counts"]
        as_report = {
            "total": summary["total"],
            "counts": {
                **{o.value: counts.get(o.value, 0) for o in Outcome},
                "not_attempted": counts.get("not_attempted", 0) + counts.get("abandoned", 0),
            },
        }
        reason = undone_reason(as_report)
        summary["undone"] = [reason] if reason else []
        return summary


def _failure_message(summary: Mapping[str, Any], max_failures: int | None, max_ratio: float | None) -> str:
    limits = []
    if max_failures is not None:
        limits.append(f"max_failures={max_failures}")
    if max_ratio is not None:
        limits.append(f"max_failure_ratio={max_ratio:.1%}")
    limit = ", ".join(limits)
    lines = [
        f"{summary['failed']} of {summary['total']} fulfilments were not delivered ({limit}).",
        f"By outcome: {summary['counts']}. By error code: {summary['errors']}.",
    ]
    lines += [
        f"  {f['order_id']}: {f['outcome']} {f.get('error_code') or ''} {f.get('message') or ''}".rstrip()
        for f in summary["failures"]
    ]
    return "\n".join(lines)
