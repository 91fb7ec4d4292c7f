"""JuspayHook: turns an Airflow connection of type ``juspay`` into a :class:`JuspayClient`.

The hook reads the ``juspay`` connection; the warehouse's and the ledger's are read by their own
hooks (``utils.sql.db_api_hook``), and lineage reads the warehouse's for its namespace. Fields:
login = merchant id, password = API key (Airflow masks it), host = optional base URL, extra
``environment`` = ``sandbox`` | ``production``. Optional extras and their defaults: ``connect_timeout``
10 s, ``read_timeout`` 30 s, ``request_deadline`` 60 s, ``max_attempts`` 5, ``initial_wait`` 0.5 s,
``max_wait`` 30 s, ``pool_size`` 32, ``timezone`` "UTC", ``extra_commands`` []. Any other extra is
refused when it looks like a misspelling of one of these, else ignored with a warning.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowFailException, mask_secret
from airflow.sdk import BaseHook

from airflow_provider_juspay.client import JuspayClient, basic_token
from airflow_provider_juspay.config import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_DEADLINE,
    DEFAULT_INITIAL_WAIT,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_WAIT,
    DEFAULT_POOL_SIZE,
    DEFAULT_READ_TIMEOUT,
    ClientConfig,
    RetryPolicy,
    Timeouts,
    base_url_for,
)
from airflow_provider_juspay.errors import ConfigError, JuspayError, MappingError
from airflow_provider_juspay.fulfilment import DEFAULT_TIMEZONE, FulfilmentRecord, FulfilmentResult
from airflow_provider_juspay.get_provider_info import CONN_FIELDS, UI_FIELD_BEHAVIOUR

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from airflow.sdk import Connection

__all__ = [
    "JuspayHook",
    "client_config_from_connection",
    "fail_without_retry_on_config_error",
    "refuse_other_types",
]


class JuspayHook(BaseHook):
    """Speaks Juspay's Fulfillment Sync and Order Status APIs with the credentials of one connection.

    :param juspay_conn_id: the Airflow connection (type ``juspay``), default ``juspay_default``.
    :param retry_policy: replaces the retry settings drawn from the connection's extras.
    :param pool_size: connections kept open; at least the bulk engine's concurrency.

    The connection is read once, when first needed (never at DAG parse time); a connection that cannot
    work raises ``ConfigError`` naming the field, and the operators fail without Airflow retries.
    """

    conn_name_attr = "juspay_conn_id"
    default_conn_name = "juspay_default"
    conn_type = "juspay"
    hook_name = "Juspay"

    def __init__(
        self,
        juspay_conn_id: str = default_conn_name,
        *,
        retry_policy: RetryPolicy | None = None,
        pool_size: int | None = None,
    ) -> None:
        super().__init__()
        self.juspay_conn_id = juspay_conn_id
        self._retry_policy = retry_policy
        self._pool_size = pool_size

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Hide schema/port and relabel login, password and host (Airflow 3.1 reads this)."""
        return UI_FIELD_BEHAVIOUR

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """The extras as form fields, for UIs that draw them from widgets (Airflow 3.1 with FAB).

        Airflow >= 3.2 reads ``conn-fields`` from the provider info instead; without wtforms there is
        nothing to draw, and the extras are still read from the JSON field.
        """
        try:
            from flask_appbuilder.fieldwidgets import BS3TextFieldWidget  # type: ignore[import-not-found]
            from flask_babel import lazy_gettext  # type: ignore[import-not-found]
            from wtforms import StringField  # type: ignore[import-untyped]
        except ImportError:
            return {}
        return {
            name: StringField(lazy_gettext(spec["label"]), widget=BS3TextFieldWidget())
            for name, spec in CONN_FIELDS.items()
        }

    @cached_property
    def connection(self) -> Connection:
        """The Airflow connection, fetched once."""
        return self.get_connection(self.juspay_conn_id)

    @cached_property
    def config(self) -> ClientConfig:
        """The client settings, checked once: a missing key or merchant id fails here, plainly."""
        config = client_config_from_connection(self.connection)
        # Airflow masks the password; the Basic token (base64 of "key:") is as secret: a gateway may echo it.
        mask_secret(basic_token(config.api_key))
        changes: dict[str, Any] = {}
        if self._retry_policy is not None:
            changes["retry"] = self._retry_policy
        if self._pool_size is not None:
            changes["pool_size"] = max(self._pool_size, config.pool_size)
        return replace(config, **changes) if changes else config

    @cached_property
    def client(self) -> JuspayClient:
        """One client (one connection pool) per hook, shared by all threads of a task."""
        return JuspayClient(self.config)

    def get_conn(self) -> JuspayClient:
        """The pooled client (Airflow's hook convention)."""
        return self.client

    def make_record(
        self,
        mapping: Mapping[str, Any],
        column_map: Mapping[str, str] | None = None,
        defaults: Mapping[str, Any] | None = None,
    ) -> FulfilmentRecord:
        """Validate a row with this connection's time zone and extra commands."""
        return FulfilmentRecord.from_mapping(
            mapping,
            column_map,
            defaults,
            extra_commands=self.config.extra_commands,
            timezone=self.config.timezone,
        )

    def fulfil(self, record: FulfilmentRecord | Mapping[str, Any]) -> FulfilmentResult:
        """Send one fulfilment (a record, or a mapping validated first) and return its outcome.

        :raises RecordError: the mapping broke a record rule.
        :raises AuthError: Juspay refused the credentials.
        """
        if not isinstance(record, FulfilmentRecord):
            record = self.make_record(record)
        return self.client.fulfil(record)

    def get_order_status(self, order_id: str) -> dict[str, Any]:
        """Juspay's view of one order (``GET /orders/{id}``)."""
        return self.client.get_order_status(order_id)

    def test_connection(self) -> tuple[bool, str]:
        """Check the credentials with a read that cannot change anything; never raises."""
        try:
            return self.client.test_connection()
        except JuspayError as exc:
            return False, str(exc)

    def close(self) -> None:
        """Close the client's connections, if it was ever built."""
        if "client" in self.__dict__:
            self.client.close()


@contextmanager
def fail_without_retry_on_config_error(conn_id: str) -> Iterator[None]:
    """A connection that cannot work, or a source whose columns name no required field, fails the task
    without Airflow retries, as a refused key does."""
    try:
        yield
    except MappingError as exc:  # the source's columns: a retry reads the same ones
        raise AirflowFailException(str(exc)) from exc
    except ConfigError as exc:
        raise AirflowFailException(f"connection {conn_id!r} cannot be used: {exc}") from exc


def client_config_from_connection(conn: Connection) -> ClientConfig:
    """Build the client settings from a ``juspay`` connection and its documented extras."""
    refuse_other_types(conn)
    extra = known_extras(conn.extra_dejson or {})
    extra_commands = extra.get("extra_commands") or ()
    if isinstance(extra_commands, str):
        extra_commands = [c for c in extra_commands.split(",") if c.strip()]
    return ClientConfig(
        base_url=base_url_for(conn.host, extra.get("environment"), conn.port),
        merchant_id=(conn.login or "").strip(),
        api_key=conn.password or "",
        timeouts=Timeouts(
            connect=_number(extra, "connect_timeout", DEFAULT_CONNECT_TIMEOUT),
            read=_number(extra, "read_timeout", DEFAULT_READ_TIMEOUT),
            deadline=_number(extra, "request_deadline", DEFAULT_DEADLINE),
        ),
        retry=RetryPolicy(
            max_attempts=int(_number(extra, "max_attempts", DEFAULT_MAX_ATTEMPTS)),
            initial_wait=_number(extra, "initial_wait", DEFAULT_INITIAL_WAIT),
            max_wait=_number(extra, "max_wait", DEFAULT_MAX_WAIT),
        ),
        pool_size=int(_number(extra, "pool_size", DEFAULT_POOL_SIZE)),
        timezone=str(extra.get("timezone") or DEFAULT_TIMEZONE),
        extra_commands=tuple(str(c).strip().upper() for c in extra_commands),
    )


#: The extras a ``juspay`` connection reads; any other key is a misspelling (refused) or ignored (said).
EXTRAS = tuple(CONN_FIELDS)
_FORM_PREFIX = "extra__juspay__"


def known_extras(extra: Mapping[str, Any]) -> dict[str, Any]:
    """The extras by their documented names (the form's old ``extra__juspay__`` prefix dropped).

    A key close to a documented one (``enviroment``) is refused naming it: ignored, it would silently
    send to the default environment. Other keys are said once and ignored."""
    known: dict[str, Any] = {}
    for key, value in extra.items():
        name = key[len(_FORM_PREFIX) :] if key.startswith(_FORM_PREFIX) else key
        if name in EXTRAS:
            known[name] = value
            continue
        close = difflib.get_close_matches(name, EXTRAS, n=1, cutoff=0.75)
        if close:
            raise ConfigError(
                f"connection extra {key!r} is not one the juspay connection reads: did you mean "
                f"{close[0]!r}? (known: {', '.join(EXTRAS)})"
            )
        log.warning("Connection extra %r is not one the juspay connection reads; ignored (known: %s)",
                    key, ", ".join(EXTRAS))  # fmt: skip
    return known


def refuse_other_types(conn: Connection) -> None:
    """Only a ``juspay`` connection is one: another type's login and password never leave the process."""
    if conn.conn_type == JuspayHook.conn_type:
        return
    raise ConfigError(
        f"connection {conn.conn_id!r} is of type {conn.conn_type!r}, not 'juspay'; nothing was sent "
        "(its credentials stay here). Pass juspay_conn_id= a connection of type juspay (login = merchant "
        "id, password = API key), e.g. AIRFLOW_CONN_JUSPAY_DEFAULT='juspay://<merchant id>:<API key>@', "
        "and keep the warehouse's connection for sql_conn_id / ledger_conn_id."
    )


def _number(extra: Mapping[str, Any], name: str, default: float) -> float:
    value = extra.get(name)
    if value is None or value == "":
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"connection extra {name!r} must be a number, got {value!r}") from None
