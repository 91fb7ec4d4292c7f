"""Every Python snippet of the README runs as a reader would paste it, top to bottom, against the sandbox."""

from __future__ import annotations

import re
import sys
import types

import pytest

from tests.helpers import REPO, conn_json

SNIPPET = re.compile(r"```python\n(.*?)```", re.DOTALL)


def snippets() -> list[str]:
    return SNIPPET.findall((REPO / "README.md").read_text())


def test_the_readme_has_the_snippets_this_test_runs():
    assert len(snippets()) >= 8


def test_every_readme_snippet_imports_and_constructs(sandbox, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_JUSPAY_DEFAULT", conn_json(sandbox.base_url))
    try:
        import airflow.providers.slack.notifications.slack  # noqa: F401
    except ImportError:  # the README's Slack example: that provider is the user's, not ours
        slack = types.ModuleType("airflow.providers.slack.notifications.slack")
        slack.SlackNotifier = lambda **kwargs: lambda text: None  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "airflow.providers.slack.notifications.slack", slack)
    # What a reader's DAG file provides around the snippets.
    namespace: dict = {"refunds_to_start": lambda: [], "returned_parcels": lambda: []}
    for number, code in enumerate(snippets(), start=1):
        try:
            exec(compile(code, f"README.md python snippet {number}", "exec"), namespace)
        except Exception as exc:
            pytest.fail(f"README snippet {number} does not run: {type(exc).__name__}: {exc}\n{code}")
    assert namespace["result"].outcome.value == "sent", "the hook snippet reached the sandbox"
    assert namespace["JUSPAY_FULFILMENTS"].uri.startswith("juspay://")
    assert "juspay_reconcile" in namespace
