"""What Airflow learns of this provider without importing it: the connection type and its form,
hooks, operators, sensors, triggers, notifications, extra links and asset URIs."""

from __future__ import annotations

from typing import Any

from airflow_provider_juspay import __version__

#: Connection form extras; Airflow >= 3.2 draws the form from these without importing the hook.
CONN_FIELDS: dict[str, dict[str, Any]] = {
    "environment": {
        "label": "Environment",
        "description": "sandbox (https://sandbox.juspay.in) or production (https://api.juspay.in); "
        "ignored when Base URL is set.",
        "schema": {"type": ["string", "null"], "enum": ["sandbox", "production", None], "default": "sandbox"},
    },
    "connect_timeout": {
        "label": "Connect timeout (s)",
        "schema": {"type": ["number", "null"], "default": 10},
    },
    "read_timeout": {
        "label": "Read timeout (s)",
        "schema": {"type": ["number", "null"], "default": 30},
    },
    "request_deadline": {
        "label": "Request deadline (s)",
        "description": "the whole exchange: connect, send and the complete answer",
        "schema": {"type": ["number", "null"], "default": 60},
    },
    "max_attempts": {
        "label": "Attempts per request",
        "description": "Transient errors (429, 5xx, timeouts) are retried up to this many attempts in all.",
        "schema": {"type": ["integer", "null"], "default": 5},
    },
    "initial_wait": {
        "label": "First retry wait (s)",
        "description": "Backoff doubles from this, capped at the maximum wait, plus jitter.",
        "schema": {"type": ["number", "null"], "default": 0.5},
    },
    "max_wait": {
        "label": "Maximum retry wait (s)",
        "description": "Also caps how long a 429's Retry-After is honoured.",
        "schema": {"type": ["number", "null"], "default": 30},
    },
    "pool_size": {
        "label": "Connections kept open",
        "schema": {"type": ["integer", "null"], "default": 32},
    },
    "extra_commands": {
        "label": "Extra fulfilment commands",
        "description": "Comma-separated commands enabled for this merchant beyond Juspay's documented ones.",
        "schema": {"type": ["string", "null"]},
    },
    "timezone": {
        "label": "Fulfilment time zone",
        "description": "IANA zone that aware fulfilment times are converted to before sending.",
        "schema": {"type": ["string", "null"], "default": "UTC"},
    },
}

UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden_fields": ["schema", "port"],
    "relabeling": {"login": "Merchant ID", "password": "API key", "host": "Base URL (optional)"},
    "placeholders": {
        "login": "merchant id issued by Juspay",
        "host": "https://sandbox.juspay.in (default from Environment)",
        "extra": '{"environment": "sandbox"}',
    },
}


def get_provider_info() -> dict[str, Any]:
    """Describe the provider to Airflow's ProvidersManager (the ``apache_airflow_provider`` entry point)."""
    return {
        "package-name": "airflow-provider-juspay",
        "name": "Juspay",
        "description": "Sync order fulfilments (delivered, failed, refunded, protested, invoiced) to Juspay.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Juspay",
                "external-doc-url": "https://juspay.io/in/docs/api-reference/docs/express-checkout/order-fulfillment-sync",
                "tags": ["service"],
            }
        ],
        "hooks": [{"integration-name": "Juspay", "python-modules": ["airflow_provider_juspay.hooks.juspay"]}],
        "operators": [
            {"integration-name": "Juspay", "python-modules": ["airflow_provider_juspay.operators.fulfilment"]}
        ],
        "sensors": [
            {
                "integration-name": "Juspay",
                "python-modules": [
                    "airflow_provider_juspay.sensors.fulfilment",
                    "airflow_provider_juspay.sensors.order_status",
                ],
            }
        ],
        "triggers": [
            {
                "integration-name": "Juspay",
                "python-modules": ["airflow_provider_juspay.triggers.order_status"],
            }
        ],
        "asset-uris": [
            {
                "schemes": ["juspay"],
                "handler": "airflow_provider_juspay.assets.juspay.sanitize_uri",
                "factory": "airflow_provider_juspay.assets.juspay.create_asset",
            }
        ],
        "notifications": ["airflow_provider_juspay.notifications.fulfilment.FulfilmentReportNotifier"],
        "extra-links": ["airflow_provider_juspay.operators.links.JuspayDashboardLink"],
        "config": {
            "juspay": {
                "description": "What the Juspay page in Airflow's UI reads (set on the API server).",
                "options": {
                    "ledger_conn_id": {
                        "description": "The SQL connection(s) holding the ledger your pushes' ledger_conn_id "
                        "names, comma-separated when a deployment has several; an entry may name its table "
                        "as conn_id:schema.table. Empty: the page says how to set it.",
                        "version_added": "1.1.0",
                        "type": "string",
                        "example": "warehouse, finance_ledger:analytics.juspay_fulfilment_ledger",
                        "default": "",
                    },
                    "ledger_table": {
                        "description": "The ledger table of entries that do not name one (the operators' "
                        "ledger_table); the run history is read beside it.",
                        "version_added": "1.1.0",
                        "type": "string",
                        "example": "analytics.juspay_fulfilment_ledger",
                        "default": "juspay_fulfilment_ledger",
                    },
                },
            }
        },
        "connection-types": [
            {
                "hook-class-name": "airflow_provider_juspay.hooks.juspay.JuspayHook",
                "hook-name": "Juspay",
                "connection-type": "juspay",
                "ui-field-behaviour": {
                    "hidden-fields": UI_FIELD_BEHAVIOUR["hidden_fields"],
                    "relabeling": UI_FIELD_BEHAVIOUR["relabeling"],
                    "placeholders": UI_FIELD_BEHAVIOUR["placeholders"],
                },
                "conn-fields": CONN_FIELDS,
            }
        ],
    }
