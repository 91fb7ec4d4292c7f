"""The hook of a SQL connection: a type whose provider is missing is named with the package to install."""

from __future__ import annotations

import json

import pytest

from airflow_provider_juspay.utils.sql import db_api_hook


def test_a_warehouse_type_without_its_provider_names_the_package_to_install(monkeypatch):
    from importlib.util import find_spec

    if find_spec("airflow.providers.snowflake"):
        pytest.fail("this test needs a connection type whose provider is not installed; snowflake is")
    monkeypatch.setenv(
        "AIRFLOW_CONN_WH", json.dumps({"conn_type": "snowflake", "login": "u", "password": "s3cret-pw"})
    )
    with pytest.raises(Exception, match=r"pip install apache-airflow-providers-snowflake") as caught:
        db_api_hook("wh")
    assert "'wh' is of type 'snowflake'" in str(caught.value) and "s3cret-pw" not in str(caught.value)


def test_a_sqlite_warehouse_gives_its_hook(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_CONN_WH", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "w.db")}))
    assert type(db_api_hook("wh")).__name__ == "SqliteHook"
