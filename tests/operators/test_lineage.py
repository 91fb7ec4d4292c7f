"""The pieces of the push operators' OpenLineage: names, the SQL inputs, life without OpenLineage."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_juspay.operators._lineage import (
    JUSPAY_DATASET_NAME,
    file_inputs,
    juspay_namespace,
    lineage,
    parseable,
    sql_inputs,
)
from airflow_provider_juspay.sync.report import RunReport
from airflow_provider_juspay.utils.sql import db_api_hook
from tests.helpers import REPO


@pytest.mark.parametrize(
    ("base_url", "namespace"),
    [
        ("https://api.juspay.in", "https://api.juspay.in"),
        ("https://sandbox.juspay.in/", "https://sandbox.juspay.in"),
        ("http://127.0.0.1:8123/prefix/v2", "http://127.0.0.1:8123"),
        ("https://user:secret@api.juspay.in", "https://api.juspay.in"),
    ],
)
def test_the_juspay_namespace_is_scheme_and_host_only(base_url, namespace):
    assert juspay_namespace(base_url) == namespace


@pytest.mark.parametrize(
    ("sql", "readable"),
    [
        ("SELECT * FROM t WHERE d = %s", "SELECT * FROM t WHERE d = NULL"),
        ("SELECT * FROM t WHERE d = %(day)s AND s = ?", "SELECT * FROM t WHERE d = NULL AND s = NULL"),
        ("SELECT * FROM t WHERE d = :1", "SELECT * FROM t WHERE d = NULL"),
        *[(kept, kept) for kept in ("SELECT '%s?', \"a?b\" FROM t WHERE d::date = :day",)],
        ("SELECT 'it''s ?' FROM t", "SELECT 'it''s ?' FROM t"),
    ],
)
def test_placeholders_are_read_as_null_and_literals_are_left_alone(sql, readable):
    assert parseable(sql) == readable


@given(st.text(alphabet="?%s():1 ab_'\"", max_size=60))
def test_no_placeholder_is_left_outside_quotes_and_a_second_pass_changes_nothing(sql):
    readable = parseable(sql)
    assert parseable(readable) == readable
    if "'" not in sql and '"' not in sql:
        assert "?" not in readable and "%s" not in readable


def test_the_output_has_the_delivered_rows_and_the_run_the_counts():
    report = RunReport(total=10, counts={"sent": 6, "already_fulfilled": 1, "rejected": 3}, errors={"X": 3})
    found = lineage(base_url="https://api.juspay.in/", report=report)
    (output,) = found.outputs
    assert (output.namespace, output.name) == ("https://api.juspay.in", JUSPAY_DATASET_NAME)
    assert output.outputFacets["outputStatistics"].rowCount == 7
    facet = found.run_facets["juspayFulfilment"]
    assert (facet.total, facet.counts["rejected"], facet.errors, facet.failureCount) == (10, 3, {"X": 3}, 3)
    assert "errorMessage" not in found.run_facets


def test_a_dry_run_states_no_row_count_and_an_unusable_connection_no_output():
    dry = lineage(base_url="https://api.juspay.in", report=RunReport(total=5, dry_run=True))
    assert dry.outputs[0].outputFacets == {}
    failed = lineage(base_url=None, report=None, error=RuntimeError("no such connection"))
    assert failed.outputs == [] and failed.run_facets["errorMessage"].message == "no such connection"


@pytest.mark.parametrize(
    ("url", "namespace", "name"),
    [
        ("s3://aws_conn@drops/courier/2026-11-26/*.csv", "s3://drops", "courier/2026-11-26"),
        ("gs://bucket/day/orders.parquet", "gs://bucket", "day/orders.parquet"),
        ("s3://drops/courier/", "s3://drops", "courier"),
    ],
)
def test_files_are_named_as_openlineage_names_files(url, namespace, name):
    [dataset] = file_inputs(url)
    assert (dataset.namespace, dataset.name) == (namespace, name)


def test_local_files_are_named_by_host_and_absolute_path():
    [plain] = file_inputs("/data/drop/*.csv")
    [url] = file_inputs("file:///data/drop/x.csv")
    assert plain.namespace == url.namespace and plain.namespace.startswith("file://")
    assert (plain.name, url.name) == ("/data/drop", "/data/drop/x.csv")


@pytest.mark.postgres
def test_a_postgres_query_with_placeholders_names_its_tables(postgres_warehouse):
    hook = db_api_hook("warehouse_pg")
    sql = (
        "SELECT f.order_id, f.fulfillment_status FROM fulfilments f "
        "JOIN public.fulfilments g ON g.id = f.id WHERE f.updated_at >= %(start)s AND f.id > %s"
    )
    found = sql_inputs(hook, "warehouse_pg", sql)
    connection = hook.get_connection("warehouse_pg")
    assert {(d.namespace, d.name) for d in found} == {
        (f"postgres://{connection.host}:{connection.port}", f"{connection.schema}.public.fulfilments")
    }


def test_without_openlineage_the_operators_run_and_report_no_lineage():
    """The provider must not need OpenLineage: with it unimportable, lineage is simply None."""
    script = """
import sys
sys.modules["openlineage"] = None  # the OpenLineage client, which the OpenLineage provider needs
from airflow_provider_juspay.operators.fulfilment import BulkFulfilmentOperator, FulfilmentSyncOperator
bulk = BulkFulfilmentOperator(task_id="b", records=[])
single = FulfilmentSyncOperator(task_id="s", order_id="ORD-1", fulfillment_status="SUCCESS")
print(bulk.get_openlineage_facets_on_complete(None), single.get_openlineage_facets_on_failure(None))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "None None"
