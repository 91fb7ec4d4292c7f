"""The IETF RateLimit headers: parsed in both drafts' forms, followed by the pacer, sent by the sandbox."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_juspay.fulfilment import FulfilmentRecord
from airflow_provider_juspay.ratelimit import RateLimitHint, parse_rate_limit
from airflow_provider_juspay.sync.concurrency import AdaptiveLimit
from airflow_provider_juspay.sync.control import RunControl
from airflow_provider_juspay.sync.engine import push
from airflow_provider_juspay.sync.pacer import POLICY_SHARE, Pacer
from airflow_provider_juspay.sync.report import ReportBuilder
from airflow_provider_juspay.sync.settings import PushSettings


@pytest.mark.parametrize(
    "rate_limit, policy, expected",
    [
        ('"default";r=0;t=7', '"default";q=100;w=10', RateLimitHint(10.0, 0.0, 7.0)),
        ("limit=100, remaining=3, reset=7", "100;w=10", RateLimitHint(10.0, 3.0, 7.0)),
        (None, "400", RateLimitHint(400.0, None, None)),
        ('"a";r=5;t=1', '"a";q=50;w=1, "b";q=1000;w=3600', RateLimitHint(50.0, 5.0, 1.0)),
        ("nonsense", None, None),
        (None, None, None),
    ],
)
def test_both_drafts_forms_are_read(rate_limit, policy, expected):
    assert parse_rate_limit(rate_limit, policy) == expected


def test_a_published_quota_caps_the_pace_and_a_used_up_one_holds_until_reset():
    now = [100.0]
    pacer = Pacer(None, clock=lambda: now[0])
    pacer.advise(RateLimitHint(rate=200.0))
    assert pacer.rate == pytest.approx(200 * POLICY_SHARE)
    pacer.advise(RateLimitHint(remaining=0, reset_s=3.0))
    assert pacer.reserve() == pytest.approx(3.0)
    capped = Pacer(50, clock=lambda: now[0])
    capped.advise(RateLimitHint(rate=200.0))
    assert capped.rate == 50, "rate_limit stays a hard cap"


def test_a_server_that_publishes_its_limit_is_followed_without_429s(ledger_client, sandbox):
    sandbox.configure(rate_limit=150, publish_rate_limit=True, latency=0.01)
    pacer = Pacer(None)
    control = RunControl(pacer=pacer, limiter=AdaptiveLimit())
    rows = [
        {"order_id": f"RL-{i}", "fulfillment_status": "SUCCESS", "fulfillment_command": "NO_ACTION"}
        for i in range(300)
    ]
    report = push(
        rows,
        report=ReportBuilder(),
        make_record=FulfilmentRecord.from_mapping,
        client=ledger_client,
        control=control,
        settings=PushSettings(max_concurrency=64),
    ).report
    assert report.counts["sent"] == 300
    assert pacer.rate is not None and pacer.rate <= 150 * POLICY_SHARE + 1e-6
    received = [r for r in sandbox.requests if r.status == 429]
    assert len(received) <= 15, f"{len(received)} of 300 answered 429 (the first burst may meet some)"


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.none(), st.text(max_size=200)), st.one_of(st.none(), st.text(max_size=200)))
def test_any_header_text_is_read_or_ignored_never_an_error(rate_limit, policy):
    hint = parse_rate_limit(rate_limit, policy)
    assert hint is None or isinstance(hint, RateLimitHint)
    if hint is not None and hint.rate is not None:
        assert hint.rate >= 0
