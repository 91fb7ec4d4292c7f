"""The hook of any SQL connection, for the warehouse a bulk push reads and the ledger it writes."""

from __future__ import annotations

from typing import TYPE_CHECKING

# Exceptions live in airflow.sdk from 3.2 and in airflow.exceptions in 3.1: common-compat picks.
from airflow.providers.common.compat.sdk import AirflowException

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook

__all__ = ["db_api_hook"]

#: Connection types whose provider's package is not named after them.
_PROVIDERS = {"google_cloud_platform": "google", "gcpbigquery": "google", "mssql": "microsoft-mssql"}


def db_api_hook(conn_id: str) -> DbApiHook:
    """The hook of a SQL connection; anything but a ``DbApiHook`` is refused by name."""
    from airflow.providers.common.sql.hooks.sql import DbApiHook
    from airflow.sdk import BaseHook

    connection = BaseHook.get_connection(conn_id)
    try:
        hook = connection.get_hook()
    except Exception as exc:  # Airflow knows no hook of this type: its provider is not installed
        if "hook type" not in str(exc).lower():
            raise
        conn_type = str(connection.conn_type)
        package = _PROVIDERS.get(conn_type, conn_type.replace("_", "-"))
        raise AirflowException(
            f"connection {conn_id!r} is of type {connection.conn_type!r}, and no installed Airflow provider "
            f"reads it: pip install apache-airflow-providers-{package} (docs: the warehouse connection)"
        ) from exc
    if not isinstance(hook, DbApiHook):
        raise AirflowException(
            f"connection {conn_id!r} gives a {type(hook).__name__}, not a DbApiHook: "
            "it must name a SQL database"
        )
    return hook
