"""The "Juspay dashboard" button of the push operators: the portal of the connection's environment."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import BaseOperatorLink

from airflow_provider_juspay.config import portal_url

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

__all__ = ["JuspayDashboardLink"]


class JuspayDashboardLink(BaseOperatorLink):
    """Juspay's merchant dashboard (sandbox or production, from the connection's base URL).

    Airflow computes it on the worker when the task ends: it reads the connection the task already
    used and makes no request.
    """

    name = "Juspay dashboard"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        hook = getattr(operator, "hook", None)
        try:
            return portal_url(hook.config.base_url) if hook is not None else ""
        except Exception:  # an unusable connection has no dashboard; the task's own error says why
            return ""
