"""OrderStatusSensor: wait until Juspay reports an order paid (or in another target status)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

# Exceptions live in airflow.sdk from 3.2 and in airflow.exceptions in 3.1: common-compat picks.
from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowFailException,
    AirflowSkipException,
    conf,
)
from airflow.sdk import BaseSensorOperator

from airflow_provider_juspay.errors import NotFound
from airflow_provider_juspay.hooks.juspay import JuspayHook, fail_without_retry_on_config_error
from airflow_provider_juspay.order_status import DEFAULT_TARGETS, OrderStatus, Verdict, judge
from airflow_provider_juspay.triggers.order_status import OrderStatusTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["OrderStatusSensor"]


def _default_deferrable() -> bool:
    return conf.getboolean("operators", "default_deferrable", fallback=False)


def _waiting_since(context: Context, reschedule: bool) -> float:
    """Epoch seconds the wait began: in reschedule mode, the first try's (as Airflow's timeout counts)."""
    if reschedule:
        first = context["ti"].get_first_reschedule_date(context)
        if first is not None:
            return first.timestamp()
    return time.time()


class OrderStatusSensor(BaseSensorOperator):
    """Wait until Juspay reports an order in a target status (default CHARGED, which fulfilment needs).

    Fails at once on a status the order will not leave (declined, authentication or authorisation
    failed, auto-refunded), and on NOT_FOUND once ``not_found_grace`` has passed. With
    ``deferrable=True`` it waits in the triggerer (``OrderStatusTrigger``), which only reads.

    :param order_id: the order to watch (templated).
    :param target_statuses: statuses that end the wait successfully, default ``CHARGED``: a list, or
        comma-separated text (templated).
    :param juspay_conn_id: the ``juspay`` connection, default ``juspay_default`` (templated).
    :param not_found_grace: seconds during which an unknown order is waited for, default 600.
    :param deferrable: wait in the triggerer (default: Airflow's ``operators.default_deferrable``).
    """

    template_fields: Sequence[str] = ("order_id", "juspay_conn_id", "target_statuses")

    def __init__(
        self,
        *,
        order_id: str,
        target_statuses: Sequence[str] = DEFAULT_TARGETS,
        juspay_conn_id: str = JuspayHook.default_conn_name,
        not_found_grace: float = 600.0,
        deferrable: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.order_id = order_id
        self.target_statuses = target_statuses  # templated: normalised once rendered (targets())
        self.juspay_conn_id = juspay_conn_id
        self.not_found_grace = not_found_grace
        self.deferrable = _default_deferrable() if deferrable is None else deferrable
        self._waiting_since: float | None = None

    def targets(self) -> list[str]:
        """The rendered ``target_statuses`` as a list: one status, a comma-separated text, or a list."""
        value = self.target_statuses
        if isinstance(value, str):
            value = value.split(",")
        return [str(status).strip().upper() for status in value if str(status).strip()]

    @cached_property
    def hook(self) -> JuspayHook:
        return JuspayHook(self.juspay_conn_id)

    def poke(self, context: Context) -> bool:
        with fail_without_retry_on_config_error(self.juspay_conn_id):
            return self._poke(context)

    def _poke(self, context: Context) -> bool:
        if self._waiting_since is None:
            self._waiting_since = _waiting_since(context, self.reschedule)
        try:
            status = str(self.hook.get_order_status(self.order_id).get("status", ""))
        except NotFound:
            status = OrderStatus.NOT_FOUND.value
        expired = time.time() - self._waiting_since >= self.not_found_grace
        verdict, message = judge(status, self.targets(), not_found_expired=expired)
        self.log.info("Order %s: %s", self.order_id, message)
        if verdict is Verdict.FAILED:
            raise AirflowFailException(f"order {self.order_id}: {message}")
        return verdict is Verdict.REACHED

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        if self.poke(context):  # already there: no need to defer
            return None
        now = time.time()
        waiting_since = self._waiting_since if self._waiting_since is not None else now  # set by poke()
        grace_left = max(0.0, waiting_since + self.not_found_grace - now)
        self.defer(
            trigger=OrderStatusTrigger(
                order_id=self.order_id,
                juspay_conn_id=self.juspay_conn_id,
                target_statuses=self.targets(),
                poll_interval=self.poke_interval,
                end_time=now + self.timeout,
                not_found_until=now + grace_left,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> str | None:
        """Resume after the trigger: return the status reached, or fail with the trigger's message."""
        if event["status"] == Verdict.REACHED.value:
            self.log.info("Order %s: %s", event["order_id"], event["message"])
            return event["order_status"]
        message = f"order {event['order_id']}: {event['message']}"
        if event["status"] == "timeout" and self.soft_fail:
            raise AirflowSkipException(message)
        if event["status"] == "error":
            raise AirflowException(message)
        raise AirflowFailException(message)
