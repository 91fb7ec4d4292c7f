"""FulfilmentReportNotifier: a sync's outcome, in a few lines, to whatever notifier a team already uses."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.notifier import BaseNotifier

from airflow_provider_juspay.sync.report import RunReport
from airflow_provider_juspay.utils.xcom import REPORT_KEY

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["MESSAGE_KEY", "FulfilmentReportNotifier"]

#: The context key the message is put under, for the template of the notifier that delivers it.
MESSAGE_KEY = "juspay_report"


class FulfilmentReportNotifier(BaseNotifier):
    """Renders the report of a push task (or a failure sensor's) and delivers it.

    Use it as ``on_failure_callback`` / ``on_success_callback`` of a push task or a
    ``FulfilmentFailureSensor`` (the report of that task is read), or of a DAG with ``task_id`` naming the
    task to read. The message: the dag and run ids, counts by outcome, the top error codes and the first
    failed order ids with their messages.

    :param notifier: delivers the message: any Airflow notifier (Slack, SMTP, ...), whose templates can use
        ``{{ juspay_report }}`` (e.g. ``SlackNotifier(text="{{ juspay_report }}")``), or a callable taking
        the message. None: the message goes to the task log.
    :param task_id: the task whose report is read (templated); default the task of the callback.
    :param max_failures_listed: failed orders named in the message, default 5.
    """

    template_fields: Sequence[str] = ("task_id",)

    def __init__(
        self,
        *,
        notifier: BaseNotifier | Callable[[str], Any] | None = None,
        task_id: str | None = None,
        max_failures_listed: int = 5,
    ) -> None:
        super().__init__()
        self.notifier = notifier
        self.task_id = task_id
        self.max_failures_listed = max_failures_listed

    def notify(self, context: Context) -> None:
        message = self.message(context)
        if self.notifier is None:
            self.log.info("%s", message)
        elif isinstance(self.notifier, BaseNotifier):
            self.notifier({**context, MESSAGE_KEY: message})  # its templates see the message
        else:
            self.notifier(message)

    def message(self, context: Context | Mapping[str, Any]) -> str:
        """The few lines this notifier sends (also when no report can be found: it says so)."""
        ti = context["ti"]
        task_id = self.task_id or ti.task_id
        # On a failure sensor the cause is in the log of the push it checks, not in the sensor's.
        pushed_by = getattr(context.get("task"), "sync_task_id", None) if not self.task_id else None
        where = f"Juspay sync {ti.dag_id} / {ti.run_id}, task {pushed_by or task_id}"
        if pushed_by:
            where += f" (checked by {ti.task_id})"
        report = self._report(ti, task_id)
        if report is None:
            return (
                f"{where}: no report was pushed (the task failed before it had one); "
                f"the cause is in the log of task {pushed_by or task_id}."
            )
        headline = report.undone() or (
            "failures: " + str(report.failure_count) if report.failure_count else "ok"
        )
        tail = (
            f"\nEvery failure and why: the log of task {pushed_by}."
            if pushed_by and report.failure_count
            else ""
        )
        return f"{where}: {headline}\n{report.summary(failures_shown=self.max_failures_listed)}{tail}"

    def _report(self, ti: Any, task_id: str) -> RunReport | None:
        pushed = ti.xcom_pull(task_ids=task_id, key=REPORT_KEY)
        if isinstance(pushed, Mapping) and "counts" in pushed:
            return RunReport.from_dict(pushed)
        if (
            isinstance(pushed, list)
            and pushed
            and all(isinstance(p, Mapping) and "counts" in p for p in pushed)
        ):
            return RunReport.merge(RunReport.from_dict(p) for p in pushed)  # mapped shards
        return None
