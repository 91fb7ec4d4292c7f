"""The Juspay plugin: the page in the navigation and a tab on every DAG run (Airflow >= 3.1).

Registered by the ``airflow.plugins`` entry point, so a default installation loads it (with
``lazy_discover_providers`` a plugin named only in provider info is not). On Airflow 3.0, which has no
external views, the plugin is empty and the provider works without it.
"""

from __future__ import annotations

from typing import Any

from airflow import __version__ as airflow_version
from airflow.plugins_manager import AirflowPlugin
from packaging.version import Version

__all__ = ["JuspayPlugin", "supported"]


def supported(version: str = airflow_version) -> bool:
    """Whether this Airflow shows plugin pages (external views arrived in 3.1)."""
    return Version(version).release[:2] >= (3, 1)


class _PageApp:
    """The page's ASGI app, built on its first request: only the API server ever builds it. Workers and
    schedulers load plugins too; they never import FastAPI's security or the page for it."""

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            from airflow_provider_juspay.ui.app import create_app

            self._app = create_app()
        await self._app(scope, receive, send)


#: Where the API server mounts the page (``ui.app.URL_PREFIX``, without importing it).
URL_PREFIX = "/juspay"
_APPS: list[dict[str, Any]] = [{"app": _PageApp(), "url_prefix": URL_PREFIX, "name": "Juspay syncs"}]
_VIEWS: list[dict[str, Any]] = [
    # hrefs relative to the UI's base, so a deployment under a path prefix works
    {"name": "Juspay syncs", "href": "juspay/", "url_route": "juspay", "category": "browse"},
    {
        "name": "Juspay",
        "href": "juspay/run?dag_id={DAG_ID}&run_id={RUN_ID}",
        "url_route": "juspay-run",
        "destination": "dag_run",
    },
]


class JuspayPlugin(AirflowPlugin):
    """The Juspay page (``/juspay/``) and the DAG-run tab, read-only views of the ledger."""

    name = "juspay"
    fastapi_apps = _APPS if supported() else []
    external_views = _VIEWS if supported() else []
