"""OpenLineage for the push operators: warehouse table(s) -> Juspay, with the run's counts.

Imported only from the operators' ``get_openlineage_facets_on_*`` methods, so the provider works
without the OpenLineage provider (the ``openlineage`` extra installs it).

Naming (OpenLineage has no convention for HTTP APIs; this is ours): the output dataset's namespace is
the Juspay base URL's ``scheme://host[:port]`` (``https://api.juspay.in``), its name
``orders/fulfillment`` (the API's resource); a merchant's sends all land in that one dataset.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow.providers.openlineage.extractors import OperatorLineage
from attrs import define, field
from openlineage.client.event_v2 import Dataset, OutputDataset
from openlineage.client.facet_v2 import (
    RunFacet,
    error_message_run,
    output_statistics_output_dataset,
    schema_dataset,
)

from airflow_provider_juspay.fulfilment import Outcome
from airflow_provider_juspay.sync.report import RunReport

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook

__all__ = ["JUSPAY_DATASET_NAME", "JuspayFulfilmentRunFacet", "juspay_namespace", "lineage", "sql_inputs"]

log = logging.getLogger(__name__)

JUSPAY_DATASET_NAME = "orders/fulfillment"
#: Where our run facet is described (no JSON schema is published for it yet).
FACET_SCHEMA_URL = "https://pypi.org/project/airflow-provider-juspay/#JuspayFulfilmentRunFacet"

#: What a fulfilment sends (the schema facet of the output): form fields, and the routing header.
SENT_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("order_id", "string", "the order, as Juspay knows it"),
    ("fulfillment_status", "string", "SUCCESS or FAILURE"),
    ("fulfillment_command", "string", "e.g. NO_ACTION, INITIATE_REFUND"),
    ("fulfillment_time", "timestamp", "when it happened, in the connection's zone"),
    ("fulfillment_id", "string", "the merchant's reference of the fulfilment"),
    ("fulfillment_data", "string", "free text or JSON"),
    ("routing_id", "string", "sent as the x-routing-id header"),
)

# DB-API placeholders the SQL parser cannot read (%s, %(name)s, ?, :1); string literals and quoted
# names are matched first so that nothing inside them is touched.
_PLACEHOLDER = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|%\(\w+\)s|%s|\?|(?<![:\w]):\d+")


@define
class JuspayFulfilmentRunFacet(RunFacet):
    """The run's counts by outcome and error code, as the push task reports them."""

    total: int
    counts: dict[str, int]
    errors: dict[str, int] = field(factory=dict)
    failureCount: int = 0
    failureRatio: float = 0.0
    dryRun: bool = False
    stopped: str | None = None

    @staticmethod
    def _get_schema() -> str:
        return FACET_SCHEMA_URL

    @classmethod
    def of(cls, report: RunReport) -> JuspayFulfilmentRunFacet:
        stopped = report.stopped["error_code"] if report.stopped else None
        return cls(
            total=report.total,
            counts=dict(report.counts),
            errors=dict(report.errors),
            failureCount=report.failure_count,
            failureRatio=round(report.failure_ratio, 6),
            dryRun=report.dry_run,
            stopped=stopped,
        )


def juspay_namespace(base_url: str) -> str:
    """``scheme://host[:port]`` of a Juspay base URL: the namespace of what is sent there."""
    parts = urlsplit(base_url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def delivered(report: RunReport) -> int:
    """Rows this run delivered: Juspay accepted them now, or answered that it already had them."""
    return report.counts.get(Outcome.SENT.value, 0) + report.counts.get(Outcome.ALREADY_FULFILLED.value, 0)


def lineage(
    *,
    base_url: str | None,
    report: RunReport | None,
    inputs: list[Dataset] | None = None,
    error: BaseException | None = None,
) -> OperatorLineage:
    """The task's lineage: inputs, the Juspay output with its statistics and schema, run facets."""
    outputs: list[OutputDataset] = []
    if base_url:
        facets: dict[str, Any] = {
            "schema": schema_dataset.SchemaDatasetFacet(
                fields=[
                    schema_dataset.SchemaDatasetFacetFields(name=name, type=kind, description=about)
                    for name, kind, about in SENT_FIELDS
                ]
            )
        }
        output_facets: dict[str, Any] = {}
        if report is not None and not report.dry_run:
            statistics = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet
            output_facets["outputStatistics"] = statistics(rowCount=delivered(report))
        outputs.append(
            OutputDataset(
                namespace=juspay_namespace(base_url),
                name=JUSPAY_DATASET_NAME,
                facets=facets,
                outputFacets=output_facets,
            )
        )
    run_facets: dict[str, Any] = {}
    if report is not None:
        run_facets["juspayFulfilment"] = JuspayFulfilmentRunFacet.of(report)
    if error is not None:
        run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=str(error)[:2000], programmingLanguage="python"
        )
    return OperatorLineage(inputs=list(inputs or []), outputs=outputs, run_facets=run_facets)


def file_inputs(url: str) -> list[Dataset]:
    """The files a push reads, named as OpenLineage names files: ``s3://bucket`` + key, ``file://host``
    + path. A folder or a glob is named by its folder (the part before the first wildcard)."""
    import socket

    scheme, _, rest = url.partition("://") if "://" in url else ("file", "", url)
    authority, _, path = rest.partition("/") if scheme != "file" else ("", "", rest.lstrip("/"))
    authority = authority.rpartition("@")[2]  # an Airflow connection id is not part of the name
    parts = path.split("/")
    wild = next((i for i, part in enumerate(parts) if any(c in part for c in "*?[")), None)
    name = "/".join(parts if wild is None else parts[:wild]).rstrip("/")
    if scheme == "file":
        return [Dataset(namespace=f"file://{socket.getfqdn()}", name=f"/{name}")]
    return [Dataset(namespace=f"{scheme}://{authority}", name=name)]


def parseable(sql: str) -> str:
    """The query with its DB-API placeholders as NULL: the same tables, in a form the parser reads."""
    return _PLACEHOLDER.sub(lambda m: m.group(0) if m.group(0)[0] in "'\"" else "NULL", sql)


def sql_inputs(hook: DbApiHook, conn_id: str, sql: str) -> list[Dataset]:
    """The tables ``sql`` reads, named as common-sql's operators name them (the hook's database info).

    A hook with no database info (SQLite, generic ODBC) is named by its connection: ``sqlite:///path``
    for SQLite, ``<conn type>://host[:port]`` otherwise.
    """
    from airflow.providers.openlineage.sqlparser import DatabaseInfo, SQLParser

    connection = hook.get_connection(conn_id)
    info = hook.get_openlineage_database_info(connection)
    if info is not None:
        dialect = hook.get_openlineage_database_dialect(connection)
        schema = hook.get_openlineage_default_schema()
    elif connection.conn_type == "sqlite":
        info = DatabaseInfo(scheme="sqlite", authority=connection.host or "")
        dialect, schema = "sqlite", "main"
    else:
        authority = f"{connection.host}:{connection.port}" if connection.port else connection.host
        info = DatabaseInfo(scheme=connection.conn_type, authority=authority or None)
        dialect, schema = "generic", None
    try:
        from airflow.providers.openlineage.utils.utils import should_use_external_connection

        use_connection = should_use_external_connection(hook)
    except ImportError:
        use_connection = False
    found = SQLParser(dialect=dialect, default_schema=schema).generate_openlineage_metadata_from_sql(
        sql=parseable(sql),
        hook=hook,
        database_info=info,
        sqlalchemy_engine=None,
        use_connection=use_connection and connection.conn_type != "sqlite",
    )
    return list(found.inputs)
