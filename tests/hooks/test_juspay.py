"""JuspayHook: the connection contract, the form, the test button, and the hook's calls."""

from __future__ import annotations

import base64
import json
import logging
import socket
import subprocess
import sys

import pytest

from airflow_provider_juspay.config import BASE_URLS
from airflow_provider_juspay.errors import ConfigError, RecordError
from airflow_provider_juspay.fulfilment import Outcome
from airflow_provider_juspay.get_provider_info import get_provider_info
from airflow_provider_juspay.hooks.juspay import JuspayHook
from tests.helpers import API_KEY, MERCHANT_ID, conn_json

GOOD = {"order_id": "H-1", "fulfillment_status": "SUCCESS", "fulfillment_command": "INVOICE"}


def set_conn(monkeypatch, conn_id: str, **fields) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "juspay", **fields}))


def test_env_var_connection_form_from_the_design_works(monkeypatch, sandbox):
    monkeypatch.setenv(
        "AIRFLOW_CONN_JUSPAY_DEFAULT",
        json.dumps(
            {"conn_type": "juspay", "login": MERCHANT_ID, "password": API_KEY, "host": sandbox.base_url}
        ),
    )
    hook = JuspayHook()
    assert hook.fulfil(GOOD).outcome is Outcome.SENT
    assert hook.config.base_url == sandbox.base_url and hook.config.merchant_id == MERCHANT_ID


def test_extras_configure_the_client(monkeypatch):
    set_conn(
        monkeypatch,
        "jp",
        login="m1",
        password=API_KEY,
        extra={
            "environment": "production",
            "connect_timeout": "3",
            "read_timeout": 12,
            "max_attempts": 2,
            "timezone": "Asia/Kolkata",
            "extra_commands": "ship_it, hold",
            "pool_size": 64,
            "request_deadline": 20,
        },
    )
    config = JuspayHook("jp").config
    assert config.timeouts.deadline == 20.0
    assert config.base_url == BASE_URLS["production"]
    assert (config.timeouts.connect, config.timeouts.read, config.retry.max_attempts) == (3.0, 12.0, 2)
    assert (config.timezone, config.extra_commands, config.pool_size) == (
        "Asia/Kolkata",
        ("SHIP_IT", "HOLD"),
        64,
    )


def test_defaults_without_extras_are_the_documented_ones(monkeypatch):
    set_conn(monkeypatch, "jp", login="m1", password=API_KEY)
    config = JuspayHook("jp").config
    assert config.base_url == "https://sandbox.juspay.in"
    assert (config.timeouts.connect, config.timeouts.read, config.retry.max_attempts) == (10.0, 30.0, 5)
    assert (config.timeouts.deadline, config.max_answer_bytes) == (60.0, 1024 * 1024)
    assert config.timezone == "UTC"


def test_missing_api_key_is_named_plainly(monkeypatch):
    set_conn(monkeypatch, "jp", login="m1")
    with pytest.raises(ConfigError, match="API key is missing"):
        _ = JuspayHook("jp").config


def test_bad_extra_is_named(monkeypatch):
    set_conn(monkeypatch, "jp", login="m1", password=API_KEY, extra={"read_timeout": "soon"})
    with pytest.raises(ConfigError, match="read_timeout"):
        _ = JuspayHook("jp").config


def test_plain_http_to_a_remote_host_is_refused(monkeypatch):
    set_conn(monkeypatch, "jp", login="m1", password=API_KEY, host="http://juspay.example.com")
    ok, message = JuspayHook("jp").test_connection()
    assert not ok and "plain http" in message


def test_connection_test_button(monkeypatch, sandbox):
    monkeypatch.setenv("AIRFLOW_CONN_GOOD", conn_json(sandbox.base_url))
    monkeypatch.setenv(
        "AIRFLOW_CONN_BAD", conn_json(sandbox.base_url).replace(API_KEY, "sk_test_revoked_key_1")
    )
    assert JuspayHook("good").test_connection()[0] is True
    ok, message = JuspayHook("bad").test_connection()
    assert ok is False and "refused" in message
    assert sum(sandbox.accepted.values()) == 0, "the test button changes nothing"


def test_fulfil_validates_mappings_with_the_connection_zone(monkeypatch, sandbox):
    monkeypatch.setenv("AIRFLOW_CONN_JUSPAY_DEFAULT", conn_json(sandbox.base_url, timezone="Asia/Kolkata"))
    hook = JuspayHook()
    hook.fulfil({**GOOD, "fulfillment_time": "2026-11-26T13:00:00Z"})
    assert sandbox.requests[0].form["fulfillment_time"] == "2026-11-26T18:30:00"
    with pytest.raises(RecordError):
        hook.fulfil({**GOOD, "fulfillment_command": "NOPE"})


def test_get_order_status(juspay_conn):
    assert JuspayHook(juspay_conn).get_order_status("S-1")["status"] == "CHARGED"


def test_one_client_per_hook(juspay_conn):
    hook = JuspayHook(juspay_conn)
    assert hook.get_conn() is hook.client


def test_hook_errors_and_logs_never_show_the_key(monkeypatch, sandbox, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("AIRFLOW_CONN_JUSPAY_DEFAULT", conn_json(sandbox.base_url, max_attempts=2))
    hook = JuspayHook()
    sandbox.script("error", 2)
    texts = [repr(hook.fulfil(GOOD)), repr(hook.config), repr(hook.client)]
    monkeypatch.setenv("AIRFLOW_CONN_WRONG", conn_json(sandbox.base_url).replace(API_KEY, API_KEY + "9"))
    texts.append(JuspayHook("wrong").test_connection()[1])
    texts.append(caplog.text)
    assert all(API_KEY not in text for text in texts)


def test_the_basic_token_is_masked_like_the_password(monkeypatch, sandbox):
    from airflow.providers.common.compat.sdk import redact

    monkeypatch.setenv("AIRFLOW_CONN_JUSPAY_DEFAULT", conn_json(sandbox.base_url))
    JuspayHook().config  # noqa: B018 (reading the config registers the secrets)
    token = base64.b64encode(f"{API_KEY}:".encode()).decode()
    shown = redact(f"a gateway said: Authorization: Basic {token}")
    assert token not in shown and "***" in shown


def test_provider_info_declares_the_connection_type():
    [conn] = get_provider_info()["connection-types"]
    assert conn["connection-type"] == "juspay"
    assert conn["hook-class-name"] == "airflow_provider_juspay.hooks.juspay.JuspayHook"
    assert conn["ui-field-behaviour"]["relabeling"] == {
        "login": "Merchant ID",
        "password": "API key",
        "host": "Base URL (optional)",
    }
    assert set(conn["ui-field-behaviour"]["hidden-fields"]) == {"schema", "port"}
    assert {"environment", "connect_timeout", "read_timeout", "max_attempts", "timezone"} <= set(
        conn["conn-fields"]
    )
    assert JuspayHook.get_ui_field_behaviour()["relabeling"] == conn["ui-field-behaviour"]["relabeling"]


def test_airflow_lists_the_provider_and_its_connection_type():
    providers = subprocess.run(
        [sys.executable, "-m", "airflow", "providers", "list", "-o", "json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert "airflow-provider-juspay" in providers.stdout
    hooks = subprocess.run(
        [sys.executable, "-m", "airflow", "providers", "hooks", "-o", "json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    listing = next(line for line in hooks.stdout.splitlines() if line.startswith("["))
    entries = {h["connection_type"]: h for h in json.loads(listing)}
    assert entries["juspay"]["class"] == "airflow_provider_juspay.hooks.juspay.JuspayHook"


def test_provider_info_follows_the_schema_airflow_ships_and_names_importable_things():
    import importlib
    import importlib.resources

    import jsonschema

    schema = json.loads(
        importlib.resources.files("airflow").joinpath("provider_info.schema.json").read_text()
    )
    info = get_provider_info()
    jsonschema.validate(info, schema)  # raises, naming the key, when the provider info drifts
    modules = [
        m
        for key in ("hooks", "operators", "sensors", "triggers")
        for e in info[key]
        for m in e["python-modules"]
    ]
    classes = [c["hook-class-name"] for c in info["connection-types"]] + info["notifications"]
    classes += info["extra-links"]
    assert modules and classes
    for module in modules:
        importlib.import_module(module)
    for path in classes:
        module, _, name = path.rpartition(".")
        assert isinstance(getattr(importlib.import_module(module), name), type), path
    [uris] = info["asset-uris"]
    assert uris["schemes"] == ["juspay"]
    for path in (uris["handler"], uris["factory"]):
        module, _, name = path.rpartition(".")
        assert callable(getattr(importlib.import_module(module), name)), path


# -- the connection forms users write, and connections that are not Juspay's (issue 17) ---------------


def test_uri_form_keeps_host_port_and_extras_like_the_json_form(monkeypatch, sandbox):
    """``AIRFLOW_CONN_X='juspay://m:key@127.0.0.1:8765?...'``: Airflow splits host and port; both are kept."""
    host, port = "127.0.0.1", sandbox.port
    monkeypatch.setenv(
        "AIRFLOW_CONN_JP_URI",
        f"juspay://{MERCHANT_ID}:{API_KEY}@{host}:{port}?environment=production&read_timeout=7&max_attempts=2",
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_JP_JSON",
        json.dumps(
            {
                "conn_type": "juspay",
                "login": MERCHANT_ID,
                "password": API_KEY,
                "host": host,
                "port": port,
                "extra": {"environment": "production", "read_timeout": "7", "max_attempts": 2},
            }
        ),
    )
    uri, js = JuspayHook("jp_uri").config, JuspayHook("jp_json").config
    assert uri == js
    # A loopback host without a scheme is the sandbox: plain http, as "http://" in the JSON form.
    assert uri.base_url == f"http://127.0.0.1:{port}" == sandbox.base_url
    assert (uri.timeouts.read, uri.retry.max_attempts) == (7.0, 2)
    assert JuspayHook("jp_uri").fulfil(GOOD).outcome is Outcome.SENT


def test_a_remote_host_without_scheme_is_https_with_its_port(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_JP", f"juspay://m1:{API_KEY}@api.juspay.io:8443")
    assert JuspayHook("jp").config.base_url == "https://api.juspay.io:8443"
    set_conn(
        monkeypatch, "jp2", login="m1", password=API_KEY, host="https://proxy.example.com/juspay", port=9443
    )
    assert JuspayHook("jp2").config.base_url == "https://proxy.example.com:9443/juspay"


@pytest.mark.parametrize(
    "uri",
    [
        "postgresql://wh_user:wh-secret-pw@127.0.0.1:{port}/warehouse",
        "http://wh_user:wh-secret-pw@127.0.0.1:{port}",
        "sqlite://wh_user:wh-secret-pw@127.0.0.1:{port}",
    ],
)
def test_a_connection_of_another_type_is_refused_before_any_request(monkeypatch, sandbox, uri):
    """Its login and password never leave the process, and the message says what to pass instead."""
    with socket.socket() as listener:  # where the other connection points: nothing may arrive there
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.settimeout(0.2)
        monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_PG", uri.format(port=listener.getsockname()[1]))
        hook = JuspayHook("warehouse_pg")
        with pytest.raises(ConfigError) as info:
            hook.fulfil(GOOD)
        ok, message = hook.test_connection()
        with pytest.raises(TimeoutError):
            listener.accept()
    text = str(info.value)
    assert "'warehouse_pg'" in text and "not 'juspay'" in text and "juspay_conn_id" in text
    assert text.split("type ")[1].startswith(repr(uri.split(":")[0].replace("postgresql", "postgres")))
    assert not ok and "not 'juspay'" in message
    assert "wh-secret-pw" not in text + message
    assert sandbox.requests == []


def test_a_refused_key_names_the_environment_and_url(monkeypatch, sandbox):
    set_conn(monkeypatch, "jp", login=MERCHANT_ID, password="sk_live_not_this_sandbox", host=sandbox.base_url)
    ok, message = JuspayHook("jp").test_connection()
    assert not ok and f"a local sandbox ({sandbox.base_url})" in message and "environment" in message
    assert "sk_live_not_this_sandbox" not in message


def test_a_misspelled_extra_is_refused_naming_the_one_meant_and_other_keys_are_said(caplog):
    from airflow.models.connection import Connection

    from airflow_provider_juspay.errors import ConfigError
    from airflow_provider_juspay.hooks.juspay import client_config_from_connection

    def conn(extra):
        return Connection(conn_id="j", conn_type="juspay", login="m1", password="k", extra=extra)

    with pytest.raises(ConfigError, match=r"'enviroment' .* did you mean 'environment'"):
        client_config_from_connection(conn({"enviroment": "production"}))
    with pytest.raises(ConfigError, match=r"did you mean 'read_timeout'"):
        client_config_from_connection(conn({"read_timout": 5}))
    prefixed = client_config_from_connection(conn({"extra__juspay__environment": "production"}))
    assert prefixed.base_url == "https://api.juspay.in", "the form's prefixed key is read"
    with caplog.at_level("WARNING"):
        config = client_config_from_connection(conn({"team": "payments", "environment": "production"}))
    assert config.base_url == "https://api.juspay.in"
    assert "'team' is not one the juspay connection reads; ignored" in caplog.text
