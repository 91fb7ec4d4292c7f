"""OrderStatusTrigger: polls ``GET /orders/{id}`` from the triggerer; read-only, so safe to run twice."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_juspay.errors import JuspayError, NotFound
from airflow_provider_juspay.hooks.juspay import JuspayHook
from airflow_provider_juspay.order_status import OrderStatus, Verdict, judge

__all__ = ["OrderStatusTrigger"]


class OrderStatusTrigger(BaseTrigger):
    """Yields one event: ``success``, ``failed``, ``timeout`` or ``error``, with the last status seen.

    :param order_id: the order to watch.
    :param juspay_conn_id: the ``juspay`` connection.
    :param target_statuses: statuses that end the wait successfully.
    :param poll_interval: seconds between reads.
    :param end_time: wall-clock epoch seconds after which the wait is over (it crosses processes).
    :param not_found_until: epoch seconds until which NOT_FOUND means "not yet" rather than failure.
    """

    def __init__(
        self,
        *,
        order_id: str,
        juspay_conn_id: str,
        target_statuses: Sequence[str],
        poll_interval: float,
        end_time: float,
        not_found_until: float,
    ) -> None:
        super().__init__()
        self.order_id = order_id
        self.juspay_conn_id = juspay_conn_id
        self.target_statuses = list(target_statuses)
        self.poll_interval = poll_interval
        self.end_time = end_time
        self.not_found_until = not_found_until

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "order_id": self.order_id,
                "juspay_conn_id": self.juspay_conn_id,
                "target_statuses": self.target_statuses,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
                "not_found_until": self.not_found_until,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = JuspayHook(self.juspay_conn_id)
        status = None
        try:
            while True:
                try:
                    # The hook is synchronous: one thread per poll, no second HTTP client to keep in step.
                    payload = await asyncio.to_thread(hook.get_order_status, self.order_id)
                    status = str(payload.get("status", ""))
                except NotFound:
                    status = OrderStatus.NOT_FOUND.value
                verdict, message = judge(
                    status, self.target_statuses, not_found_expired=time.time() >= self.not_found_until
                )
                if verdict is not Verdict.WAITING:
                    yield self._event(verdict.value, status, message)
                    return
                if time.time() >= self.end_time:
                    yield self._event("timeout", status, f"timed out: {message}")
                    return
                await asyncio.sleep(self.poll_interval)
        except JuspayError as exc:
            yield self._event("error", status, f"{type(exc).__name__}: {exc}")
        finally:
            await asyncio.to_thread(hook.close)

    def _event(self, outcome: str, status: str | None, message: str) -> TriggerEvent:
        return TriggerEvent(
            {"status": outcome, "order_id": self.order_id, "order_status": status, "message": message}
        )
