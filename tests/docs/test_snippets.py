"""Every code snippet of the README and the documentation site is checked as a reader would use it.

Python blocks run top to bottom against the sandbox (a page's blocks in one namespace, pages in the
site's order, as a reader pastes them); shell blocks are only commands this test checks (a connection
in the environment, the sandbox's command line, ``pip install`` of our extras, ``make`` targets); other
fences are program output (``text``) or Sphinx directives, whose includes ``make docs`` checks.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import sqlite3
import subprocess
import sys
import time
import types
import urllib.request
from contextlib import closing

import pytest

from tests.docs.quickstart import section
from tests.helpers import REPO, conn_json

DOCS = REPO / "docs"
FENCE = re.compile(r"^```(\S*)[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)
CHECKED_LANGUAGES = {"python", "bash", "text", "sql", "ini"}


def pages() -> list:
    """README, then the site's pages in the order of the tables of contents (index.md's, and those of
    the pages they list, as the API reference's), depth first."""

    def walk(name: str) -> list[str]:
        folder = name.rpartition("/")[0]
        found = [name]
        for toctree in re.findall(r"```\{toctree\}\n(.*?)```", (DOCS / f"{name}.md").read_text(), re.DOTALL):
            for line in toctree.splitlines():
                if line.strip() and not line.startswith(":"):
                    found += walk(f"{folder}/{line.strip()}" if folder else line.strip())
        return found

    return [REPO / "README.md"] + [DOCS / f"{name}.md" for name in walk("index")]


def blocks(language: str) -> list[tuple[str, str]]:
    return [
        (f"{page.relative_to(REPO)} {language} block {n}", code)
        for page in pages()
        for n, (lang, code) in enumerate(FENCE.findall(page.read_text()), start=1)
        if lang == language
    ]


def test_every_page_is_in_the_site_and_every_fence_is_a_checked_kind():
    on_disk = {p.relative_to(DOCS).with_suffix("").as_posix() for p in DOCS.rglob("*.md")}
    listed = {p.relative_to(DOCS).with_suffix("").as_posix() for p in pages()[1:]}
    assert on_disk - listed == set(), "a page no table of contents lists"
    for page in pages():
        for lang, _ in FENCE.findall(page.read_text()):
            assert lang in CHECKED_LANGUAGES or lang.startswith("{"), (
                f"{page}: a ```{lang} block no test checks"
            )
    assert len(blocks("python")) >= 8


def test_every_module_of_the_package_has_its_api_page():
    """One page per module; a module added without one would be missing from the reference."""
    package = REPO / "airflow_provider_juspay"
    modules = set()
    for path in package.rglob("*.py"):
        parts = path.relative_to(package).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
            if not parts or not path.read_text().strip().count("\n") > 3:  # an empty package marker
                continue
        if not any(part.startswith("_") for part in parts):
            modules.add(".".join(parts))
    pages_ = {p.stem for p in (DOCS / "api").glob("*.md")} - {"index"}
    assert sorted(modules - pages_) == [], "modules without an API page"
    assert sorted(pages_ - modules) == [], "API pages of modules that are gone"


def test_every_python_snippet_runs(sandbox, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_JUSPAY_DEFAULT", conn_json(sandbox.base_url))
    try:
        import airflow.providers.slack.notifications.slack  # noqa: F401
    except ImportError:  # the notifier page's Slack example: that provider is the user's, not ours
        slack = types.ModuleType("airflow.providers.slack.notifications.slack")
        slack.SlackNotifier = lambda **kwargs: lambda text: None  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "airflow.providers.slack.notifications.slack", slack)
    # What a reader's DAG file provides around the snippets.
    namespace: dict = {"refunds_to_start": lambda: [], "returned_parcels": lambda: []}
    for where, code in blocks("python"):
        try:
            exec(compile(code, where, "exec"), namespace)
        except Exception as exc:
            pytest.fail(f"{where} does not run: {type(exc).__name__}: {exc}\n{code}")
    assert namespace["result"].outcome.value == "sent", "the hook snippet reached the sandbox"
    assert namespace["JUSPAY_FULFILMENTS"].uri.startswith("juspay://")
    assert "juspay_reconcile" in namespace


WINDOW_BOUND = re.compile(r"[<>]=? *'\{\{+ *(data_interval_(?:start|end)[^}']*?) *\}\}+'")


def test_one_window_form_everywhere():
    """The README, every page and every example compare with the same bounds (the nightly page's
    "The window"; tests/e2e/test_window.py shows the form right on each warehouse)."""
    sources = [
        *pages(),
        *REPO.joinpath("dags_examples").rglob("*.py"),
        *REPO.joinpath("dags_examples").rglob("*.sql"),
    ]
    forms = {}
    for source in sources:
        for bound in WINDOW_BOUND.findall(source.read_text()):
            forms.setdefault(bound.replace("_end", "_start"), []).append(source.name)
    assert set(forms) == {"data_interval_start.to_datetime_string()"}, forms
    assert sum(map(len, forms.values())) >= 8, "README, the SQL file, the sharded example, the pages"
    for where, code in blocks("sql"):
        if "data_interval" not in code:
            continue  # the run history's queries: tests/docs/test_ledger_queries.py runs them
        sql_file = (REPO / "dags_examples" / "sql" / "fulfilments_of_the_interval.sql").read_text()
        assert " ".join(code.split()) in " ".join(sql_file.split()), f"{where} is not the example's window"


def commands() -> list[tuple[str, str]]:
    """Each command of the shell blocks, continuation lines joined, comments dropped."""
    found = []
    for where, code in blocks("bash"):
        text = re.sub(r"\\\n\s*", " ", code)
        # A quoted value may span lines (the JSON connection): join lines until quotes balance.
        pending = ""
        for line in text.splitlines():
            pending = f"{pending}\n{line}" if pending else line
            if pending.count("'") % 2:
                continue
            command = pending.strip()
            pending = ""
            if command and not command.startswith("#"):
                found.append((where, command))
    return found


def test_every_config_block_is_the_providers_and_the_page_reads_it(monkeypatch):
    """An ``ini`` block is airflow.cfg: its options are the provider's config section (provider info),
    and the page reads the ledgers it names."""
    import configparser

    from airflow_provider_juspay.get_provider_info import get_provider_info
    from airflow_provider_juspay.ui.app import ledger_sources

    known = get_provider_info()["config"]
    found = blocks("ini")
    assert found, "the page's set-up shows airflow.cfg"
    for where, code in found:
        parsed = configparser.ConfigParser()
        parsed.read_string(code)
        assert parsed.sections() == ["juspay"], where
        for option, value in parsed["juspay"].items():
            assert option in known["juspay"]["options"], f"{where}: {option} is not in the config section"
            monkeypatch.setenv(f"AIRFLOW__JUSPAY__{option.upper()}", value)
        assert ledger_sources() == [("warehouse", "juspay_fulfilment_ledger")], where


def test_every_shell_command_is_one_this_test_checks(sandbox, tmp_path):
    from importlib.metadata import metadata

    from airflow.models.connection import Connection

    from airflow_provider_juspay.hooks.juspay import client_config_from_connection

    extras = set(metadata("airflow-provider-juspay").get_all("Provides-Extra") or [])
    targets = set(re.findall(r"^([a-z][a-z-]*):", (REPO / "Makefile").read_text(), re.MULTILINE))
    quickstart = FENCE.findall(section("A working DAG in five minutes"))
    run_by_quickstart = {
        line.split("#")[0].strip()
        for lang, code in quickstart
        if lang == "bash"
        for line in code.splitlines()
    }
    checked = 0
    for where, command in commands():
        command = command.split("  #")[0].strip()
        words = shlex.split(command, comments=True)
        if not words:
            continue
        if command in run_by_quickstart:
            pass  # tests/docs/test_quickstart.py runs them as the page shows them
        elif words[:2] == ["pip", "install"]:
            for spec in words[2:]:
                name, _, extra = spec.partition("[")
                # From PyPI, from the clone ('.'), or the wheel make dist builds (CI installs it).
                assert name in ("airflow-provider-juspay", ".", "$(ls dist/*.whl)"), f"{where}: {spec}"
                assert not extra or extra.rstrip("]") in extras, f"{where}: no extra {extra}"
        elif words[0] == "make":
            assert set(words[1:]) <= targets, f"{where}: {command}"
        elif words[0] == "export" and words[1].startswith("AIRFLOW_CONN_JUSPAY_DEFAULT="):
            value = words[1].split("=", 1)[1].replace("<api key>", "sk_live_example")
            conn = (
                Connection.from_json(value, conn_id="juspay_default")
                if value.startswith("{")
                else (Connection(conn_id="juspay_default", uri=value))
            )
            assert conn.conn_type == "juspay", f"{where}: {command}"
            config = client_config_from_connection(conn)  # what the hook builds from it
            assert config.merchant_id == "m1" and config.api_key in {"sk_live_example", "sk_test_demo"}
            if "8765" in value:
                assert config.base_url == "http://127.0.0.1:8765", f"{where}: {config.base_url}"
            else:
                assert config.base_url == "https://api.juspay.in" and config.timezone == "Asia/Kolkata"
        elif words[0] == "export" and words[1].startswith("AIRFLOW_CONN_WAREHOUSE="):
            _warehouse_connection_opens(where, words[1].split("=", 1)[1], tmp_path)
        elif words[0] == "curl":
            _trigger_call_is_airflows(where, words)
        elif words[:3] == ["python", "-m", "airflow_provider_juspay.testing.sandbox"]:
            _sandbox_command_answers(words[3:])
        else:
            pytest.fail(f"{where}: a command no test checks: {command}")
        checked += 1
    assert checked >= 8


def _trigger_call_is_airflows(where: str, words: list[str]) -> None:
    """The REST call of a run by hand: Airflow's own request model takes its body, and it asks for the
    day before its logical date (tests/system/run.py makes the same call on a real deployment)."""
    from datetime import timedelta

    from airflow.api_fastapi.core_api.datamodels.dag_run import TriggerDAGRunPostBody

    url = next(w for w in words if "/api/v2/" in w)
    assert re.search(r"/api/v2/dags/[a-z_]+/dagRuns$", url), f"{where}: {url}"
    body = TriggerDAGRunPostBody.model_validate_json(words[words.index("-d") + 1])
    assert body.data_interval_start and body.data_interval_end and body.logical_date, where
    assert body.data_interval_end - body.data_interval_start == timedelta(days=1), where
    assert body.logical_date - body.data_interval_end == timedelta(hours=12), "D+1 at noon"


def _warehouse_connection_opens(where: str, value: str, tmp_path) -> None:
    """A warehouse connection of the docs, as Airflow parses it: SQLite opens the file (moved to a
    temporary one); PostgreSQL keeps the session option, and opens where .ci/run gives a server."""
    from airflow.models.connection import Connection

    conn = (
        Connection.from_json(value, conn_id="warehouse")
        if value.startswith("{")
        else Connection(conn_id="warehouse", uri=value)
    )
    if conn.conn_type == "sqlite":
        assert conn.host == "/data/warehouse.db", f"{where}: the file is {conn.host!r}"
        path = tmp_path / "warehouse.db"
        sqlite3.connect(path).execute("CREATE TABLE IF NOT EXISTS t (x)").connection.close()
        moved = value.replace("/data/warehouse.db", str(path)).replace(
            "%2Fdata%2Fwarehouse.db", str(path).replace("/", "%2F")
        )
        os.environ["AIRFLOW_CONN_WAREHOUSE"] = moved
        try:
            from airflow.providers.sqlite.hooks.sqlite import SqliteHook

            with closing(SqliteHook(sqlite_conn_id="warehouse").get_conn()) as db:
                assert db.execute("PRAGMA database_list").fetchone()[2] == str(path), where
        finally:
            del os.environ["AIRFLOW_CONN_WAREHOUSE"]
        return
    assert conn.conn_type == "postgres", f"{where}: {conn.conn_type}"
    assert conn.schema == "analytics" and conn.extra_dejson.get("options") == "-c timezone=UTC", where
    uri = os.environ.get("JUSPAY_TEST_POSTGRES_URI")
    if uri:  # the same fields, pointed at the test server, give a session in UTC
        import psycopg2
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        dsn = psycopg2.extensions.parse_dsn(uri)
        local = Connection(
            conn_id="warehouse", conn_type="postgres", host=dsn["host"], port=int(dsn["port"]),
            login=dsn["user"], schema=dsn["dbname"], extra=conn.extra,
        )  # fmt: skip
        with closing(PostgresHook(connection=local).get_conn()) as db, db.cursor() as cursor:
            cursor.execute("SHOW timezone")
            assert cursor.fetchone()[0] == "UTC", where


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _sandbox_command_answers(args: list[str]) -> None:
    """The documented sandbox command starts a sandbox that answers (on a free port)."""
    port = free_port()
    args = [
        str(port) if previous == "--port" else arg for previous, arg in zip(["", *args], args, strict=False)
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_juspay.testing.sandbox", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/__sandbox/state", timeout=2) as answer:
                    assert "requests" in json.load(answer)
                    return
            except OSError as exc:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"the sandbox did not answer: {process.stderr.read()}") from exc
                time.sleep(0.2)
    finally:
        process.terminate()
        process.wait(10)


@pytest.mark.parametrize(
    "page, operator",
    [("howto/single.md", "FulfilmentSyncOperator"), ("howto/bulk.md", "BulkFulfilmentOperator")],
)
def test_the_argument_tables_say_templated_exactly_for_the_template_fields(page, operator):
    import airflow_provider_juspay.operators.fulfilment as module

    templated = set(getattr(module, operator).template_fields)
    text = (DOCS / page).read_text()
    table = text[text.index("| argument |") :]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    said = set()
    for row in rows:
        names = re.findall(r"`([a-z_]+)`", row.split("|")[1])
        if "templated" in row:
            said.update(names)
    assert said == templated, f"{page}: templated said of {sorted(said)}, is {sorted(templated)}"


def test_the_sandbox_page_lists_every_flag_with_its_default():
    from airflow_provider_juspay.testing.sandbox_cli import build_parser

    text = (DOCS / "sandbox.md").read_text()
    rows = dict(re.findall(r"^\| `(--[a-z-]+)` \| ([^|]+) \|", text, re.MULTILINE))
    flags = {a.option_strings[0]: a for a in build_parser()._actions if a.option_strings and a.dest != "help"}
    assert set(rows) == set(flags), "flags the page and the parser disagree on"
    for flag, action in flags.items():
        shown = rows[flag].strip()
        expected = "off" if action.nargs == 0 else "none" if action.default is None else f"`{action.default}`"
        assert shown == expected, f"{flag}: the page says {shown}, the default is {action.default!r}"


def test_the_reference_shows_each_operators_inherited_arguments_with_their_defaults():
    import importlib.util

    from airflow_provider_juspay.operators.fulfilment import BulkFulfilmentOperator, FulfilmentSyncOperator

    spec = importlib.util.spec_from_file_location("docs_conf", DOCS / "conf.py")
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    for operator in (BulkFulfilmentOperator, FulfilmentSyncOperator):
        signature, _ = conf.inherited_signature(None, "class", operator.__name__, operator, {}, "(...)", None)
        for shown in (
            "juspay_conn_id='juspay_default'",
            "column_map=None",
            "defaults=None",
            "ledger_conn_id=None",
            "ledger_table='juspay_fulfilment_ledger'",
            "ledger_wait_limit=900.0",
        ):
            assert shown in signature, f"{operator.__name__}{signature}"
        assert signature.endswith("**kwargs)") and "records=None" in signature
