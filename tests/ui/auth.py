"""An auth manager with per-DAG rights for the page's tests: Airflow's simple auth manager, where user
``bob`` may not read the DAGs in ``HIDDEN_FROM_BOB``. Per-DAG rights need FAB or Keycloak, which do not
run here; this is the extension point those use (``is_authorized_dag``), configured as users do."""

from __future__ import annotations

from typing import Any

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

HIDDEN_FROM_BOB = {"juspay_nightly_sync"}


class PerDagAuthManager(SimpleAuthManager):
    def is_authorized_dag(
        self, *, method: Any, user: Any, access_entity: Any = None, details: Any = None
    ) -> bool:
        if user.get_name() == "bob" and details is not None and details.id in HIDDEN_FROM_BOB:
            return False
        return super().is_authorized_dag(
            method=method, user=user, access_entity=access_entity, details=details
        )
