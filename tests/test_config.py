"""Base URL and settings rules."""

from __future__ import annotations

import pytest

from airflow_provider_juspay.config import ClientConfig, RetryPolicy, Timeouts, base_url_for
from airflow_provider_juspay.errors import ConfigError


def test_environment_picks_juspays_documented_hosts():
    assert base_url_for(None, None) == "https://sandbox.juspay.in"
    assert base_url_for("", "Production") == "https://api.juspay.in"


def test_unknown_environment_is_named():
    with pytest.raises(ConfigError, match="staging"):
        base_url_for(None, "staging")


def test_host_without_scheme_means_https():
    assert base_url_for("api.juspay.io", None) == "https://api.juspay.io"


@pytest.mark.parametrize("url", ["http://127.0.0.1:8765", "http://localhost:1", "http://[::1]:8080"])
def test_plain_http_is_allowed_to_loopback(url):
    assert ClientConfig(base_url=url + "/", merchant_id="m", api_key="k").base_url == url


@pytest.mark.parametrize("url", ["http://api.juspay.in", "http://10.0.0.5:8080"])
def test_plain_http_elsewhere_is_refused(url):
    with pytest.raises(ConfigError, match="plain http"):
        ClientConfig(base_url=url, merchant_id="m", api_key="k")


def test_credentials_in_the_url_are_refused():
    with pytest.raises(ConfigError, match="credentials"):
        ClientConfig(base_url="https://user:pw@api.juspay.in", merchant_id="m", api_key="k")


@pytest.mark.parametrize("field, message", [("merchant_id", "merchant id"), ("api_key", "API key")])
def test_missing_credentials_name_the_field(field, message):
    kwargs = {"base_url": "https://api.juspay.in", "merchant_id": "m", "api_key": "k", field: ""}
    with pytest.raises(ConfigError, match=message):
        ClientConfig(**kwargs)


def test_a_timeout_is_always_set():
    with pytest.raises(ConfigError):
        Timeouts(read=0)
    assert Timeouts().read == 30.0 and Timeouts().connect == 10.0


def test_retry_policy_needs_one_attempt():
    with pytest.raises(ConfigError):
        RetryPolicy(max_attempts=0)


@pytest.mark.parametrize("merchant_id", ["m 1", "m\r\nx", "mérchant", "m" * 129])
def test_merchant_id_must_be_a_header_value_and_fit_the_ledger(merchant_id):
    with pytest.raises(ConfigError, match="merchant id"):
        ClientConfig(base_url="https://api.juspay.in", merchant_id=merchant_id, api_key="k")


def test_extra_commands_must_be_command_names():
    with pytest.raises(ConfigError, match="extra_commands"):
        ClientConfig(
            base_url="https://api.juspay.in", merchant_id="m", api_key="k", extra_commands=("SHIP IT",)
        )
    ok = ClientConfig(
        base_url="https://api.juspay.in", merchant_id="m", api_key="k", extra_commands=("SHIP_IT",)
    )
    assert ok.extra_commands == ("SHIP_IT",)


def test_deadline_and_answer_cap_are_checked():
    with pytest.raises(ConfigError, match="deadline"):
        Timeouts(deadline=0)
    with pytest.raises(ConfigError, match="max_answer_bytes"):
        ClientConfig(base_url="https://api.juspay.in", merchant_id="m", api_key="k", max_answer_bytes=10)
