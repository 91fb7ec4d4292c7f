"""Operators that tell Juspay what happened to orders."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_provider_juspay.fulfilment import RECORD_FIELDS, FulfilmentResult
from airflow_provider_juspay.hooks.juspay import JuspayHook
from airflow_provider_juspay.sync.dispatcher import Dispatcher
from airflow_provider_juspay.sync.records import validate_rows

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["FulfilmentSyncOperator"]

#: Above this many records, the bulk operator is the better tool (concurrency, ledger, report).
SHORT_LIST = 100


class FulfilmentSyncOperator(BaseOperator):
    """Send the fulfilment of one order, or of a short list of orders, to Juspay.

    Give either the fields of one order (``order_id``, ``fulfillment_status``, ...) or ``records``, a
    list of mappings such as an upstream task's XCom. Every argument is templated.

    Returns (XCom) the result as a dict for one order, or a list of dicts for ``records``. The task
    fails when any record ends ``rejected``, ``failed`` or ``invalid``, unless ``fail_on_error=False``;
    the results are pushed to XCom under ``results`` first so a notifier can name the orders.

    :param juspay_conn_id: the ``juspay`` connection, default ``juspay_default``.
    :param records: mappings with record fields (or source names mapped by ``column_map``).
    :param column_map: ``{"source_column": "field"}`` renames for ``records``.
    :param defaults: values for fields a record lacks, e.g. ``{"fulfillment_command": "NO_ACTION"}``.
    :param fail_on_error: fail the task when any record was not delivered (default True).
    """

    template_fields: Sequence[str] = (
        "juspay_conn_id",
        *RECORD_FIELDS[:7],
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
        column_map: Mapping[str, str] | None = None,
        defaults: Mapping[str, Any] | None = None,
        juspay_conn_id: str = JuspayHook.default_conn_name,
        fail_on_error: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (order_id is None) == (records is None):
            raise ValueError("give exactly one of order_id (one order) or records (a list of mappings)")
        self.order_id = order_id
        self.fulfillment_status = fulfillment_status
        self.fulfillment_command = fulfillment_command
        self.fulfillment_time = fulfillment_time
        self.fulfillment_id = fulfillment_id
        self.fulfillment_data = fulfillment_data
        self.routing_id = routing_id
        self.records = records
        self.column_map = column_map
        self.defaults = defaults
        self.juspay_conn_id = juspay_conn_id
        self.fail_on_error = fail_on_error

    @cached_property
    def hook(self) -> JuspayHook:
        return JuspayHook(self.juspay_conn_id)

    def execute(self, context: Context) -> dict[str, Any] | list[dict[str, Any]]:
        single = self.records is None
        rows = [self._single_row()] if single else _as_rows(self.records)
        if len(rows) > SHORT_LIST:
            self.log.warning(
                "%d records: BulkFulfilmentOperator sends them concurrently, with a report", len(rows)
            )

        def make_record(row: Mapping[str, Any]) -> Any:
            return self.hook.make_record(row, self.column_map, self.defaults)

        dispatcher = Dispatcher(self.hook.client.fulfil, max_concurrency=1)
        try:
            results = list(dispatcher.run(validate_rows(rows, make_record)))
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
        if dispatcher.stopped_by is not None:
            context["ti"].xcom_push(key="results", value=payload)
            raise AirflowFailException(f"Juspay refused the credentials of {self.juspay_conn_id!r}")
        self._raise_on_failures(results, context, payload)
        return payload[0] if single else payload

    def _single_row(self) -> dict[str, Any]:
        names = RECORD_FIELDS[:7]
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}

    def _raise_on_failures(
        self, results: list[FulfilmentResult], context: Context, payload: list[dict[str, Any]]
    ) -> None:
        failures = [r for r in results if r.outcome.is_failure or r.outcome.value == "not_attempted"]
        if not failures or not self.fail_on_error:
            return
        context["ti"].xcom_push(key="results", value=payload)
        shown = "; ".join(
            f"{r.order_id}: {r.outcome.value} {r.error_code or ''} {r.message or ''}".strip()
            for r in failures[:10]
        )
        raise AirflowException(f"{len(failures)} of {len(results)} fulfilments not delivered: {shown}")


def _as_rows(records: Any) -> list[Mapping[str, Any]]:
    """Accept a list of mappings, one mapping, or their JSON text (a rendered template)."""
    if isinstance(records, str):
        try:
            records = json.loads(records)
        except ValueError:
            raise ValueError("records is text but not JSON; give a list of mappings") from None
    if isinstance(records, Mapping):
        return [records]
    return list(records)
